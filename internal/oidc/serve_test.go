package oidc

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podiam/podiam/test/testutil"
)

const testIssuer = "https://issuer.example.com/clusters/a"

// writeDoc writes body to dir/rel by rename, as publish does.
func writeDoc(t *testing.T, dir, rel, body string) {
	t.Helper()
	path := filepath.Join(dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func discoveryJSON(issuer, jwksPath string) string {
	return `{"issuer":"` + issuer + `","jwks_uri":"` + issuer + "/" + jwksPath + `","response_types_supported":["id_token"]}`
}

// docServer is a DocumentHandler served over HTTPS on 127.0.0.1.
type docServer struct {
	dir    string // the published documents
	base   string // https://127.0.0.1:port
	client *http.Client
}

// startDocServer publishes the two documents of testIssuer under a new
// directory (inside a parent that holds a file that must never be served) and
// serves them until the test ends.
func startDocServer(t *testing.T, o ServeOptions) *docServer {
	t.Helper()
	parent := t.TempDir()
	if err := os.WriteFile(filepath.Join(parent, "secret.json"), []byte(`{"secret":true}`), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(parent, "docs")
	writeDoc(t, dir, JWKSPath, `{"keys":[]}`)
	writeDoc(t, dir, DiscoveryPath, discoveryJSON(testIssuer, JWKSPath))
	o.Dir = dir
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	h, err := NewDocumentHandler(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	base, client := serveTLS(t, h)
	return &docServer{dir: dir, base: base, client: client}
}

// serveTLS serves h with Serve on a free loopback port until the test ends
// and returns its base URL and a client that trusts it.
func serveTLS(t *testing.T, h http.Handler) (string, *http.Client) {
	t.Helper()
	root := testutil.NewCert(t, "serve root", nil, false)
	leaf := testutil.NewCert(t, "127.0.0.1", root, true)
	cfg := &tls.Config{Certificates: []tls.Certificate{leaf.TLSCertificate()}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, cfg, h, slog.New(slog.DiscardHandler)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: rootPool(root)}}}
	t.Cleanup(client.CloseIdleConnections)
	return "https://" + ln.Addr().String(), client
}

// get sends a request for the raw path (sent as written: no cleaning).
func (s *docServer) do(t *testing.T, method, rawPath string, header http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, s.base, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.URL.Opaque = rawPath // keeps "..", "%2e" and "//" as they are
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

func TestDocumentHandlerRequests(t *testing.T) {
	s := startDocServer(t, ServeOptions{})
	disc := discoveryJSON(testIssuer, JWKSPath)
	etag := func() string {
		resp, _ := s.do(t, http.MethodGet, "/clusters/a/"+DiscoveryPath, nil)
		return resp.Header.Get("ETag")
	}()
	tests := []struct {
		name       string
		method     string
		path       string
		header     http.Header
		wantStatus int
		wantBody   string // exact, when the status is 200
		wantAllow  string
	}{
		{name: "discovery", method: "GET", path: "/clusters/a/" + DiscoveryPath, wantStatus: 200, wantBody: disc},
		{name: "jwks", method: "GET", path: "/clusters/a/" + JWKSPath, wantStatus: 200, wantBody: `{"keys":[]}`},
		{name: "head", method: "HEAD", path: "/clusters/a/" + JWKSPath, wantStatus: 200, wantBody: ""},
		{name: "query ignored", method: "GET", path: "/clusters/a/" + JWKSPath + "?x=1", wantStatus: 200, wantBody: `{"keys":[]}`},
		{name: "matching etag", method: "GET", path: "/clusters/a/" + DiscoveryPath, header: http.Header{"If-None-Match": {etag}}, wantStatus: 304},
		{name: "stale etag", method: "GET", path: "/clusters/a/" + DiscoveryPath, header: http.Header{"If-None-Match": {`"old"`}}, wantStatus: 200, wantBody: disc},
		{name: "healthz", method: "GET", path: "/healthz", wantStatus: 200, wantBody: "ok\n"},
		{name: "without the issuer's path", method: "GET", path: "/" + DiscoveryPath, wantStatus: 404},
		{name: "list the root", method: "GET", path: "/", wantStatus: 404},
		{name: "list the prefix", method: "GET", path: "/clusters/a/", wantStatus: 404},
		{name: "list a directory", method: "GET", path: "/clusters/a/openid/v1/", wantStatus: 404},
		{name: "list .well-known", method: "GET", path: "/clusters/a/.well-known", wantStatus: 404},
		{name: "traversal", method: "GET", path: "/clusters/a/../../secret.json", wantStatus: 404},
		{name: "traversal from a document", method: "GET", path: "/clusters/a/openid/v1/jwks/../../../../secret.json", wantStatus: 404},
		{name: "encoded traversal", method: "GET", path: "/clusters/a/%2e%2e/secret.json", wantStatus: 404},
		{name: "encoded slash", method: "GET", path: "/clusters/a/openid%2Fv1%2Fjwks", wantStatus: 404},
		{name: "double slash", method: "GET", path: "/clusters/a//" + JWKSPath, wantStatus: 404},
		{name: "another file in the directory", method: "GET", path: "/clusters/a/openid/v1/jwks.tmp", wantStatus: 404},
		{name: "post", method: "POST", path: "/clusters/a/" + DiscoveryPath, wantStatus: 405, wantAllow: "GET, HEAD"},
		{name: "put", method: "PUT", path: "/clusters/a/" + JWKSPath, wantStatus: 405, wantAllow: "GET, HEAD"},
		{name: "delete", method: "DELETE", path: "/clusters/a/" + JWKSPath, wantStatus: 405, wantAllow: "GET, HEAD"},
		{name: "options", method: "OPTIONS", path: "/clusters/a/" + JWKSPath, wantStatus: 405, wantAllow: "GET, HEAD"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := s.do(t, tc.method, tc.path, tc.header)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d; body %q", resp.StatusCode, tc.wantStatus, body)
			}
			if strings.Contains(body, "secret") {
				t.Errorf("served a file outside the documents: %q", body)
			}
			if got := resp.Header.Get("Allow"); got != tc.wantAllow {
				t.Errorf("Allow %q, want %q", got, tc.wantAllow)
			}
			if tc.wantStatus != 200 || tc.path == "/healthz" {
				return
			}
			if body != tc.wantBody {
				t.Errorf("body %q, want %q", body, tc.wantBody)
			}
			for k, want := range map[string]string{"Content-Type": "application/json", "Cache-Control": CacheControl} {
				if got := resp.Header.Get(k); got != want {
					t.Errorf("%s %q, want %q", k, got, want)
				}
			}
			if resp.Header.Get("ETag") == "" {
				t.Error("no ETag")
			}
		})
	}
}

func TestDocumentHandlerReload(t *testing.T) {
	s := startDocServer(t, ServeOptions{})
	jwksURL := "/clusters/a/" + JWKSPath
	expect := func(path string, wantStatus int, wantBody string) string {
		t.Helper()
		resp, body := s.do(t, http.MethodGet, path, nil)
		if resp.StatusCode != wantStatus || wantStatus == 200 && body != wantBody {
			t.Fatalf("GET %s: %d %q, want %d %q", path, resp.StatusCode, body, wantStatus, wantBody)
		}
		return resp.Header.Get("ETag")
	}
	etag1 := expect(jwksURL, 200, `{"keys":[]}`)

	// A new publish: renamed over the old file.
	writeDoc(t, s.dir, JWKSPath, `{"keys":[{"kid":"new"}]}`)
	if etag2 := expect(jwksURL, 200, `{"keys":[{"kid":"new"}]}`); etag2 == etag1 {
		t.Errorf("ETag %s unchanged after the content changed", etag2)
	}

	// Written in place and caught half-way: the last good content stays.
	path := filepath.Join(s.dir, filepath.FromSlash(JWKSPath))
	if err := os.WriteFile(path, []byte(`{"keys":[{"ki`), 0o644); err != nil {
		t.Fatal(err)
	}
	expect(jwksURL, 200, `{"keys":[{"kid":"new"}]}`)
	if err := os.WriteFile(path, []byte(`{"keys":[{"kid":"third"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	expect(jwksURL, 200, `{"keys":[{"kid":"third"}]}`)

	// A kubelet-style symlink swap of the whole directory's content.
	data := filepath.Join(s.dir, "..2026_v2")
	writeDoc(t, data, "keys.json", `{"keys":[{"kid":"swapped"}]}`)
	if err := os.Symlink(filepath.Join("..2026_v2", "keys.json"), filepath.Join(s.dir, "keys.json")); err != nil {
		t.Fatal(err)
	}
	// The discovery document now points to keys.json: the routes follow it.
	writeDoc(t, s.dir, DiscoveryPath, discoveryJSON(testIssuer, "keys.json"))
	expect("/clusters/a/keys.json", 200, `{"keys":[{"kid":"swapped"}]}`)
	expect(jwksURL, 404, "")
	writeDoc(t, s.dir, filepath.Join("..2026_v3", "keys.json"), `{"keys":[{"kid":"swapped again"}]}`)
	tmpLink := filepath.Join(s.dir, "keys.json.new")
	if err := os.Symlink(filepath.Join("..2026_v3", "keys.json"), tmpLink); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmpLink, filepath.Join(s.dir, "keys.json")); err != nil {
		t.Fatal(err)
	}
	expect("/clusters/a/keys.json", 200, `{"keys":[{"kid":"swapped again"}]}`)
}

func TestDocumentHandlerPathPrefix(t *testing.T) {
	tests := []struct {
		prefix   string
		wantPath string
	}{
		{prefix: "", wantPath: "/clusters/a/" + JWKSPath},
		{prefix: "/", wantPath: "/" + JWKSPath},
		{prefix: "other/", wantPath: "/other/" + JWKSPath},
		{prefix: "/x/y", wantPath: "/x/y/" + JWKSPath},
	}
	for _, tc := range tests {
		t.Run(tc.prefix, func(t *testing.T) {
			s := startDocServer(t, ServeOptions{PathPrefix: tc.prefix})
			if resp, body := s.do(t, http.MethodGet, tc.wantPath, nil); resp.StatusCode != 200 || body != `{"keys":[]}` {
				t.Errorf("GET %s: %d %q", tc.wantPath, resp.StatusCode, body)
			}
			disc := strings.TrimSuffix(tc.wantPath, JWKSPath) + DiscoveryPath
			if resp, _ := s.do(t, http.MethodGet, disc, nil); resp.StatusCode != 200 {
				t.Errorf("GET %s: %d", disc, resp.StatusCode)
			}
		})
	}
}

func TestNewDocumentHandlerErrors(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(dir string) error
		wantErr string
	}{
		{name: "no directory", setup: func(dir string) error { return os.Remove(dir) }, wantErr: "opening document directory"},
		{name: "no discovery document", setup: func(string) error { return nil }, wantErr: "podiam oidc publish --to"},
		{name: "not JSON", setup: func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "d.json"), []byte("{"), 0o644)
		}, wantErr: "not valid JSON"},
		{name: "a directory", setup: func(dir string) error {
			return os.MkdirAll(filepath.Join(dir, DiscoveryPath), 0o755)
		}, wantErr: "not a regular file"},
		{name: "issuer not a URL", setup: func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "d.json"), []byte(`{"issuer":"nope"}`), 0o644)
		}, wantErr: "not a URL with a host"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := tc.setup(dir); err != nil {
				t.Fatal(err)
			}
			// Cases that wrote d.json move it into place.
			if _, err := os.Stat(filepath.Join(dir, "d.json")); err == nil {
				writeDoc(t, dir, DiscoveryPath, "")
				if err := os.Rename(filepath.Join(dir, "d.json"), filepath.Join(dir, DiscoveryPath)); err != nil {
					t.Fatal(err)
				}
			}
			h, err := NewDocumentHandler(ServeOptions{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
			if err == nil {
				h.Close()
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestDocumentHandlerSymlinkOutside: a document that is a symlink to a file
// outside the directory is never read.
func TestDocumentHandlerSymlinkOutside(t *testing.T) {
	parent := t.TempDir()
	outside := filepath.Join(parent, "outside.json")
	if err := os.WriteFile(outside, []byte(`{"secret":true}`), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(parent, "docs")
	writeDoc(t, dir, DiscoveryPath, discoveryJSON(testIssuer, "keys.json"))
	if err := os.Symlink(outside, filepath.Join(dir, "keys.json")); err != nil {
		t.Fatal(err)
	}
	h, err := NewDocumentHandler(ServeOptions{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	base, client := serveTLS(t, h)
	s := &docServer{dir: dir, base: base, client: client}
	resp, body := s.do(t, http.MethodGet, "/clusters/a/keys.json", nil)
	if resp.StatusCode != http.StatusInternalServerError || strings.Contains(body, "secret") {
		t.Errorf("got %d %q, want 500 without the outside file", resp.StatusCode, body)
	}
}

// TestServeDrains: a request in flight when the context ends completes, and
// Serve returns nil once it has.
func TestServeDrains(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		close(started)
		<-release
		_, _ = w.Write([]byte("done"))
	})
	root := testutil.NewCert(t, "serve root", nil, false)
	leaf := testutil.NewCert(t, "127.0.0.1", root, true)
	cfg := &tls.Config{Certificates: []tls.Certificate{leaf.TLSCertificate()}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, ln, cfg, h, slog.New(slog.DiscardHandler)) }()

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: rootPool(root)}}}
	defer client.CloseIdleConnections()
	got := make(chan string, 1)
	go func() {
		resp, err := client.Get("https://" + ln.Addr().String() + "/")
		if err != nil {
			got <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got <- string(b)
	}()
	<-started
	cancel()
	select {
	case err := <-served:
		t.Fatalf("Serve returned %v with a request in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if body := <-got; body != "done" {
		t.Errorf("in-flight request got %q, want done", body)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Error("still accepting connections after shutdown")
	}
}
