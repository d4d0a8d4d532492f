package inject

import (
	"github.com/go-json-experiment/json/jsontext"

	"github.com/podiam/podiam/internal/jsonscan"
)

// Bounds on the work and the answer of one pod. Without them a client can make
// a small request cost a lot: an empty container "{}" is 3 bytes of request but
// about 500 bytes of patch, so a 3 MiB pod of a million empty containers asked
// for a 541 MiB answer and gigabytes of allocations.
const (
	// MaxContainers bounds the containers and init containers, together, of a
	// pod that podiam injects. Kubernetes sets no limit, but all of a pod's
	// containers run on one node: real pods have a handful, sidecar-heavy ones a
	// few dozen. A pod with more is admitted unchanged, with a warning. At this
	// bound, decoding keeps at most 2×257 containers (about 32 KiB).
	MaxContainers = 256
	// MaxPatchBytes bounds the patch of one pod. A normal patch is about 1 KiB
	// per container; 256 containers with a 2048-character role ARN (IAM's
	// longest) need about 740 KiB. Only role ARNs far longer than IAM allows
	// (a ServiceAccount's annotations may hold 256 KiB) go over, and such a pod
	// is admitted unchanged, with a warning, rather than answered with tens of
	// MiB.
	MaxPatchBytes = 1 << 20
	// MaxWarnings bounds the warnings an injection builds: a pod with a
	// conflict in every container would get one each. The rest are only
	// counted (Result.OmittedWarnings).
	MaxWarnings = 16
	// MaxListItems bounds the volumes and volume mounts, together, that
	// decoding keeps of one pod. An empty item "{}" is 3 bytes of request but
	// 24 to 32 bytes decoded, plus its share of the slice's growth: a 3 MiB
	// pod of a million empty mounts cost 176 MiB. Real pods have tens of
	// volumes and a few mounts per container; even 256 containers with 32
	// mounts each stay under this bound, which keeps decoding under 1 MiB. A
	// pod with more is admitted unchanged, with a warning. (Env vars need no
	// bound: decoding keeps only the few that injection reads, see containerEnv.)
	MaxListItems = 16384
)

// itemBudget counts the volumes and volume mounts that decoding keeps of one
// pod, and remembers whether the pod had more than MaxListItems.
type itemBudget struct {
	kept int
	over bool
}

// take reports whether one more item may be kept.
func (b *itemBudget) take() bool {
	if b.kept >= MaxListItems {
		b.over = true
		return false
	}
	b.kept++
	return true
}

// containerList is a pod's containers or init containers. Decoding keeps at
// most MaxContainers+1 of them, which is enough to tell that the pod is over
// the limit; the rest are only checked to be JSON objects (or null), as a
// container must be, and skipped.
type containerList []container

// UnmarshalJSONFrom implements json.UnmarshalerFrom, with a budget of its own:
// the lists of a pod share the budget of its podSpec.
func (l *containerList) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	return l.decode(dec, &itemBudget{})
}

// decode decodes the list, keeping the volume mounts of its containers within b.
func (l *containerList) decode(dec *jsontext.Decoder, b *itemBudget) error {
	list := containerList{}
	null, err := jsonscan.DecodeElements(dec, func() error {
		if len(list) > MaxContainers {
			return jsonscan.SkipObject(dec)
		}
		list = append(list, container{})
		return list[len(list)-1].decode(dec, b)
	})
	if null {
		list = nil
	}
	*l = list
	return err
}
