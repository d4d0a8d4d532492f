package jwks

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podiam/podiam/test/testcluster"
)

func TestHTTPSourceFetch(t *testing.T) {
	doc := jwksDoc(t, jwk(t, &rsaKey().PublicKey, nil))
	type env struct {
		issuer string // the source's issuer URL
	}
	discovery := func(w http.ResponseWriter, issuer, jwksURI string) {
		fmt.Fprintf(w, `{"issuer":%q,"jwks_uri":%q,"response_types_supported":["id_token"]}`, issuer, jwksURI)
	}
	tests := []struct {
		name    string
		handler func(e *env) http.HandlerFunc
		opts    []HTTPOption
		wantErr string // "" for success
	}{
		{name: "discovery then JWKS", handler: func(e *env) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				switch r.URL.Path {
				case "/c/.well-known/openid-configuration":
					discovery(w, e.issuer, e.issuer+"/openid/v1/jwks")
				case "/c/openid/v1/jwks":
					w.Write(doc)
				default:
					http.NotFound(w, r)
				}
			}
		}},
		{name: "discovery naming another issuer", handler: func(e *env) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				discovery(w, "https://evil.example.com/c", e.issuer+"/keys")
			}
		}, wantErr: `names issuer "https://evil.example.com/c"`},
		{name: "discovery naming the issuer with a trailing slash", handler: func(e *env) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) { discovery(w, e.issuer+"/", e.issuer+"/keys") }
		}, wantErr: "names issuer"},
		{name: "discovery without issuer", handler: func(e *env) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, `{"jwks_uri":%q}`, e.issuer+"/keys") }
		}, wantErr: "names no issuer"},
		{name: "discovery without jwks_uri", handler: func(e *env) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, `{"issuer":%q}`, e.issuer) }
		}, wantErr: "has no jwks_uri"},
		{name: "http jwks_uri", handler: func(e *env) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) { discovery(w, e.issuer, "http://127.0.0.1:1/keys") }
		}, wantErr: "is not an https URL"},
		{name: "garbage discovery", handler: func(e *env) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<html>hello</html>")) }
		}, wantErr: "is not a JSON discovery document"},
		{name: "discovery 404", handler: func(e *env) http.HandlerFunc { return http.NotFound }, wantErr: "HTTP status 404"},
		{name: "huge discovery with Content-Length", handler: func(e *env) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", fmt.Sprint(MaxDiscoverySize+1))
				w.Write(make([]byte, MaxDiscoverySize+1))
			}
		}, wantErr: "more than the 65536 accepted"},
		{name: "huge discovery streamed", handler: func(e *env) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				for range 100 {
					w.Write(make([]byte, 4096))
					w.(http.Flusher).Flush()
				}
			}
		}, wantErr: "more than the 65536 bytes accepted"},
		{name: "huge JWKS", handler: func(e *env) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				if strings.HasSuffix(r.URL.Path, "/keys") {
					w.Write([]byte(`{"keys":[` + strings.Repeat(" ", MaxJWKSSize) + `]}`))
					return
				}
				discovery(w, e.issuer, e.issuer+"/keys")
			}
		}, wantErr: "more than the 1048576"},
		{name: "redirect to https followed", handler: func(e *env) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				switch {
				case strings.HasSuffix(r.URL.Path, "/keys"):
					http.Redirect(w, r, e.issuer+"/moved", http.StatusFound)
				case strings.HasSuffix(r.URL.Path, "/moved"):
					w.Write(doc)
				default:
					discovery(w, e.issuer, e.issuer+"/keys")
				}
			}
		}},
		{name: "redirect to http refused", handler: func(e *env) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				if strings.HasSuffix(r.URL.Path, "/keys") {
					http.Redirect(w, r, "http://127.0.0.1:1/keys", http.StatusFound)
					return
				}
				discovery(w, e.issuer, e.issuer+"/keys")
			}
		}, wantErr: "not https"},
		{name: "hanging host: timeout", opts: []HTTPOption{WithTimeout(200 * time.Millisecond)}, handler: func(e *env) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-r.Context().Done():
				case <-time.After(5 * time.Second):
				}
			}
		}, wantErr: "context deadline exceeded"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := &env{}
			srv := httptest.NewTLSServer(tc.handler(e))
			defer srv.Close()
			e.issuer = srv.URL + "/c"
			roots := x509.NewCertPool()
			roots.AddCert(srv.Certificate())
			src, err := NewHTTPSource(e.issuer, roots, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			got, err := src.Fetch(t.Context())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Fetch = %v, want an error containing %q", err, tc.wantErr)
				}
				if d := time.Since(start); d > 3*time.Second {
					t.Errorf("Fetch took %v", d)
				}
				return
			}
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if string(got) != string(doc) {
				t.Fatalf("Fetch = %q, want the JWKS", got)
			}
		})
	}
}

func TestHTTPSourceTrust(t *testing.T) {
	is := newIssuer(t, jwksDoc(t, jwk(t, &rsaKey().PublicKey, nil)))
	// Without the test CA the system roots apply, which do not trust it.
	src, err := NewHTTPSource(is.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Fetch(t.Context()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Fetch from an untrusted host = %v, want a certificate error", err)
	}
	// A caller's client replaces the roots.
	src, err = NewHTTPSource(is.url, nil, WithHTTPClient(is.srv.Client()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Fetch(t.Context()); err != nil {
		t.Fatalf("Fetch with the test server's client: %v", err)
	}
}

func TestHTTPSourceIssuerDown(t *testing.T) {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	issuerURL := srv.URL + "/c"
	srv.Close() // nothing listens on the port any more
	src, err := NewHTTPSource(issuerURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	ks := NewKeySet(src, Options{})
	tok, err := Parse(signToken(t, "RS256", rsaKey(), map[string]any{"alg": "RS256", "kid": "k"}, testClaims(time.Now())))
	if err != nil {
		t.Fatal(err)
	}
	if err := ks.Verify(t.Context(), tok); !errors.Is(err, ErrFetch) {
		t.Fatalf("Verify with the issuer down = %v, want ErrFetch", err)
	}
}

func TestNewHTTPSourceRefusesBadIssuers(t *testing.T) {
	for _, issuer := range []string{"", "http://issuer.example.com", "https://issuer.example.com/", "https://issuer.example.com?x=1", "issuer.example.com"} {
		if _, err := NewHTTPSource(issuer, nil); err == nil {
			t.Errorf("NewHTTPSource(%q) = nil error", issuer)
		}
	}
}

// TestKubeSource verifies a TokenRequest token of the real API server with
// the keys of its /openid/v1/jwks.
func TestKubeSource(t *testing.T) {
	c := testcluster.StartForTest(t, testcluster.Options{})
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	ns := "jwks-kube-source"
	if err := c.EnsureNamespace(ctx, ns, nil); err != nil {
		t.Fatal(err)
	}
	sa, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "app"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa.Name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"sts.amazonaws.com"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	src, err := NewKubeSource(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	ks := NewKeySet(src, Options{})
	tok, err := Parse(tr.Status.Token)
	if err != nil {
		t.Fatal(err)
	}
	if err := ks.Verify(ctx, tok); err != nil {
		t.Fatalf("Verify of a TokenRequest token: %v", err)
	}
	cl := tok.Claims
	if cl.Issuer != c.IssuerURL() || cl.Subject != "system:serviceaccount:"+ns+":app" || cl.Kubernetes == nil ||
		cl.Kubernetes.ServiceAccount == nil || cl.Kubernetes.ServiceAccount.UID != string(sa.UID) {
		t.Errorf("claims = %+v", cl)
	}
	if err := cl.CheckTime(time.Now(), time.Minute); err != nil {
		t.Errorf("CheckTime: %v", err)
	}
	// A token of another cluster's key (same kid, other key) is refused.
	forged := signToken(t, "RS256", rsaKey(), map[string]any{"alg": "RS256", "kid": tok.Kid}, string(cl.payload))
	ftok, err := Parse(forged)
	if err != nil {
		t.Fatal(err)
	}
	if err := ks.Verify(ctx, ftok); !errors.Is(err, ErrSignature) {
		t.Fatalf("Verify of a token signed by another key = %v, want ErrSignature", err)
	}
}
