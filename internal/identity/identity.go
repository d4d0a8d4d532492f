// Package identity decides which AWS identity a pod gets: IRSA (a role assumed with a
// web identity token), Pod Identity (container credentials from a node agent), or none.
// It is pure logic: callers pass in the ServiceAccount's annotations and the current
// mapping snapshots, and get back an Identity plus admission warnings.
package identity

import (
	"fmt"
	"regexp"
	"strconv"
)

// Mode is the kind of identity a pod gets.
type Mode string

// Modes. ModeNone means the pod is left alone.
const (
	ModeNone        Mode = "none"
	ModeIRSA        Mode = "irsa"
	ModePodIdentity Mode = "pod-identity"
)

// Token lifetime bounds enforced by the API server for projected tokens: below the
// minimum the pod would be rejected, so we raise it instead.
const (
	MinTokenExpiration int64 = 600
	MaxTokenExpiration int64 = 1 << 32
)

// roleARNPattern is the documented shape of an IAM role ARN. A role that does not
// match still gets injected (AWS is the authority), but the user sees a warning.
var roleARNPattern = regexp.MustCompile(`^arn:[a-z][a-z0-9-]*:iam::\d{12}:role/[\w+=,.@/-]+$`)

// Identity is what a pod gets.
type Identity struct {
	Mode Mode
	// RoleARN is set for IRSA only; Pod Identity roles live with the agent.
	RoleARN         string
	Audience        string
	RegionalSTS     bool
	TokenExpiration int64
	// SessionNameFromPod sets AWS_ROLE_SESSION_NAME to the pod name (IRSA only).
	SessionNameFromPod bool
	// FSGroup, when not nil, is set as the pod's fsGroup if it has none.
	FSGroup *int64
	// Source says where the identity came from, for logs: "annotation",
	// "mapping <key>", "container-credentials" or "association".
	Source string
}

// Defaults are the flag values used when neither annotations nor mapping say otherwise.
type Defaults struct {
	Audience                     string
	RegionalSTS                  bool
	TokenExpiration              int64
	ContainerCredentialsAudience string
	SessionNameFromPod           bool
	// ComposeRoleARN, when not nil, turns a role given by name (and path) in an
	// annotation or the mapping into an ARN (--compose-role-arn).
	ComposeRoleARN *ARNComposer
}

// Input is everything known about one pod at admission time.
type Input struct {
	Namespace      string
	ServiceAccount string
	PodAnnotations map[string]string
	// SAAnnotations holds the ServiceAccount's annotations (only those under the
	// prefix are needed). Nil when the ServiceAccount was not found.
	SAAnnotations        map[string]string
	Mapping              *Mapping
	ContainerCredentials *ContainerCredentials
}

// Resolver turns an Input into an Identity.
type Resolver struct {
	Keys     Keys
	Defaults Defaults
}

// Resolve returns the pod's identity and the admission warnings to show the user.
// It never fails: bad values are ignored with a warning, because a configuration
// problem must not block pod creation.
func (r *Resolver) Resolve(in Input) (Identity, []string) {
	var warn []string
	sa := in.SAAnnotations

	if src := in.ContainerCredentials.Source(in.Namespace, in.ServiceAccount); src != "" {
		id := Identity{
			Mode:     ModePodIdentity,
			Audience: r.Defaults.ContainerCredentialsAudience,
			Source:   src,
		}
		id.RegionalSTS = r.regionalSTS(sa, nil, &warn)
		id.TokenExpiration = r.tokenExpiration(in.PodAnnotations, sa, 0, &warn)
		id.FSGroup = r.fsGroup(in.PodAnnotations, sa, &warn)
		return id, warn
	}

	var entry *MappingEntry
	id := Identity{Mode: ModeIRSA}
	if arn := sa[r.Keys.RoleARN]; arn != "" {
		id.RoleARN, id.Source = arn, "annotation"
	} else if e, key, ok := in.Mapping.Lookup(in.Namespace, in.ServiceAccount); ok {
		entry = &e
		id.RoleARN, id.Source = e.RoleARN, "mapping "+key
	} else {
		return Identity{Mode: ModeNone}, nil
	}
	id.RoleARN = r.Defaults.ComposeRoleARN.Compose(id.RoleARN)
	if !roleARNPattern.MatchString(id.RoleARN) {
		warn = append(warn, fmt.Sprintf("role ARN %q does not look like arn:<partition>:iam::<account>:role/<name>; injecting it anyway", id.RoleARN))
	}

	id.Audience = r.Defaults.Audience
	if entry != nil && entry.Audience != "" {
		id.Audience = entry.Audience
	}
	if aud := sa[r.Keys.Audience]; aud != "" {
		id.Audience = aud
	}
	var mapped int64
	if entry != nil {
		mapped = entry.TokenExpiration
	}
	id.RegionalSTS = r.regionalSTS(sa, entry, &warn)
	id.TokenExpiration = r.tokenExpiration(in.PodAnnotations, sa, mapped, &warn)
	id.SessionNameFromPod = r.sessionNameFromPod(in.PodAnnotations, sa, &warn)
	id.FSGroup = r.fsGroup(in.PodAnnotations, sa, &warn)
	return id, warn
}

func (r *Resolver) regionalSTS(sa map[string]string, entry *MappingEntry, warn *[]string) bool {
	if v, ok := sa[r.Keys.RegionalSTS]; ok {
		switch v {
		case "true":
			return true
		case "false":
			return false
		default:
			*warn = append(*warn, fmt.Sprintf("%s=%q is not \"true\" or \"false\"; using the default", r.Keys.RegionalSTS, v))
			return r.Defaults.RegionalSTS
		}
	}
	if entry != nil && entry.UseRegionalSTS != nil {
		return *entry.UseRegionalSTS
	}
	return r.Defaults.RegionalSTS
}

// tokenExpiration applies pod annotation > ServiceAccount annotation > mapping > flag,
// skipping values that are not integers, then clamps to what the API server accepts.
func (r *Resolver) tokenExpiration(pod, sa map[string]string, mapped int64, warn *[]string) int64 {
	exp := r.Defaults.TokenExpiration
	found := false
	for _, src := range []map[string]string{pod, sa} {
		v, ok := src[r.Keys.TokenExpiration]
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			*warn = append(*warn, fmt.Sprintf("%s=%q is not an integer number of seconds; ignored", r.Keys.TokenExpiration, v))
			continue
		}
		exp, found = n, true
		break
	}
	if !found && mapped > 0 {
		exp = mapped
	}
	switch {
	case exp < MinTokenExpiration:
		*warn = append(*warn, fmt.Sprintf("token expiration %ds is below the minimum; using %ds", exp, MinTokenExpiration))
		exp = MinTokenExpiration
	case exp > MaxTokenExpiration:
		*warn = append(*warn, fmt.Sprintf("token expiration %ds is above the maximum; using %ds", exp, MaxTokenExpiration))
		exp = MaxTokenExpiration
	}
	return exp
}

func (r *Resolver) sessionNameFromPod(pod, sa map[string]string, warn *[]string) bool {
	for _, src := range []map[string]string{pod, sa} {
		v, ok := src[r.Keys.RoleSessionName]
		if !ok {
			continue
		}
		switch v {
		case RoleSessionNamePodName:
			return true
		case "none":
			return false
		default:
			*warn = append(*warn, fmt.Sprintf("%s=%q is not %q or \"none\"; ignored", r.Keys.RoleSessionName, v, RoleSessionNamePodName))
		}
	}
	return r.Defaults.SessionNameFromPod
}

func (r *Resolver) fsGroup(pod, sa map[string]string, warn *[]string) *int64 {
	for _, src := range []map[string]string{pod, sa} {
		v, ok := src[r.Keys.FSGroup]
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			*warn = append(*warn, fmt.Sprintf("%s=%q is not a non-negative integer group id; ignored", r.Keys.FSGroup, v))
			continue
		}
		return &n
	}
	return nil
}
