// Package e2e tests podiam end to end: the real `podiam webhook` process,
// registered with a real kube-apiserver (etcd + kube-apiserver from bin/, built
// by `make tools`), mutating real pods that the tests create with client-go and
// read back from the API server.
//
// One control plane and one shared webhook serve the whole package; each test
// works in its own namespace. Tests that need a webhook configured differently
// (fault injection, self-managed certificates) run their own webhook process
// with a registration limited to their own namespace by a namespaceSelector,
// and the shared registration excludes those namespaces. A test's namespaces
// and webhook registrations get unique names (testutil.UniqueName), and the
// few fixed cluster-scoped names (the shipped RBAC) are deleted when their test
// ends, so the package passes `go test -count=2` (make stress).
package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/podiam/podiam/test/harness"
	"github.com/podiam/podiam/test/testcluster"
)

const (
	// systemNamespace is the shared webhook's --namespace (ConfigMap mapping).
	systemNamespace = "podiam-system"
	// sharedWebhookName is the shared MutatingWebhookConfiguration; it sorts
	// before lateWebhookName so the API server calls podiam first.
	sharedWebhookName = "podiam-e2e"
	// isolatedLabel marks namespaces served by a test's own webhook; the
	// shared registration skips them.
	isolatedLabel = "e2e.podiam.io/isolated"
	// skipLabel is the objectSelector key of every registration, as shipped.
	skipLabel = "eks.amazonaws.com/skip-pod-identity-webhook"
	// region is the shared webhook's --aws-default-region.
	region = "eu-west-1"
)

// Package-wide fixtures, set by TestMain.
var (
	cluster   *testcluster.Cluster
	client    kubernetes.Interface
	podiamBin string
	shared    *harness.Webhook
	ccFile    string // the shared webhook's --watch-container-credentials-config
)

// podiamBuildFlags are the `go build` flags of the podiam binary the suite runs
// (race_test.go adds -race under `go test -race`).
var podiamBuildFlags []string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "podiam-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(tmp)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	type built struct {
		bin string
		err error
	}
	buildDone := make(chan built, 1)
	go func() { // build podiam while the control plane starts
		bin, err := harness.BuildPodiam(ctx, tmp, podiamBuildFlags...)
		buildDone <- built{bin, err}
	}()

	begin := time.Now()
	cluster, err = testcluster.Start(ctx, testcluster.Options{})
	if err != nil {
		if errors.Is(err, testcluster.ErrBinariesMissing) {
			fmt.Fprintf(os.Stderr, "e2e: FATAL: %v\nThe end-to-end tests need a real control plane: run `make tools` (builds bin/etcd and bin/kube-apiserver).\n", err)
		} else {
			fmt.Fprintf(os.Stderr, "e2e: FATAL: starting the test control plane: %v\n", err)
		}
		return 1
	}
	defer cluster.Stop()
	fmt.Fprintf(os.Stderr, "e2e: kube-apiserver ready at %s in %v\n", cluster.URL(), time.Since(begin).Round(time.Millisecond))

	b := <-buildDone
	if b.err != nil {
		fmt.Fprintf(os.Stderr, "e2e: FATAL: %v\n", b.err)
		return 1
	}
	podiamBin = b.bin

	if client, err = cluster.Clientset(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: FATAL: clientset: %v\n", err)
		return 1
	}
	if err := startShared(ctx, tmp); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: FATAL: %v\n%s\n", err, cluster.Logs())
		return 1
	}
	defer shared.Stop()

	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "e2e: control-plane logs:\n%s\n", cluster.Logs())
		fmt.Fprintf(os.Stderr, "e2e: shared webhook logs (tail):\n%s\n", tail(shared.Logs(), 16<<10))
	}
	return code
}

// startShared starts the webhook most tests use and registers it for every
// namespace except the isolated ones.
func startShared(ctx context.Context, tmp string) error {
	if err := cluster.EnsureNamespace(ctx, systemNamespace, nil); err != nil {
		return err
	}
	dir := filepath.Join(tmp, "shared")
	ccDir := filepath.Join(tmp, "container-credentials")
	for _, d := range []string{dir, ccDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	ccFile = filepath.Join(ccDir, "config.json")
	var err error
	shared, err = harness.StartWebhook(ctx, harness.WebhookOptions{
		Binary:     podiamBin,
		Kubeconfig: cluster.Kubeconfig(),
		Namespace:  systemNamespace,
		Dir:        dir,
		Args: []string{
			"--watch-config-map",
			"--watch-container-credentials-config=" + ccFile,
			"--aws-default-region=" + region,
			"--service-account-lookup-grace-period=2s",
		},
	})
	if err != nil {
		return fmt.Errorf("starting the shared webhook: %w", err)
	}
	err = harness.Register(ctx, client, harness.Registration{
		Name: sharedWebhookName, URL: shared.URL(), CABundle: shared.CABundle,
		SkipLabel: skipLabel,
		NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: isolatedLabel, Operator: metav1.LabelSelectorOpDoesNotExist}}},
	})
	if err != nil {
		return err
	}
	return waitActive(ctx, "e2e-probe")
}

// waitActive returns once the API server sends pods of namespace ns to a
// webhook that injects IRSA: a registration takes effect asynchronously.
func waitActive(ctx context.Context, ns string) error {
	const role = "arn:aws:iam::111122223333:role/probe"
	if err := cluster.EnsureNamespace(ctx, ns, nil); err != nil {
		return err
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "probe", Annotations: map[string]string{annoRoleARN: role}}}
	if _, err := client.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	var last error
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		p, err := client.CoreV1().Pods(ns).Create(ctx, simplePod("probe"), metav1.CreateOptions{})
		last = err
		return err == nil && roleOf(p) == role, nil
	})
	if err != nil {
		return fmt.Errorf("webhook not active for namespace %s: %w (last error: %v)", ns, err, last)
	}
	return nil
}

// tail returns about the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[len(s)-n:]
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return "[...]\n" + s
}

// logsOnFailure prints a webhook's logs if t fails.
func logsOnFailure(t *testing.T, name string, w *harness.Webhook) {
	t.Helper()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s webhook logs (tail):\n%s", name, tail(w.Logs(), 16<<10))
		}
	})
}

// startWebhook starts a test's own webhook process, which stops when t ends
// and whose logs, under name, are printed if t fails.
func startWebhook(t *testing.T, ctx context.Context, name string, o harness.WebhookOptions) *harness.Webhook {
	t.Helper()
	w, err := harness.StartWebhook(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	logsOnFailure(t, name, w)
	return w
}

// registerIsolated registers r for the namespaces labelled isolatedLabel=label
// only (the shared registration skips them), skipping pods labelled skipLabel
// as shipped, and deletes the registration when t ends. r.Name must be unique
// to the test: registrations are cluster-scoped.
func registerIsolated(t *testing.T, ctx context.Context, label string, r harness.Registration) {
	t.Helper()
	r.SkipLabel = skipLabel
	r.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{isolatedLabel: label}}
	if err := harness.Register(ctx, client, r); err != nil {
		t.Fatal(err)
	}
	// Not ctx: a test's context ends before its cleanups run.
	t.Cleanup(func() {
		_ = client.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(context.Background(), r.Name, metav1.DeleteOptions{})
	})
}
