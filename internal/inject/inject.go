// Package inject turns a pod and an identity into a JSONPatch. It does no I/O.
//
// The patch only ever adds single items (an env var, a mount, a volume) or creates
// an array that is absent, so it cannot drop fields of the pod it does not know.
// Whatever the pod already has, by name, wins; applying the patch and then
// injecting again yields no patch.
package inject

import (
	"fmt"
	"path"
	"strconv"
	"strings"
	"sync"

	"github.com/podiam/podiam/internal/identity"
)

// Environment variable names read by the AWS SDKs.
const (
	EnvRegionalSTS          = "AWS_STS_REGIONAL_ENDPOINTS"
	EnvDefaultRegion        = "AWS_DEFAULT_REGION"
	EnvRegion               = "AWS_REGION"
	EnvRoleARN              = "AWS_ROLE_ARN"
	EnvWebIdentityTokenFile = "AWS_WEB_IDENTITY_TOKEN_FILE"
	EnvRoleSessionName      = "AWS_ROLE_SESSION_NAME"
	EnvContainerCredsURI    = "AWS_CONTAINER_CREDENTIALS_FULL_URI"
	EnvContainerCredsToken  = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"
)

// Defaults of the Amazon EKS pod identity webhook, which podiam keeps.
const (
	DefaultTokenMountPath           = "/var/run/secrets/eks.amazonaws.com/serviceaccount"
	DefaultContainerCredsMountPath  = "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount"
	DefaultContainerCredsVolumeName = "eks-pod-identity-token"
	DefaultContainerCredsTokenPath  = "eks-pod-identity-token"
	DefaultContainerCredsFullURI    = "http://169.254.170.23/v1/credentials"
	// IRSAVolumeName and IRSATokenPath are fixed by the Amazon webhook; tools
	// look for them, so they are not configurable.
	IRSAVolumeName = "aws-iam-token"
	IRSATokenPath  = "token"
)

// Config is the injection configuration, mostly from flags.
type Config struct {
	Keys                     identity.Keys
	TokenMountPath           string
	ContainerCredsMountPath  string
	ContainerCredsVolumeName string
	ContainerCredsTokenPath  string
	ContainerCredsFullURI    string
	// Region, when set, is injected as AWS_DEFAULT_REGION and AWS_REGION.
	Region string
}

// Result is the outcome of injecting one pod.
type Result struct {
	// Patch is a JSONPatch document, nil when there is nothing to change.
	Patch []byte
	// Warnings are shown to the user as admission warnings: at most
	// MaxWarnings, the others only counted in OmittedWarnings.
	Warnings        []string
	OmittedWarnings int
	// Injected counts containers that got (or already had) the identity.
	Injected int
	// SkippedByAnnotation and SkippedByConflict count containers left alone.
	SkippedByAnnotation int
	SkippedByConflict   int
	// OverLimit, when set, says why the pod was left unchanged although it has
	// an identity: it has more than MaxContainers containers, or more than
	// MaxListItems volumes and volume mounts, or its patch would be over
	// MaxPatchBytes. Warnings says so to the user.
	OverLimit string
}

// Values of Result.OverLimit.
const (
	OverLimitContainers = "too many containers"
	OverLimitListItems  = "too many volumes and volume mounts"
	OverLimitPatch      = "patch too large"
)

// room reports whether another warning may be built, and counts it as omitted
// when not: a message that is never shown is not formatted.
func (r *Result) room() bool {
	if len(r.Warnings) < MaxWarnings {
		return true
	}
	r.OmittedWarnings++
	return false
}

// target is what one identity mode needs in the pod.
type target struct {
	volume, mountPath, tokenPath, audience string
}

func (c *Config) target(id identity.Identity) target {
	if id.Mode == identity.ModePodIdentity {
		return target{c.ContainerCredsVolumeName, c.ContainerCredsMountPath, c.ContainerCredsTokenPath, id.Audience}
	}
	return target{IRSAVolumeName, c.TokenMountPath, IRSATokenPath, id.Audience}
}

// Inject computes the patch that gives pod the identity id.
func (c *Config) Inject(pod *Pod, id identity.Identity) Result {
	var res Result
	if id.Mode != identity.ModeIRSA && id.Mode != identity.ModePodIdentity {
		return res
	}
	t := c.target(id)

	// The work and the patch grow with the containers: a pod with more than any
	// real one is left alone before any is looked at.
	if n := len(pod.Spec.Containers) + len(pod.Spec.InitContainers); n > MaxContainers {
		res.Warnings = append(res.Warnings, fmt.Sprintf("pod has more than %d containers and init containers; not injecting", MaxContainers))
		res.OverLimit = OverLimitContainers
		return res
	}
	// Decoding kept only part of the volumes and mounts: what it dropped could
	// conflict with ours.
	if pod.Spec.items.over {
		res.Warnings = append(res.Warnings, fmt.Sprintf("pod has more than %d volumes and volume mounts; not injecting", MaxListItems))
		res.OverLimit = OverLimitListItems
		return res
	}
	if msg, ok := volumeConflict(pod, t); !ok {
		res.Warnings = append(res.Warnings, msg)
		res.SkippedByConflict = len(pod.Spec.Containers) + len(pod.Spec.InitContainers)
		return res
	}

	sel := newSelector(pod.Annotations(), c.Keys)
	env := c.envFor(pod, id, t)
	if id.Mode == identity.ModeIRSA && id.SessionNameFromPod {
		if n := sessionNameLength(pod); n > maxSessionName {
			res.Warnings = append(res.Warnings, fmt.Sprintf("the pod name (%d characters) is longer than the %d that STS accepts as %s; AssumeRoleWithWebIdentity will fail",
				n, maxSessionName, EnvRoleSessionName))
		}
	}
	// A 3-container IRSA patch is about 3 KiB: a pooled buffer of 4 KiB is
	// neither regrown nor, once Release gives it back, allocated again.
	p := patch{buf: getPatchBuffer()}
	for _, list := range []struct {
		field      string
		containers []container
	}{{"containers", pod.Spec.Containers}, {"initContainers", pod.Spec.InitContainers}} {
		for i := range list.containers {
			ctr := &list.containers[i]
			if !sel.includes(ctr.Name) {
				res.SkippedByAnnotation++
				continue
			}
			if m := mountConflict(ctr, t); m != nil {
				if res.room() {
					res.Warnings = append(res.Warnings, mountConflictMessage(ctr, m, t))
				}
				res.SkippedByConflict++
				continue
			}
			res.Injected++
			base := "/spec/" + list.field + "/" + strconv.Itoa(i)
			items, partial := missingEnv(ctr, env)
			for _, g := range partial {
				if !res.room() {
					continue
				}
				res.Warnings = append(res.Warnings, fmt.Sprintf("container %q sets %s but not %s; podiam leaves that pair to it",
					ctr.Name, g.present, g.missing))
			}
			p.addItems(base+"/env", ctr.Env != nil, items)
			if !hasMount(ctr, t.volume) {
				p.addItems(base+"/volumeMounts", ctr.VolumeMounts != nil, []jsonValue{mount{t.volume, t.mountPath}})
			}
			if len(p.buf) > MaxPatchBytes {
				putPatchBuffer(p.buf)
				return Result{
					Warnings:  []string{fmt.Sprintf("the patch would be over %d bytes; not injecting", MaxPatchBytes)},
					OverLimit: OverLimitPatch,
				}
			}
		}
	}
	if sel.only != nil && res.Injected == 0 && res.SkippedByConflict == 0 && res.room() {
		res.Warnings = append(res.Warnings, fmt.Sprintf("%s names no container of the pod; nothing injected", c.Keys.InjectContainers))
	}
	if res.Injected == 0 {
		putPatchBuffer(p.buf)
		return Result{Warnings: res.Warnings, OmittedWarnings: res.OmittedWarnings,
			SkippedByAnnotation: res.SkippedByAnnotation, SkippedByConflict: res.SkippedByConflict}
	}

	if !hasVolume(pod, t.volume) {
		p.addItems("/spec/volumes", pod.Spec.Volumes != nil, []jsonValue{tokenVolume{t, id.TokenExpiration}})
	}
	if id.FSGroup != nil {
		switch sc := pod.Spec.SecurityContext; {
		case sc == nil:
			p.add("/spec/securityContext", member{"fsGroup", intValue(*id.FSGroup)})
		case sc.FSGroup == nil:
			p.add("/spec/securityContext/fsGroup", intValue(*id.FSGroup))
		}
	}
	if labels := pod.Labels(); id.Mode == identity.ModePodIdentity && labels[identity.PodIdentityLabel] != identity.PodIdentityLabelValue {
		label := member{identity.PodIdentityLabel, stringValue(identity.PodIdentityLabelValue)}
		switch {
		case pod.Metadata == nil:
			p.add("/metadata", member{"labels", label})
		case labels == nil:
			p.add("/metadata/labels", label)
		default:
			p.add("/metadata/labels/"+escapePointer(identity.PodIdentityLabel), stringValue(identity.PodIdentityLabelValue))
		}
	}
	if res.Patch = p.encode(); res.Patch == nil {
		putPatchBuffer(p.buf)
	}
	return res
}

// patchBuffers recycles patch buffers between Inject and Result.Release.
var patchBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

func getPatchBuffer() []byte { return (*patchBuffers.Get().(*[]byte))[:0] }

func putPatchBuffer(b []byte) {
	if cap(b) <= 64<<10 { // do not keep rare huge buffers alive
		patchBuffers.Put(&b)
	}
}

// Release hands the patch's buffer back for a later Inject. Patch must not be
// used after; a Result that is never released is simply garbage collected.
func (r *Result) Release() {
	if r.Patch != nil {
		putPatchBuffer(r.Patch)
		r.Patch = nil
	}
}

// envGroup is a set of variables added together or not at all: if the container
// already has any of them, the user configured that part and we stay out.
type envGroup struct {
	vars []envVar
	// credentials marks a pair the SDK needs both of: a container that sets
	// only one is misconfigured, and the user is told. (Setting only
	// AWS_REGION of the region pair is normal and not reported.)
	credentials bool
}

func (c *Config) envFor(pod *Pod, id identity.Identity, t target) []envGroup {
	var groups []envGroup
	if id.RegionalSTS {
		groups = append(groups, envGroup{vars: []envVar{{name: EnvRegionalSTS, value: "regional"}}})
	}
	if c.Region != "" {
		groups = append(groups, envGroup{vars: []envVar{{name: EnvDefaultRegion, value: c.Region}, {name: EnvRegion, value: c.Region}}})
	}
	tokenFile := t.mountPath + "/" + t.tokenPath
	if pod.IsWindows() {
		tokenFile = `C:` + strings.ReplaceAll(tokenFile, "/", `\`)
	}
	switch id.Mode {
	case identity.ModeIRSA:
		groups = append(groups, envGroup{vars: []envVar{{name: EnvRoleARN, value: id.RoleARN}, {name: EnvWebIdentityTokenFile, value: tokenFile}}, credentials: true})
		if id.SessionNameFromPod {
			groups = append(groups, envGroup{vars: []envVar{{name: EnvRoleSessionName, fieldPath: "metadata.name"}}})
		}
	case identity.ModePodIdentity:
		groups = append(groups, envGroup{vars: []envVar{{name: EnvContainerCredsURI, value: c.ContainerCredsFullURI}, {name: EnvContainerCredsToken, value: tokenFile}}, credentials: true})
	}
	return groups
}

// maxSessionName is STS's limit on RoleSessionName.
const maxSessionName = 64

// sessionNameLength is the length the pod's name will have: generated names
// add 5 characters to generateName.
func sessionNameLength(pod *Pod) int {
	if pod.Metadata == nil {
		return 0
	}
	if pod.Metadata.Name != "" {
		return len(pod.Metadata.Name)
	}
	if pod.Metadata.GenerateName != "" {
		return len(pod.Metadata.GenerateName) + 5
	}
	return 0
}

// partialGroup names a group the container sets only in part.
type partialGroup struct{ present, missing string }

// missingEnv returns the variables to add: every group of which the container
// sets none. Groups it sets only in part are returned too, to warn about: the
// user took that part over but left it incomplete.
func missingEnv(ctr *container, groups []envGroup) ([]jsonValue, []partialGroup) {
	var out []jsonValue
	var partial []partialGroup
	for _, g := range groups {
		present := 0
		for _, v := range g.vars {
			if hasEnv(ctr, v.name) {
				present++
			}
		}
		switch {
		case present == 0:
			for i := range g.vars {
				out = append(out, &g.vars[i]) // a pointer converts to an interface without allocating
			}
		case present < len(g.vars) && g.credentials:
			var p partialGroup
			for _, v := range g.vars {
				if hasEnv(ctr, v.name) {
					p.present = join(p.present, v.name)
				} else {
					p.missing = join(p.missing, v.name)
				}
			}
			partial = append(partial, p)
		}
	}
	return out, partial
}

func join(list, name string) string {
	if list == "" {
		return name
	}
	return list + ", " + name
}

func hasEnv(ctr *container, name string) bool {
	for _, e := range ctr.Env {
		if e.Name == name {
			return true
		}
	}
	return false
}

func hasMount(ctr *container, name string) bool {
	for _, m := range ctr.VolumeMounts {
		if m.Name == name {
			return true
		}
	}
	return false
}

func hasVolume(pod *Pod, name string) bool {
	for _, v := range pod.Spec.Volumes {
		if v.Name == name {
			return true
		}
	}
	return false
}

// volumeConflict reports a volume that has our name but would not give the
// container our token: injecting env vars that point at it would be worse than
// injecting nothing.
func volumeConflict(pod *Pod, t target) (string, bool) {
	for _, v := range pod.Spec.Volumes {
		if v.Name != t.volume {
			continue
		}
		if v.Projected != nil {
			for _, s := range v.Projected.Sources {
				if tok := s.ServiceAccountToken; tok != nil && tok.Audience == t.audience && tok.Path == t.tokenPath {
					return "", true
				}
			}
		}
		return fmt.Sprintf("pod already has a volume %q that is not a token for audience %q; not injecting", t.volume, t.audience), false
	}
	return "", true
}

// mountConflict returns a mount of the container that mounts our volume
// elsewhere, or mounts something else at our path or inside it (which would
// hide the token file), or nil. Paths are compared cleaned: the API server
// accepts "/a/" and "/a" as different mounts of one directory.
func mountConflict(ctr *container, t target) *volumeMount {
	ours := path.Clean(t.mountPath)
	for i := range ctr.VolumeMounts {
		m := &ctr.VolumeMounts[i]
		theirs := path.Clean(m.MountPath)
		// Tested without building ours+"/", which would allocate per container.
		inside := len(theirs) > len(ours) && theirs[len(ours)] == '/' && strings.HasPrefix(theirs, ours)
		if m.Name == t.volume && theirs != ours ||
			m.Name != t.volume && (theirs == ours || inside) {
			return m
		}
	}
	return nil
}

// mountConflictMessage tells the user why mountConflict skipped the container.
func mountConflictMessage(ctr *container, m *volumeMount, t target) string {
	if m.Name == t.volume {
		return fmt.Sprintf("container %q mounts %q at %q, not %q; container skipped", ctr.Name, t.volume, m.MountPath, t.mountPath)
	}
	return fmt.Sprintf("container %q already uses %q for volume %q; container skipped", ctr.Name, m.MountPath, m.Name)
}

// selector decides which containers are injected from the pod's
// inject-containers (opt-in) and skip-containers (opt-out) annotations.
type selector struct {
	only, skip map[string]bool
}

func newSelector(annotations map[string]string, keys identity.Keys) selector {
	var s selector
	if v, ok := annotations[keys.InjectContainers]; ok {
		s.only = nameSet(v)
	}
	if v, ok := annotations[keys.SkipContainers]; ok {
		s.skip = nameSet(v)
	}
	return s
}

func (s selector) includes(name string) bool {
	if s.only != nil && !s.only[name] {
		return false
	}
	return !s.skip[name]
}

// nameSet splits a comma-separated list, trimming spaces around each name.
func nameSet(list string) map[string]bool {
	set := map[string]bool{}
	for _, n := range strings.Split(list, ",") {
		if n = strings.TrimSpace(n); n != "" {
			set[n] = true
		}
	}
	return set
}
