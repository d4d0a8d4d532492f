package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/podiam/podiam/test/harness"
	"github.com/podiam/podiam/test/testutil"
)

// TestReinvocation: a webhook that runs after podiam adds a container; podiam
// (reinvocationPolicy IfNeeded) is called again and injects it too, and
// nothing is added twice to the containers it already injected.
func TestReinvocation(t *testing.T) {
	t.Parallel()
	logsOnFailure(t, "shared", shared)
	ctx := ctxFor(t, time.Minute)
	const role = "arn:aws:iam::111122223333:role/reinvoke"
	// The late webhook's registration; its name sorts after sharedWebhookName,
	// and it serves only the namespaces labelled with it.
	lateWebhookName := testutil.UniqueName("zz-e2e-late-sidecar")
	const lateLabel = "e2e.podiam.io/late-sidecar"
	ns := testutil.UniqueName("e2e-reinvoke")
	newNamespace(t, ctx, ns, map[string]string{lateLabel: lateWebhookName})
	newServiceAccount(t, ctx, ns, "app", map[string]string{annoRoleARN: role, annoRegional: "true"})

	late := startLateSidecarWebhook(t)
	if lateWebhookName <= sharedWebhookName {
		t.Fatalf("%q must sort after %q", lateWebhookName, sharedWebhookName)
	}
	never := admissionregistrationv1.NeverReinvocationPolicy
	fail := admissionregistrationv1.Fail
	none := admissionregistrationv1.SideEffectClassNone
	scope := admissionregistrationv1.NamespacedScope
	cfgs := client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	_, err := cfgs.Create(ctx, &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: lateWebhookName},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    lateWebhookName + ".e2e.podiam.io",
			AdmissionReviewVersions: []string{"v1"},
			SideEffects:             &none,
			TimeoutSeconds:          ptr.To[int32](10),
			ReinvocationPolicy:      &never,
			FailurePolicy:           &fail,
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: ptr.To(late.url), CABundle: late.caPEM},
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{lateLabel: lateWebhookName}},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"},
					Resources: []string{"pods"}, Scope: &scope},
			}},
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("registering the late webhook: %v", err)
	}
	t.Cleanup(func() { _ = cfgs.Delete(context.Background(), lateWebhookName, metav1.DeleteOptions{}) })

	// The registration takes effect asynchronously.
	var got *corev1.Pod
	testutil.Eventually(t, 20*time.Second, 100*time.Millisecond, "the late webhook to add its container", func() (bool, string) {
		got = createPod(t, ctx, client, ns, simplePod("app"))
		return len(got.Spec.Containers) == 2, fmt.Sprintf("%d containers", len(got.Spec.Containers))
	})
	for range 3 {
		calls := late.calls.Load()
		got = createPod(t, ctx, client, ns, simplePod("app"))
		if names := []string{got.Spec.Containers[0].Name, got.Spec.Containers[1].Name}; fmt.Sprint(names) != "[app late-sidecar]" {
			t.Fatalf("containers %v, want [app late-sidecar]", names)
		}
		checkIRSA(t, got, irsaExpect{role: role, regional: true, expiration: 86400}, "app", "late-sidecar")
		if n := late.calls.Load() - calls; n != 1 {
			t.Errorf("the late webhook (reinvocationPolicy Never) was called %d times for one pod", n)
		}
	}

	// A pod that already went through podiam comes back unchanged.
	again := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "again-"},
		Spec:       *got.Spec.DeepCopy(),
	}
	// Drop what the API server set, keep what podiam and the late webhook added.
	again.Spec.NodeName, again.Spec.Priority = "", nil
	var vols []corev1.Volume
	for _, v := range again.Spec.Volumes {
		if !strings.HasPrefix(v.Name, "kube-api-access-") {
			vols = append(vols, v)
		}
	}
	again.Spec.Volumes = vols
	for i := range again.Spec.Containers {
		c := &again.Spec.Containers[i]
		var mounts []corev1.VolumeMount
		for _, m := range c.VolumeMounts {
			if !strings.HasPrefix(m.Name, "kube-api-access-") {
				mounts = append(mounts, m)
			}
		}
		c.VolumeMounts = mounts
	}
	got2 := createPod(t, ctx, client, ns, again)
	checkIRSA(t, got2, irsaExpect{role: role, regional: true, expiration: 86400}, "app", "late-sidecar")
	for i := range got.Spec.Containers {
		a, b := stripInjected(got.Spec.Containers[i]), stripInjected(got2.Spec.Containers[i])
		if !semanticEqual(got.Spec.Containers[i].Env, got2.Spec.Containers[i].Env) || !semanticEqual(a, b) {
			t.Errorf("re-admitting an injected pod changed container %q:\n%s", a.Name, jsonDiff(got.Spec.Containers[i], got2.Spec.Containers[i]))
		}
	}
}

// lateWebhook is an in-test admission webhook that appends a container.
type lateWebhook struct {
	url   string
	caPEM []byte
	calls atomic.Int64
}

func startLateSidecarWebhook(t *testing.T) *lateWebhook {
	t.Helper()
	caPEM, cert := testServingCert(t)
	w := &lateWebhook{caPEM: caPEM}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /mutate", func(rw http.ResponseWriter, r *http.Request) {
		w.calls.Add(1)
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(rw, err.Error(), http.StatusBadRequest)
			return
		}
		var review admissionv1.AdmissionReview
		if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
			http.Error(rw, fmt.Sprintf("bad review: %v", err), http.StatusBadRequest)
			return
		}
		var pod corev1.Pod
		if err := json.Unmarshal(review.Request.Object.Raw, &pod); err != nil {
			http.Error(rw, err.Error(), http.StatusBadRequest)
			return
		}
		resp := &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
		has := false
		for _, c := range pod.Spec.Containers {
			has = has || c.Name == "late-sidecar"
		}
		if !has {
			resp.Patch = []byte(`[{"op":"add","path":"/spec/containers/-","value":{"name":"late-sidecar","image":"registry.example/late:1"}}]`)
			pt := admissionv1.PatchTypeJSONPatch
			resp.PatchType = &pt
		}
		review.Response, review.Request = resp, nil
		rw.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(rw).Encode(&review)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	w.url = "https://" + ln.Addr().String() + "/mutate"
	return w
}

// testServingCert returns a fresh CA (PEM) and a certificate for 127.0.0.1 it signed.
func testServingCert(t *testing.T) ([]byte, tls.Certificate) {
	t.Helper()
	b, err := harness.LoopbackBundle()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := b.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	return b.CABundle(), *cert
}
