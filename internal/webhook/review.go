package webhook

import (
	"github.com/go-json-experiment/json/jsontext"

	"github.com/podiam/podiam/internal/inject"
	"github.com/podiam/podiam/internal/jsonscan"
)

// The AdmissionReview wire types, reduced to the fields the webhook reads and
// writes. They mirror k8s.io/api/admission/v1 (which has the same JSON shape as
// v1beta1); the tests check that the API types decode what we write. Decoding
// the full API types, and the pod inside them, was most of a request's cost.

type admissionReview struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Request    *admissionRequest `json:"request"`
}

type admissionRequest struct {
	UID         string
	Kind        groupVersionKind
	SubResource string
	Namespace   string
	Operation   string
	Object      podObject
}

type groupVersionKind struct {
	Group   string `json:"group"`
	Version string `json:"version"`
	Kind    string `json:"kind"`
}

// isPodCreate reports whether the request is the creation of a core pod, the
// only request the webhook acts on.
func (r *admissionRequest) isPodCreate() bool {
	return r.Kind.Group == "" && r.Kind.Kind == "Pod" && r.SubResource == "" && r.Operation == "CREATE"
}

// podObject is request.object decoded as a pod. An object that is not a pod
// must not fail the review (a broad webhook rule may send other kinds), so a
// decoding error is kept for the handler to report only for pods. A null or
// absent object leaves pod nil.
type podObject struct {
	pod *inject.Pod
	err error
}

// UnmarshalJSONFrom implements json.UnmarshalerFrom. It reads the members in
// order so that the object is decoded in the same pass as the review when the
// members before it (as the API server writes them: uid, kind, subResource,
// namespace, operation, then object) already say it is a pod creation.
func (r *admissionRequest) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	return jsonscan.DecodeObject(dec, r)
}

// Field implements jsonscan.Fields.
func (r *admissionRequest) Field(name []byte) any {
	switch string(name) {
	case "uid":
		return &r.UID
	case "kind":
		return &r.Kind
	case "subResource":
		return &r.SubResource
	case "namespace":
		return &r.Namespace
	case "operation":
		return &r.Operation
	case "object":
		return (*objectMember)(r) // a conversion: no allocation
	}
	return nil
}

// objectMember is the request seen as the decoder of its object member, which
// needs the members read before it.
type objectMember admissionRequest

// UnmarshalJSONFrom implements json.UnmarshalerFrom.
func (o *objectMember) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	r := (*admissionRequest)(o)
	return r.Object.decode(dec, r.isPodCreate())
}

// decode reads request.object. When the request is already known to create a
// pod, the pod is decoded straight from dec (one pass; an error fails the review
// as it would anyway). Otherwise the object is read whole and then decoded as a
// pod, keeping the error, because members after it may still make the request a
// pod creation.
func (o *podObject) decode(dec *jsontext.Decoder, podCreate bool) error {
	*o = podObject{}
	if dec.PeekKind() == 'n' {
		_, err := dec.ReadToken()
		return err
	}
	if podCreate {
		pod, err := inject.DecodePodFrom(dec)
		if err != nil {
			return err
		}
		o.pod = pod
		return nil
	}
	raw, err := dec.ReadValue() // valid until the next read: decode it now
	if err != nil {
		return err
	}
	o.pod, o.err = inject.DecodePod(raw)
	return nil
}

type admissionReviewResponse struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Response   admissionResponse `json:"response"`
}

type admissionResponse struct {
	UID       string   `json:"uid"`
	Allowed   bool     `json:"allowed"`
	PatchType string   `json:"patchType,omitempty"`
	Patch     []byte   `json:"patch,omitempty"` // base64, as the API requires
	Warnings  []string `json:"warnings,omitempty"`
}
