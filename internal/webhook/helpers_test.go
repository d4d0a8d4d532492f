package webhook

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podiam/podiam/internal/identity"
	"github.com/podiam/podiam/internal/metrics"
	"github.com/podiam/podiam/test/testutil"
)

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// staticSAs is a fixed ServiceAccount store keyed by "namespace/name".
type staticSAs map[string]map[string]string

func (s staticSAs) Lookup(_ context.Context, ns, name string) (map[string]string, bool, error) {
	a, ok := s[ns+"/"+name]
	return a, ok, nil
}

// Identities known to testHandler.
const (
	testRoleARN       = "arn:aws:iam::111122223333:role/orders-api"
	testAppRoleARN    = "arn:aws:iam::111122223333:role/app"
	testRegion        = "eu-west-1"
	testIRSATokenFile = "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"
	testPITokenFile   = "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token"
)

var testKeys = identity.NewKeys(identity.DefaultAnnotationPrefix)

// testHandler returns a Handler with a fixed configuration (the flag defaults plus
// a region), fresh metrics and a JSON logger writing into the returned buffer,
// after applying mods to its options:
//   - shop/orders-api: IRSA by annotation, regional STS
//   - default/app: IRSA by annotation
//   - team/mapped: IRSA by mapping
//   - shop/pi-app: Pod Identity by container-credentials file
//   - anything else: no identity
func testHandler(t testing.TB, mods ...func(*HandlerOptions)) (*Handler, *testutil.SyncBuffer) {
	t.Helper()
	mapping, err := identity.ParseMapping([]byte(`{"team/mapped":{"RoleARN":"arn:aws:iam::111122223333:role/mapped","TokenExpiration":3600}}`))
	if err != nil {
		t.Fatal(err)
	}
	cc, err := identity.ParseContainerCredentials([]byte(`{"identities":[{"namespace":"shop","serviceAccount":"pi-app"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	logs := &testutil.SyncBuffer{}
	o := HandlerOptions{
		Defaults: identity.Defaults{Audience: "sts.amazonaws.com", ContainerCredentialsAudience: "pods.eks.amazonaws.com"},
		Region:   testRegion,
		ServiceAccounts: staticSAs{
			"shop/orders-api": {testKeys.RoleARN: testRoleARN, testKeys.RegionalSTS: "true"},
			"default/app":     {testKeys.RoleARN: testAppRoleARN},
			"shop/nobody":     {"unrelated": "x"},
		},
		Mapping:              func() *identity.Mapping { return mapping },
		ContainerCredentials: func() *identity.ContainerCredentials { return cc },
		Metrics:              metrics.NewWebhook(prometheus.NewRegistry()),
		Logger:               slog.New(slog.NewJSONHandler(logs, nil)),
	}
	for _, m := range mods {
		m(&o)
	}
	return NewHandler(o), logs
}

// testPod returns a pod in namespace default with ServiceAccount app and two
// containers, as the API server would send it, after applying mods.
func testPod(mods ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{GenerateName: "app-5f7c9-", Namespace: "default", Labels: map[string]string{"app": "app"}},
		Spec: corev1.PodSpec{
			ServiceAccountName: "app",
			Containers: []corev1.Container{
				{Name: "app", Image: "app:1", Env: []corev1.EnvVar{{Name: "LOG_LEVEL", Value: "debug"}}},
				{Name: "proxy", Image: "proxy:1"},
			},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		},
	}
	for _, m := range mods {
		m(p)
	}
	return p
}

// reviewOpts describe the AdmissionRequest around an object.
type reviewOpts struct {
	apiVersion  string // default admission.k8s.io/v1
	uid         string // default a fixed uid
	operation   string // default CREATE
	kind        *metav1.GroupVersionKind
	subResource string
	namespace   *string // default the pod's namespace
}

// reviewBody encodes an AdmissionReview with encoding/json, as the API server does.
// obj is a *corev1.Pod, raw JSON ([]byte / json.RawMessage) or nil for no object.
func reviewBody(t testing.TB, obj any, o reviewOpts) []byte {
	t.Helper()
	if o.apiVersion == "" {
		o.apiVersion = admissionV1
	}
	if o.uid == "" {
		o.uid = "6a1d1c4e-1b0f-4c55-8a60-36ef8e2f7b11"
	}
	if o.operation == "" {
		o.operation = "CREATE"
	}
	kind := metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}
	if o.kind != nil {
		kind = *o.kind
	}
	var raw []byte
	ns := ""
	switch obj := obj.(type) {
	case nil:
	case *corev1.Pod:
		var err error
		if raw, err = json.Marshal(obj); err != nil {
			t.Fatal(err)
		}
		ns = obj.Namespace
	case []byte:
		raw = obj
	case json.RawMessage:
		raw = obj
	default:
		t.Fatalf("reviewBody: unsupported object %T", obj)
	}
	if o.namespace != nil {
		ns = *o.namespace
	}
	rv := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: o.apiVersion, Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: types.UID(o.uid), Kind: kind, Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			SubResource: o.subResource, Namespace: ns, Operation: admissionv1.Operation(o.operation),
			Object: runtime.RawExtension{Raw: raw},
		},
	}
	b, err := json.Marshal(rv)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// applyPatch applies a JSONPatch to doc and decodes the result as a pod.
func applyPatch(t testing.TB, doc, patch []byte) *corev1.Pod {
	t.Helper()
	p, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		t.Fatalf("decoding patch %s: %v", patch, err)
	}
	out, err := p.Apply(doc)
	if err != nil {
		t.Fatalf("applying patch %s: %v", patch, err)
	}
	var pod corev1.Pod
	if err := json.Unmarshal(out, &pod); err != nil {
		t.Fatalf("decoding patched pod: %v\n%s", err, out)
	}
	return &pod
}

// requestObject extracts request.object from an encoded AdmissionReview.
func requestObject(t testing.TB, body []byte) []byte {
	t.Helper()
	var rv struct {
		Request struct {
			Object json.RawMessage `json:"object"`
		} `json:"request"`
	}
	if err := json.Unmarshal(body, &rv); err != nil {
		t.Fatal(err)
	}
	return rv.Request.Object
}

// histogramCount returns the number of observations of h.
func histogramCount(t testing.TB, h prometheus.Histogram) uint64 {
	t.Helper()
	var m dto.Metric
	if err := h.(prometheus.Metric).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

// counterSum returns the sum of all series of c.
func counterSum(t testing.TB, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric)
	go func() { c.Collect(ch); close(ch) }()
	var sum float64
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			t.Fatal(err)
		}
		sum += d.GetCounter().GetValue()
	}
	return sum
}

// envOf returns a container's env vars by name (literal values, or
// "fieldRef:<path>" for field references).
func envOf(c corev1.Container) map[string]string {
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil:
			env[e.Name] = "fieldRef:" + e.ValueFrom.FieldRef.FieldPath
		default:
			env[e.Name] = e.Value
		}
	}
	return env
}

func envNames(c corev1.Container) []string {
	var names []string
	for _, e := range c.Env {
		names = append(names, e.Name)
	}
	return names
}

func findVolume(p *corev1.Pod, name string) *corev1.Volume {
	for i := range p.Spec.Volumes {
		if p.Spec.Volumes[i].Name == name {
			return &p.Spec.Volumes[i]
		}
	}
	return nil
}

func findMount(c corev1.Container, name string) *corev1.VolumeMount {
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].Name == name {
			return &c.VolumeMounts[i]
		}
	}
	return nil
}
