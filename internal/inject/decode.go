package inject

import (
	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/podiam/podiam/internal/jsonscan"
)

// Containers are most of a pod's bytes and almost none of what injection
// reads: of their probes, resources, ports and security context it needs only
// the names of env vars and mounts, which jsonscan reads without decoding the
// rest by reflection (the tests compare the result with reflection's).
//
// The lists of a pod are where a small request decodes to much memory, so
// decoding keeps only part of them: the env vars that injection looks for, at
// most MaxContainers+1 containers per list, and at most MaxListItems volumes
// and volume mounts in all (itemBudget). The items past a bound are only
// checked to be well-formed.

// UnmarshalJSONFrom implements json.UnmarshalerFrom. A null spec is the zero
// value and a second "spec" member merges into the first, as with reflection.
func (s *podSpec) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	if dec.PeekKind() == 'n' {
		*s = podSpec{}
		_, err := dec.ReadToken()
		return err
	}
	return jsonscan.DecodeObject(dec, s)
}

// Field implements jsonscan.Fields. The lists are decoded through views of s
// (a pointer conversion, which does not allocate) that share s.items.
func (s *podSpec) Field(name []byte) any {
	switch string(name) {
	case "serviceAccountName":
		return &s.ServiceAccountName
	case "nodeSelector":
		return &s.NodeSelector
	case "os":
		return &s.OS
	case "securityContext":
		return &s.SecurityContext
	case "volumes":
		return (*volumesOf)(s)
	case "containers":
		return (*containersOf)(s)
	case "initContainers":
		return (*initContainersOf)(s)
	}
	return nil
}

// volumesOf, containersOf and initContainersOf decode one list of a podSpec.
type (
	volumesOf        podSpec
	containersOf     podSpec
	initContainersOf podSpec
)

// UnmarshalJSONFrom implements json.UnmarshalerFrom.
func (v *volumesOf) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	s := (*podSpec)(v)
	list := []volume{}
	null, err := jsonscan.DecodeElements(dec, func() error {
		if !s.items.take() {
			return jsonscan.SkipObject(dec)
		}
		list = append(list, volume{})
		return json.UnmarshalDecode(dec, &list[len(list)-1])
	})
	if null {
		list = nil
	}
	s.Volumes = list
	return err
}

// UnmarshalJSONFrom implements json.UnmarshalerFrom.
func (c *containersOf) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	return c.Containers.decode(dec, &c.items)
}

// UnmarshalJSONFrom implements json.UnmarshalerFrom.
func (c *initContainersOf) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	return c.InitContainers.decode(dec, &c.items)
}

// UnmarshalJSONFrom implements json.UnmarshalerFrom, for a container decoded
// alone (with a budget of its own).
func (c *container) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	return c.decode(dec, &itemBudget{})
}

// decode decodes the container, keeping its volume mounts within b.
func (c *container) decode(dec *jsontext.Decoder, b *itemBudget) error {
	*c = container{budget: b}
	err := jsonscan.DecodeObject(dec, c)
	c.budget = nil
	return err
}

// Field implements jsonscan.Fields.
func (c *container) Field(name []byte) any {
	switch string(name) {
	case "name":
		return &c.Name
	case "env":
		return &c.Env
	case "volumeMounts":
		return (*mountsOf)(c)
	}
	return nil
}

// mountsOf decodes the volume mounts of a container within its budget.
type mountsOf container

// UnmarshalJSONFrom implements json.UnmarshalerFrom.
func (m *mountsOf) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	c := (*container)(m)
	list := []volumeMount{}
	null, err := jsonscan.DecodeElements(dec, func() error {
		if !c.budget.take() {
			return jsonscan.SkipObject(dec)
		}
		list = append(list, volumeMount{})
		return list[len(list)-1].UnmarshalJSONFrom(dec)
	})
	if null {
		list = nil
	}
	c.VolumeMounts = list
	return err
}

// UnmarshalJSONFrom implements json.UnmarshalerFrom.
func (m *volumeMount) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	*m = volumeMount{}
	return jsonscan.DecodeObject(dec, m)
}

// Field implements jsonscan.Fields.
func (m *volumeMount) Field(name []byte) any {
	switch string(name) {
	case "name":
		return &m.Name
	case "mountPath":
		return &m.MountPath
	}
	return nil
}

// envNames are the env vars that injection adds (envFor) and so looks for in a
// container (hasEnv). Nothing else of a container's env is read.
var envNames = [...]string{
	EnvRegionalSTS, EnvDefaultRegion, EnvRegion, EnvRoleARN, EnvWebIdentityTokenFile,
	EnvRoleSessionName, EnvContainerCredsURI, EnvContainerCredsToken,
}

// containerEnv is a container's env, of which decoding keeps the first variable of
// each name of envNames, and nothing else: injection only asks whether a
// name is there, so a list of any length decodes to at most len(envNames)
// items and, apart from them, allocates nothing. An empty list is still
// told from an absent one (nil), which the patch needs.
type containerEnv []podEnvVar

// UnmarshalJSONFrom implements json.UnmarshalerFrom. Every item is checked as
// the struct decoding would: an object (or null) whose name is a string.
func (l *containerEnv) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	list := containerEnv{}
	var seen uint32 // bit i: envNames[i] is in list
	null, err := jsonscan.DecodeElements(dec, func() error {
		i, err := decodeEnvVar(dec)
		if err == nil && i >= 0 && seen&(1<<i) == 0 {
			seen |= 1 << i
			list = append(list, podEnvVar{Name: envNames[i]})
		}
		return err
	})
	if null {
		list = nil
	}
	*l = list
	return err
}

// decodeEnvVar reads one env var and returns the index of its name in
// envNames, or -1. As with struct decoding, the last "name" member wins.
func decodeEnvVar(dec *jsontext.Decoder) (int, error) {
	index := -1
	err := jsonscan.DecodeMembers(dec, func(name []byte) error {
		if string(name) != "name" {
			_, err := dec.ReadValue()
			return err
		}
		var err error
		index, err = decodeEnvName(dec)
		return err
	})
	return index, err
}

// decodeEnvName reads a string (or null, the empty name) and returns its index
// in envNames, or -1, without allocating for names that are not there.
func decodeEnvName(dec *jsontext.Decoder) (int, error) {
	raw, err := jsonscan.ReadString(dec)
	if err != nil {
		return -1, err
	}
	for i, n := range envNames {
		if string(raw) == n {
			return i, nil
		}
	}
	return -1, nil
}
