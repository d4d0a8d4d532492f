package certs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/podiam/podiam/test/testutil"
)

// Run is tested with a check interval of an hour: within a test, only the
// watches (or a due rotation, or a retry) can explain a reconcile.
const longInterval = time.Hour

// reactWithin bounds how soon the Manager reacts to a change, a failure or a
// due rotation. It is far below longInterval, which is what shows that the
// check interval did not do it, and far above the time it takes (logged; under
// a second for a repair), so that a loaded machine does not fail the test.
const reactWithin = 20 * time.Second

// runManager runs a Manager with the real clock until the test ends and
// returns it and its logs.
func runManager(t *testing.T, cs kubernetes.Interface, ns, cfg string, p Policy) (*Manager, *testutil.SyncBuffer) {
	t.Helper()
	logs := &testutil.SyncBuffer{}
	m := New(Options{
		Client: cs, Namespace: ns, SecretName: "podiam-webhook-tls", WebhookConfigName: cfg,
		Policy: p, CheckInterval: longInterval, Logger: slog.New(slog.NewTextHandler(logs, nil)),
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("manager logs:\n%s", logs.String())
		}
	})
	return m, logs
}

// converged reports whether the Secret holds a valid bundle that m serves and
// every webhook's caBundle starts with the Secret's CAs (valid CAs that are not
// ours may follow: they could be another replica's).
func converged(ctx context.Context, cs kubernetes.Interface, m *Manager, ns, cfg string) (bool, string) {
	s, err := cs.CoreV1().Secrets(ns).Get(ctx, "podiam-webhook-tls", metav1.GetOptions{})
	if err != nil {
		return false, err.Error()
	}
	b, err := Decode(s.Data)
	if err != nil {
		return false, "secret: " + err.Error()
	}
	served, err := m.GetCertificate(nil)
	if err != nil {
		return false, err.Error()
	}
	if !bytes.Equal(served.Certificate[0], b.Cert.Raw) {
		return false, "served certificate is not the Secret's"
	}
	if cfg == "" {
		return true, ""
	}
	c, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, cfg, metav1.GetOptions{})
	if err != nil {
		return false, err.Error()
	}
	for i, wh := range c.Webhooks {
		if !bytes.HasPrefix(wh.ClientConfig.CABundle, b.CABundle()) {
			return false, fmt.Sprintf("webhook %d: caBundle of %d bytes does not start with the Secret's CAs", i, len(wh.ClientConfig.CABundle))
		}
	}
	return true, ""
}

// What a GitOps tool or an operator does to the Secret or the webhook
// configuration behind the Manager's back is repaired within seconds.
func TestRunRepairsOutsideChanges(t *testing.T) {
	cs := client(t)
	setCABundle := func(ca []byte) func(t *testing.T, ctx context.Context, ns, cfg string) {
		return func(t *testing.T, ctx context.Context, ns, cfg string) {
			cfgs := cs.AdmissionregistrationV1().MutatingWebhookConfigurations()
			c, err := cfgs.Get(ctx, cfg, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for i := range c.Webhooks {
				c.Webhooks[i].ClientConfig.CABundle = ca
			}
			if _, err := cfgs.Update(ctx, c, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name   string
		change func(t *testing.T, ctx context.Context, ns, cfg string)
	}{
		{"caBundle emptied", setCABundle(nil)},
		{"caBundle garbage", setCABundle([]byte("garbage"))},
		{"caBundle another CA", setCABundle(fresh(t, time.Now()).CABundle())},
		{"webhook configuration recreated without caBundle", func(t *testing.T, ctx context.Context, ns, cfg string) {
			c, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, cfg, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, cfg, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			c.ObjectMeta = metav1.ObjectMeta{Name: cfg}
			for i := range c.Webhooks {
				c.Webhooks[i].ClientConfig.CABundle = nil
			}
			if _, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, c, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}},
		{"secret deleted", func(t *testing.T, ctx context.Context, ns, _ string) {
			if err := cs.CoreV1().Secrets(ns).Delete(ctx, "podiam-webhook-tls", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}},
		{"secret corrupted", func(t *testing.T, ctx context.Context, ns, _ string) {
			s, err := cs.CoreV1().Secrets(ns).Get(ctx, "podiam-webhook-tls", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			s.Data[KeyTLSCert] = []byte("garbage")
			if _, err := cs.CoreV1().Secrets(ns).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			ns := namespace(t, cs, "certs-watch")
			cfg := webhookConfig(t, cs, "certs-watch", "a.podiam.io", "b.podiam.io")
			m, _ := runManager(t, cs, ns, cfg, pol)
			testutil.Eventually(t, reactWithin, 50*time.Millisecond, "the first reconcile", func() (bool, string) {
				return converged(ctx, cs, m, ns, cfg)
			})
			tt.change(t, ctx, ns, cfg)
			start := time.Now()
			testutil.Eventually(t, reactWithin, 50*time.Millisecond, "the manager to repair "+tt.name, func() (bool, string) {
				return converged(ctx, cs, m, ns, cfg)
			})
			t.Logf("repaired in %v", time.Since(start).Round(time.Millisecond))
		})
	}
}

// Writes happen only when content differs: the events of the Manager's own
// writes, or of another replica's, do not lead to more writes. Two replicas
// repair an overwritten caBundle with one write between them (and at most one
// patch that loses the race and fails), then leave the webhook configuration
// and the Secret alone. The API server turns a write of identical content into
// a no-op without an event, so the requests themselves are counted.
func TestRunDoesNotLoop(t *testing.T) {
	cs := client(t)
	ctx := t.Context()
	ns := namespace(t, cs, "certs-noloop")
	cfg := webhookConfig(t, cs, "certs-noloop", "a.podiam.io")
	var writes atomic.Int64 // requests of the managers other than GET (get, list, watch)
	rc := shared.RESTConfig()
	rc.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if r.Method != http.MethodGet {
				writes.Add(1)
			}
			return rt.RoundTrip(r)
		})
	}
	counted, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	m1, logs1 := runManager(t, counted, ns, cfg, pol)
	m2, logs2 := runManager(t, counted, ns, cfg, pol)
	for _, m := range []*Manager{m1, m2} {
		testutil.Eventually(t, reactWithin, 50*time.Millisecond, "both replicas to converge", func() (bool, string) {
			return converged(ctx, cs, m, ns, cfg)
		})
	}
	cfgs := cs.AdmissionregistrationV1().MutatingWebhookConfigurations()
	c, err := cfgs.Get(ctx, cfg, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := cs.CoreV1().Secrets(ns).Get(ctx, "podiam-webhook-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// Watch every change from the overwrite on.
	byName := func(name, rv string) metav1.ListOptions {
		return metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String(), ResourceVersion: rv}
	}
	cfgWatch, err := cfgs.Watch(ctx, byName(cfg, c.ResourceVersion))
	if err != nil {
		t.Fatal(err)
	}
	defer cfgWatch.Stop()
	secretWatch, err := cs.CoreV1().Secrets(ns).Watch(ctx, byName("podiam-webhook-tls", s.ResourceVersion))
	if err != nil {
		t.Fatal(err)
	}
	defer secretWatch.Stop()

	writesBefore := writes.Load()
	c.Webhooks[0].ClientConfig.CABundle = []byte("garbage")
	if _, err = cfgs.Update(ctx, c, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for _, m := range []*Manager{m1, m2} {
		testutil.Eventually(t, reactWithin, 50*time.Millisecond, "the caBundle to be repaired", func() (bool, string) {
			return converged(ctx, cs, m, ns, cfg)
		})
	}
	t.Logf("repaired in %v", time.Since(start).Round(time.Millisecond))
	// Quiet for a while: the repair's own events have long been handled.
	quiet := time.After(3 * time.Second)
	changes := map[string]int{}
	for done := false; !done; {
		select {
		case ev := <-cfgWatch.ResultChan():
			changes["webhook configuration "+string(ev.Type)]++
		case ev := <-secretWatch.ResultChan():
			changes["secret "+string(ev.Type)]++
		case <-quiet:
			done = true
		}
	}
	// The overwrite and the repair.
	if want := map[string]int{"webhook configuration " + string(watch.Modified): 2}; !maps.Equal(changes, want) {
		t.Errorf("after one overwrite of the caBundle the changes were %v, want %v", changes, want)
	}
	if n := writes.Load() - writesBefore; n < 1 || n > 2 {
		t.Errorf("the two replicas sent %d write requests to repair one caBundle, want 1 (or 2 if both tried)", n)
	}
	// The replica that lost the race read again and found nothing to do: a
	// lost race is no error.
	for i, logs := range []*testutil.SyncBuffer{logs1, logs2} {
		if strings.Contains(logs.String(), "level=ERROR") {
			t.Errorf("replica %d logged an error", i+1)
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// A failed reconcile is retried with backoff from one second, not after the
// check interval: here the namespace of the Secret appears after the start.
func TestRunRetriesFailures(t *testing.T) {
	cs := client(t)
	ns := testutil.UniqueName("certs-retry")
	// Registered before runManager's cleanup, so it runs after the manager stopped.
	t.Cleanup(func() { deleteNamespace(t, cs, ns) })
	m, logs := runManager(t, cs, ns, "", pol)
	testutil.Eventually(t, reactWithin, 50*time.Millisecond, "a failed reconcile", func() bool {
		return strings.Contains(logs.String(), "reconciling webhook certificates")
	})
	if m.Ready() {
		t.Fatal("ready without a namespace for its Secret")
	}
	if _, err := cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	testutil.Eventually(t, reactWithin, 50*time.Millisecond, "the manager to retry and serve", m.Ready)
	t.Logf("ready %v after the namespace was created", time.Since(start).Round(time.Millisecond))
}

// A rotation happens when it is due, not at the next check interval.
func TestRunRotatesWhenDue(t *testing.T) {
	cs := client(t)
	ctx := t.Context()
	ns := namespace(t, cs, "certs-due")
	short := pol
	short.CertValidity = 3 * time.Second // renewed 2 s after issuance
	m, _ := runManager(t, cs, ns, "", short)
	testutil.Eventually(t, reactWithin, 50*time.Millisecond, "the first certificate", m.Ready)
	first, _ := m.GetCertificate(nil)
	testutil.Eventually(t, reactWithin, 50*time.Millisecond, "the serving certificate to rotate", func() (bool, string) {
		c, _ := m.GetCertificate(nil)
		return !bytes.Equal(c.Certificate[0], first.Certificate[0]), "still the first certificate"
	})
	testutil.Eventually(t, reactWithin, 50*time.Millisecond, "the Secret to hold the served certificate", func() (bool, string) {
		return converged(ctx, cs, m, ns, "")
	})
}

func TestNextCheck(t *testing.T) {
	b := fresh(t, t0) // pol: CA 300 h, certificate 30 h, renewed after 20 h
	old := fresh(t, t0.Add(-290*time.Hour))
	withOld := *b
	withOld.CAs = append(withOld.CAs, old.CAs[0]) // expires at t0+10h
	tests := []struct {
		name     string
		b        *Bundle
		now      time.Time
		interval time.Duration
		want     time.Duration
	}{
		{"interval first", b, t0, time.Hour, time.Hour},
		{"certificate renewal first", b, t0.Add(19 * time.Hour), 2 * time.Hour, time.Hour},
		{"an old CA expires first", &withOld, t0.Add(9 * time.Hour), 2 * time.Hour, time.Hour},
		{"due in the past waits the minimum", b, t0.Add(25 * time.Hour), time.Hour, minDelay},
		{"no bundle", nil, t0, time.Minute, time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := nextCheck(tt.b, tt.now, tt.interval); got != tt.want {
				t.Errorf("nextCheck = %v, want %v", got, tt.want)
			}
		})
	}
}

// The CA ConfigMap is watched like the Secret: deleted or overwritten, it is
// back within seconds, without waiting for the check interval.
func TestRunRepairsCAConfigMap(t *testing.T) {
	cs := client(t)
	tests := []struct {
		name   string
		change func(t *testing.T, ctx context.Context, ns string)
	}{
		{"deleted", func(t *testing.T, ctx context.Context, ns string) {
			if err := cs.CoreV1().ConfigMaps(ns).Delete(ctx, "podiam-auth-ca", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}},
		{"ca.crt overwritten", func(t *testing.T, ctx context.Context, ns string) {
			cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "podiam-auth-ca", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			cm.Data[KeyCACert] = "garbage"
			if _, err := cs.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			ns := namespace(t, cs, "certs-watch-cm")
			m := New(Options{
				Client: cs, Namespace: ns, SecretName: "podiam-webhook-tls", CAConfigMapName: "podiam-auth-ca",
				Policy: pol, CheckInterval: longInterval, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			})
			runCtx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() { defer close(done); m.Run(runCtx) }()
			t.Cleanup(func() { cancel(); <-done })
			published := func() (bool, string) {
				s, err := cs.CoreV1().Secrets(ns).Get(ctx, "podiam-webhook-tls", metav1.GetOptions{})
				if err != nil {
					return false, err.Error()
				}
				cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "podiam-auth-ca", metav1.GetOptions{})
				if err != nil {
					return false, err.Error()
				}
				return cm.Data[KeyCACert] == string(s.Data[KeyCACert]), "ca.crt differs from the Secret's"
			}
			testutil.Eventually(t, reactWithin, 50*time.Millisecond, "the CA ConfigMap", published)
			tt.change(t, ctx, ns)
			start := time.Now()
			testutil.Eventually(t, reactWithin, 50*time.Millisecond, "the manager to repair the CA ConfigMap", published)
			t.Logf("repaired in %v", time.Since(start).Round(time.Millisecond))
		})
	}
}
