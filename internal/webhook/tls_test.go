package webhook

import (
	"bytes"
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/podiam/podiam/internal/certs"
	"github.com/podiam/podiam/internal/metrics"
)

func TestParseTLSVersion(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    uint16
		wantErr bool
	}{
		{"", tls.VersionTLS12, false},
		{"1.2", tls.VersionTLS12, false},
		{"VersionTLS12", tls.VersionTLS12, false},
		{"1.3", tls.VersionTLS13, false},
		{"VersionTLS13", tls.VersionTLS13, false},
		{"1.0", 0, true},
		{"1.1", 0, true},
		{"VersionTLS10", 0, true},
		{"VersionTLS11", 0, true},
		{"1.4", 0, true},
		{"tls1.2", 0, true},
		{" 1.2", 0, true},
		{"versiontls12", 0, true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseTLSVersion(tc.in)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("ParseTLSVersion(%q) = %#x, %v; want %#x, error %v", tc.in, got, err, tc.want, tc.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), tc.in) {
				t.Errorf("error %q does not name the value", err)
			}
		})
	}
}

func TestParseCipherSuites(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		want    []uint16
		wantErr string
	}{
		{"empty", "", nil, ""},
		{"blank", "  ", nil, ""},
		{"one", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}, ""},
		{"several in order, with spaces", " TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 ,TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,  TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
			[]uint16{tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}, ""},
		{"TLS 1.3 suite name", "TLS_AES_128_GCM_SHA256", []uint16{tls.TLS_AES_128_GCM_SHA256}, ""},
		{"unknown", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_NOPE", nil, `"TLS_NOPE"`},
		{"insecure RC4", "TLS_RSA_WITH_RC4_128_SHA", nil, `"TLS_RSA_WITH_RC4_128_SHA"`},
		{"insecure 3DES", "TLS_RSA_WITH_3DES_EDE_CBC_SHA", nil, `"TLS_RSA_WITH_3DES_EDE_CBC_SHA"`},
		{"insecure CBC-SHA256", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", nil, `"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256"`},
		{"lower case", "tls_ecdhe_rsa_with_aes_128_gcm_sha256", nil, "tls_ecdhe_rsa_with_aes_128_gcm_sha256"},
		{"Go constant spelling with prefix", "tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", nil, "tls.TLS_"},
		{"empty item", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", nil, `""`},
		{"trailing comma", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,", nil, `""`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseCipherSuites(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseCipherSuites(%q) = %v, %v; want an error naming %s", tc.in, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("ParseCipherSuites(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
		})
	}
}

// Every suite Go considers secure is accepted by its IANA name; none of the
// insecure ones is.
func TestParseCipherSuitesAllKnown(t *testing.T) {
	for _, cs := range tls.CipherSuites() {
		if got, err := ParseCipherSuites(cs.Name); err != nil || !slices.Equal(got, []uint16{cs.ID}) {
			t.Errorf("%s: %v, %v", cs.Name, got, err)
		}
	}
	for _, cs := range tls.InsecureCipherSuites() {
		if got, err := ParseCipherSuites(cs.Name); err == nil {
			t.Errorf("insecure %s accepted as %v", cs.Name, got)
		}
	}
}

func TestTLSConfig(t *testing.T) {
	called := false
	getCert := func(*tls.ClientHelloInfo) (*tls.Certificate, error) { called = true; return nil, nil }
	cfg, err := TLSConfig("1.3", "TLS_AES_256_GCM_SHA384", getCert)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MinVersion != tls.VersionTLS13 || !slices.Equal(cfg.CipherSuites, []uint16{tls.TLS_AES_256_GCM_SHA384}) {
		t.Errorf("config %+v", cfg)
	}
	if !slices.Contains(cfg.NextProtos, "h2") || !slices.Contains(cfg.NextProtos, "http/1.1") {
		t.Errorf("NextProtos %v, want h2 and http/1.1", cfg.NextProtos)
	}
	if cfg.GetCertificate == nil {
		t.Fatal("no GetCertificate")
	}
	_, _ = cfg.GetCertificate(nil)
	if !called {
		t.Error("GetCertificate is not the one passed in")
	}
	if cfg.Certificates != nil || cfg.InsecureSkipVerify {
		t.Errorf("unexpected static certificates or verification settings: %+v", cfg)
	}
	for _, bad := range [][2]string{{"1.1", ""}, {"1.2", "TLS_RSA_WITH_RC4_128_SHA"}} {
		if cfg, err := TLSConfig(bad[0], bad[1], getCert); err == nil || cfg != nil {
			t.Errorf("TLSConfig(%q, %q) = %v, %v; want an error", bad[0], bad[1], cfg, err)
		}
	}
}

// HTTP/2 needs an ECDHE AES-128-GCM suite below TLS 1.3; without one the server
// must fall back to HTTP/1.1 instead of failing to start.
func TestTLSConfigHTTP2NeedsAES128GCM(t *testing.T) {
	tests := []struct {
		minVersion, suites string
		want               []string
	}{
		{"1.2", "", []string{"h2", "http/1.1"}},
		{"1.2", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", []string{"http/1.1"}},
		{"1.2", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", []string{"h2", "http/1.1"}},
		{"1.3", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", []string{"h2", "http/1.1"}},
	}
	for _, tt := range tests {
		cfg, err := TLSConfig(tt.minVersion, tt.suites, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(cfg.NextProtos, tt.want) {
			t.Errorf("TLSConfig(%s, %q).NextProtos = %q, want %q", tt.minVersion, tt.suites, cfg.NextProtos, tt.want)
		}
	}
}

// newClientCA returns a new CA that issues client certificates.
func newClientCA(t *testing.T) *certs.Bundle {
	t.Helper()
	b, err := certs.NewBundle(certs.Policy{CAValidity: time.Hour, CertValidity: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// clientCert issues a client certificate from ca, as the API server's
// admission kubeconfig holds.
func clientCert(t *testing.T, ca *certs.Bundle) tls.Certificate {
	t.Helper()
	certPEM, keyPEM, err := ca.IssueClientCert("kube-apiserver", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

func TestLoadClientCAsErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not-pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, want string
	}{
		{"missing", filepath.Join(dir, "missing"), "no such file"},
		{"no certificate", notPEM, "no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadClientCAs(tc.path, discardLogger())
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "client CA file") {
				t.Errorf("LoadClientCAs(%s) = %v, want an error about the client CA file with %q", tc.path, err, tc.want)
			}
		})
	}
}

// With --client-ca-file, /mutate answers only clients with a certificate from
// that CA; probes of the TLS port need none; a replaced file is picked up.
func TestServerClientCertificates(t *testing.T) {
	trusted, other := newClientCA(t), newClientCA(t)
	caFile := filepath.Join(t.TempDir(), "client-ca.crt")
	writeAtomic(t, caFile, trusted.CABundle())
	cas, err := LoadClientCAs(caFile, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	cas.recheck = 0 // look at the file on every handshake
	ts := startServer(t, serverOpts{
		tls:    func(cfg *tls.Config) { RequireClientCerts(cfg, cas) },
		server: func(s *Server) { s.RequireClientCert = true },
	})
	body := reviewBody(t, testPod(), reviewOpts{})
	// clientWith presents cert whatever CAs the server names as acceptable (Go's
	// client would otherwise send none rather than another CA's).
	clientWith := func(cert ...tls.Certificate) *http.Client {
		cfg := &tls.Config{RootCAs: ts.roots, ServerName: "localhost"}
		if len(cert) > 0 {
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert[0], nil }
		}
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	}
	// post returns the status of POST /mutate, or 0 if the connection failed.
	post := func(c *http.Client) int {
		resp, err := c.Post(ts.url("/mutate"), "application/json", bytes.NewReader(body))
		if err != nil {
			return 0
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}
	for _, tc := range []struct {
		name   string
		client *http.Client
		want   int
	}{
		{"no certificate", clientWith(), http.StatusForbidden},
		{"certificate from the client CA", clientWith(clientCert(t, trusted)), http.StatusOK},
		{"certificate from another CA", clientWith(clientCert(t, other)), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := post(tc.client); got != tc.want {
				t.Errorf("POST /mutate = %d, want %d (0: handshake refused)", got, tc.want)
			}
		})
	}
	if got := testutil.ToFloat64(ts.metrics.RequestsRejected.WithLabelValues(metrics.RejectClientCertificate)); got != 1 {
		t.Errorf("rejected{client_certificate} = %v, want 1", got)
	}
	if code, _ := get(t, clientWith(), ts.url("/healthz")); code != http.StatusOK {
		t.Errorf("/healthz without a certificate = %d, want 200", code)
	}

	// The file is replaced: the other CA is trusted now, the first one no longer.
	writeAtomic(t, caFile, other.CABundle())
	if got := post(clientWith(clientCert(t, other))); got != http.StatusOK {
		t.Errorf("after the swap, the new CA's client: %d, want 200", got)
	}
	if got := post(clientWith(clientCert(t, trusted))); got != 0 {
		t.Errorf("after the swap, the old CA's client: %d, want the handshake refused", got)
	}
}

// After a reload, every handshake is served by one copy of the configuration
// per pool, not a fresh clone each; and connections still resume their TLS
// sessions.
func TestRequireClientCertsOneConfigPerPool(t *testing.T) {
	first, second, third := newClientCA(t), newClientCA(t), newClientCA(t)
	caFile := filepath.Join(t.TempDir(), "client-ca.crt")
	writeAtomic(t, caFile, first.CABundle())
	cas, err := LoadClientCAs(caFile, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	cas.recheck = 0 // look at the file on every handshake
	cfg, err := TLSConfig("1.2", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	RequireClientCerts(cfg, cas)
	configFor := func() *tls.Config {
		t.Helper()
		c, err := cfg.GetConfigForClient(&tls.ClientHelloInfo{})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if c := configFor(); c != nil {
		t.Fatalf("before a reload: a copy %p, want the listener's own configuration (nil)", c)
	}
	var copies []*tls.Config
	for _, ca := range []*certs.Bundle{second, third} {
		writeAtomic(t, caFile, ca.CABundle())
		c := configFor()
		if c == nil || c.ClientCAs != cas.Pool() {
			t.Fatal("after a reload, the handshake does not get the new pool")
		}
		if again := configFor(); again != c {
			t.Errorf("consecutive handshakes got configurations %p and %p, want the same", c, again)
		}
		copies = append(copies, c)
	}
	if copies[0] == copies[1] {
		t.Error("the pool changed again but the configuration did not")
	}
}

// Session tickets are sealed with the listener's keys whichever copy of the
// configuration serves the handshake: after a reload, clients still resume.
func TestServerClientCertificatesResumeAfterReload(t *testing.T) {
	trusted, next := newClientCA(t), newClientCA(t)
	caFile := filepath.Join(t.TempDir(), "client-ca.crt")
	writeAtomic(t, caFile, trusted.CABundle())
	cas, err := LoadClientCAs(caFile, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	cas.recheck = 0
	ts := startServer(t, serverOpts{
		tls:    func(cfg *tls.Config) { RequireClientCerts(cfg, cas) },
		server: func(s *Server) { s.RequireClientCert = true },
	})
	writeAtomic(t, caFile, next.CABundle())
	cert := clientCert(t, next)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true, // a new connection, and handshake, per request
		TLSClientConfig: &tls.Config{RootCAs: ts.roots, ServerName: "localhost", Certificates: []tls.Certificate{cert},
			ClientSessionCache: tls.NewLRUClientSessionCache(4)},
	}}
	body := reviewBody(t, testPod(), reviewOpts{})
	for i, wantResumed := range []bool{false, true, true} {
		resp, _ := postMutate(t, client, ts.url("/mutate"), body)
		if resp.TLS.DidResume != wantResumed {
			t.Errorf("connection %d: resumed %v, want %v", i, resp.TLS.DidResume, wantResumed)
		}
	}
}
