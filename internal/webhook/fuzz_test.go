package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	utiljson "k8s.io/apimachinery/pkg/util/json"
)

// FuzzReview feeds arbitrary bodies to Handler.Review. Seeds live in
// testdata/fuzz/FuzzReview (plain go test runs them).
//
// Properties: Review never panics; an error is a *requestError (a 4xx); without an
// error the output is an admission/v1 AdmissionReview answering the request's uid,
// and a patch applies to the request object (or, for objects the API server
// cannot produce, such as a null container, to the API server's encoding of it).
func FuzzReview(f *testing.F) {
	h, _ := testHandler(f, func(o *HandlerOptions) { o.Logger = discardLogger() })
	f.Fuzz(func(t *testing.T, body []byte) {
		out, err := h.Review(context.Background(), body)
		if err != nil {
			var re *requestError
			if !errors.As(err, &re) || re.status < 400 || re.status > 499 {
				t.Fatalf("error %v (%T) is not a client error", err, err)
			}
			if out != nil {
				t.Fatalf("output %q with error %v", out, err)
			}
			return
		}
		// The request as the API server sees it (case-sensitive keys, as in the
		// handler's decoder).
		var req struct {
			Request *struct {
				UID    string          `json:"uid"`
				Object json.RawMessage `json:"object"`
			} `json:"request"`
		}
		if err := utiljson.Unmarshal(body, &req); err != nil {
			t.Fatalf("accepted a body that is not an AdmissionReview: %v", err)
		}
		if req.Request == nil {
			t.Fatalf("answered a review without request: %s", out)
		}
		var resp admissionv1.AdmissionReview
		if err := json.Unmarshal(out, &resp); err != nil {
			t.Fatalf("output is not an AdmissionReview: %v\n%s", err, out)
		}
		if !json.Valid(out) {
			t.Fatalf("output is not valid JSON: %q", out)
		}
		if resp.Response == nil {
			t.Fatalf("output has no response: %s", out)
		}
		if resp.Request != nil {
			t.Fatalf("output has a request: %s", out)
		}
		if resp.Kind != "AdmissionReview" || (resp.APIVersion != admissionV1 && resp.APIVersion != admissionV1beta1) {
			t.Fatalf("output apiVersion %q kind %q", resp.APIVersion, resp.Kind)
		}
		r := resp.Response
		if string(r.UID) != req.Request.UID {
			t.Fatalf("response uid %q, request uid %q", r.UID, req.Request.UID)
		}
		if !r.Allowed {
			t.Fatalf("a pod was refused: %s", out)
		}
		if (r.PatchType != nil) != (r.Patch != nil) {
			t.Fatalf("patch and patchType disagree: %s", out)
		}
		if r.Patch == nil {
			return
		}
		if *r.PatchType != admissionv1.PatchTypeJSONPatch {
			t.Fatalf("patchType %q", *r.PatchType)
		}
		patch, err := jsonpatch.DecodePatch(r.Patch)
		if err != nil {
			t.Fatalf("patch does not decode: %v\n%s", err, r.Patch)
		}
		obj := req.Request.Object
		applyErr := func() error { _, err := patch.Apply(obj); return err }()
		if applyErr == nil {
			return
		}
		// The API server applies the patch to its own encoding of the pod it
		// decoded, never to bytes like a null container or a null metadata, which
		// the fuzzer can write but the API server cannot send. So the property
		// for a request object that is not in that form is that the patch
		// applies to what the API server would have sent instead.
		var pod corev1.Pod
		if err := utiljson.Unmarshal(obj, &pod); err != nil {
			return // not a pod the API server can decode: it would never ask
		}
		typed, err := json.Marshal(&pod)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := patch.Apply(typed); err != nil {
			t.Fatalf("patch does not apply to the pod: %v\npatch  %s\nobject %s\nAPI server's encoding %s", err, r.Patch, obj, typed)
		}
		if sameJSON(obj, typed) {
			t.Fatalf("patch does not apply to the request object: %v\npatch  %s\nobject %s", applyErr, r.Patch, obj)
		}
	})
}

// sameJSON reports whether a and b hold the same JSON value, up to member order
// and spacing.
func sameJSON(a, b []byte) bool {
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	ca, _ := json.Marshal(va)
	cb, _ := json.Marshal(vb)
	return string(ca) == string(cb)
}
