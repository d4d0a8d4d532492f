package certs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/podiam/podiam/test/testcluster"
	"github.com/podiam/podiam/test/testutil"
)

// These tests run against a real kube-apiserver: optimistic concurrency, JSON
// patches with test operations and Secret type immutability are API server
// behaviour that a fake client does not reproduce.

var shared *testcluster.Cluster

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	c, err := testcluster.Start(ctx, testcluster.Options{})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the control plane:", err)
		os.Exit(1)
	}
	shared = c
	code := m.Run()
	if code != 0 {
		fmt.Fprintln(os.Stderr, "control plane logs:\n"+c.Logs())
	}
	_ = c.Stop()
	os.Exit(code)
}

func client(t *testing.T) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(shared.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// clock is a settable time source shared by managers, like replicas' clocks.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newManager(cs kubernetes.Interface, ns, webhookConfig string, clk *clock) *Manager {
	return New(Options{
		Client: cs, Namespace: ns, SecretName: "podiam-webhook-tls", WebhookConfigName: webhookConfig,
		Policy: pol, Now: clk.now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
}

// namespace creates a namespace named prefix plus a random suffix, so that
// runs sharing the API server (go test -count=2) never meet, and returns it.
func namespace(t *testing.T, cs kubernetes.Interface, prefix string) string {
	t.Helper()
	name := testutil.UniqueName(prefix)
	_, err := cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteNamespace(t, cs, name) })
	return name
}

// deleteNamespace deletes namespace name, if it exists. The test cluster has no
// namespace controller to empty it, so it stays Terminating with what the test
// left in it, but accepts nothing new.
func deleteNamespace(t *testing.T, cs kubernetes.Interface, name string) {
	t.Helper()
	err := cs.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("deleting namespace %s: %v", name, err)
	}
}

// webhookConfig creates a MutatingWebhookConfiguration named prefix plus a
// random suffix, deleted when the test ends, and returns its name.
func webhookConfig(t *testing.T, cs kubernetes.Interface, prefix string, webhooks ...string) string {
	t.Helper()
	name := testutil.UniqueName(prefix)
	none := admissionregistrationv1.SideEffectClassNone
	url := "https://127.0.0.1:1/mutate"
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: name}}
	for _, wh := range webhooks {
		cfg.Webhooks = append(cfg.Webhooks, admissionregistrationv1.MutatingWebhook{
			Name: wh, AdmissionReviewVersions: []string{"v1"}, SideEffects: &none,
			ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &url},
		})
	}
	cfgs := cs.AdmissionregistrationV1().MutatingWebhookConfigurations()
	if _, err := cfgs.Create(context.Background(), cfg, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cfgs.Delete(context.Background(), name, metav1.DeleteOptions{}) })
	return name
}

func secretBundle(t *testing.T, cs kubernetes.Interface, ns string) (*Bundle, *corev1.Secret) {
	t.Helper()
	s, err := cs.CoreV1().Secrets(ns).Get(context.Background(), "podiam-webhook-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Decode(s.Data)
	if err != nil {
		t.Fatalf("secret does not decode: %v", err)
	}
	return b, s
}

func caBundles(t *testing.T, cs kubernetes.Interface, name string) [][]byte {
	t.Helper()
	cfg, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, wh := range cfg.Webhooks {
		out = append(out, wh.ClientConfig.CABundle)
	}
	return out
}

func TestManagerCreatesAndRotates(t *testing.T) {
	cs := client(t)
	ctx := context.Background()
	ns := namespace(t, cs, "certs-rotate")
	cfg := webhookConfig(t, cs, "certs-rotate", "a.podiam.io", "b.podiam.io")
	clk := &clock{t: time.Now()}
	m := newManager(cs, ns, cfg, clk)
	if m.Ready() {
		t.Fatal("ready before the first reconcile")
	}
	if err := m.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	b, s := secretBundle(t, cs, ns)
	if s.Type != corev1.SecretTypeTLS {
		t.Errorf("secret type %s", s.Type)
	}
	for i, ca := range caBundles(t, cs, cfg) {
		if !bytes.Equal(ca, b.CABundle()) {
			t.Errorf("webhook %d caBundle not written", i)
		}
	}
	served, err := m.GetCertificate(nil)
	if err != nil || !bytes.Equal(served.Certificate[0], b.Cert.Raw) {
		t.Fatalf("served certificate is not the Secret's: %v", err)
	}

	// Nothing due: the Secret is left alone.
	if err := m.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if _, s2 := secretBundle(t, cs, ns); s2.ResourceVersion != s.ResourceVersion {
		t.Errorf("secret rewritten with nothing due (%s -> %s)", s.ResourceVersion, s2.ResourceVersion)
	}

	// The serving certificate enters its last third: a new one is served.
	clk.add(21 * time.Hour)
	if err := m.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	b2, _ := secretBundle(t, cs, ns)
	if b2.Cert.Equal(b.Cert) || !b2.CAs[0].Equal(b.CAs[0]) {
		t.Fatal("serving certificate not rotated, or CA changed")
	}
	if served, _ := m.GetCertificate(nil); !bytes.Equal(served.Certificate[0], b2.Cert.Raw) {
		t.Fatal("rotated certificate not served")
	}

	// The CA enters its last third: the bundle holds both CAs, in the webhook too.
	clk.add(180 * time.Hour)
	if err := m.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	b3, _ := secretBundle(t, cs, ns)
	if len(b3.CAs) != 2 || !b3.CAs[1].Equal(b.CAs[0]) {
		t.Fatalf("after CA rotation the bundle has %d CAs", len(b3.CAs))
	}
	if got := caBundles(t, cs, cfg)[1]; !bytes.Equal(got, b3.CABundle()) {
		t.Fatal("rotated CA bundle not written into the webhook configuration")
	}
}

func TestManagerReplacesCorruptSecret(t *testing.T) {
	cs := client(t)
	ctx := context.Background()
	ns := namespace(t, cs, "certs-corrupt")
	tests := []struct {
		name   string
		secret *corev1.Secret
	}{
		{"garbage in a TLS secret", &corev1.Secret{Type: corev1.SecretTypeTLS,
			Data: map[string][]byte{KeyTLSCert: []byte("garbage"), KeyTLSKey: []byte("garbage")}}},
		{"opaque secret without keys", &corev1.Secret{Type: corev1.SecretTypeOpaque, Data: map[string][]byte{"x": []byte("y")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_ = cs.CoreV1().Secrets(ns).Delete(ctx, "podiam-webhook-tls", metav1.DeleteOptions{})
			tt.secret.Name = "podiam-webhook-tls"
			if _, err := cs.CoreV1().Secrets(ns).Create(ctx, tt.secret, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			m := newManager(cs, ns, "", &clock{t: time.Now()})
			if err := m.Reconcile(ctx); err != nil {
				t.Fatalf("Reconcile on a corrupt secret: %v", err)
			}
			b, s := secretBundle(t, cs, ns)
			if s.Type != corev1.SecretTypeTLS || !m.Ready() || Decide(b, pol, time.Now()).Changed() {
				t.Fatalf("secret not replaced by a valid one (type %s)", s.Type)
			}
		})
	}
}

// Replicas reconciling at the same moment end up serving the same certificate,
// whichever wrote first.
func TestManagersAgreeUnderContention(t *testing.T) {
	cs := client(t)
	ctx := context.Background()
	ns := namespace(t, cs, "certs-race")
	cfg := webhookConfig(t, cs, "certs-race", "a.podiam.io")
	clk := &clock{t: time.Now()}
	managers := []*Manager{newManager(cs, ns, cfg, clk), newManager(cs, ns, cfg, clk),
		newManager(cs, ns, cfg, clk)}
	for round := range 3 {
		var wg sync.WaitGroup
		errs := make([]error, len(managers))
		for i, m := range managers {
			wg.Go(func() { errs[i] = m.Reconcile(ctx) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d manager %d: %v", round, i, err)
			}
		}
		b, _ := secretBundle(t, cs, ns)
		for i, m := range managers {
			c, err := m.GetCertificate(nil)
			if err != nil || !bytes.Equal(c.Certificate[0], b.Cert.Raw) {
				t.Fatalf("round %d: manager %d serves a certificate that is not the Secret's", round, i)
			}
		}
		if got := caBundles(t, cs, cfg)[0]; !bytes.Equal(got, b.CABundle()) {
			t.Fatalf("round %d: caBundle differs from the Secret's CAs", round)
		}
		clk.add(21 * time.Hour) // the next round rotates the serving certificate
	}
}

func TestManagerWithoutWebhookConfig(t *testing.T) {
	cs := client(t)
	ns := namespace(t, cs, "certs-nocfg")
	m := newManager(cs, ns, testutil.UniqueName("does-not-exist"), &clock{t: time.Now()})
	if err := m.Reconcile(context.Background()); err != nil {
		t.Fatalf("a missing webhook configuration must not fail reconcile: %v", err)
	}
	if !m.Ready() {
		t.Fatal("not ready")
	}
}

// A replica that has not seen another's CA rotation yet must keep the other's
// new CA in the caBundle; expired CAs and garbage leave it.
func TestMergeCABundle(t *testing.T) {
	ours := fresh(t, t0)
	other := fresh(t, t0)
	old := fresh(t, t0.Add(-400*time.Hour)) // expired by t0
	both := append(slices.Clone(other.CABundle()), old.CABundle()...)
	tests := []struct {
		name    string
		current []byte
		want    [][]byte // PEM bundles, concatenated in order
	}{
		{"empty", nil, [][]byte{ours.CABundle()}},
		{"ours already", ours.CABundle(), [][]byte{ours.CABundle()}},
		{"another replica's new CA is kept after ours", other.CABundle(), [][]byte{ours.CABundle(), other.CABundle()}},
		{"expired CA dropped", both, [][]byte{ours.CABundle(), other.CABundle()}},
		{"garbage dropped", []byte("not a certificate"), [][]byte{ours.CABundle()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mergeCABundle(ours.CAs, tt.current, t0.Add(time.Hour))
			if want := bytes.Join(tt.want, nil); !bytes.Equal(got, want) {
				t.Fatalf("merged bundle differs:\n%s\nwant\n%s", got, want)
			}
		})
	}
}

// caConfigMap returns ConfigMap podiam-auth-ca of ns, nil when there is none.
func caConfigMap(t *testing.T, cs kubernetes.Interface, ns string) *corev1.ConfigMap {
	t.Helper()
	cm, err := cs.CoreV1().ConfigMaps(ns).Get(context.Background(), "podiam-auth-ca", metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return cm
}

// With CAConfigMapName, the CA bundle is published in a ConfigMap for clients
// to mount: created when missing, rewritten when its ca.crt differs (other
// keys kept), left alone otherwise, and given both CAs during a CA rotation.
func TestManagerCAConfigMap(t *testing.T) {
	cs := client(t)
	ctx := context.Background()
	tests := []struct {
		name     string
		existing map[string]string // data of a ConfigMap there before; nil: none
	}{
		{"missing", nil},
		{"garbage ca.crt, another key", map[string]string{KeyCACert: "garbage", "other": "kept"}},
		{"without ca.crt", map[string]string{"other": "kept"}},
		{"empty", map[string]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := namespace(t, cs, "certs-cacm")
			if tt.existing != nil {
				cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "podiam-auth-ca"}, Data: tt.existing}
				if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			clk := &clock{t: time.Now()}
			m := New(Options{
				Client: cs, Namespace: ns, SecretName: "podiam-webhook-tls", CAConfigMapName: "podiam-auth-ca",
				Policy: pol, Now: clk.now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			})
			if err := m.Reconcile(ctx); err != nil {
				t.Fatal(err)
			}
			b, _ := secretBundle(t, cs, ns)
			cm := caConfigMap(t, cs, ns)
			if cm == nil || cm.Data[KeyCACert] != string(b.CABundle()) {
				t.Fatalf("ConfigMap %+v: want ca.crt = the Secret's CA bundle", cm)
			}
			if v, ok := tt.existing["other"]; ok && cm.Data["other"] != v {
				t.Errorf("key other = %q, want %q kept", cm.Data["other"], v)
			}
			if tt.existing == nil && cm.Labels["app.kubernetes.io/managed-by"] != "podiam" {
				t.Errorf("created ConfigMap labels %v: want app.kubernetes.io/managed-by=podiam", cm.Labels)
			}

			// Nothing changed: the ConfigMap is not written again.
			if err := m.Reconcile(ctx); err != nil {
				t.Fatal(err)
			}
			if cm2 := caConfigMap(t, cs, ns); cm2.ResourceVersion != cm.ResourceVersion {
				t.Errorf("ConfigMap rewritten with nothing changed (%s -> %s)", cm.ResourceVersion, cm2.ResourceVersion)
			}

			// The CA enters its last third: both CAs are trusted.
			clk.add(201 * time.Hour)
			if err := m.Reconcile(ctx); err != nil {
				t.Fatal(err)
			}
			b2, _ := secretBundle(t, cs, ns)
			if len(b2.CAs) != 2 {
				t.Fatalf("after CA rotation the bundle has %d CAs, want 2", len(b2.CAs))
			}
			if got := caConfigMap(t, cs, ns).Data[KeyCACert]; got != string(b2.CABundle()) {
				t.Fatalf("after CA rotation ca.crt is\n%s\nwant both CAs\n%s", got, b2.CABundle())
			}
		})
	}
}

// Without CAConfigMapName no ConfigMap is written (the webhook's case).
func TestManagerWithoutCAConfigMap(t *testing.T) {
	cs := client(t)
	ns := namespace(t, cs, "certs-nocacm")
	if err := newManager(cs, ns, "", &clock{t: time.Now()}).Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	cms, err := cs.CoreV1().ConfigMaps(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=podiam"})
	if err != nil {
		t.Fatal(err)
	}
	if len(cms.Items) != 0 {
		t.Errorf("%d ConfigMaps written without CAConfigMapName", len(cms.Items))
	}
}
