package e2e

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podiam/podiam/internal/certs"
	"github.com/podiam/podiam/test/harness"
	"github.com/podiam/podiam/test/testutil"
)

// repairWithin bounds how soon podiam undoes a change to its caBundle or
// Secret. The webhook runs with --cert-check-interval=1h, so only its watches
// can explain a repair within it; it is far above the time a repair takes
// (logged; under a second), so that a loaded machine does not fail the test.
const repairWithin = 20 * time.Second

// TestCABundleRepairedByWatch runs `podiam webhook --cert-mode=self-managed`
// and does to its webhook configuration and Secret what a GitOps tool or an
// operator might: registers the webhook after podiam started, empties the
// caBundle, overwrites it with garbage or another CA, deletes the Secret. Each
// time podiam repairs it within seconds and pods are mutated over TLS again.
func TestCABundleRepairedByWatch(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 3*time.Minute)
	const role = "arn:aws:iam::111122223333:role/cabundle"
	ns := testutil.UniqueName("e2e-cabundle")
	name, secret := ns, "podiam-webhook-tls" // the registration is cluster-scoped: unique too
	newNamespace(t, ctx, ns, map[string]string{isolatedLabel: ns})
	newServiceAccount(t, ctx, ns, "app", map[string]string{annoRoleARN: role})
	mwcs := client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	secrets := client.CoreV1().Secrets(ns)

	w := startWebhook(t, ctx, "cabundle", harness.WebhookOptions{
		Binary: podiamBin, Kubeconfig: cluster.Kubeconfig(), Namespace: ns, Dir: t.TempDir(), SelfManaged: true,
		Args: []string{"--webhook-config-name=" + name, "--cert-secret-name=" + secret, "--cert-check-interval=1h"},
	})
	addr := w.Addr()

	// repaired reports whether the caBundle trusts, first, the CAs of the
	// Secret and the served certificate is the Secret's.
	repaired := func(t *testing.T) (bool, string) {
		cfg, err := mwcs.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		s, err := secrets.Get(ctx, secret, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		if _, err := tls.X509KeyPair(s.Data["tls.crt"], s.Data["tls.key"]); err != nil {
			return false, "secret: " + err.Error()
		}
		ca := cfgCABundle(cfg)
		if len(s.Data["ca.crt"]) == 0 || !bytes.HasPrefix(ca, s.Data["ca.crt"]) {
			return false, fmt.Sprintf("caBundle (%d bytes) does not start with the Secret's ca.crt", len(ca))
		}
		leaf := leafCert(t, addr)
		if !bytes.Equal(leaf.Raw, parseCerts(t, s.Data["tls.crt"])[0].Raw) {
			return false, "served certificate is not the Secret's"
		}
		if err := verifyLeaf(leaf, ca); err != nil {
			return false, "served certificate does not verify against the caBundle: " + err.Error()
		}
		return true, ""
	}
	waitRepaired := func(t *testing.T, what string) {
		t.Helper()
		start := time.Now()
		testutil.Eventually(t, repairWithin, 50*time.Millisecond, "podiam to repair "+what, func() (bool, string) { return repaired(t) })
		t.Logf("%s repaired in %v", what, time.Since(start).Round(time.Millisecond))
	}
	// The API server loads a new caBundle asynchronously: retry until a pod
	// is admitted, and mutated, over TLS.
	waitMutated := func(t *testing.T) {
		t.Helper()
		testutil.Eventually(t, 20*time.Second, 100*time.Millisecond, "a pod to be mutated over TLS", func() (bool, string) {
			p, err := client.CoreV1().Pods(ns).Create(ctx, simplePod("app"), metav1.CreateOptions{})
			if err != nil {
				return false, err.Error()
			}
			return roleOf(p) == role, "unmutated pod " + p.Name
		})
	}

	// Registered after podiam started, without a caBundle, as a GitOps tool
	// applying the manifests would.
	registerIsolated(t, ctx, ns, harness.Registration{Name: name, URL: w.URL(), FailurePolicy: admissionregistrationv1.Fail})
	waitRepaired(t, "a registration without caBundle")
	waitMutated(t)

	otherCA, err := certs.NewBundle(certs.Policy{CAValidity: time.Hour, CertValidity: time.Hour, DNSNames: []string{"other"}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	setCABundle := func(ca []byte) func(t *testing.T) {
		return func(t *testing.T) {
			cfg, err := mwcs.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			cfg.Webhooks[0].ClientConfig.CABundle = ca
			if _, err := mwcs.Update(ctx, cfg, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	steps := []struct {
		name   string
		change func(t *testing.T)
	}{
		{"caBundle emptied", setCABundle(nil)},
		{"caBundle garbage", setCABundle([]byte("garbage"))},
		{"caBundle another CA", setCABundle(otherCA.CABundle())},
		{"secret deleted", func(t *testing.T) {
			if err := secrets.Delete(ctx, secret, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}},
	}
	// In order, on the one webhook process: each step starts from a repaired
	// state.
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			before, err := secrets.Get(ctx, secret, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			st.change(t)
			waitRepaired(t, st.name)
			if st.name == "secret deleted" {
				after, err := secrets.Get(ctx, secret, metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if after.UID == before.UID {
					t.Fatal("the Secret was not recreated")
				}
			}
			waitMutated(t)
		})
	}

	// Each change led to one write of the caBundle, the initial one included:
	// the events of podiam's own writes do not cause more.
	const msg = "wrote caBundle into webhook configuration"
	if got, want := strings.Count(w.Logs(), msg), 1+len(steps); got != want {
		t.Errorf("podiam logged %q %d times, want %d (one per change)", msg, got, want)
	}
}
