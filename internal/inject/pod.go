package inject

import (
	"fmt"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/podiam/podiam/internal/jsonscan"
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

// podSpec is decoded member by member (decode.go), so that its lists share
// one itemBudget.
type podSpec struct {
	ServiceAccountName string
	NodeSelector       map[string]string
	OS                 *struct {
		Name string `json:"name"`
	}
	SecurityContext *struct {
		FSGroup *int64 `json:"fsGroup"`
	}
	// Volumes, with the volume mounts of all containers, keep at most
	// MaxListItems items in all; items.over says that the pod had more.
	Volumes []volume
	// Containers and InitContainers keep at most MaxContainers+1 each.
	Containers     containerList
	InitContainers containerList
	items          itemBudget
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
	Name string
	// Env is nil when the array is absent (or null), which tells the patch to
	// create it rather than append to it. It keeps only the variables that
	// injection looks for (containerEnv).
	Env          containerEnv
	VolumeMounts []volumeMount
	// budget is the pod's, set only while the container is decoded.
	budget *itemBudget
}

type podEnvVar struct {
	Name string
}

type volumeMount struct {
	Name      string
	MountPath string
}

// DecodePod decodes the pod of an AdmissionRequest.
func DecodePod(raw []byte) (*Pod, error) {
	var p Pod
	if err := json.Unmarshal(raw, &p, jsonscan.Options); err != nil {
		return nil, fmt.Errorf("decoding pod: %w", err)
	}
	return &p, nil
}

// DecodePodFrom decodes the pod of an AdmissionRequest from the next value of
// dec, in the same pass as the AdmissionReview around it. On error dec is left
// inside the value.
func DecodePodFrom(dec *jsontext.Decoder) (*Pod, error) {
	var p Pod
	if err := json.UnmarshalDecode(dec, &p, jsonscan.Options); err != nil {
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
