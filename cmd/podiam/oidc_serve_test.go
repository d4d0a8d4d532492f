package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/podiam/podiam/internal/oidc"
	"github.com/podiam/podiam/test/harness"
	"github.com/podiam/podiam/test/testutil"
)

// writeDocument writes dir/rel by rename, as publish does.
func writeDocument(t *testing.T, dir, rel, body string) {
	t.Helper()
	path := filepath.Join(dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".tmp", []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

// executeOIDC runs `podiam oidc args...` with ctx and returns its stdout.
func executeOIDC(ctx context.Context, args ...string) (string, error) {
	var out bytes.Buffer
	root := newRootCommand()
	root.SetOut(&out)
	root.SetErr(io.Discard)
	root.SetArgs(append([]string{"oidc"}, args...))
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

// TestOIDCServe runs the command on a free loopback port and checks, over
// HTTPS, a document and the certificate each being replaced while it serves,
// then a clean stop.
func TestOIDCServe(t *testing.T) {
	dir, tlsDir := t.TempDir(), t.TempDir()
	const issuer = "https://oidc.example.com/clusters/serve"
	writeDocument(t, dir, oidc.JWKSPath, `{"keys":[]}`)
	writeDocument(t, dir, oidc.DiscoveryPath, `{"issuer":"`+issuer+`","jwks_uri":"`+issuer+`/`+oidc.JWKSPath+`"}`)
	ca1, err := harness.WriteServingCert(tlsDir)
	if err != nil {
		t.Fatal(err)
	}
	ports, err := testutil.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	base := "https://127.0.0.1:" + strconv.Itoa(ports[0])

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := executeOIDC(ctx, "serve", "--dir", dir, "--address", "127.0.0.1", "--port", strconv.Itoa(ports[0]),
			"--tls-cert", filepath.Join(tlsDir, "tls.crt"), "--tls-key", filepath.Join(tlsDir, "tls.key"), "--log-level", "error")
		done <- err
	}()

	// get fetches path with a fresh connection trusting ca, so every call
	// sees the certificate served at that moment.
	get := func(ca []byte, path string) (string, error) {
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: harness.TLSClientConfig(ca), DisableKeepAlives: true}}
		resp, err := client.Get(base + path)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return strconv.Itoa(resp.StatusCode) + " " + string(body), err
	}
	jwks := "/clusters/serve/" + oidc.JWKSPath
	testutil.Eventually(t, 15*time.Second, 20*time.Millisecond, "the JWKS to be served", func() (bool, string) {
		got, err := get(ca1, jwks)
		return got == `200 {"keys":[]}`, got + errString(err)
	})

	writeDocument(t, dir, oidc.JWKSPath, `{"keys":[{"kid":"rotated"}]}`)
	if got, err := get(ca1, jwks); err != nil || got != `200 {"keys":[{"kid":"rotated"}]}` {
		t.Errorf("after the JWKS changed: %q %v", got, err)
	}

	// A renewed certificate from another CA is served without a restart.
	ca2, err := harness.WriteServingCert(tlsDir)
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, 50*time.Millisecond, "the new certificate to be served", func() (bool, string) {
		got, err := get(ca2, "/healthz")
		return got == "200 ok\n", got + errString(err)
	})
	if _, err := get(ca1, "/healthz"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("the old certificate is still served: %v", err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve returned %v after its context ended", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not stop")
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestOIDCServeBadInput(t *testing.T) {
	tlsDir := t.TempDir()
	if _, err := harness.WriteServingCert(tlsDir); err != nil {
		t.Fatal(err)
	}
	cert, key := filepath.Join(tlsDir, "tls.crt"), filepath.Join(tlsDir, "tls.key")
	empty := t.TempDir()
	docs := t.TempDir()
	writeDocument(t, docs, oidc.DiscoveryPath, `{"issuer":"https://h","jwks_uri":"https://h/keys.json"}`)
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "no dir", args: []string{"--tls-cert", cert, "--tls-key", key}, wantErr: `"dir" not set`},
		{name: "no certificate", args: []string{"--dir", docs}, wantErr: `"tls-cert", "tls-key" not set`},
		{name: "nothing published", args: []string{"--dir", empty, "--tls-cert", cert, "--tls-key", key}, wantErr: "podiam oidc publish --to"},
		{name: "missing key", args: []string{"--dir", docs, "--tls-cert", cert, "--tls-key", filepath.Join(tlsDir, "nope")}, wantErr: "loading serving certificate"},
		{name: "bad TLS version", args: []string{"--dir", docs, "--tls-cert", cert, "--tls-key", key, "--tls-min-version", "1.0"}, wantErr: "unsupported TLS version"},
		{name: "bad log level", args: []string{"--dir", docs, "--tls-cert", cert, "--tls-key", key, "--log-level", "loud"}, wantErr: "--log-level"},
		{name: "bad port", args: []string{"--dir", docs, "--tls-cert", cert, "--tls-key", key, "--address", "127.0.0.1", "--port", "-1"}, wantErr: "listening on port"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := executeOIDC(ctx, append([]string{"serve", "--log-level=error"}, tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}
