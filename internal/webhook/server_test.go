package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/podiam/podiam/internal/certs"
	"github.com/podiam/podiam/internal/metrics"
	"github.com/podiam/podiam/test/testutil"
)

var silenceControllerRuntime sync.Once

// testCert is a serving certificate for podiam.podiam.svc, localhost and
// 127.0.0.1, and the CA that signed it.
type testCert struct {
	certPEM, keyPEM []byte
	cert, ca        *x509.Certificate
}

func newTestCert(t *testing.T) testCert {
	t.Helper()
	b, err := certs.NewBundle(certs.Policy{CAValidity: time.Hour, CertValidity: time.Hour,
		DNSNames: []string{"podiam.podiam.svc", "localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	data, err := b.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return testCert{certPEM: data[certs.KeyTLSCert], keyPEM: data[certs.KeyTLSKey], cert: b.Cert, ca: b.CAs[0]}
}

// writeAtomic replaces path in one rename, as cert-manager's writers and
// kubectl cp do.
func writeAtomic(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// testServer is a running Server on loopback listeners.
type testServer struct {
	addr, metricsAddr string
	roots             *x509.CertPool
	cert              testCert // the serving certificate it starts with
	certPath, keyPath string
	cw                *certwatcher.CertWatcher
	handler           *Handler
	metrics           *metrics.Webhook // the handler's and the Server's
	cancel            context.CancelFunc
	done              chan error // Serve's result
}

type serverOpts struct {
	mutate  func(h *Handler) http.Handler // wraps the handler; nil serves it directly
	checks  []ReadyCheck
	certDir func(t *testing.T, c testCert) (certPath, keyPath string) // nil: two plain files
	tls     func(cfg *tls.Config)                                     // adjusts the TLS configuration
	server  func(s *Server)                                           // adjusts the Server before it serves
}

func startServer(t *testing.T, o serverOpts) *testServer {
	t.Helper()
	silenceControllerRuntime.Do(func() { ctrllog.SetLogger(logr.Discard()) })
	c := newTestCert(t)
	var certPath, keyPath string
	if o.certDir != nil {
		certPath, keyPath = o.certDir(t, c)
	} else {
		dir := t.TempDir()
		certPath, keyPath = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
		writeAtomic(t, certPath, c.certPEM)
		writeAtomic(t, keyPath, c.keyPEM)
	}
	cw, err := certwatcher.New(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	// A long poll interval: a reload the test sees comes from fsnotify.
	cw = cw.WithWatchInterval(time.Hour)
	tlsCfg, err := TLSConfig("1.2", "", cw.GetCertificate)
	if err != nil {
		t.Fatal(err)
	}
	if o.tls != nil {
		o.tls(tlsCfg)
	}
	reg := prometheus.NewRegistry()
	m := metrics.NewWebhook(reg)
	h, _ := testHandler(t, func(o *HandlerOptions) { o.Logger, o.Metrics = discardLogger(), m })
	var mutate http.Handler = h
	if o.mutate != nil {
		mutate = o.mutate(h)
	}
	ln, mln := listenPair(t)
	srv := &Server{Mutate: mutate, TLS: tlsCfg, Gatherer: reg, Checks: o.checks, ShutdownTimeout: 10 * time.Second, Logger: discardLogger(), Metrics: m}
	if o.server != nil {
		o.server(srv)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{
		addr: ln.Addr().String(), metricsAddr: mln.Addr().String(), roots: x509.NewCertPool(), cert: c,
		certPath: certPath, keyPath: keyPath, cw: cw, handler: h, metrics: m, cancel: cancel, done: make(chan error, 1),
	}
	ts.roots.AddCert(c.ca)
	cwDone := make(chan struct{})
	go func() {
		defer close(cwDone)
		if err := cw.Start(ctx); err != nil {
			t.Errorf("certwatcher: %v", err)
		}
	}()
	go func() { ts.done <- srv.Serve(ctx, ln, mln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-ts.done:
		case <-time.After(15 * time.Second):
			t.Error("Serve did not return after the context was cancelled")
		}
		<-cwDone
	})
	return ts
}

// client returns an HTTPS client trusting the test certificates, with its own
// connection pool.
func (ts *testServer) client(h2 bool) *http.Client {
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: ts.roots, ServerName: "podiam.podiam.svc"},
		ForceAttemptHTTP2: h2,
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func (ts *testServer) url(path string) string { return "https://" + ts.addr + path }

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	b := readBody(t, resp, err)
	return resp.StatusCode, string(b)
}

// readBody returns the whole body of resp, the answer to a request that
// returned err; it fails t if the request or the read failed.
func readBody(t *testing.T, resp *http.Response, err error) []byte {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// eventually polls cond every 10ms until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, within, 10*time.Millisecond, what, func() (bool, string) { return cond(), "" })
}

func postMutate(t *testing.T, c *http.Client, url string, body []byte) (*http.Response, admissionv1.AdmissionReview) {
	t.Helper()
	resp, err := c.Post(url, "application/json", bytes.NewReader(body))
	b := readBody(t, resp, err)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	var rv admissionv1.AdmissionReview
	if err := json.Unmarshal(b, &rv); err != nil || rv.Response == nil {
		t.Fatalf("response %s: %v", b, err)
	}
	return resp, rv
}

func TestServerMutateOverTLS(t *testing.T) {
	ts := startServer(t, serverOpts{})
	body := reviewBody(t, testPod(), reviewOpts{})
	for _, tc := range []struct {
		name      string
		h2        bool
		wantProto string
	}{{"HTTP/1.1", false, "HTTP/1.1"}, {"HTTP/2", true, "HTTP/2.0"}} {
		t.Run(tc.name, func(t *testing.T) {
			c := ts.client(tc.h2)
			resp, rv := postMutate(t, c, ts.url("/mutate"), body)
			if resp.Proto != tc.wantProto {
				t.Errorf("protocol %s, want %s", resp.Proto, tc.wantProto)
			}
			if resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
				t.Errorf("TLS state %+v", resp.TLS)
			}
			if !rv.Response.Allowed || rv.Response.Patch == nil {
				t.Errorf("want a patch: %+v", rv.Response)
			}
			pod := applyPatch(t, requestObject(t, body), rv.Response.Patch)
			if got := envOf(pod.Spec.Containers[0])["AWS_ROLE_ARN"]; got != testAppRoleARN {
				t.Errorf("AWS_ROLE_ARN %q", got)
			}
		})
	}
	t.Run("TLS 1.1 refused", func(t *testing.T) {
		conn, err := tls.Dial("tcp", ts.addr, &tls.Config{RootCAs: ts.roots, ServerName: "localhost", MaxVersion: tls.VersionTLS11})
		if err == nil {
			conn.Close()
			t.Fatal("TLS 1.1 handshake succeeded")
		}
	})
	t.Run("plain HTTP on the TLS port", func(t *testing.T) {
		resp, err := http.Get("http://" + ts.addr + "/healthz")
		if err == nil {
			defer resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Fatal("plain HTTP served on the TLS port")
			}
		}
	})
	t.Run("metrics port has no /mutate", func(t *testing.T) {
		resp, err := http.Post("http://"+ts.metricsAddr+"/mutate", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("POST /mutate on the metrics port: %d, want 404", resp.StatusCode)
		}
	})
}

func TestServerHealthAndReadiness(t *testing.T) {
	var cacheSynced, certLoaded atomic.Bool
	certLoaded.Store(true)
	ts := startServer(t, serverOpts{checks: []ReadyCheck{
		{Name: "serviceaccount-cache", Ready: cacheSynced.Load},
		{Name: "certificate", Ready: certLoaded.Load},
	}})
	tlsClient := ts.client(false)
	plain := &http.Client{Timeout: 10 * time.Second}
	bases := map[string]*http.Client{ts.url(""): tlsClient, "http://" + ts.metricsAddr: plain}

	for base, c := range bases {
		if code, body := get(t, c, base+"/healthz"); code != http.StatusOK || body != "ok\n" {
			t.Errorf("%s/healthz = %d %q, want 200 ok", base, code, body)
		}
		code, body := get(t, c, base+"/readyz")
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "serviceaccount-cache") || strings.Contains(body, "certificate") {
			t.Errorf("%s/readyz = %d %q, want 503 naming serviceaccount-cache only", base, code, body)
		}
	}
	certLoaded.Store(false)
	if code, body := get(t, plain, "http://"+ts.metricsAddr+"/readyz"); code != http.StatusServiceUnavailable ||
		!strings.Contains(body, "not ready: serviceaccount-cache, certificate") {
		t.Errorf("/readyz = %d %q, want 503 naming both checks", code, body)
	}
	// Liveness does not depend on readiness.
	if code, _ := get(t, plain, "http://"+ts.metricsAddr+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d while not ready", code)
	}

	cacheSynced.Store(true)
	certLoaded.Store(true)
	for base, c := range bases {
		eventually(t, 5*time.Second, base+"/readyz turns 200", func() bool {
			code, body := get(t, c, base+"/readyz")
			return code == http.StatusOK && body == "ok\n"
		})
	}
}

func TestServerMetrics(t *testing.T) {
	ts := startServer(t, serverOpts{})
	postMutate(t, ts.client(false), ts.url("/mutate"), reviewBody(t, testPod(), reviewOpts{}))
	code, body := get(t, &http.Client{Timeout: 10 * time.Second}, "http://"+ts.metricsAddr+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{
		`podiam_webhook_request_duration_seconds_bucket{le="5e-05"}`,
		`podiam_webhook_request_duration_seconds_count 1`,
		`podiam_webhook_requests_total{code="200"} 1`,
		`podiam_webhook_pods_total{mode="irsa",patched="true"} 1`,
		`go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if code, _ := get(t, ts.client(false), ts.url("/metrics")); code != http.StatusNotFound {
		t.Errorf("/metrics on the TLS port = %d, want 404", code)
	}
}

// servingCert opens a new TLS connection and returns the certificate the
// server presents.
func servingCert(t *testing.T, ts *testServer) *x509.Certificate {
	t.Helper()
	conn, err := tls.Dial("tcp", ts.addr, &tls.Config{RootCAs: ts.roots, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

// kubeletSecretDir lays out a Secret volume as the kubelet does: tls.crt and
// tls.key are symlinks into ..data, itself a symlink to a timestamped directory.
func kubeletSecretDir(t *testing.T, c testCert) (string, string) {
	dir := t.TempDir()
	writeSecretVersion(t, dir, "..2026_01_01_00_00_00.1", c)
	for _, f := range []string{"tls.crt", "tls.key"} {
		if err := os.Symlink(filepath.Join("..data", f), filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
}

func writeSecretVersion(t *testing.T, dir, version string, c testCert) {
	t.Helper()
	vdir := filepath.Join(dir, version)
	if err := os.Mkdir(vdir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vdir, "tls.crt"), c.certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vdir, "tls.key"), c.keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(version, tmp); err != nil {
		t.Fatal(err)
	}
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestServerCertificateReload(t *testing.T) {
	for _, tc := range []struct {
		name    string
		certDir func(t *testing.T, c testCert) (string, string)
		rotate  func(t *testing.T, ts *testServer, c testCert)
	}{{
		name: "files replaced by rename",
		rotate: func(t *testing.T, ts *testServer, c testCert) {
			writeAtomic(t, ts.keyPath, c.keyPEM)
			writeAtomic(t, ts.certPath, c.certPEM)
		},
	}, {
		name:    "kubelet secret volume symlink swap",
		certDir: kubeletSecretDir,
		rotate: func(t *testing.T, ts *testServer, c testCert) {
			writeSecretVersion(t, filepath.Dir(ts.certPath), "..2026_01_02_00_00_00.2", c)
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, serverOpts{certDir: tc.certDir})
			next := newTestCert(t)
			ts.roots.AddCert(next.ca)
			body := reviewBody(t, testPod(), reviewOpts{})

			// A keep-alive connection opened before the rotation.
			old := ts.client(false)
			resp, _ := postMutate(t, old, ts.url("/mutate"), body)
			if !resp.TLS.PeerCertificates[0].Equal(ts.cert.cert) {
				t.Fatal("before the rotation, the server does not present its first certificate")
			}

			tc.rotate(t, ts, next)
			// The watcher polls once an hour here, so this is fsnotify at work.
			eventually(t, 8*time.Second, "new connections see the new certificate", func() bool {
				return servingCert(t, ts).Equal(next.cert)
			})
			resp, _ = postMutate(t, ts.client(false), ts.url("/mutate"), body)
			if !resp.TLS.PeerCertificates[0].Equal(next.cert) {
				t.Error("a new client does not see the new certificate")
			}

			// The old connection still works, on the old certificate.
			var reused bool
			req, err := http.NewRequestWithContext(
				httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}),
				http.MethodPost, ts.url("/mutate"), bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			resp, err = old.Do(req)
			if err != nil {
				t.Fatalf("request on the pre-rotation connection: %v", err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if first := resp.TLS.PeerCertificates[0].Equal(ts.cert.cert); resp.StatusCode != http.StatusOK || !reused || !first {
				t.Errorf("pre-rotation connection: status %d reused %v first certificate %v; want 200 on the same connection with the first certificate",
					resp.StatusCode, reused, first)
			}
		})
	}
}

func TestServerGracefulShutdown(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	ts := startServer(t, serverOpts{mutate: func(h *Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(entered)
			<-release
			h.ServeHTTP(w, r)
		})
	}})
	type result struct {
		code int
		body []byte
		err  error
	}
	results := make(chan result, 1)
	go func() {
		resp, err := ts.client(false).Post(ts.url("/mutate"), "application/json", bytes.NewReader(reviewBody(t, testPod(), reviewOpts{})))
		if err != nil {
			results <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		results <- result{resp.StatusCode, b, err}
	}()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("request did not reach the handler")
	}
	ts.cancel()
	// Shutdown has begun once the listener is closed.
	eventually(t, 5*time.Second, "listener closed", func() bool {
		c, err := net.DialTimeout("tcp", ts.addr, time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	select {
	case err := <-ts.done:
		t.Fatalf("Serve returned %v with a request in flight", err)
	default:
	}
	close(release)
	r := <-results
	if r.err != nil || r.code != http.StatusOK {
		t.Fatalf("in-flight request: %d %v %s", r.code, r.err, r.body)
	}
	var rv admissionv1.AdmissionReview
	if err := json.Unmarshal(r.body, &rv); err != nil || rv.Response == nil || rv.Response.Patch == nil {
		t.Errorf("in-flight response %s: %v", r.body, err)
	}
	select {
	case err := <-ts.done:
		if err != nil {
			t.Errorf("Serve returned %v, want nil", err)
		}
		ts.done <- err // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after the drain")
	}
}

func TestServerServeFailsWhenAListenerFails(t *testing.T) {
	silenceControllerRuntime.Do(func() { ctrllog.SetLogger(logr.Discard()) })
	ln, mln := listenPair(t)
	mln.Close() // the metrics server's Accept fails at once
	h, _ := testHandler(t)
	srv := &Server{Mutate: h, TLS: &tls.Config{}, Gatherer: prometheus.NewRegistry(), Logger: discardLogger()}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background(), ln, mln) }()
	select {
	case err := <-done:
		if err == nil || !errors.Is(err, net.ErrClosed) || !strings.Contains(err.Error(), "serving") {
			t.Errorf("Serve = %v, want a serving error wrapping net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return when a listener failed")
	}
	// The admission listener was shut down too.
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Error("admission listener still open after Serve returned")
	}
}

func TestServerProfilingIsOptIn(t *testing.T) {
	for _, on := range []bool{false, true} {
		s := &Server{Gatherer: prometheus.NewRegistry(), Profiling: on}
		rec := httptest.NewRecorder()
		s.MetricsRoutes().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/pprof/heap?debug=1", nil))
		want := http.StatusNotFound
		if on {
			want = http.StatusOK
		}
		if rec.Code != want {
			t.Errorf("Profiling=%v: /debug/pprof/heap = %d, want %d", on, rec.Code, want)
		}
	}
}

// rawServer is a Server started on fresh loopback listeners with a
// self-signed certificate, for tests that need their own Server settings.
type rawServer struct {
	addr, metricsAddr string
	cert              testCert
	cancel            context.CancelFunc
	done              chan error
}

// startRawServer serves srv (its TLS built from suites) until the returned
// server's cancel is called; Serve's result arrives on done.
func startRawServer(t *testing.T, srv *Server, suites string) *rawServer {
	t.Helper()
	ln, mln := listenPair(t)
	c := newTestCert(t)
	pair, err := tls.X509KeyPair(c.certPEM, c.keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if srv.TLS, err = TLSConfig("1.2", suites, func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &pair, nil }); err != nil {
		t.Fatal(err)
	}
	srv.Gatherer, srv.Logger = prometheus.NewRegistry(), discardLogger()
	ctx, cancel := context.WithCancel(context.Background())
	rs := &rawServer{addr: ln.Addr().String(), metricsAddr: mln.Addr().String(), cert: c, cancel: cancel, done: make(chan error, 1)}
	go func() { rs.done <- srv.Serve(ctx, ln, mln) }()
	return rs
}

// With a shutdown delay the server keeps answering, with /readyz failing, so
// the API server can stop routing to it before the listener closes.
func TestServerShutdownDelayFailsReadinessFirst(t *testing.T) {
	rs := startRawServer(t, &Server{Mutate: http.NotFoundHandler(), ShutdownDelay: 2 * time.Second}, "")
	client := &http.Client{Timeout: 5 * time.Second}
	readyz := "http://" + rs.metricsAddr + "/readyz"
	eventually(t, 5*time.Second, "ready", func() bool { code, _ := get(t, client, readyz); return code == http.StatusOK })

	rs.cancel()
	eventually(t, 2*time.Second, "readyz fails while draining", func() bool {
		code, body := get(t, client, readyz)
		return code == http.StatusServiceUnavailable && strings.Contains(body, "shutting down")
	})
	select {
	case err := <-rs.done:
		t.Fatalf("Serve returned before the shutdown delay: %v", err)
	default:
	}
	select {
	case err := <-rs.done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after the shutdown delay")
	}
}

// A cipher suite list without an HTTP/2-capable suite still serves (HTTP/1.1).
func TestServerServesWithAES256OnlySuites(t *testing.T) {
	const suite = "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"
	rs := startRawServer(t, &Server{Mutate: http.NotFoundHandler()}, suite)
	defer func() {
		rs.cancel()
		if err := <-rs.done; err != nil {
			t.Fatalf("Serve: %v", err)
		}
	}()
	roots := x509.NewCertPool()
	roots.AddCert(rs.cert.ca)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: roots, ServerName: "localhost", MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}}, ForceAttemptHTTP2: true}}
	eventually(t, 5*time.Second, "healthz over TLS 1.2 with "+suite, func() bool {
		code, _ := get(t, client, "https://"+rs.addr+"/healthz")
		return code == http.StatusOK
	})
}

// listenPair opens the admission and metrics listeners on free loopback ports.
func listenPair(t *testing.T) (net.Listener, net.Listener) {
	t.Helper()
	var lns [2]net.Listener
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i] = ln
	}
	return lns[0], lns[1]
}

// Path moves the handler (podiam auth serves EKS Auth's API under
// /clusters/), and BodyLimit lowers the largest body it may be sent, both
// without touching the probes.
func TestServerPathAndBodyLimit(t *testing.T) {
	served := func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "served "+r.URL.Path) }
	tests := []struct {
		name    string
		path    string
		maxBody int64
		method  string
		url     string
		body    int64 // declared length of a body of that many bytes
		want    int
	}{
		{"default path", "", 0, http.MethodPost, "/mutate", 100, http.StatusOK},
		{"default path, other URL", "", 0, http.MethodPost, "/clusters/c/assume-role-for-pod-identity", 100, http.StatusNotFound},
		{"subtree", "/clusters/", 0, http.MethodPost, "/clusters/c/assume-role-for-pod-identity", 100, http.StatusOK},
		{"subtree, /mutate not served", "/clusters/", 0, http.MethodPost, "/mutate", 100, http.StatusNotFound},
		{"subtree, probes kept", "/clusters/", 0, http.MethodGet, "/healthz", 0, http.StatusOK},
		{"default limit", "", 0, http.MethodPost, "/mutate", MaxBodyBytes, http.StatusOK},
		{"default limit exceeded", "", 0, http.MethodPost, "/mutate", MaxBodyBytes + 1, http.StatusRequestEntityTooLarge},
		{"lower limit", "/clusters/", 64 << 10, http.MethodPost, "/clusters/c/x", 64 << 10, http.StatusOK},
		{"lower limit exceeded", "/clusters/", 64 << 10, http.MethodPost, "/clusters/c/x", 64<<10 + 1, http.StatusRequestEntityTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Server{Mutate: http.HandlerFunc(served), Path: tt.path, BodyLimit: tt.maxBody}
			req := httptest.NewRequest(tt.method, tt.url, bytes.NewReader(make([]byte, tt.body)))
			rec := httptest.NewRecorder()
			s.Routes().ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Fatalf("%s %s (%d bytes): %d %q, want %d", tt.method, tt.url, tt.body, rec.Code, rec.Body.String(), tt.want)
			}
			if rec.Code == http.StatusOK && tt.method == http.MethodPost && rec.Body.String() != "served "+tt.url {
				t.Errorf("body %q: the handler did not serve it", rec.Body.String())
			}
		})
	}
}

// Reject writes the answers the limits give before Mutate sees a request (a
// body declared too large, too many in flight), so that podiam auth can give
// them in EKS Auth's format; without it they are http.Error's plain text.
func TestServerReject(t *testing.T) {
	const limit = 64 << 10
	custom := func(w http.ResponseWriter, status int, msg string) {
		w.Header().Set("X-Rejected", strconv.Itoa(status))
		w.WriteHeader(status)
		_, _ = io.WriteString(w, "custom: "+msg)
	}
	tests := []struct {
		name       string
		reject     func(http.ResponseWriter, int, string)
		body       int64
		busy       bool // another request holds the whole budget
		want       int
		wantCustom bool
	}{
		{"too large, custom", custom, limit + 1, false, http.StatusRequestEntityTooLarge, true},
		{"overloaded, custom", custom, 100, true, http.StatusTooManyRequests, true},
		{"too large, default", nil, limit + 1, false, http.StatusRequestEntityTooLarge, false},
		{"overloaded, default", nil, 100, true, http.StatusTooManyRequests, false},
		{"served, custom unused", custom, 100, false, http.StatusOK, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			entered, release := make(chan struct{}), make(chan struct{})
			s := &Server{
				Mutate: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.Header.Get("X-Hold") != "" {
						close(entered)
						<-release
					}
				}),
				Path: "/clusters/", BodyLimit: limit, MaxInFlightBytes: limit, Reject: tt.reject,
			}
			h := s.Routes()
			done := make(chan struct{})
			defer func() { close(release); <-done }()
			if tt.busy {
				hold := httptest.NewRequest(http.MethodPost, "/clusters/c/x", bytes.NewReader(make([]byte, limit)))
				hold.Header.Set("X-Hold", "1")
				go func() { defer close(done); h.ServeHTTP(httptest.NewRecorder(), hold) }()
				<-entered
			} else {
				close(done)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/clusters/c/x", bytes.NewReader(make([]byte, tt.body))))
			if rec.Code != tt.want {
				t.Fatalf("status %d %q, want %d", rec.Code, rec.Body.String(), tt.want)
			}
			gotCustom := rec.Header().Get("X-Rejected") == strconv.Itoa(tt.want) && strings.HasPrefix(rec.Body.String(), "custom: ")
			if gotCustom != tt.wantCustom {
				t.Errorf("answered by Reject: %v, want %v (%q)", gotCustom, tt.wantCustom, rec.Body.String())
			}
			if tt.want == http.StatusTooManyRequests && rec.Header().Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
		})
	}
}
