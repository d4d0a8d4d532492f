package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podiam/podiam/api/v1alpha1"
	"github.com/podiam/podiam/internal/association"
	"github.com/podiam/podiam/internal/auth"
	"github.com/podiam/podiam/internal/eksauth"
	"github.com/podiam/podiam/test/testcluster"
	"github.com/podiam/podiam/test/testutil"
)

// statusCluster is the cluster the status writers of these tests serve.
var statusCluster = auth.Cluster{Name: "e2e", Region: region, Account: "111122223333"}

// statusReportDelay is the writers' ReportDelay: short, so tests are quick,
// long enough that a burst of reports falls in one window.
const statusReportDelay = 100 * time.Millisecond

// startStatusWriter runs a StatusWriter for namespace ns (so that it leaves
// the associations of other tests alone) of the cluster cfg points at, with
// ReadyHold hold, until the test ends. It returns the writer, its metrics and
// its log.
func startStatusWriter(t *testing.T, cfg *rest.Config, ns string, hold time.Duration) (*auth.StatusWriter, *auth.Metrics, *testutil.SyncBuffer) {
	t.Helper()
	w, m, logs, _ := startStatusWriterOf(t, cfg, ns, auth.StatusOptions{ReadyHold: hold, Cluster: statusCluster})
	return w, m, logs
}

// startStatusWriterOf is startStatusWriter with o's ReadyHold, Cluster and
// ExternalIDYield; it also returns a function that stops the writer before
// the test ends.
func startStatusWriterOf(t *testing.T, cfg *rest.Config, ns string, o auth.StatusOptions) (*auth.StatusWriter, *auth.Metrics, *testutil.SyncBuffer, func()) {
	t.Helper()
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := auth.NewMetrics(prometheus.NewRegistry())
	logs := new(testutil.SyncBuffer)
	w := auth.NewStatusWriter(auth.StatusOptions{
		Client: dyn, Discovery: disc, Cluster: o.Cluster, Namespace: ns, Metrics: m,
		Logger:        slog.New(slog.NewTextHandler(logs, nil)),
		CheckInterval: 100 * time.Millisecond, ReportDelay: statusReportDelay, ReadyHold: o.ReadyHold,
		ExternalIDYield: o.ExternalIDYield,
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { w.Run(ctx) })
	stop := func() {
		cancel()
		wg.Wait()
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("status writer log:\n%s", logs.String())
		}
	})
	return w, m, logs, stop
}

// ownStatusCluster starts an API server for one test, with the CRD, and
// returns its config and a client of associations. The status tests that
// count writes or time changes of Ready keep off the suite's cluster, where
// every `podiam auth` the other auth tests start runs a cluster-wide status
// writer. Those all use authCluster and the region and account of
// statusCluster, so they compute the same status.externalId and Conflict;
// but they would all write a new association's first status at once, and
// the resourceVersion conflicts that gives the test's writer count among
// its writes; each also takes part in Ready (it writes the outcomes it
// learns, and the hold counts from the stored lastTransitionTime); and a
// podiam auth started with other flags would write a status of its own.
// On an API server of its own the test's writer is the only one, which
// keeps the counts and the hold's timing exact, for one more kube-apiserver
// start (about 3 s).
func ownStatusCluster(t *testing.T, ctx context.Context) (*testcluster.Cluster, ctrlclient.Client) {
	t.Helper()
	own := testcluster.StartForTest(t, testcluster.Options{})
	return own, installCRDOn(t, ctx, own)
}

// installCRDOn creates the PodIdentityAssociation CRD on own, waits
// until it is established, and returns a client of own that knows the type
// (installAssociationCRD does the same on the shared API server).
func installCRDOn(t *testing.T, ctx context.Context, own *testcluster.Cluster) ctrlclient.Client {
	t.Helper()
	dyn, err := dynamic.NewForConfig(own.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	crd := readManifest(t, "deploy/crd/podiam.dev_podidentityassociations.yaml")
	if _, err := dyn.Resource(crdGVR).Create(ctx, crd, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating the CRD: %v", err)
	}
	waitCRDEstablished(t, ctx, dyn, crd.GetName())
	c, err := ctrlclient.New(own.RESTConfig(), ctrlclient.Options{Scheme: associationClient(t).Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// statusWrites returns how many status writes m counted, all results.
func statusWrites(m *auth.Metrics) float64 {
	return promtestutil.ToFloat64(m.StatusWrites.WithLabelValues(auth.ResultOK)) +
		promtestutil.ToFloat64(m.StatusWrites.WithLabelValues("Conflict"))
}

// newStatusAssociation creates association name for ServiceAccount sa in ns.
func newStatusAssociation(t *testing.T, ctx context.Context, c ctrlclient.Client, ns, name, sa, role string) *v1alpha1.PodIdentityAssociation {
	t.Helper()
	p := &v1alpha1.PodIdentityAssociation{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       v1alpha1.PodIdentityAssociationSpec{ServiceAccount: sa, RoleARN: role},
	}
	if err := c.Create(ctx, p); err != nil {
		t.Fatalf("creating association %s/%s: %v", ns, name, err)
	}
	return p
}

// statusCond is what a condition must show; an empty field is not checked.
type statusCond struct {
	status          metav1.ConditionStatus
	reason, message string // message: a substring
}

// waitAssociationStatus waits until association ns/name has the external id of its
// ServiceAccount, observes its generation and has the given conditions, and
// returns it.
func waitAssociationStatus(t *testing.T, ctx context.Context, c ctrlclient.Client, ns, name string, want map[string]statusCond) *v1alpha1.PodIdentityAssociation {
	t.Helper()
	var p v1alpha1.PodIdentityAssociation
	testutil.Eventually(t, 30*time.Second, 50*time.Millisecond, fmt.Sprintf("status of %s/%s: %v", ns, name, want), func() (bool, string) {
		if err := c.Get(ctx, ctrlclient.ObjectKey{Namespace: ns, Name: name}, &p); err != nil {
			return false, err.Error()
		}
		got := fmt.Sprintf("%+v", p.Status)
		if p.Status.ExternalID != statusCluster.ExternalID(ns, p.Spec.ServiceAccount) {
			return false, got
		}
		for typ, w := range want {
			cond := meta.FindStatusCondition(p.Status.Conditions, typ)
			if cond == nil || cond.Status != w.status || cond.ObservedGeneration != p.Generation ||
				(w.reason != "" && cond.Reason != w.reason) || !strings.Contains(cond.Message, w.message) {
				return false, got
			}
		}
		return true, ""
	})
	return &p
}

// TestAuthStatusConflictAndOutcomes runs a status writer against the real API
// server: of two associations for one ServiceAccount the newer is in conflict
// and not ready, the older is not; both get the external id; outcomes
// reported for the older show in Ready, STS's refusal with its message; a
// spec change resets Ready (the outcome was for the old spec); once the
// older is deleted the newer is no longer in conflict.
func TestAuthStatusConflictAndOutcomes(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 2*time.Minute)
	own, c := ownStatusCluster(t, ctx)
	ns := testutil.UniqueName("auth-status")
	if err := own.EnsureNamespace(ctx, ns, nil); err != nil {
		t.Fatal(err)
	}
	// A short hold: the refusal after the success is written soon.
	w, _, _ := startStatusWriter(t, own.RESTConfig(), ns, 300*time.Millisecond)

	const role = "arn:aws:iam::111122223333:role/app"
	// Created in this order, "a-older" is older, or (in the same second)
	// first by name: it wins either way.
	newStatusAssociation(t, ctx, c, ns, "a-older", "app", role)
	newStatusAssociation(t, ctx, c, ns, "b-newer", "app", "arn:aws:iam::111122223333:role/other")

	pending := statusCond{metav1.ConditionUnknown, auth.ReasonPending, "no pod has asked"}
	noConflict := statusCond{metav1.ConditionFalse, auth.ReasonNoConflict, ""}
	older := waitAssociationStatus(t, ctx, c, ns, "a-older", map[string]statusCond{v1alpha1.ConditionReady: pending, v1alpha1.ConditionConflict: noConflict})
	waitAssociationStatus(t, ctx, c, ns, "b-newer", map[string]statusCond{
		v1alpha1.ConditionReady:    {metav1.ConditionFalse, auth.ReasonConflict, "a-older"},
		v1alpha1.ConditionConflict: {metav1.ConditionTrue, auth.ReasonServiceAccountInUse, "a-older"},
	})

	w.Report(association.FromObject(older), nil)
	waitAssociationStatus(t, ctx, c, ns, "a-older", map[string]statusCond{
		v1alpha1.ConditionReady: {metav1.ConditionTrue, auth.ReasonRoleAssumed, role}, v1alpha1.ConditionConflict: noConflict})

	denied := eksauth.NewError(eksauth.CodeAccessDenied, "STS refused to assume %s: AccessDenied: not authorized to perform sts:AssumeRole", role)
	w.Report(association.FromObject(older), denied)
	waitAssociationStatus(t, ctx, c, ns, "a-older", map[string]statusCond{
		v1alpha1.ConditionReady: {metav1.ConditionFalse, auth.ReasonAssumeRoleFailed, "AccessDeniedException: " + denied.Message}})

	// A new role: the refusal was for the old one.
	// A merge patch: the writer changes the resourceVersion all the time.
	patch := ctrlclient.MergeFrom(older.DeepCopy())
	older.Spec.RoleARN = "arn:aws:iam::111122223333:role/app2"
	if err := c.Patch(ctx, older, patch); err != nil {
		t.Fatalf("changing the role: %v", err)
	}
	older = waitAssociationStatus(t, ctx, c, ns, "a-older", map[string]statusCond{v1alpha1.ConditionReady: pending})
	if older.Generation < 2 {
		t.Errorf("generation %d after a spec change", older.Generation)
	}

	if err := c.Delete(ctx, older); err != nil {
		t.Fatalf("deleting the older association: %v", err)
	}
	waitAssociationStatus(t, ctx, c, ns, "b-newer", map[string]statusCond{v1alpha1.ConditionReady: pending, v1alpha1.ConditionConflict: noConflict})
}

// TestAuthStatusReportsCollapse: a thousand reports of one outcome for one
// association make one write; alternating outcomes (a trust policy that lets some pods in and
// not others) change Ready at most once per ReadyHold, the outcome reported
// last being written when the hold ends. It counts the writes of its own
// writer on an API server of its own (see ownStatusCluster).
func TestAuthStatusReportsCollapse(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 2*time.Minute)
	own, c := ownStatusCluster(t, ctx)
	ns := testutil.UniqueName("auth-status-burst")
	if err := own.EnsureNamespace(ctx, ns, nil); err != nil {
		t.Fatal(err)
	}
	const hold = 2 * time.Second
	w, m, _ := startStatusWriter(t, own.RESTConfig(), ns, hold)

	const role = "arn:aws:iam::111122223333:role/app"
	newStatusAssociation(t, ctx, c, ns, "app", "app", role)
	p := waitAssociationStatus(t, ctx, c, ns, "app", map[string]statusCond{v1alpha1.ConditionReady: {status: metav1.ConditionUnknown}})
	a := association.FromObject(p)
	denied := eksauth.NewError(eksauth.CodeAccessDenied, "not authorized")
	// alternate sends n reports, pause apart, alternating refusal and
	// success and ending with a success, and returns how long it took.
	alternate := func(n int, pause time.Duration) time.Duration {
		begin := time.Now()
		for i := range n {
			if (n-1-i)%2 == 0 {
				w.Report(a, nil)
			} else {
				w.Report(a, denied)
			}
			time.Sleep(pause)
		}
		return time.Since(begin)
	}
	refused := map[string]statusCond{v1alpha1.ConditionReady: {metav1.ConditionFalse, auth.ReasonAssumeRoleFailed, "not authorized"}}
	assumed := map[string]statusCond{v1alpha1.ConditionReady: {metav1.ConditionTrue, auth.ReasonRoleAssumed, role}}

	// At once, one outcome: one write (the first outcome is not held),
	// however many windows the burst spans under load: a report equal to
	// the stored outcome writes nothing.
	before := statusWrites(m)
	for range 1000 {
		w.Report(a, denied)
	}
	waitAssociationStatus(t, ctx, c, ns, "app", refused)
	changed := time.Now()             // Ready changed no later than this
	time.Sleep(3 * statusReportDelay) // any late write would show
	burst := statusWrites(m) - before
	t.Logf("1000 reports at once: %v writes", burst)
	if burst < 1 || burst > 2 {
		t.Errorf("1000 reports at once made %v status writes, want 1 (2 with a conflict)", burst)
	}

	// Spread over about a second, within the hold: Ready keeps the refusal
	// until the hold ends, then shows the last outcome, a success.
	before = statusWrites(m)
	took := alternate(1000, time.Millisecond)
	if cur := waitAssociationStatus(t, ctx, c, ns, "app", nil); time.Since(changed) < hold-statusReportDelay {
		if r := meta.FindStatusCondition(cur.Status.Conditions, v1alpha1.ConditionReady); r.Status != metav1.ConditionFalse {
			t.Errorf("Ready changed to %s %v after the previous change, within the hold of %v", r.Status, time.Since(changed), hold)
		}
	}
	waitAssociationStatus(t, ctx, c, ns, "app", assumed)
	// Some slack: changed is when the previous change was seen, a poll late.
	if since := time.Since(changed); since < hold-hold/4 {
		t.Errorf("Ready changed again %v after the previous change, within the hold of %v", since, hold)
	}
	time.Sleep(3 * statusReportDelay)
	spread := statusWrites(m) - before
	bound := float64(took/hold) + 2 // a hold ending during the reports writes a mid-way outcome
	t.Logf("1000 alternating reports over %v: %v writes (bound %v)", took.Round(time.Millisecond), spread, bound)
	if spread > bound {
		t.Errorf("1000 alternating reports over %v made %v status writes, want at most %v (one per hold of %v)", took, spread, bound, hold)
	}
}

// TestAuthStatusWritersDisagree runs two status writers of different
// clusters (as replicas with different --cluster-name would be, during a
// rolling update that changes it) on an API server of their own: each
// computes another status.externalId, and without a defence each would
// replace the other's value as soon as it saw it, for ever. They replace
// each other a few times, then yield and say why, and the association stops
// changing; once the writer whose value is stored stops (the old replicas
// are gone), the other writes its own when its yield ends.
func TestAuthStatusWritersDisagree(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 2*time.Minute)
	own, c := ownStatusCluster(t, ctx)
	ns := testutil.UniqueName("auth-status-disagree")
	if err := own.EnsureNamespace(ctx, ns, nil); err != nil {
		t.Fatal(err)
	}
	other := statusCluster
	other.Name = "e2e-other"
	if other.ExternalID(ns, "app") == statusCluster.ExternalID(ns, "app") {
		t.Fatal("the two clusters give the same external id: the test would prove nothing")
	}
	const yield = 3 * time.Second
	type writer struct {
		id   string
		m    *auth.Metrics
		logs *testutil.SyncBuffer
		stop func()
	}
	var writers []writer
	for _, cl := range []auth.Cluster{statusCluster, other} {
		_, m, logs, stop := startStatusWriterOf(t, own.RESTConfig(), ns, auth.StatusOptions{ReadyHold: time.Second, Cluster: cl, ExternalIDYield: yield})
		writers = append(writers, writer{cl.ExternalID(ns, "app"), m, logs, stop})
	}
	writes := func() float64 { return statusWrites(writers[0].m) + statusWrites(writers[1].m) }
	newStatusAssociation(t, ctx, c, ns, "app", "app", "arn:aws:iam::111122223333:role/app")

	const yielded = "another writer keeps setting status.externalId"
	testutil.Eventually(t, 30*time.Second, 50*time.Millisecond, "a writer yields", func() (bool, string) {
		return strings.Contains(writers[0].logs.String()+writers[1].logs.String(), yielded), fmt.Sprintf("%v writes", writes())
	})
	settled := writes()
	time.Sleep(yield / 2) // a fight would write hundreds of times meanwhile
	after := writes()
	t.Logf("writes until a writer yielded: %v; in the %v after: %v", settled, yield/2, after-settled)
	// Each writer: the first status, then at most externalIDContests (3)
	// replacements before it yields, and a conflict each.
	if after > 16 || after-settled > 4 {
		t.Errorf("%v status writes (%v after a writer yielded): the writers keep replacing each other's external id", after, after-settled)
	}

	// The writer whose value is stored stops: the other's value follows
	// within its yield, without any other event to wake it.
	var p v1alpha1.PodIdentityAssociation
	if err := c.Get(ctx, ctrlclient.ObjectKey{Namespace: ns, Name: "app"}, &p); err != nil {
		t.Fatal(err)
	}
	stays := -1
	for i, w := range writers {
		if w.id == p.Status.ExternalID {
			w.stop()
			stays = 1 - i
		}
	}
	if stays < 0 {
		t.Fatalf("status.externalId %q is neither writer's", p.Status.ExternalID)
	}
	want := writers[stays].id
	testutil.Eventually(t, yield+10*time.Second, 100*time.Millisecond, "the remaining writer's external id", func() (bool, string) {
		if err := c.Get(ctx, ctrlclient.ObjectKey{Namespace: ns, Name: "app"}, &p); err != nil {
			return false, err.Error()
		}
		return p.Status.ExternalID == want, p.Status.ExternalID
	})
}

// TestAuthStatusWaitsForCRD runs against an API server of its own, so that
// the CRD can be missing: the writer starts without it, says so once, and
// writes statuses once it is installed.
func TestAuthStatusWaitsForCRD(t *testing.T) {
	t.Parallel()
	own := testcluster.StartForTest(t, testcluster.Options{})
	ctx := ctxFor(t, 2*time.Minute)
	const ns = "apps"
	if err := own.EnsureNamespace(ctx, ns, nil); err != nil {
		t.Fatal(err)
	}
	// Each check for the CRD is one discovery GET of the API group version;
	// counting them, the test waits for checks, not for wall time.
	cfg := own.RESTConfig()
	var checks atomic.Int64
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if r.Method == http.MethodGet && r.URL.Path == "/apis/"+association.Resource.GroupVersion().String() {
				checks.Add(1)
			}
			return rt.RoundTrip(r)
		})
	})
	_, _, logs := startStatusWriter(t, cfg, ns, 0)
	testutil.Eventually(t, 30*time.Second, 50*time.Millisecond, "the writer to notice the CRD is missing", func() bool {
		return strings.Contains(logs.String(), "not served")
	})
	// Several checks more: logged once, not each time.
	const moreChecks = 5
	seen := checks.Load()
	testutil.Eventually(t, 30*time.Second, 50*time.Millisecond, fmt.Sprintf("%d more checks for the CRD", moreChecks), func() (bool, string) {
		n := checks.Load() - seen
		return n >= moreChecks, fmt.Sprintf("%d checks", n)
	})
	if n := strings.Count(logs.String(), "not served"); n != 1 {
		t.Errorf("logged %d times that the CRD is missing in %d checks, want once:\n%s", n, checks.Load(), logs.String())
	}

	c := installCRDOn(t, ctx, own)
	newStatusAssociation(t, ctx, c, ns, "app", "app", "arn:aws:iam::111122223333:role/app")
	waitAssociationStatus(t, ctx, c, ns, "app", map[string]statusCond{
		v1alpha1.ConditionReady:    {metav1.ConditionUnknown, auth.ReasonPending, ""},
		v1alpha1.ConditionConflict: {metav1.ConditionFalse, auth.ReasonNoConflict, ""},
	})
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("errors logged:\n%s", logs.String())
	}
}

// roundTripFunc is an http.RoundTripper made of a function.
type roundTripFunc func(*http.Request) (*http.Response, error)

// RoundTrip calls f.
func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
