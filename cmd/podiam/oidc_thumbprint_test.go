package main

import (
	"context"
	"crypto/sha1"
	"crypto/tls"
	"encoding/hex"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podiam/podiam/internal/oidc"
	"github.com/podiam/podiam/test/harness"
)

// startThumbprintServer serves h over TLS on 127.0.0.1 with a new CA and
// returns the server, the CA's PEM and the thumbprint it must have: the SHA-1
// of the last certificate it sends, computed here.
func startThumbprintServer(t *testing.T, h http.Handler) (srv *httptest.Server, ca []byte, thumbprint string) {
	t.Helper()
	b, err := harness.LoopbackBundle()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := b.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	srv = httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the untrusted case fails handshakes
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{*cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	sum := sha1.Sum(cert.Certificate[len(cert.Certificate)-1])
	return srv, b.CABundle(), hex.EncodeToString(sum[:])
}

func TestOIDCThumbprint(t *testing.T) {
	var issuer string
	jwksSrv, jwksCA, jwksTP := startThumbprintServer(t, http.NotFoundHandler())
	issuerSrv, issuerCA, issuerTP := startThumbprintServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/cluster/"+oidc.DiscoveryPath {
			http.NotFound(w, r)
			return
		}
		_, _ = io.WriteString(w, `{"issuer":"`+issuer+`","jwks_uri":"`+jwksSrv.URL+`/keys.json"}`)
	}))
	issuer = issuerSrv.URL + "/cluster"
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, append(jwksCA, issuerCA...), 0o600); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		args    []string
		want    string
		wantErr string
	}{
		{name: "issuer and jwks_uri hosts", args: []string{issuer, "--ca-file", caFile}, want: jwksTP + "\n" + issuerTP + "\n"},
		{name: "no discovery", args: []string{"--no-discovery", "--ca-file", caFile, issuerSrv.URL}, want: issuerTP + "\n"},
		{name: "system roots only", args: []string{issuer}, wantErr: "x509"},
		{name: "no discovery document", args: []string{"--ca-file", caFile, jwksSrv.URL}, wantErr: "--no-discovery"},
		{name: "http", args: []string{"--no-discovery", "http://127.0.0.1"}, wantErr: "not https://"},
		{name: "missing CA file", args: []string{issuer, "--ca-file", filepath.Join(dir, "nope")}, wantErr: "--ca-file"},
		{name: "CA file without PEM", args: []string{issuer, "--ca-file", notPEM}, wantErr: "no PEM certificate"},
		{name: "no argument", args: nil, wantErr: "requires at least 1 arg"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			out, err := executeOIDC(ctx, append([]string{"thumbprint"}, tc.args...)...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if out != tc.want {
				t.Errorf("output %q, want %q", out, tc.want)
			}
		})
	}
}
