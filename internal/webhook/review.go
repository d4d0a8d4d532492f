package webhook

import (
	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/podiam/podiam/internal/inject"
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
	UID  string `json:"uid"`
	Kind struct {
		Group   string `json:"group"`
		Version string `json:"version"`
		Kind    string `json:"kind"`
	} `json:"kind"`
	SubResource string    `json:"subResource"`
	Namespace   string    `json:"namespace"`
	Operation   string    `json:"operation"`
	Object      podObject `json:"object"`
}

// podObject decodes request.object as a pod while the review is decoded,
// without copying its bytes. An object that is not a pod must not fail the
// review (a broad webhook rule may send other kinds), so a decoding error is
// kept for the handler to report only for pods. A null object leaves pod nil.
type podObject struct {
	pod *inject.Pod
	err error
}

// UnmarshalJSONFrom implements json.UnmarshalerFrom.
func (o *podObject) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	raw, err := dec.ReadValue() // valid until the next read: decode it now
	if err != nil {
		return err
	}
	if raw.Kind() == 'n' {
		return nil
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

// decodeOptions tolerate duplicate object names (the last wins), as the API
// server's decoder does, instead of failing the request.
var decodeOptions = json.JoinOptions(jsontext.AllowDuplicateNames(true))
