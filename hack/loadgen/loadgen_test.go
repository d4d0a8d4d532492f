package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const reviewBody = `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"0b0e4a6c"}}`

// echoServer answers every POST with a JSON response that embeds the request
// body and "allowed":true. /big forces a chunked response, /close asks the
// client to drop the connection after each response.
func echoServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || r.ProtoMajor != 1 {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		in, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if r.URL.Path == "/close" {
			w.Header().Set("Connection", "close")
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"response":{"allowed":true},"echo":`)
		w.Write(in)
		if r.URL.Path == "/big" {
			io.WriteString(w, `,"pad":"`+strings.Repeat("x", 10000)+`"`)
			w.(http.Flusher).Flush()
		}
		io.WriteString(w, "}")
	}))
	t.Cleanup(srv.Close)
	return srv
}

func tlsFor(srv *httptest.Server) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	return &tls.Config{RootCAs: pool}
}

func baseConfig(srv *httptest.Server, client string) Config {
	return Config{
		URL:             srv.URL + "/mutate",
		Body:            []byte(reviewBody),
		Concurrency:     4,
		Duration:        time.Second,
		Warmup:          100 * time.Millisecond,
		TLS:             tlsFor(srv),
		Timeout:         5 * time.Second,
		ExpectStatus:    200,
		ExpectSubstring: []byte(`"allowed":true`),
		Client:          client,
	}
}

func checkOK(t *testing.T, res *Result) {
	t.Helper()
	if res.Requests == 0 || res.OK != res.Requests {
		t.Errorf("requests=%d ok=%d, want >0 and equal", res.Requests, res.OK)
	}
	if res.Failed() != 0 {
		t.Errorf("failed=%d (transport %d, status %d, body %d): %q",
			res.Failed(), res.TransportErrors, res.StatusErrors, res.BodyErrors, res.ErrorSamples)
	}
	l := res.Latency
	if int64(l.Count) != res.OK || l.Min <= 0 || !(l.Min <= l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max) {
		t.Errorf("inconsistent latency summary %+v", l)
	}
	if res.Throughput <= 0 || res.Elapsed <= 0 {
		t.Errorf("throughput=%v elapsed=%v", res.Throughput, res.Elapsed)
	}
}

func TestRunEndToEnd(t *testing.T) {
	srv := echoServer(t)
	for _, client := range []string{ClientRaw, ClientHTTP} {
		t.Run(client, func(t *testing.T) {
			res, err := Run(context.Background(), baseConfig(srv, client))
			if err != nil {
				t.Fatal(err)
			}
			checkOK(t, res)
			// The raw client owns its connection and must never redial here.
			// net/http's pool has been seen to redial once on a heavily
			// loaded machine; it is reported, not a failure.
			if client == ClientRaw && res.Reconnects != 0 {
				t.Errorf("reconnects = %d, want 0 (keep-alive)", res.Reconnects)
			} else if res.Reconnects != 0 {
				t.Logf("%s: %d reconnects", client, res.Reconnects)
			}
			// Measured window is about -d long, not including warmup.
			if res.Elapsed < 900*time.Millisecond || res.Elapsed > 3*time.Second {
				t.Errorf("elapsed = %v, want ~1s", res.Elapsed)
			}
			t.Logf("%s: %d req, %.0f req/s, p99 %v", client, res.OK, res.Throughput, res.Latency.P99)
		})
	}
}

func TestRunStatusMismatchCounted(t *testing.T) {
	srv := echoServer(t)
	for _, client := range []string{ClientRaw, ClientHTTP} {
		t.Run(client, func(t *testing.T) {
			cfg := baseConfig(srv, client)
			cfg.Duration = 300 * time.Millisecond
			cfg.ExpectStatus = 201
			res, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if res.Requests == 0 || res.StatusErrors != res.Requests {
				t.Errorf("requests=%d statusErrors=%d, want all requests counted as status errors", res.Requests, res.StatusErrors)
			}
			if res.TransportErrors != 0 || res.OK != 0 || res.Latency.Count != 0 {
				t.Errorf("transport=%d ok=%d latency.count=%d, want 0", res.TransportErrors, res.OK, res.Latency.Count)
			}
			if len(res.ErrorSamples) == 0 || !strings.Contains(res.ErrorSamples[0], "status 200, want 201") {
				t.Errorf("error samples = %q", res.ErrorSamples)
			}
		})
	}
}

func TestRunBodyMismatchCounted(t *testing.T) {
	srv := echoServer(t)
	cfg := baseConfig(srv, ClientRaw)
	cfg.Duration = 200 * time.Millisecond
	cfg.ExpectSubstring = []byte(`"allowed":false`)
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests == 0 || res.BodyErrors != res.Requests || res.StatusErrors != 0 {
		t.Errorf("requests=%d body=%d status=%d", res.Requests, res.BodyErrors, res.StatusErrors)
	}
}

func TestRunChunkedAndClose(t *testing.T) {
	srv := echoServer(t)
	for _, path := range []string{"/big", "/close"} {
		for _, client := range []string{ClientRaw, ClientHTTP} {
			t.Run(path+"/"+client, func(t *testing.T) {
				cfg := baseConfig(srv, client)
				cfg.URL = srv.URL + path
				cfg.Duration = 300 * time.Millisecond
				cfg.ExpectSubstring = []byte(`"allowed":true},"echo":` + reviewBody)
				if path == "/big" {
					cfg.ExpectSubstring = []byte(strings.Repeat("x", 10000) + `"}`)
				}
				res, err := Run(context.Background(), cfg)
				if err != nil {
					t.Fatal(err)
				}
				checkOK(t, res)
				if path == "/close" && res.Reconnects == 0 {
					t.Errorf("Connection: close did not cause reconnects")
				}
			})
		}
	}
}

func TestRunMaxRequests(t *testing.T) {
	srv := echoServer(t)
	for _, client := range []string{ClientRaw, ClientHTTP} {
		t.Run(client, func(t *testing.T) {
			cfg := baseConfig(srv, client)
			cfg.Duration = 0
			cfg.Warmup = 0
			cfg.MaxRequests = 250
			res, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			checkOK(t, res)
			if res.Requests != 250 {
				t.Errorf("requests = %d, want exactly 250", res.Requests)
			}
		})
	}
}

func TestRunTransportErrors(t *testing.T) {
	// A server that closes the connection without answering.
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			c.Close()
		}
	}))
	defer srv.Close()
	for _, client := range []string{ClientRaw, ClientHTTP} {
		t.Run(client, func(t *testing.T) {
			cfg := baseConfig(srv, client)
			cfg.Duration = 200 * time.Millisecond
			cfg.Warmup = 0
			res, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if res.TransportErrors == 0 || res.TransportErrors != res.Requests || res.StatusErrors != 0 {
				t.Errorf("requests=%d transport=%d status=%d", res.Requests, res.TransportErrors, res.StatusErrors)
			}
		})
	}
}

func TestRunSetupErrors(t *testing.T) {
	srv := echoServer(t)
	cfg := baseConfig(srv, ClientRaw)
	cfg.TLS = &tls.Config{} // server cert not trusted
	if _, err := Run(context.Background(), cfg); err == nil {
		t.Error("untrusted certificate: want setup error")
	}
	cfg = baseConfig(srv, "nope")
	if _, err := Run(context.Background(), cfg); err == nil {
		t.Error("unknown client: want error")
	}
	cfg = baseConfig(srv, ClientRaw)
	cfg.Duration = 0
	if _, err := Run(context.Background(), cfg); err == nil {
		t.Error("no -d and no -n: want error")
	}
}

// TestMainCommand exercises flag parsing, -cacert, -json and exit codes.
func TestMainCommand(t *testing.T) {
	srv := echoServer(t)
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	body := filepath.Join(dir, "review.json")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(body, []byte(reviewBody), 0o600); err != nil {
		t.Fatal(err)
	}
	common := []string{"-url", srv.URL + "/mutate", "-body", body, "-c", "2", "-d", "200ms", "-warmup", "50ms"}
	tests := []struct {
		name string
		args []string
		code int
		out  string
	}{
		{"ok json", append([]string{"-cacert", ca, "-json", "-timeout", "0", "-expect-substring", `"allowed":true`}, common...), 0, `"p99_us"`},
		{"ok text insecure", append([]string{"-insecure", "-client", "http"}, common...), 0, "req/s"},
		{"status mismatch", append([]string{"-insecure", "-expect-status", "204"}, common...), 1, "status 200, want 204"},
		{"threshold miss", append([]string{"-insecure", "-min-rps", "1e9"}, common...), 3, "FAIL"},
		{"no url", []string{"-d", "1s"}, 2, ""},
		{"bad client", append([]string{"-insecure", "-client", "h2"}, common...), 2, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tt.args, &stdout, &stderr)
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.out) {
				t.Errorf("stdout lacks %q:\n%s", tt.out, stdout.String())
			}
		})
	}
}
