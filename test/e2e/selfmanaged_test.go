package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	certutil "k8s.io/client-go/util/cert"

	"github.com/podiam/podiam/test/harness"
	"github.com/podiam/podiam/test/testutil"
)

// Self-managed certificate lifetimes: short enough that the serving
// certificate and the CA both rotate within the test.
const (
	smCertValidity  = 20 * time.Second
	smCAValidity    = 60 * time.Second
	smCheckInterval = time.Second
)

// TestSelfManagedCertificates: podiam creates its CA and serving certificate,
// writes the caBundle into a registration created without one, rotates the
// serving certificate and the CA while pods keep being admitted, replaces a
// corrupted Secret, and two replicas sharing the Secret serve the same
// certificate without fighting over it.
func TestSelfManagedCertificates(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 3*time.Minute)
	const (
		secret = "e2e-selfmanaged-tls"
		role   = "arn:aws:iam::111122223333:role/selfmanaged"
	)
	name := testutil.UniqueName("e2e-selfmanaged") // the registration, its namespace and the namespace's label
	ns := name
	newNamespace(t, ctx, ns, map[string]string{isolatedLabel: name})
	newServiceAccount(t, ctx, ns, "app", map[string]string{annoRoleARN: role})
	secrets := client.CoreV1().Secrets(ns)
	mwcs := client.AdmissionregistrationV1().MutatingWebhookConfigurations()

	ports, err := testutil.FreePorts(4)
	if err != nil {
		t.Fatal(err)
	}
	opts := func(port, metricsPort int) harness.WebhookOptions {
		return harness.WebhookOptions{
			Binary: podiamBin, Kubeconfig: cluster.Kubeconfig(), Namespace: ns, Dir: t.TempDir(),
			SelfManaged: true, Port: port, MetricsPort: metricsPort,
			Args: []string{
				"--webhook-config-name=" + name,
				"--cert-secret-name=" + secret,
				"--cert-validity=" + smCertValidity.String(),
				"--ca-validity=" + smCAValidity.String(),
				"--cert-check-interval=" + smCheckInterval.String(),
			},
		}
	}
	o1 := opts(ports[0], ports[1])

	// Registered first, without a caBundle: podiam must write it.
	registerIsolated(t, ctx, name, harness.Registration{
		Name: name, URL: fmt.Sprintf("https://127.0.0.1:%d/mutate", o1.Port), FailurePolicy: admissionregistrationv1.Fail,
	})
	if cfg, err := mwcs.Get(ctx, name, metav1.GetOptions{}); err != nil || len(cfg.Webhooks[0].ClientConfig.CABundle) != 0 {
		t.Fatalf("registration: %v, caBundle %q", err, cfgCABundle(cfg))
	}

	w1 := startWebhook(t, ctx, "self-managed #1", o1)
	addr1 := fmt.Sprintf("127.0.0.1:%d", o1.Port)

	// The caBundle is written and is the Secret's CA.
	var caBundle []byte
	testutil.Eventually(t, 15*time.Second, 100*time.Millisecond, "podiam to write the caBundle", func() (bool, string) {
		cfg, err := mwcs.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		caBundle = cfgCABundle(cfg)
		s, err := secrets.Get(ctx, secret, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return len(caBundle) > 0 && bytes.Equal(caBundle, s.Data["ca.crt"]), fmt.Sprintf("caBundle %d bytes", len(caBundle))
	})
	cas := parseCerts(t, caBundle)
	firstCA := cas[0]
	if !firstCA.IsCA {
		t.Fatalf("caBundle's first certificate is not a CA: %v", firstCA.Subject)
	}
	leaf := leafCert(t, addr1)
	if err := verifyLeaf(leaf, caBundle); err != nil {
		t.Fatalf("served certificate does not verify against the caBundle: %v", err)
	}
	// The dashboards and the expiry alert read the served certificate's
	// NotAfter and the readiness checks from /metrics.
	text, err := w1.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := metricSum(text, "podiam_webhook_certificate_expiry_timestamp_seconds"); got != float64(leaf.NotAfter.Unix()) {
		t.Errorf("podiam_webhook_certificate_expiry_timestamp_seconds = %v, want the served certificate's NotAfter %v", got, leaf.NotAfter.Unix())
	}
	if got := metricSum(text, "podiam_webhook_ready", `check="certificate"`); got != 1 {
		t.Errorf(`podiam_webhook_ready{check="certificate"} = %v, want 1`, got)
	}

	// The API server trusts podiam's CA: pods get mutated.
	mutated := func(p *corev1.Pod) bool { return roleOf(p) == role }
	testutil.Eventually(t, 20*time.Second, 100*time.Millisecond, "pods to be mutated through the self-managed certificate", func() (bool, string) {
		p := createPod(t, ctx, client, ns, simplePod("app"))
		return mutated(p), "unmutated pod " + p.Name
	})

	// Keep creating pods through every rotation below; none may fail.
	var podsOK, podsBad atomic.Int64
	var okTimes []time.Time // guarded by badMu
	var badMu sync.Mutex
	var bad []string
	stopPods := make(chan struct{})
	var podsDone sync.WaitGroup
	podsDone.Go(func() {
		for {
			select {
			case <-stopPods:
				return
			case <-time.After(300 * time.Millisecond):
			}
			p, err := client.CoreV1().Pods(ns).Create(ctx, simplePod("app"), metav1.CreateOptions{})
			switch {
			case err != nil:
				podsBad.Add(1)
				badMu.Lock()
				bad = append(bad, time.Now().Format("15:04:05.000")+" "+err.Error())
				badMu.Unlock()
			case !mutated(p):
				podsBad.Add(1)
				badMu.Lock()
				bad = append(bad, time.Now().Format("15:04:05.000")+" unmutated pod "+p.Name)
				badMu.Unlock()
			default:
				podsOK.Add(1)
				badMu.Lock()
				okTimes = append(okTimes, time.Now())
				badMu.Unlock()
			}
		}
	})
	stopPodCreator := func() {
		select {
		case <-stopPods:
		default:
			close(stopPods)
		}
		podsDone.Wait()
	}
	t.Cleanup(stopPodCreator)

	// A second replica on the same Secret and registration.
	o2 := opts(ports[2], ports[3])
	startWebhook(t, ctx, "self-managed #2", o2)
	addr2 := fmt.Sprintf("127.0.0.1:%d", o2.Port)

	// Count the Secret's updates while both replicas run.
	s, err := secrets.Get(ctx, secret, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	watcher, err := secrets.Watch(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("metadata.name", secret).String(), ResourceVersion: s.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	var secretWrites atomic.Int64
	var watchDone sync.WaitGroup
	watchDone.Go(func() {
		for ev := range watcher.ResultChan() {
			if ev.Type == watch.Modified || ev.Type == watch.Added || ev.Type == watch.Deleted {
				secretWrites.Add(1)
			}
		}
	})
	t.Cleanup(func() { watcher.Stop(); watchDone.Wait() })
	replicasSince := time.Now()

	// Both replicas serve the same certificate, give or take one check
	// interval, the serving certificate rotates and the CA rotates.
	var (
		lastSame      = time.Now()
		maxApart      time.Duration
		leafRotations int
		prevLeaf      = leaf
		caRotated     bool
		caRotatedAt   time.Time
		deadline      = time.Now().Add(smCAValidity*2/3 + 30*time.Second)
	)
	for time.Now().Before(deadline) && !(caRotated && leafRotations >= 2 && time.Since(replicasSince) > 20*time.Second) {
		l1, l2 := leafCert(t, addr1), leafCert(t, addr2)
		if bytes.Equal(l1.Raw, l2.Raw) {
			lastSame = time.Now()
		} else if apart := time.Since(lastSame); apart > maxApart {
			maxApart = apart
		}
		if !bytes.Equal(l1.Raw, prevLeaf.Raw) {
			leafRotations++
			prevLeaf = l1
		}
		if !caRotated {
			cfg, err := mwcs.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if b := parseCerts(t, cfgCABundle(cfg)); !b[0].Equal(firstCA) {
				caRotated, caRotatedAt = true, time.Now()
				t.Logf("CA rotated after %v: caBundle holds %d CAs", time.Since(firstCA.NotBefore.Add(time.Minute)).Round(time.Second), len(b))
				if len(b) < 2 || !b[1].Equal(firstCA) {
					t.Errorf("after a CA rotation the caBundle must still trust the old CA (certificates in use): got %d CAs", len(b))
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	if leafRotations < 2 {
		t.Errorf("serving certificate rotated %d times, want at least 2 (validity %v)", leafRotations, smCertValidity)
	}
	if !caRotated {
		t.Errorf("CA did not rotate within %v (validity %v)", time.Since(firstCA.NotBefore.Add(time.Minute)).Round(time.Second), smCAValidity)
	}
	// One check interval of lag, plus slack for a loaded machine.
	if limit := 3*smCheckInterval + time.Second; maxApart > limit {
		t.Errorf("the two replicas served different certificates for %v, want at most %v", maxApart.Round(time.Millisecond), limit)
	}
	// Both converge on the Secret's certificate, which chains to the caBundle.
	// (Not fatal: the checks below still say something when this fails.)
	for start := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		s, err := secrets.Get(ctx, secret, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		sc := parseCerts(t, s.Data["tls.crt"])[0]
		l1, l2 := leafCert(t, addr1), leafCert(t, addr2)
		if sc.Equal(l1) && sc.Equal(l2) {
			break
		}
		if time.Since(start) > 5*smCheckInterval {
			t.Errorf("after %v the replicas still do not both serve the Secret's certificate: Secret serial %s, replicas %s and %s",
				time.Since(start).Round(time.Millisecond), sc.SerialNumber, l1.SerialNumber, l2.SerialNumber)
			break
		}
	}
	cfg, err := mwcs.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyLeaf(leafCert(t, addr1), cfgCABundle(cfg)); err != nil {
		t.Errorf("served certificate does not verify against the current caBundle: %v", err)
	}

	// Churn: the Secret changes about once per rotation, not once per check.
	window := time.Since(replicasSince)
	renewEvery := smCertValidity * 2 / 3
	expected := int64(window/renewEvery) + 2 // + the CA rotation, + one in flight
	if writes := secretWrites.Load(); writes > 2*expected {
		t.Errorf("Secret written %d times in %v by two replicas; expected about %d (one per rotation, cert renewed every %v)",
			writes, window.Round(time.Second), expected, renewEvery)
	} else {
		t.Logf("Secret written %d times in %v (expected about %d)", writes, window.Round(time.Second), expected)
	}

	if caRotated {
		testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, "pods to be admitted after the CA rotation", func() (bool, string) {
			badMu.Lock()
			defer badMu.Unlock()
			n := 0
			for _, at := range okTimes {
				if at.After(caRotatedAt) {
					n++
				}
			}
			return n >= 3, fmt.Sprintf("%d pods admitted since the CA rotated", n)
		})
	}
	stopPodCreator()
	t.Logf("pods created during rotations: %d ok, %d failed", podsOK.Load(), podsBad.Load())
	if podsBad.Load() > 0 {
		badMu.Lock()
		t.Errorf("pod creation failed during certificate rotation:\n%s", bad)
		badMu.Unlock()
	}
	if podsOK.Load() < 5 {
		t.Errorf("only %d pods created during the rotations", podsOK.Load())
	}

	// A corrupted Secret is replaced, and the processes keep running.
	s, err = secrets.Get(ctx, secret, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Data["tls.crt"] = []byte("garbage")
	if _, err := secrets.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, 100*time.Millisecond, "podiam to replace the corrupted Secret", func() (bool, string) {
		s, err := secrets.Get(ctx, secret, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		if _, err := tls.X509KeyPair(s.Data["tls.crt"], s.Data["tls.key"]); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	for _, o := range []harness.WebhookOptions{o1, o2} {
		if code := httpStatus(ctx, "http://127.0.0.1:"+strconv.Itoa(o.MetricsPort)+"/healthz"); code != http.StatusOK {
			t.Errorf("/healthz on %d after the corrupted Secret: %d", o.MetricsPort, code)
		}
	}
	testutil.Eventually(t, 10*time.Second, 200*time.Millisecond, "pods to be mutated after the Secret was replaced", func() (bool, string) {
		p, err := client.CoreV1().Pods(ns).Create(ctx, simplePod("app"), metav1.CreateOptions{})
		if err != nil {
			return false, err.Error()
		}
		return mutated(p), "unmutated pod " + p.Name
	})
}

func cfgCABundle(cfg *admissionregistrationv1.MutatingWebhookConfiguration) []byte {
	if cfg == nil || len(cfg.Webhooks) == 0 {
		return nil
	}
	return cfg.Webhooks[0].ClientConfig.CABundle
}

func parseCerts(t *testing.T, data []byte) []*x509.Certificate {
	t.Helper()
	certs, err := certutil.ParseCertsPEM(data)
	if err != nil {
		t.Fatalf("parsing PEM certificates: %v", err)
	}
	return certs
}

// leafCert returns the certificate a TLS server at addr presents.
func leafCert(t *testing.T, addr string) *x509.Certificate {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // inspecting, verified separately
	if err != nil {
		t.Fatalf("TLS dial %s: %v", addr, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

func verifyLeaf(leaf *x509.Certificate, caBundle []byte) error {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caBundle) {
		return fmt.Errorf("no CA in the bundle")
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	return err
}

func httpStatus(ctx context.Context, url string) int {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}
