package webhook

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	admissionv1beta1 "k8s.io/api/admission/v1beta1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podiam/podiam/internal/identity"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// post sends body to h.ServeHTTP as POST /mutate with the given content type.
func post(h http.Handler, contentType string, body []byte) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, "/mutate", bytes.NewReader(body))
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// decodeResponse decodes a 200 response into the v1 API type and checks what
// every answer must satisfy.
func decodeResponse(t *testing.T, w *httptest.ResponseRecorder) admissionv1.AdmissionReview {
	t.Helper()
	if w.Code != http.StatusOK {
		t.Fatalf("status %d, want 200; body: %s", w.Code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var rv admissionv1.AdmissionReview
	if err := json.Unmarshal(w.Body.Bytes(), &rv); err != nil {
		t.Fatalf("response does not decode into admission/v1 AdmissionReview: %v\n%s", err, w.Body)
	}
	if rv.Response == nil {
		t.Fatalf("response has no response: %s", w.Body)
	}
	return rv
}

func TestServeHTTPRejects(t *testing.T) {
	valid := reviewBody(t, testPod(), reviewOpts{})
	overLimit := append(bytes.Repeat([]byte(" "), MaxBodyBytes+1-len(valid)), valid...)
	review := func(s string) []byte { return []byte(s) }
	withPod := func(pod string) []byte {
		return []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1",` +
			`"kind":{"group":"","version":"v1","kind":"Pod"},"namespace":"default","operation":"CREATE","object":` + pod + `}}`)
	}
	for _, tc := range []struct {
		name        string
		method      string
		contentType string
		body        []byte
		wantStatus  int
		wantMsg     string
	}{
		{"GET", http.MethodGet, "application/json", valid, http.StatusMethodNotAllowed, "method not allowed"},
		{"PUT", http.MethodPut, "application/json", valid, http.StatusMethodNotAllowed, "method not allowed"},
		{"no content type", http.MethodPost, "", valid, http.StatusUnsupportedMediaType, "unsupported content type"},
		{"text/plain", http.MethodPost, "text/plain", valid, http.StatusUnsupportedMediaType, `"text/plain"`},
		{"yaml", http.MethodPost, "application/yaml", valid, http.StatusUnsupportedMediaType, "want application/json"},
		{"json suffix type", http.MethodPost, "application/merge-patch+json", valid, http.StatusUnsupportedMediaType, "unsupported content type"},
		{"malformed content type", http.MethodPost, "application/json; charset", valid, http.StatusUnsupportedMediaType, "unsupported content type"},
		{"body over 3 MiB", http.MethodPost, "application/json", overLimit, http.StatusRequestEntityTooLarge, "request body over 3145728 bytes"},
		{"empty body", http.MethodPost, "application/json", nil, http.StatusBadRequest, "decoding AdmissionReview"},
		{"truncated JSON", http.MethodPost, "application/json", valid[:len(valid)/2], http.StatusBadRequest, "decoding AdmissionReview"},
		{"not JSON", http.MethodPost, "application/json", review("<AdmissionReview/>"), http.StatusBadRequest, "decoding AdmissionReview"},
		{"JSON array", http.MethodPost, "application/json", review(`[]`), http.StatusBadRequest, "decoding AdmissionReview"},
		{"trailing garbage", http.MethodPost, "application/json", append(slices.Clone(valid), "}"...), http.StatusBadRequest, "decoding AdmissionReview"},
		{"no request", http.MethodPost, "application/json",
			review(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`), http.StatusBadRequest, "AdmissionReview has no request"},
		{"null request", http.MethodPost, "application/json",
			review(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":null}`), http.StatusBadRequest, "AdmissionReview has no request"},
		{"unsupported apiVersion", http.MethodPost, "application/json",
			review(`{"apiVersion":"admission.k8s.io/v2","kind":"AdmissionReview","request":{"uid":"u1"}}`), http.StatusBadRequest, `unsupported apiVersion "admission.k8s.io/v2"`},
		{"missing apiVersion", http.MethodPost, "application/json",
			review(`{"kind":"AdmissionReview","request":{"uid":"u1"}}`), http.StatusBadRequest, `unsupported apiVersion ""`},
		{"unsupported kind", http.MethodPost, "application/json",
			review(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionResponse","request":{"uid":"u1"}}`), http.StatusBadRequest, `unsupported kind "AdmissionResponse"`},
		{"uid not a string", http.MethodPost, "application/json",
			review(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":42}}`), http.StatusBadRequest, "decoding AdmissionReview"},
		{"pod does not decode", http.MethodPost, "application/json",
			withPod(`{"metadata":{"name":"p"},"spec":{"containers":"x"}}`), http.StatusBadRequest, "decoding pod"},
		{"pod annotations not strings", http.MethodPost, "application/json",
			withPod(`{"metadata":{"annotations":{"a":1}},"spec":{"containers":[]}}`), http.StatusBadRequest, "decoding pod"},
		{"pod is a string", http.MethodPost, "application/json", withPod(`"pod"`), http.StatusBadRequest, "decoding pod"},
		{"pod CREATE without object", http.MethodPost, "application/json",
			review(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1","kind":{"kind":"Pod","version":"v1"},"operation":"CREATE"}}`),
			http.StatusBadRequest, "AdmissionRequest has no object"},
		{"pod CREATE with null object", http.MethodPost, "application/json", withPod(`null`), http.StatusBadRequest, "AdmissionRequest has no object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, logs := testHandler(t)
			r := httptest.NewRequest(tc.method, "/mutate", bytes.NewReader(tc.body))
			if tc.contentType != "" {
				r.Header.Set("Content-Type", tc.contentType)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d; body: %s", w.Code, tc.wantStatus, w.Body)
			}
			if !strings.Contains(w.Body.String(), tc.wantMsg) {
				t.Errorf("body %q does not contain %q", w.Body, tc.wantMsg)
			}
			if tc.wantStatus == http.StatusMethodNotAllowed && w.Header().Get("Allow") != http.MethodPost {
				t.Errorf("Allow header %q, want POST", w.Header().Get("Allow"))
			}
			if got := testutil.ToFloat64(h.metrics.Requests.WithLabelValues(strconv.Itoa(tc.wantStatus))); got != 1 {
				t.Errorf("requests_total{code=%d} = %v, want 1", tc.wantStatus, got)
			}
			if got := histogramCount(t, h.metrics.RequestDuration); got != 1 {
				t.Errorf("request_duration_seconds count = %d, want 1", got)
			}
			if !strings.Contains(logs.String(), "rejected admission request") {
				t.Errorf("rejection not logged: %s", logs)
			}
		})
	}
}

func TestServeHTTPAcceptsContentTypes(t *testing.T) {
	body := reviewBody(t, testPod(), reviewOpts{})
	for _, ct := range []string{"application/json", "application/json; charset=utf-8", "application/json;charset=UTF-8", "Application/JSON"} {
		t.Run(ct, func(t *testing.T) {
			h, _ := testHandler(t)
			rv := decodeResponse(t, post(h, ct, body))
			if !rv.Response.Allowed || rv.Response.Patch == nil {
				t.Errorf("want an allowed, patched response; got %+v", rv.Response)
			}
		})
	}
}

// TestServeHTTPBodyLimit checks the 3 MiB boundary: a review of exactly
// MaxBodyBytes is served.
func TestServeHTTPBodyLimit(t *testing.T) {
	valid := reviewBody(t, testPod(), reviewOpts{})
	atLimit := append(bytes.Repeat([]byte("\n"), MaxBodyBytes-len(valid)), valid...)
	if len(atLimit) != MaxBodyBytes {
		t.Fatalf("body is %d bytes", len(atLimit))
	}
	h, _ := testHandler(t)
	if rv := decodeResponse(t, post(h, "application/json", atLimit)); rv.Response.Patch == nil {
		t.Errorf("want a patch for a review of exactly %d bytes", MaxBodyBytes)
	}
}

func TestServeHTTPPassesThrough(t *testing.T) {
	pod := testPod() // would be injected if it were a pod creation
	deployment := metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
	podMetrics := metav1.GroupVersionKind{Group: "metrics.k8s.io", Version: "v1beta1", Kind: "Pod"}
	eviction := metav1.GroupVersionKind{Group: "policy", Version: "v1", Kind: "Eviction"}
	workflow := metav1.GroupVersionKind{Group: "argoproj.io", Version: "v1alpha1", Kind: "Workflow"}
	binding := metav1.GroupVersionKind{Version: "v1", Kind: "Binding"}
	for _, tc := range []struct {
		name string
		obj  any
		opts reviewOpts
	}{
		{"UPDATE", pod, reviewOpts{operation: "UPDATE"}},
		{"DELETE without object", nil, reviewOpts{operation: "DELETE"}},
		{"CONNECT exec", []byte(`{"kind":"PodExecOptions","apiVersion":"v1","command":["sh"]}`), reviewOpts{operation: "CONNECT", subResource: "exec"}},
		{"eviction subresource", []byte(`{"kind":"Eviction","apiVersion":"policy/v1","metadata":{"name":"p"}}`), reviewOpts{subResource: "eviction", kind: &eviction}},
		{"status subresource", pod, reviewOpts{subResource: "status"}},
		{"non-Pod kind", []byte(`{"kind":"Deployment","apiVersion":"apps/v1","spec":{"template":{"spec":{"containers":"not a pod"}}}}`), reviewOpts{kind: &deployment}},
		{"Pod of another group", pod, reviewOpts{kind: &podMetrics}},
		// A broad webhook rule must not break objects that merely look unlike a pod.
		{"custom resource with pod-incompatible spec", []byte(`{"kind":"Workflow","apiVersion":"argoproj.io/v1alpha1","metadata":{"name":"wf"},"spec":{"containers":{"main":{"image":"busybox"}}}}`), reviewOpts{kind: &workflow}},
		{"UPDATE of an object that is not a pod", []byte(`{"spec":{"containers":"x"}}`), reviewOpts{operation: "UPDATE"}},
		{"binding subresource", []byte(`{"kind":"Binding","apiVersion":"v1","metadata":{"name":"p"},"target":{"kind":"Node","name":"n1"}}`), reviewOpts{subResource: "binding", kind: &binding}},
		{"v1beta1 UPDATE", pod, reviewOpts{apiVersion: admissionV1beta1, operation: "UPDATE"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := testHandler(t)
			tc.opts.uid = "uid-" + tc.name
			w := post(h, "application/json", reviewBody(t, tc.obj, tc.opts))
			rv := decodeResponse(t, w)
			r := rv.Response
			if string(r.UID) != tc.opts.uid || !r.Allowed || r.Patch != nil || r.PatchType != nil || len(r.Warnings) != 0 {
				t.Errorf("want allowed with uid %q and nothing else; got %s", tc.opts.uid, w.Body)
			}
			if want := cmpOr(tc.opts.apiVersion, admissionV1); rv.APIVersion != want {
				t.Errorf("apiVersion %q, want %q", rv.APIVersion, want)
			}
			if n := counterSum(t, h.metrics.Mutations); n != 0 {
				t.Errorf("pods_total counts %v pods, want none for a request that is not a pod creation", n)
			}
		})
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// podCheck checks a pod after the webhook's patch was applied.
type podCheck func(t *testing.T, p *corev1.Pod)

func checkIRSAContainer(roleARN, tokenFile string, regional bool) func(t *testing.T, c corev1.Container) {
	return func(t *testing.T, c corev1.Container) {
		t.Helper()
		env := envOf(c)
		want := map[string]string{
			"AWS_ROLE_ARN":                roleARN,
			"AWS_WEB_IDENTITY_TOKEN_FILE": tokenFile,
			"AWS_DEFAULT_REGION":          testRegion,
			"AWS_REGION":                  testRegion,
		}
		if regional {
			want["AWS_STS_REGIONAL_ENDPOINTS"] = "regional"
		} else if _, ok := env["AWS_STS_REGIONAL_ENDPOINTS"]; ok {
			t.Errorf("container %s: AWS_STS_REGIONAL_ENDPOINTS set without regional STS", c.Name)
		}
		for k, v := range want {
			if env[k] != v {
				t.Errorf("container %s: %s=%q, want %q (env %v)", c.Name, k, env[k], v, envNames(c))
			}
		}
		m := findMount(c, "aws-iam-token")
		if m == nil || m.MountPath != "/var/run/secrets/eks.amazonaws.com/serviceaccount" || !m.ReadOnly {
			t.Errorf("container %s: mount aws-iam-token = %+v", c.Name, m)
		}
	}
}

func checkTokenVolume(name, audience, path string, expiration int64) podCheck {
	return func(t *testing.T, p *corev1.Pod) {
		t.Helper()
		v := findVolume(p, name)
		if v == nil || v.Projected == nil || len(v.Projected.Sources) != 1 || v.Projected.Sources[0].ServiceAccountToken == nil {
			t.Fatalf("volume %s = %+v", name, v)
		}
		tok := v.Projected.Sources[0].ServiceAccountToken
		if tok.Audience != audience || tok.ExpirationSeconds == nil || *tok.ExpirationSeconds != expiration || tok.Path != path {
			t.Errorf("volume %s token = {audience %q, expirationSeconds %v, path %q}, want {%q, %d, %q}",
				name, tok.Audience, deref(tok.ExpirationSeconds), tok.Path, audience, expiration, path)
		}
	}
}

func deref(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}

func allContainers(check func(*testing.T, corev1.Container)) podCheck {
	return func(t *testing.T, p *corev1.Pod) {
		t.Helper()
		for _, c := range append(slices.Clone(p.Spec.InitContainers), p.Spec.Containers...) {
			check(t, c)
		}
	}
}

func TestServeHTTPMutates(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	for _, tc := range []struct {
		name       string
		apiVersion string
		pod        *corev1.Pod
		checks     []podCheck
		wantLog    map[string]string
	}{{
		name: "IRSA v1", apiVersion: admissionV1, pod: testPod(),
		checks: []podCheck{
			allContainers(checkIRSAContainer(testAppRoleARN, testIRSATokenFile, false)),
			checkTokenVolume("aws-iam-token", "sts.amazonaws.com", "token", 86400),
			func(t *testing.T, p *corev1.Pod) {
				// The user's variables stay, in front of ours, in SPEC order.
				want := []string{"LOG_LEVEL", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"}
				if got := envNames(p.Spec.Containers[0]); !slices.Equal(got, want) {
					t.Errorf("env of app = %v, want %v", got, want)
				}
				if findVolume(p, "data") == nil {
					t.Error("existing volume data lost")
				}
			},
		},
		wantLog: map[string]string{"namespace": "default", "pod": "app-5f7c9-", "serviceAccount": "app", "mode": "irsa", "role": testAppRoleARN},
	}, {
		name: "IRSA v1beta1", apiVersion: admissionV1beta1, pod: testPod(),
		checks: []podCheck{
			allContainers(checkIRSAContainer(testAppRoleARN, testIRSATokenFile, false)),
			checkTokenVolume("aws-iam-token", "sts.amazonaws.com", "token", 86400),
		},
	}, {
		name: "IRSA regional STS, pod token expiration", apiVersion: admissionV1,
		pod: testPod(func(p *corev1.Pod) {
			p.Namespace, p.Name, p.Spec.ServiceAccountName = "shop", "orders-0", "orders-api"
			p.Annotations = map[string]string{testKeys.TokenExpiration: "7200"}
		}),
		checks: []podCheck{
			allContainers(checkIRSAContainer(testRoleARN, testIRSATokenFile, true)),
			checkTokenVolume("aws-iam-token", "sts.amazonaws.com", "token", 7200),
		},
		wantLog: map[string]string{"namespace": "shop", "pod": "orders-0", "serviceAccount": "orders-api", "mode": "irsa", "role": testRoleARN},
	}, {
		name: "IRSA from mapping", apiVersion: admissionV1,
		pod: testPod(func(p *corev1.Pod) { p.Namespace, p.Spec.ServiceAccountName = "team", "mapped" }),
		checks: []podCheck{
			allContainers(checkIRSAContainer("arn:aws:iam::111122223333:role/mapped", testIRSATokenFile, false)),
			checkTokenVolume("aws-iam-token", "sts.amazonaws.com", "token", 3600),
		},
		wantLog: map[string]string{"namespace": "team", "mode": "irsa", "source": "mapping team/mapped"},
	}, {
		name: "init containers and native sidecar", apiVersion: admissionV1,
		pod: testPod(func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{
				{Name: "migrate", Image: "migrate:1"},
				{Name: "mesh", Image: "mesh:1", RestartPolicy: &always, VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}},
			}
		}),
		checks: []podCheck{
			allContainers(checkIRSAContainer(testAppRoleARN, testIRSATokenFile, false)),
			func(t *testing.T, p *corev1.Pod) {
				if len(p.Spec.InitContainers) != 2 || p.Spec.InitContainers[1].RestartPolicy == nil || *p.Spec.InitContainers[1].RestartPolicy != always {
					t.Errorf("init containers changed shape: %+v", p.Spec.InitContainers)
				}
				if findMount(p.Spec.InitContainers[1], "data") == nil {
					t.Error("sidecar lost its data mount")
				}
			},
		},
	}, {
		name: "Windows by spec.os", apiVersion: admissionV1,
		pod:    testPod(func(p *corev1.Pod) { p.Spec.OS = &corev1.PodOS{Name: corev1.Windows} }),
		checks: []podCheck{allContainers(checkIRSAContainer(testAppRoleARN, `C:\var\run\secrets\eks.amazonaws.com\serviceaccount\token`, false))},
	}, {
		name: "Windows by node selector", apiVersion: admissionV1beta1,
		pod:    testPod(func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{"kubernetes.io/os": "windows"} }),
		checks: []podCheck{allContainers(checkIRSAContainer(testAppRoleARN, `C:\var\run\secrets\eks.amazonaws.com\serviceaccount\token`, false))},
	}, {
		name: "Pod Identity", apiVersion: admissionV1,
		pod: testPod(func(p *corev1.Pod) { p.Namespace, p.Spec.ServiceAccountName, p.Labels = "shop", "pi-app", nil }),
		checks: []podCheck{
			allContainers(func(t *testing.T, c corev1.Container) {
				env := envOf(c)
				if env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] != "http://169.254.170.23/v1/credentials" ||
					env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"] != testPITokenFile {
					t.Errorf("container %s env %v", c.Name, env)
				}
				if _, ok := env["AWS_ROLE_ARN"]; ok {
					t.Errorf("container %s: AWS_ROLE_ARN with Pod Identity", c.Name)
				}
				if m := findMount(c, "eks-pod-identity-token"); m == nil || m.MountPath != "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount" || !m.ReadOnly {
					t.Errorf("container %s: mount %+v", c.Name, m)
				}
			}),
			checkTokenVolume("eks-pod-identity-token", "pods.eks.amazonaws.com", "eks-pod-identity-token", 86400),
			func(t *testing.T, p *corev1.Pod) {
				if p.Labels["eks.amazonaws.com/pod-identity"] != "enabled" {
					t.Errorf("labels %v lack eks.amazonaws.com/pod-identity=enabled", p.Labels)
				}
			},
		},
		wantLog: map[string]string{"namespace": "shop", "serviceAccount": "pi-app", "mode": "pod-identity", "role": ""},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			h, logs := testHandler(t)
			uid := "uid-" + strings.ReplaceAll(tc.name, " ", "-")
			body := reviewBody(t, tc.pod, reviewOpts{apiVersion: tc.apiVersion, uid: uid})
			w := post(h, "application/json", body)
			rv := decodeResponse(t, w)
			if rv.APIVersion != tc.apiVersion || rv.Kind != "AdmissionReview" || string(rv.Response.UID) != uid {
				t.Errorf("response echoes apiVersion %q kind %q uid %q, want %q AdmissionReview %q", rv.APIVersion, rv.Kind, rv.Response.UID, tc.apiVersion, uid)
			}
			r := rv.Response
			if !r.Allowed || r.PatchType == nil || *r.PatchType != admissionv1.PatchTypeJSONPatch || len(r.Patch) == 0 {
				t.Fatalf("want allowed with a JSONPatch; got %s", w.Body)
			}
			if r.Result != nil || len(r.Warnings) != 0 {
				t.Errorf("unexpected result or warnings: %s", w.Body)
			}
			// The same bytes decode into the v1beta1 type too.
			var beta admissionv1beta1.AdmissionReview
			if err := json.Unmarshal(w.Body.Bytes(), &beta); err != nil || beta.Response == nil ||
				!beta.Response.Allowed || !bytes.Equal(beta.Response.Patch, r.Patch) ||
				beta.Response.PatchType == nil || *beta.Response.PatchType != admissionv1beta1.PatchTypeJSONPatch || beta.Response.UID != r.UID {
				t.Errorf("response does not decode into admission/v1beta1 AdmissionReview: %v %+v", err, beta.Response)
			}

			obj := requestObject(t, body)
			patched := applyPatch(t, obj, r.Patch)
			for _, check := range tc.checks {
				check(t, patched)
			}

			// Idempotence: the patched pod gets no further patch.
			again, err := json.Marshal(patched)
			if err != nil {
				t.Fatal(err)
			}
			rv2 := decodeResponse(t, post(h, "application/json", reviewBody(t, json.RawMessage(again), reviewOpts{apiVersion: tc.apiVersion, namespace: &tc.pod.Namespace})))
			if rv2.Response.Patch != nil || rv2.Response.PatchType != nil {
				t.Errorf("second pass patched again: %s", rv2.Response.Patch)
			}

			if tc.wantLog != nil {
				line := logLine(t, logs.String(), "pod admitted")
				for k, v := range tc.wantLog {
					if got, ok := line[k]; !ok || got != v {
						t.Errorf("log %q = %v (present %v), want %q; line %v", k, got, ok, v, line)
					}
				}
			}
		})
	}
}

// logLine returns the first JSON log line with the message msg.
func logLine(t *testing.T, logs, msg string) map[string]any {
	t.Helper()
	for l := range strings.Lines(logs) {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line is not JSON: %v: %q", err, l)
		}
		if m["msg"] == msg {
			return m
		}
	}
	t.Fatalf("no log line %q in:\n%s", msg, logs)
	return nil
}

func TestServeHTTPNoIdentity(t *testing.T) {
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
	}{
		{"ServiceAccount not found", testPod(func(p *corev1.Pod) { p.Spec.ServiceAccountName = "ghost" })},
		{"ServiceAccount without role", testPod(func(p *corev1.Pod) { p.Namespace, p.Spec.ServiceAccountName = "shop", "nobody" })},
		{"default ServiceAccount", testPod(func(p *corev1.Pod) { p.Spec.ServiceAccountName = "" })},
		{"pod identity set is per namespace", testPod(func(p *corev1.Pod) { p.Spec.ServiceAccountName = "pi-app" })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, logs := testHandler(t)
			w := post(h, "application/json", reviewBody(t, tc.pod, reviewOpts{}))
			rv := decodeResponse(t, w)
			if !rv.Response.Allowed || rv.Response.Patch != nil || rv.Response.PatchType != nil || len(rv.Response.Warnings) != 0 {
				t.Errorf("want allowed and nothing else, got %s", w.Body)
			}
			var raw struct {
				Response map[string]json.RawMessage `json:"response"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &raw); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"patch", "patchType", "warnings"} {
				if _, ok := raw.Response[k]; ok {
					t.Errorf("response has %q: %s", k, w.Body)
				}
			}
			if got := testutil.ToFloat64(h.metrics.Mutations.WithLabelValues("none", "false")); got != 1 {
				t.Errorf("pods_total{mode=none,patched=false} = %v, want 1", got)
			}
			if strings.Contains(logs.String(), "pod admitted") {
				t.Errorf("pod without identity logged at info: %s", logs)
			}
		})
	}
}

func TestServeHTTPWarnings(t *testing.T) {
	for _, tc := range []struct {
		name      string
		pod       *corev1.Pod
		sa        map[string]string // replaces default/app's annotations when set
		want      []string
		wantPatch bool
	}{{
		name:      "token expiration not an integer",
		pod:       testPod(func(p *corev1.Pod) { p.Annotations = map[string]string{testKeys.TokenExpiration: "abc"} }),
		want:      []string{`podiam: eks.amazonaws.com/token-expiration="abc" is not an integer number of seconds; ignored`},
		wantPatch: true,
	}, {
		name:      "token expiration below minimum",
		pod:       testPod(func(p *corev1.Pod) { p.Annotations = map[string]string{testKeys.TokenExpiration: "60"} }),
		want:      []string{"podiam: token expiration 60s is below the minimum; using 600s"},
		wantPatch: true,
	}, {
		name:      "role ARN of odd shape",
		pod:       testPod(),
		sa:        map[string]string{testKeys.RoleARN: "not-an-arn", testKeys.RegionalSTS: "yes"},
		want:      []string{`podiam: role ARN "not-an-arn" does not look like`, `podiam: eks.amazonaws.com/sts-regional-endpoints="yes"`},
		wantPatch: true,
	}, {
		name: "volume conflict",
		pod: testPod(func(p *corev1.Pod) {
			p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "aws-iam-token", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
		}),
		want: []string{`podiam: pod already has a volume "aws-iam-token"`},
	}, {
		name: "mount path conflict in one container",
		pod: testPod(func(p *corev1.Pod) {
			p.Spec.Containers[1].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/var/run/secrets/eks.amazonaws.com/serviceaccount"}}
		}),
		want:      []string{`podiam: container "proxy" already uses`},
		wantPatch: true,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := testHandler(t, func(o *HandlerOptions) {
				if tc.sa != nil {
					o.ServiceAccounts = staticSAs{"default/app": tc.sa}
				}
			})
			w := post(h, "application/json", reviewBody(t, tc.pod, reviewOpts{}))
			r := decodeResponse(t, w).Response
			if len(r.Warnings) != len(tc.want) {
				t.Fatalf("warnings %q, want %d like %q", r.Warnings, len(tc.want), tc.want)
			}
			for i, want := range tc.want {
				if !strings.HasPrefix(r.Warnings[i], want) {
					t.Errorf("warning %d = %q, want prefix %q", i, r.Warnings[i], want)
				}
			}
			if got := testutil.ToFloat64(h.metrics.Warnings); got != float64(len(tc.want)) {
				t.Errorf("admission_warnings_total = %v, want %d", got, len(tc.want))
			}
			if (r.Patch != nil) != tc.wantPatch || !r.Allowed {
				t.Errorf("allowed %v patch %s, want allowed, patch %v", r.Allowed, r.Patch, tc.wantPatch)
			}
		})
	}
}

func TestServeHTTPMetrics(t *testing.T) {
	h, _ := testHandler(t)
	send := func(ct string, body []byte, want int) {
		t.Helper()
		if w := post(h, ct, body); w.Code != want {
			t.Fatalf("status %d, want %d: %s", w.Code, want, w.Body)
		}
	}
	skipOne := testPod(func(p *corev1.Pod) { p.Annotations = map[string]string{testKeys.SkipContainers: " proxy "} })
	conflict := testPod(func(p *corev1.Pod) {
		p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "aws-iam-token", MountPath: "/elsewhere"}}
	})
	allSkipped := testPod(func(p *corev1.Pod) { p.Annotations = map[string]string{testKeys.SkipContainers: "app,proxy"} })
	pi := testPod(func(p *corev1.Pod) { p.Namespace, p.Spec.ServiceAccountName = "shop", "pi-app" })
	send("application/json", reviewBody(t, skipOne, reviewOpts{}), 200)
	send("application/json", reviewBody(t, conflict, reviewOpts{}), 200)
	send("application/json", reviewBody(t, allSkipped, reviewOpts{}), 200)
	send("application/json", reviewBody(t, testPod(func(p *corev1.Pod) { p.Spec.ServiceAccountName = "ghost" }), reviewOpts{}), 200)
	send("application/json", reviewBody(t, pi, reviewOpts{apiVersion: admissionV1beta1}), 200)
	send("application/json", reviewBody(t, testPod(), reviewOpts{operation: "UPDATE"}), 200)
	send("application/json", []byte("{"), 400)
	send("text/plain", nil, 415)

	for _, c := range []struct {
		name string
		got  float64
		want float64
	}{
		{"requests_total{code=200}", testutil.ToFloat64(h.metrics.Requests.WithLabelValues("200")), 6},
		{"requests_total{code=400}", testutil.ToFloat64(h.metrics.Requests.WithLabelValues("400")), 1},
		{"requests_total{code=415}", testutil.ToFloat64(h.metrics.Requests.WithLabelValues("415")), 1},
		{"pods_total{irsa,true}", testutil.ToFloat64(h.metrics.Mutations.WithLabelValues("irsa", "true")), 2},
		{"pods_total{irsa,false}", testutil.ToFloat64(h.metrics.Mutations.WithLabelValues("irsa", "false")), 1},
		{"pods_total{none,false}", testutil.ToFloat64(h.metrics.Mutations.WithLabelValues("none", "false")), 1},
		{"pods_total{pod-identity,true}", testutil.ToFloat64(h.metrics.Mutations.WithLabelValues("pod-identity", "true")), 1},
		{"containers_skipped_total{annotation}", testutil.ToFloat64(h.metrics.ContainersSkipped.WithLabelValues("annotation")), 3},
		{"containers_skipped_total{conflict}", testutil.ToFloat64(h.metrics.ContainersSkipped.WithLabelValues("conflict")), 1},
		{"admission_warnings_total", testutil.ToFloat64(h.metrics.Warnings), 1},
		{"request_duration_seconds count", float64(histogramCount(t, h.metrics.RequestDuration)), 8},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	// The UPDATE is not a pod admission: 5 pods, not 6.
	if n := counterSum(t, h.metrics.Mutations); n != 5 {
		t.Errorf("pods_total counts %v pods, want 5", n)
	}
}

// TestServeHTTPLogsNoBody checks that neither the review nor the pod reach the log,
// whether the pod is admitted or rejected.
func TestServeHTTPLogsNoBody(t *testing.T) {
	const sentinel = "eyJhbGciOiJSUzI1NiJ9.SENTINEL-do-not-log.c2lnbmF0dXJl"
	secretPod := func(p *corev1.Pod) {
		p.Annotations = map[string]string{"example.com/token": sentinel}
		p.Spec.Containers[0].Env = append(p.Spec.Containers[0].Env, corev1.EnvVar{Name: "API_TOKEN", Value: sentinel})
	}
	admitted := reviewBody(t, testPod(secretPod), reviewOpts{})
	undecodable := []byte(strings.Replace(string(admitted), `"containers":[`, `"containers":"x","c":[`, 1))
	truncated := admitted[:bytes.Index(admitted, []byte(sentinel))+len(sentinel)/2]
	for _, tc := range []struct {
		name    string
		body    []byte
		status  int
		wantMsg string
	}{
		{"admitted", admitted, http.StatusOK, "pod admitted"},
		{"pod does not decode", undecodable, http.StatusBadRequest, "rejected admission request"},
		{"truncated inside the secret", truncated, http.StatusBadRequest, "rejected admission request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !bytes.Contains(tc.body, []byte(sentinel[:20])) {
				t.Fatal("test body lost the sentinel")
			}
			h, logs := testHandler(t)
			w := post(h, "application/json", tc.body)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			line := logLine(t, logs.String(), tc.wantMsg)
			if strings.Contains(logs.String(), "SENTINEL") || strings.Contains(logs.String(), sentinel[:20]) {
				t.Errorf("log contains the request body's secret:\n%s", logs)
			}
			if tc.status != http.StatusOK && line["status"] != float64(tc.status) {
				t.Errorf("log status %v, want %d", line["status"], tc.status)
			}
		})
	}
}

// TestGoldenDeployment3c pins the complete response for a realistic review.
// Regenerate with go test -run TestGoldenDeployment3c -update, then review the
// patch golden by hand.
func TestGoldenDeployment3c(t *testing.T) {
	body, err := os.ReadFile("testdata/review-deployment-3c.json")
	if err != nil {
		t.Fatal(err)
	}
	h, _ := testHandler(t)
	out, err := h.Review(context.Background(), body)
	if err != nil {
		t.Fatal(err)
	}
	var rv admissionv1.AdmissionReview
	if err := json.Unmarshal(out, &rv); err != nil {
		t.Fatal(err)
	}
	var patch bytes.Buffer
	if err := json.Indent(&patch, rv.Response.Patch, "", "  "); err != nil {
		t.Fatalf("patch is not JSON: %v", err)
	}
	patch.WriteByte('\n')
	respFile, patchFile := "testdata/response-deployment-3c.golden.json", "testdata/patch-deployment-3c.golden.json"
	if *update {
		if err := os.WriteFile(respFile, append(slices.Clone(out), '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(patchFile, patch.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	wantResp, err := os.ReadFile(respFile)
	if err != nil {
		t.Fatal(err)
	}
	if got := append(slices.Clone(out), '\n'); !bytes.Equal(got, wantResp) {
		t.Errorf("response differs from %s (rerun with -update and review):\ngot  %s\nwant %s", respFile, got, wantResp)
	}
	wantPatch, err := os.ReadFile(patchFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(patch.Bytes(), wantPatch) {
		t.Errorf("patch differs from %s:\ngot  %s\nwant %s", patchFile, patch.Bytes(), wantPatch)
	}
	// The response golden carries the patch golden, base64-encoded.
	var golden struct {
		Response struct {
			Patch string `json:"patch"`
		} `json:"response"`
	}
	if err := json.Unmarshal(wantResp, &golden); err != nil {
		t.Fatal(err)
	}
	decoded, err := base64.StdEncoding.DecodeString(golden.Response.Patch)
	if err != nil {
		t.Fatalf("golden patch is not base64: %v", err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, wantPatch); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(decoded, compact.Bytes()) {
		t.Errorf("the two goldens disagree:\nresponse patch %s\npatch golden   %s", decoded, compact.Bytes())
	}
	// And it does what it should to the pod.
	pod := applyPatch(t, requestObject(t, body), decoded)
	allContainers(checkIRSAContainer(testRoleARN, testIRSATokenFile, true))(t, pod)
	checkTokenVolume("aws-iam-token", "sts.amazonaws.com", "token", 86400)(t, pod)
}

// failingSAs cannot tell whether a ServiceAccount exists, as when the API
// server does not answer within the grace period.
type failingSAs struct{}

func (failingSAs) Lookup(context.Context, string, string) (map[string]string, bool, error) {
	return nil, false, errors.New("timed out")
}

// A ServiceAccount that cannot be read in time does not block the pod, but the
// user is told its annotations were not applied; the mapping still applies.
func TestServeHTTPServiceAccountLookupFailureWarns(t *testing.T) {
	h, _ := testHandler(t, func(o *HandlerOptions) { o.ServiceAccounts = failingSAs{} })
	for _, tt := range []struct {
		name, namespace, sa string
		patched             bool
	}{
		{"annotated ServiceAccount", "default", "app", false},
		{"mapped ServiceAccount", "team", "mapped", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pod := testPod(func(p *corev1.Pod) { p.Namespace, p.Spec.ServiceAccountName = tt.namespace, tt.sa })
			rv := decodeResponse(t, post(h, "application/json", reviewBody(t, pod, reviewOpts{})))
			if !rv.Response.Allowed || (rv.Response.Patch != nil) != tt.patched {
				t.Fatalf("allowed %v, patched %v; want allowed, patched %v", rv.Response.Allowed, rv.Response.Patch != nil, tt.patched)
			}
			want := "podiam: ServiceAccount " + tt.namespace + "/" + tt.sa + " could not be read in time"
			if len(rv.Response.Warnings) != 1 || !strings.HasPrefix(rv.Response.Warnings[0], want) {
				t.Fatalf("warnings %q, want one starting %q", rv.Response.Warnings, want)
			}
		})
	}
}

// TestServeHTTPBoundsRequestStrings sends requests whose strings are megabytes
// long: neither the log nor the answer may grow with them.
func TestServeHTTPBoundsRequestStrings(t *testing.T) {
	const huge = 3_000_000 // a 3 MB string still fits the 3 MiB body limit
	long := func(c string) string { return strings.Repeat(c, huge) }
	envelope := func(apiVersion, kind, uid, pod string) []byte {
		return []byte(`{"apiVersion":` + strconv.Quote(apiVersion) + `,"kind":` + strconv.Quote(kind) + `,"request":{"uid":` + strconv.Quote(uid) +
			`,"kind":{"group":"","version":"v1","kind":"Pod"},"operation":"CREATE","object":` + pod + `}}`)
	}
	podJSON := func(mods ...func(*corev1.Pod)) string {
		b, err := json.Marshal(testPod(mods...))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	// Many containers (fewer than inject.MaxContainers) that each conflict with
	// the token mount: one warning each.
	manyConflicts := podJSON(func(p *corev1.Pod) {
		p.Spec.Containers = nil
		for i := range 250 {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "c" + strconv.Itoa(i) + strings.Repeat("x", 200),
				VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/var/run/secrets/eks.amazonaws.com/serviceaccount"}}})
		}
	})
	everyone, err := identity.ParseMapping([]byte(`{"*/*":{"RoleARN":"arn:aws:iam::111122223333:role/everyone"}}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name        string
		contentType string
		body        []byte
		wantStatus  int
		maxBody     int    // bytes of the answer
		wantAnswer  string // in the answer
		wantLog     string // in the log
	}{
		{"apiVersion", "application/json", envelope(long("v"), "AdmissionReview", "u1", podJSON()), http.StatusBadRequest, 1 << 10, "…(truncated, 3000000 bytes)", "…(truncated, 3000000 bytes)"},
		{"kind", "application/json", envelope(admissionV1, long("k"), "u1", podJSON()), http.StatusBadRequest, 1 << 10, "…(truncated, 3000000 bytes)", "…(truncated, 3000000 bytes)"},
		{"uid", "application/json", envelope(admissionV1, "AdmissionReview", long("u"), podJSON()), http.StatusBadRequest, 1 << 10, "uid is 3000000 bytes", "uid is 3000000 bytes"},
		{"content type", "application/" + long("j"), reviewBody(t, testPod(), reviewOpts{}), http.StatusUnsupportedMediaType, 1 << 10, "…(truncated, 3000012 bytes)", "…(truncated, 3000012 bytes)"},
		// The decoder's error names the member it failed in.
		{"member name in a decoding error", "application/json",
			envelope(admissionV1, "AdmissionReview", "u1", `{"metadata":{"annotations":{"`+long("a")+`":1}},"spec":{}}`), http.StatusBadRequest, 2 << 10, "decoding pod", "decoding pod"},
		{"pod names and annotation value", "application/json", envelope(admissionV1, "AdmissionReview", "u1", podJSON(func(p *corev1.Pod) {
			p.GenerateName = long("g")[:huge/3]
			p.Namespace = "default"
			p.Annotations = map[string]string{testKeys.TokenExpiration: long("1")[:huge/3]}
			p.Spec.Containers[1].Name = long("c")[:huge/3]
			p.Spec.Containers[1].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/var/run/secrets/eks.amazonaws.com/serviceaccount"}}
		})), http.StatusOK, 8 << 10, `container \"ccc`, `"pod":"ggg`},
		{"namespace and ServiceAccount", "application/json", envelope(admissionV1, "AdmissionReview", "u1", podJSON(func(p *corev1.Pod) {
			p.Namespace, p.Spec.ServiceAccountName = long("n")[:huge/2], long("s")[:huge/2]
		})), http.StatusOK, 8 << 10, `"allowed":true`, `"serviceAccount":"sss`},
		{"many warnings", "application/json", envelope(admissionV1, "AdmissionReview", "u1", manyConflicts), http.StatusOK, 8 << 10, "234 more warnings not shown", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if len(tc.body) > MaxBodyBytes {
				t.Fatalf("test body of %d bytes is over the limit", len(tc.body))
			}
			// A mapping for every ServiceAccount, so that the pod is admitted
			// with an identity and logged whatever its names.
			// Names longer than Kubernetes allows cannot exist: they must not
			// reach the cache, which would ask the API server and log them.
			h, logs := testHandler(t, func(o *HandlerOptions) {
				o.Mapping = func() *identity.Mapping { return everyone }
				o.ServiceAccounts = nameCheckingSAs{t}
			})
			w := post(h, tc.contentType, tc.body)
			if w.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d; body: %.300s", w.Code, tc.wantStatus, w.Body)
			}
			if w.Body.Len() > tc.maxBody {
				t.Errorf("answer is %d bytes, want at most %d: %.600s", w.Body.Len(), tc.maxBody, w.Body)
			}
			if n := len(logs.String()); n > 4<<10 {
				t.Errorf("log is %d bytes, want at most 4 KiB: %.600s", n, logs)
			}
			if !strings.Contains(w.Body.String(), tc.wantAnswer) {
				t.Errorf("answer does not contain %q: %.600s", tc.wantAnswer, w.Body)
			}
			if !strings.Contains(logs.String(), tc.wantLog) {
				t.Errorf("log does not contain %q: %.600s", tc.wantLog, logs)
			}
		})
	}
}

// TestServeHTTPBoundsAmplification sends pods that cost little to send and, per
// byte, much to answer or to decode: an empty container "{}" is 3 bytes of
// request but about 500 of patch, an empty volume, mount or env var about 30
// bytes decoded. The answer and the memory of serving one stay small.
func TestServeHTTPBoundsAmplification(t *testing.T) {
	podOf := func(containers int) []byte {
		return []byte(`{"metadata":{"generateName":"app-"},"spec":{"serviceAccountName":"app","containers":[` +
			strings.Repeat(`{},`, containers-1) + `{}]}}`)
	}
	// podOfList is a pod of one container whose list (or the pod's volumes)
	// has n empty items.
	podOfList := func(list string, n int) []byte {
		items := `[` + strings.Repeat(`{},`, n-1) + `{}]`
		if list == "volumes" {
			return []byte(`{"metadata":{"generateName":"app-"},"spec":{"serviceAccountName":"app","volumes":` + items + `,"containers":[{"name":"c"}]}}`)
		}
		return []byte(`{"metadata":{"generateName":"app-"},"spec":{"serviceAccountName":"app","containers":[{"name":"c","` + list + `":` + items + `}]}}`)
	}
	const items = (MaxBodyBytes - 1024) / 3
	ns := "default"
	for _, tc := range []struct {
		name        string
		pod         []byte
		wantPatch   bool
		maxAnswer   int    // bytes
		wantWarning string // prefix of the only warning
		wantLog     string // in the log
		wantReason  string // notInjected in the log, when not patched
	}{
		{"a 3 MiB pod of empty containers", podOf(items), false, 1 << 10,
			"podiam: pod has more than 256 containers and init containers; not injecting", `"level":"WARN","msg":"pod admitted"`,
			"too many containers"},
		{"the most containers injected", podOf(256), true, 256 << 10, "", `"level":"INFO","msg":"pod admitted"`, ""},
		{"a 3 MiB list of empty volumes", podOfList("volumes", items), false, 1 << 10,
			"podiam: pod has more than 16384 volumes and volume mounts; not injecting", `"level":"WARN","msg":"pod admitted"`,
			"too many volumes and volume mounts"},
		{"a 3 MiB list of empty volume mounts", podOfList("volumeMounts", items), false, 1 << 10,
			"podiam: pod has more than 16384 volumes and volume mounts; not injecting", `"level":"WARN","msg":"pod admitted"`,
			"too many volumes and volume mounts"},
		// Of env, decoding keeps only the variables that injection adds.
		{"a 3 MiB env of empty items injected", podOfList("env", items), true, 4 << 10, "", `"level":"INFO","msg":"pod admitted"`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, logs := testHandler(t)
			body := reviewBody(t, tc.pod, reviewOpts{namespace: &ns})
			if len(body) > MaxBodyBytes {
				t.Fatalf("test body of %d bytes is over the limit", len(body))
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			w := post(h, "application/json", body)
			runtime.ReadMemStats(&after)
			// Reading the body into a growing buffer costs about twice its size.
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 32<<20 {
				t.Errorf("serving a %d-byte request allocated %d MiB, want at most 32 MiB", len(body), alloc>>20)
			}
			if w.Body.Len() > tc.maxAnswer {
				t.Errorf("answer is %d bytes, want at most %d", w.Body.Len(), tc.maxAnswer)
			}
			r := decodeResponse(t, w).Response
			if !r.Allowed || (r.Patch != nil) != tc.wantPatch {
				t.Errorf("allowed %v, patch of %d bytes; want allowed, patch %v", r.Allowed, len(r.Patch), tc.wantPatch)
			}
			if tc.wantWarning == "" && len(r.Warnings) > 0 || tc.wantWarning != "" && (len(r.Warnings) != 1 || !strings.HasPrefix(r.Warnings[0], tc.wantWarning)) {
				t.Errorf("warnings %q, want one like %q", r.Warnings, tc.wantWarning)
			}
			if !strings.Contains(logs.String(), tc.wantLog) {
				t.Errorf("log does not contain %s: %.600s", tc.wantLog, logs)
			}
			if tc.wantPatch {
				return
			}
			if line := logLine(t, logs.String(), "pod admitted"); line["notInjected"] != tc.wantReason {
				t.Errorf("log line %v, want notInjected=%s", line, tc.wantReason)
			}
			if got := testutil.ToFloat64(h.pods[podsKey{identity.ModeIRSA, false}]); got != 1 {
				t.Errorf("pods_total{mode=irsa,patched=false} = %v, want 1", got)
			}
		})
	}
}

// nameCheckingSAs fails the test when asked for a name no ServiceAccount can
// have; it finds none.
type nameCheckingSAs struct{ t *testing.T }

func (s nameCheckingSAs) Lookup(_ context.Context, ns, name string) (map[string]string, bool, error) {
	if len(ns) > 63 || len(name) > 253 {
		s.t.Errorf("looked up a ServiceAccount named %d bytes in a namespace of %d bytes", len(name), len(ns))
	}
	return nil, false, nil
}

func TestClip(t *testing.T) {
	for _, tc := range []struct {
		s    string
		max  int
		want string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"eleven char", 10, "eleven cha…(truncated, 11 bytes)"},
		// "é" is two bytes: a cut inside it moves back to its start.
		{"abcdefghié", 10, "abcdefghi…(truncated, 11 bytes)"},
		{"ééééé", 3, "é…(truncated, 10 bytes)"},
	} {
		if got := clip(tc.s, tc.max); got != tc.want {
			t.Errorf("clip(%q, %d) = %q, want %q", tc.s, tc.max, got, tc.want)
		}
	}
}

// The pod is decoded in the same pass as the review when kind and operation
// come before the object, as the API server writes them; in any other order
// the answer must be the same.
func TestServeHTTPObjectBeforeKind(t *testing.T) {
	pod, err := json.Marshal(testPod())
	if err != nil {
		t.Fatal(err)
	}
	const head = `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{`
	kindOp := `"uid":"u1","kind":{"group":"","version":"v1","kind":"Pod"},"namespace":"default","operation":"CREATE"`
	for _, tc := range []struct {
		name      string
		request   string
		wantPatch bool
		wantCode  int
	}{
		{"kind first", kindOp + `,"object":` + string(pod), true, http.StatusOK},
		{"object first", `"object":` + string(pod) + `,` + kindOp, true, http.StatusOK},
		{"object between", `"uid":"u1","object":` + string(pod) + `,"kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","namespace":"default"`, true, http.StatusOK},
		// Not a pod after all: its shape does not matter.
		{"odd object first, then a Deployment", `"object":{"spec":{"containers":"x"}},"uid":"u1","kind":{"group":"apps","version":"v1","kind":"Deployment"},"operation":"CREATE"`, false, http.StatusOK},
		{"odd object first, then a pod", `"object":{"spec":{"containers":"x"}},` + kindOp, false, http.StatusBadRequest},
		{"odd object after a pod kind", kindOp + `,"object":{"spec":{"containers":"x"}}`, false, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := testHandler(t)
			w := post(h, "application/json", []byte(head+tc.request+`}}`))
			if w.Code != tc.wantCode {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.wantCode, w.Body)
			}
			if tc.wantCode != http.StatusOK {
				if !strings.Contains(w.Body.String(), "decoding pod") {
					t.Errorf("answer %q does not say the pod does not decode", w.Body)
				}
				return
			}
			r := decodeResponse(t, w).Response
			if string(r.UID) != "u1" || !r.Allowed || (r.Patch != nil) != tc.wantPatch {
				t.Fatalf("uid %q allowed %v patch %v, want u1, allowed, patch %v", r.UID, r.Allowed, r.Patch != nil, tc.wantPatch)
			}
			if tc.wantPatch {
				allContainers(checkIRSAContainer(testAppRoleARN, testIRSATokenFile, false))(t, applyPatch(t, pod, r.Patch))
			}
		})
	}
}
