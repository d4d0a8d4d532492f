package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podiam/podiam/test/harness"
	"github.com/podiam/podiam/test/testutil"
)

// TestWebhookDown: with failurePolicy Fail, pods are rejected with a clear
// message while podiam is down and, retried, all end up mutated; with
// failurePolicy Ignore they are created unmutated and the API server counts
// and logs the fail-open. Runs its own webhook, registered for its own
// namespace only.
func TestWebhookDown(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 2*time.Minute)
	const role = "arn:aws:iam::111122223333:role/faults"
	name := testutil.UniqueName("e2e-faults") // the registration, its namespace and the namespace's label
	hook := name + ".podiam.io"
	ns := name
	newNamespace(t, ctx, ns, map[string]string{isolatedLabel: name})
	newServiceAccount(t, ctx, ns, "app", map[string]string{annoRoleARN: role})

	w := startWebhook(t, ctx, name, harness.WebhookOptions{
		Binary: podiamBin, Kubeconfig: cluster.Kubeconfig(), Namespace: ns, Dir: t.TempDir(),
	})
	register := func(fp admissionregistrationv1.FailurePolicyType) {
		t.Helper()
		registerIsolated(t, ctx, name, harness.Registration{Name: name, URL: w.URL(), CABundle: w.CABundle, FailurePolicy: fp})
	}
	mutated := func(p *corev1.Pod) bool { return roleOf(p) == role }
	named := func(n string) *corev1.Pod {
		p := simplePod("app")
		p.GenerateName, p.Name = "", n
		return p
	}

	// --- failurePolicy Fail ---
	register(admissionregistrationv1.Fail)
	testutil.Eventually(t, 20*time.Second, 100*time.Millisecond, "the registration to take effect", func() (bool, string) {
		p := createPod(t, ctx, client, ns, simplePod("app"))
		return mutated(p), "unmutated pod " + p.Name
	})
	w.Kill()
	const n = 5
	for i := range n {
		_, err := client.CoreV1().Pods(ns).Create(ctx, named(fmt.Sprintf("fail-%d", i)), metav1.CreateOptions{})
		if err == nil {
			t.Fatalf("pod fail-%d created while the webhook (failurePolicy Fail) is down", i)
		}
		if msg := err.Error(); !strings.Contains(msg, "failed calling webhook") || !strings.Contains(msg, hook) {
			t.Errorf("rejection %q: want it to say `failed calling webhook` and name %q", msg, hook)
		}
	}
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// Retry the same pods, as a controller would, until each is created.
	for i := range n {
		pn := fmt.Sprintf("fail-%d", i)
		testutil.Eventually(t, 20*time.Second, 100*time.Millisecond, "pod "+pn+" to be admitted", func() (bool, string) {
			_, err := client.CoreV1().Pods(ns).Create(ctx, named(pn), metav1.CreateOptions{})
			return err == nil || apierrors.IsAlreadyExists(err), fmt.Sprint(err)
		})
	}
	pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for i := range pods.Items {
		p := &pods.Items[i]
		if !strings.HasPrefix(p.Name, "fail-") {
			continue
		}
		seen++
		if !mutated(p) {
			t.Errorf("pod %s admitted after the restart without IRSA: %v", p.Name, awsEnv(&p.Spec.Containers[0]))
		}
	}
	if seen != n {
		t.Errorf("%d of %d retried pods exist", seen, n)
	}

	// --- failurePolicy Ignore ---
	metricsText, err := apiserverMetrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	failOpenBefore := metricSum(metricsText, "apiserver_admission_webhook_fail_open_count", `name="`+hook+`"`)
	register(admissionregistrationv1.Ignore)
	// Wait until the API server has the new policy: a webhook down under the
	// old one rejects, under the new one admits unmutated.
	w.Kill()
	var ignored []*corev1.Pod
	testutil.Eventually(t, 20*time.Second, 100*time.Millisecond, "failurePolicy Ignore to take effect", func() (bool, string) {
		p, err := client.CoreV1().Pods(ns).Create(ctx, simplePod("app"), metav1.CreateOptions{})
		if err != nil {
			return false, err.Error()
		}
		ignored = append(ignored, p)
		return true, ""
	})
	for range 3 {
		ignored = append(ignored, createPod(t, ctx, client, ns, simplePod("app")))
	}
	for _, p := range ignored {
		p, err := client.CoreV1().Pods(ns).Get(ctx, p.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if mutated(p) || len(volumesNamed(p, irsaVolume)) != 0 {
			t.Errorf("pod %s mutated while the webhook was down", p.Name)
		}
	}
	testutil.Eventually(t, 10*time.Second, 200*time.Millisecond, "apiserver_admission_webhook_fail_open_count to count the pods", func() (bool, string) {
		text, err := apiserverMetrics(ctx)
		if err != nil {
			return false, err.Error()
		}
		after := metricSum(text, "apiserver_admission_webhook_fail_open_count", `name="`+hook+`"`)
		return after-failOpenBefore >= float64(len(ignored)), fmt.Sprintf("%v -> %v for %d pods", failOpenBefore, after, len(ignored))
	})
	// Logs() keeps a short tail; the full log file is in the cluster's directory.
	logText, err := os.ReadFile(filepath.Join(cluster.Dir(), "kube-apiserver.log"))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for line := range strings.Lines(string(logText)) {
		if strings.Contains(line, hook) && (strings.Contains(line, "failing open") || strings.Contains(line, "Failed calling webhook")) {
			found = true
			break
		}
	}
	if !found {
		t.Errorf("kube-apiserver log does not mention the failing-open webhook %s", hook)
	}

	// Back up: pods are mutated again.
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, 100*time.Millisecond, "pods to be mutated after the restart", func() (bool, string) {
		p := createPod(t, ctx, client, ns, simplePod("app"))
		return mutated(p), "unmutated pod " + p.Name
	})
}
