package oidc

import (
	"context"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/podiam/podiam/test/testutil"
)

// sha1Hex is the thumbprint computed here, independently of thumbprint.go.
func sha1Hex(c *x509.Certificate) string {
	sum := sha1.Sum(c.Raw)
	return hex.EncodeToString(sum[:])
}

// rootPool trusts exactly cas.
func rootPool(cas ...*testutil.Cert) *x509.CertPool {
	p := x509.NewCertPool()
	for _, ca := range cas {
		p.AddCert(ca.Cert)
	}
	return p
}

// startTLS serves h on 127.0.0.1 presenting leaf followed by chain.
func startTLS(t *testing.T, h http.Handler, leaf *testutil.Cert, chain ...*testutil.Cert) *httptest.Server {
	t.Helper()
	if h == nil {
		h = http.NotFoundHandler()
	}
	srv := httptest.NewUnstartedServer(h)
	// The untrusted-chain cases fail handshakes on purpose; keep them out of the output.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{leaf.TLSCertificate(chain...)}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// testPKI is a root CA with an intermediate, a server presenting leaf +
// intermediate, a server presenting only a leaf the root signed, and the
// thumbprints each must give.
type testPKI struct {
	root                    *testutil.Cert
	chained, leafOnly       *httptest.Server
	chainedTP, leafOnlyTP   string
	chainedURL, leafOnlyURL string
}

func newTestPKI(t *testing.T, chainedHandler, leafOnlyHandler http.Handler) testPKI {
	root := testutil.NewCert(t, "test root", nil, false)
	inter := testutil.NewCert(t, "test intermediate", root, false)
	leaf := testutil.NewCert(t, "127.0.0.1", inter, true)
	rootLeaf := testutil.NewCert(t, "127.0.0.1 leaf only", root, true)
	p := testPKI{root: root}
	p.chained = startTLS(t, chainedHandler, leaf, inter)
	p.leafOnly = startTLS(t, leafOnlyHandler, rootLeaf)
	p.chainedTP, p.leafOnlyTP = sha1Hex(inter.Cert), sha1Hex(rootLeaf.Cert)
	p.chainedURL, p.leafOnlyURL = p.chained.URL, p.leafOnly.URL
	return p
}

func TestThumbprints(t *testing.T) {
	p := newTestPKI(t, nil, nil)
	other := testutil.NewCert(t, "other root", nil, false)
	closed := closedPortURL(t)
	tests := []struct {
		name    string
		urls    []string
		roots   *x509.CertPool
		want    []string
		wantErr string
	}{
		{name: "leaf and intermediate: the intermediate", urls: []string{p.chainedURL + "/issuer"}, roots: rootPool(p.root), want: []string{p.chainedTP}},
		{name: "leaf only: the leaf", urls: []string{p.leafOnlyURL}, roots: rootPool(p.root), want: []string{p.leafOnlyTP}},
		{name: "one per host, in order", roots: rootPool(p.root),
			urls: []string{p.leafOnlyURL + "/keys.json", p.chainedURL + "/a", p.leafOnlyURL + "/.well-known/openid-configuration"},
			want: []string{p.leafOnlyTP, p.chainedTP}},
		{name: "untrusted chain", urls: []string{p.chainedURL}, roots: rootPool(other), wantErr: "not trusted"},
		{name: "system roots do not hold the test root", urls: []string{p.chainedURL}, roots: nil, wantErr: "not trusted"},
		{name: "unreachable", urls: []string{closed}, roots: rootPool(p.root), wantErr: "cannot reach 127.0.0.1"},
		{name: "http", urls: []string{"http://example.com"}, wantErr: "is not https://"},
		{name: "no host", urls: []string{"https:///path"}, wantErr: "has no host"},
		{name: "not a URL", urls: []string{"https://a b/%zz"}, wantErr: "bad URL"},
		{name: "none", wantErr: "no URL given"},
		{name: "six hosts", urls: []string{"https://a", "https://b", "https://c", "https://d", "https://e", "https://f"}, wantErr: "at most 5"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Thumbprints(context.Background(), tc.urls, tc.roots)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// closedPortURL is an https URL of a loopback port nothing listens on.
func closedPortURL(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "https://" + addr
}

// discoveryHandler serves a discovery document whose issuer and jwks_uri
// are read when a request comes, so servers can name each other.
func discoveryHandler(issuer, jwksURI *string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/"+DiscoveryPath) {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(Discovery{Issuer: *issuer, JWKSURI: *jwksURI})
	})
}

func TestIssuerURLs(t *testing.T) {
	var issuer, jwksURI string
	p := newTestPKI(t, discoveryHandler(&issuer, &jwksURI), nil)
	tests := []struct {
		name      string
		arg       string // the issuer given
		docIssuer string // the issuer in the document
		jwksURI   string
		wantURLs  []string
		wantTPs   []string
		wantErr   string
	}{
		{name: "jwks on another host", arg: p.chainedURL + "/cluster", docIssuer: p.chainedURL + "/cluster",
			jwksURI: p.leafOnlyURL + "/keys.json", wantURLs: []string{p.leafOnlyURL + "/keys.json", p.chainedURL + "/cluster"},
			wantTPs: []string{p.leafOnlyTP, p.chainedTP}},
		{name: "jwks on the issuer host", arg: p.chainedURL, docIssuer: p.chainedURL,
			jwksURI: p.chainedURL + "/openid/v1/jwks", wantURLs: []string{p.chainedURL + "/openid/v1/jwks", p.chainedURL},
			wantTPs: []string{p.chainedTP}},
		{name: "trailing slash given", arg: p.chainedURL + "/", docIssuer: p.chainedURL,
			jwksURI: p.chainedURL + "/keys.json", wantURLs: []string{p.chainedURL + "/keys.json", p.chainedURL + "/"},
			wantTPs: []string{p.chainedTP}},
		{name: "document names another issuer", arg: p.chainedURL, docIssuer: "https://elsewhere.example.com",
			jwksURI: p.chainedURL + "/keys.json", wantErr: `names issuer "https://elsewhere.example.com"`},
		{name: "jwks_uri over http", arg: p.chainedURL, docIssuer: p.chainedURL,
			jwksURI: "http://127.0.0.1/keys.json", wantErr: "jwks_uri"},
		{name: "no discovery document", arg: p.leafOnlyURL, wantErr: "404"},
		{name: "issuer over http", arg: "http://127.0.0.1", wantErr: "not an https:// URL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			issuer, jwksURI = tc.docIssuer, tc.jwksURI
			urls, err := IssuerURLs(context.Background(), tc.arg, rootPool(p.root))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(urls, tc.wantURLs) {
				t.Errorf("urls %q, want %q", urls, tc.wantURLs)
			}
			tps, err := Thumbprints(context.Background(), urls, rootPool(p.root))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(tps, tc.wantTPs) {
				t.Errorf("thumbprints %q, want %q", tps, tc.wantTPs)
			}
		})
	}
}
