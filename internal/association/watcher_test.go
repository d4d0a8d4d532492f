package association

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/podiam/podiam/test/testcluster"
	"github.com/podiam/podiam/test/testutil"
)

var crds = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

const (
	waitTimeout  = 30 * time.Second
	pollInterval = 20 * time.Millisecond
)

// startWatcher runs a Watcher for cfg with o, checking for the CRD every
// 100 ms, until the test ends.
func startWatcher(t *testing.T, cfg *rest.Config, o Options) *Watcher {
	t.Helper()
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	o.Client, o.Discovery, o.CheckInterval, o.Logger = dyn, disc, 100*time.Millisecond, slog.New(slog.DiscardHandler)
	w := New(o)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { w.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return w
}

// readCRD decodes the generated CRD of deploy/crd.
func readCRD(t *testing.T) *unstructured.Unstructured {
	t.Helper()
	root, err := testutil.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(root, "deploy/crd/podiam.dev_podidentityassociations.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := &unstructured.Unstructured{}
	if err := utilyaml.NewYAMLOrJSONDecoder(f, 4096).Decode(&u.Object); err != nil {
		t.Fatal(err)
	}
	return u
}

func newAssociation(ns, name, sa string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{
		"serviceAccount": sa, "roleArn": "arn:aws:iam::111122223333:role/" + name}}}
	u.SetAPIVersion("podiam.dev/v1alpha1")
	u.SetKind("PodIdentityAssociation")
	u.SetNamespace(ns)
	u.SetName(name)
	return u
}

// TestWatcherFollowsTheCRD runs against a real API server of its own (so that
// it may delete the CRD): without the CRD the watcher is ready and empty; once
// the CRD is installed it serves associations, the older winning; a client
// that may not list them is ready too; once the CRD is deleted they are gone.
func TestWatcherFollowsTheCRD(t *testing.T) {
	c := testcluster.StartForTest(t, testcluster.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cfg := c.RESTConfig()
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const ns = "apps"
	if err := c.EnsureNamespace(ctx, ns, nil); err != nil {
		t.Fatal(err)
	}

	w := startWatcher(t, cfg, Options{})
	testutil.Eventually(t, waitTimeout, pollInterval, "ready without the CRD", w.HasSynced)

	crd := readCRD(t)
	if _, err := dyn.Resource(crds).Create(ctx, crd, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pias := dyn.Resource(Resource).Namespace(ns)
	testutil.Eventually(t, waitTimeout, pollInterval, "the CRD to be served", func() bool {
		_, err := pias.Create(ctx, newAssociation(ns, "first", "app"), metav1.CreateOptions{})
		return err == nil
	})
	// The API server's timestamps have a resolution of a second: make
	// "second" strictly newer, so that age, not the name, decides.
	time.Sleep(1100 * time.Millisecond)
	if _, err := pias.Create(ctx, newAssociation(ns, "a-second", "app"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	winner := func(want string) func() (bool, string) {
		return func() (bool, string) {
			a, ok := w.Lookup(ns, "app")
			if !ok {
				return want == "", "none"
			}
			return a.Name == want && a.RoleARN == "arn:aws:iam::111122223333:role/"+want, a.Name
		}
	}
	testutil.Eventually(t, waitTimeout, pollInterval, "both associations", func() bool { return w.Len() == 2 })
	testutil.Eventually(t, waitTimeout, pollInterval, "the older association to win", winner("first"))
	if !w.Contains(ns, "app") || w.Contains(ns, "other") || w.Contains("default", "app") {
		t.Fatalf("Contains(apps/app, apps/other, default/app) = %v %v %v; want true false false",
			w.Contains(ns, "app"), w.Contains(ns, "other"), w.Contains("default", "app"))
	}

	// Without list permission (impersonating a user no role names), the
	// watcher does not hold readiness back beyond the grace period.
	nobody := c.RESTConfig()
	nobody.Impersonate = rest.ImpersonationConfig{UserName: "nobody"}
	nw := startWatcher(t, nobody, Options{ForbiddenGrace: time.Second})
	if nw.HasSynced() {
		t.Fatal("ready before listing was forbidden for the grace period")
	}
	testutil.Eventually(t, waitTimeout, pollInterval, "ready although listing is forbidden", nw.HasSynced)
	if nw.Contains(ns, "app") {
		t.Fatal("a watcher that may not list associations has one")
	}

	if err := pias.Delete(ctx, "first", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, waitTimeout, pollInterval, "the remaining association to win", winner("a-second"))

	if err := dyn.Resource(crds).Delete(ctx, crd.GetName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	testutil.Eventually(t, waitTimeout, pollInterval, "no association once the CRD is gone", func() bool {
		return w.Len() == 0 && !w.Contains(ns, "app")
	})
	if !w.HasSynced() {
		t.Fatal("not ready after the CRD was deleted")
	}
}

// TestWatcherWaitsForRBAC runs against a real API server of its own: a
// watcher whose list permission is granted a few seconds after it starts (a
// ClusterRoleBinding applied with the Deployment) is not ready meanwhile,
// within its grace period, and serves the associations soon after the grant.
// The watcher is the webhook's form: keys only, with a gauge.
func TestWatcherWaitsForRBAC(t *testing.T) {
	c := testcluster.StartForTest(t, testcluster.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cfg := c.RESTConfig()
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ns, user := testutil.UniqueName("rbac"), testutil.UniqueName("late")
	if err := c.EnsureNamespace(ctx, ns, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := dyn.Resource(crds).Create(ctx, readCRD(t), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pias := dyn.Resource(Resource).Namespace(ns)
	testutil.Eventually(t, waitTimeout, pollInterval, "the CRD to be served", func() bool {
		_, err := pias.Create(ctx, newAssociation(ns, "a", "app"), metav1.CreateOptions{})
		return err == nil
	})

	late := c.RESTConfig()
	late.Impersonate = rest.ImpersonationConfig{UserName: user}
	gauge := prometheus.NewGauge(prometheus.GaugeOpts{Name: "associations"})
	w := startWatcher(t, late, Options{ForbiddenGrace: time.Minute, KeysOnly: true, Gauge: gauge})
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(pollInterval) {
		if w.HasSynced() || w.Contains(ns, "app") {
			t.Fatalf("ready (%v) or with an association (%v) while listing is forbidden, within the grace period",
				w.HasSynced(), w.Contains(ns, "app"))
		}
	}

	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: user}, Rules: []rbacv1.PolicyRule{{
		APIGroups: []string{Resource.Group}, Resources: []string{Resource.Resource}, Verbs: []string{"list", "watch"}}}}
	if _, err := kube.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: user},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: user},
		Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}}}
	if _, err := kube.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	granted := time.Now()
	// Well under the reflector's own backoff of up to 30 s: the watcher
	// retries every CheckInterval.
	testutil.Eventually(t, 5*time.Second, pollInterval, "the association once listing is granted", func() bool {
		return w.HasSynced() && w.Contains(ns, "app")
	})
	t.Logf("association served %v after the grant", time.Since(granted).Round(time.Millisecond))
	if a, _ := w.Lookup(ns, "app"); a.RoleARN != "" || a.Name != "a" || a.UID == "" || a.CreationTimestamp.IsZero() {
		t.Errorf("keys-only association = %+v; want name, UID and creation timestamp only", a)
	}
	if got := promtestutil.ToFloat64(gauge); got != 1 {
		t.Errorf("gauge = %v; want 1", got)
	}
}

// TestServed runs against a real API server of its own (so that the CRD can
// be missing): Served follows the CRD, and answers the same for a client
// that may not list associations, since discovery needs no such permission
// (listing one association, as a check, would be forbidden instead).
func TestServed(t *testing.T) {
	c := testcluster.StartForTest(t, testcluster.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	admin := c.RESTConfig()
	nobody := c.RESTConfig()
	nobody.Impersonate = rest.ImpersonationConfig{UserName: testutil.UniqueName("nobody")}
	dyn, err := dynamic.NewForConfig(admin)
	if err != nil {
		t.Fatal(err)
	}
	served := func(cfg *rest.Config) (bool, error) {
		disc, err := discovery.NewDiscoveryClientForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return Served(ctx, disc)
	}
	for _, tc := range []struct {
		name       string
		installCRD bool // before asking
		cfg        *rest.Config
		want       bool
	}{
		{"no CRD", false, admin, false},
		{"no CRD, may not list", false, nobody, false},
		{"CRD installed", true, admin, true},
		{"CRD installed, may not list", false, nobody, true},
	} {
		if tc.installCRD {
			if _, err := dyn.Resource(crds).Create(ctx, readCRD(t), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, waitTimeout, pollInterval, "the CRD to be served", func() (bool, string) {
				ok, err := served(admin)
				return ok, fmt.Sprint(err)
			})
		}
		got, err := served(tc.cfg)
		if err != nil || got != tc.want {
			t.Errorf("%s: Served = %v, %v; want %v, nil", tc.name, got, err, tc.want)
		}
	}
	if _, err := Served(ctx, nil); err == nil {
		t.Error("Served without a discovery client: no error")
	}
}
