package inject

import (
	"fmt"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// Pod is the part of a pod that injection reads. Decoding only these fields is
// what keeps the webhook fast, and since the patch adds single items and never
// writes back what it decoded, fields unknown here (new probe types, future API
// fields) reach the API server untouched.
type Pod struct {
	// Metadata is nil when absent, which the patch must know to create it.
	Metadata *podMeta `json:"metadata"`
	Spec     podSpec  `json:"spec"`
}

type podMeta struct {
	Name         string            `json:"name"`
	GenerateName string            `json:"generateName"`
	Namespace    string            `json:"namespace"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
}

type podSpec struct {
	ServiceAccountName string            `json:"serviceAccountName"`
	NodeSelector       map[string]string `json:"nodeSelector"`
	OS                 *struct {
		Name string `json:"name"`
	} `json:"os"`
	SecurityContext *struct {
		FSGroup *int64 `json:"fsGroup"`
	} `json:"securityContext"`
	Volumes        []volume    `json:"volumes"`
	Containers     []container `json:"containers"`
	InitContainers []container `json:"initContainers"`
}

type volume struct {
	Name      string `json:"name"`
	Projected *struct {
		Sources []struct {
			ServiceAccountToken *struct {
				Audience string `json:"audience"`
				Path     string `json:"path"`
			} `json:"serviceAccountToken"`
		} `json:"sources"`
	} `json:"projected"`
}

type container struct {
	Name string `json:"name"`
	// Env is nil when the array is absent (or null), which tells the patch to
	// create it rather than append to it.
	Env []struct {
		Name string `json:"name"`
	} `json:"env"`
	VolumeMounts []struct {
		Name      string `json:"name"`
		MountPath string `json:"mountPath"`
	} `json:"volumeMounts"`
}

// decodeOptions accept what the API server's own decoder accepts: duplicate
// names are tolerated (the last wins) rather than failing admission.
var decodeOptions = json.JoinOptions(jsontext.AllowDuplicateNames(true))

// DecodePod decodes the pod of an AdmissionRequest.
func DecodePod(raw []byte) (*Pod, error) {
	var p Pod
	if err := json.Unmarshal(raw, &p, decodeOptions); err != nil {
		return nil, fmt.Errorf("decoding pod: %w", err)
	}
	return &p, nil
}

// DisplayName is the pod's name for logs: the name, else the generateName prefix
// (pods of a Deployment have no name yet at admission).
func (p *Pod) DisplayName() string {
	if p.Metadata == nil {
		return ""
	}
	if p.Metadata.Name != "" {
		return p.Metadata.Name
	}
	return p.Metadata.GenerateName
}

// Namespace returns metadata.namespace, often empty at admission: the
// AdmissionRequest's namespace is the one to trust.
func (p *Pod) Namespace() string {
	if p.Metadata == nil {
		return ""
	}
	return p.Metadata.Namespace
}

// ServiceAccountName returns the pod's ServiceAccount, "default" when unset, as the
// API server's ServiceAccount admission plugin does.
func (p *Pod) ServiceAccountName() string {
	if p.Spec.ServiceAccountName == "" {
		return "default"
	}
	return p.Spec.ServiceAccountName
}

// Annotations returns the pod's annotations (possibly nil).
func (p *Pod) Annotations() map[string]string {
	if p.Metadata == nil {
		return nil
	}
	return p.Metadata.Annotations
}

// Labels returns the pod's labels (possibly nil).
func (p *Pod) Labels() map[string]string {
	if p.Metadata == nil {
		return nil
	}
	return p.Metadata.Labels
}

// IsWindows reports whether the pod runs on Windows nodes, by node selector or by
// spec.os, which the Amazon webhook ignores.
func (p *Pod) IsWindows() bool {
	if p.Spec.OS != nil && p.Spec.OS.Name == "windows" {
		return true
	}
	ns := p.Spec.NodeSelector
	return ns["kubernetes.io/os"] == "windows" || ns["beta.kubernetes.io/os"] == "windows"
}
