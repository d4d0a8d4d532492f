package jwks

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podiam/podiam/internal/oidc"
)

// jwk returns the JWK of pub as kube-apiserver publishes it, with kid
// replaced when kid is not nil.
func jwk(t testing.TB, pub crypto.PublicKey, kid *string) oidc.JWK {
	t.Helper()
	set, err := oidc.NewJWKS([]crypto.PublicKey{pub}, false)
	if err != nil {
		t.Fatal(err)
	}
	k := set.Keys[0]
	if kid != nil {
		k.Kid = *kid
	}
	return k
}

// kidOf is the kid kube-apiserver gives pub.
func kidOf(t testing.TB, pub crypto.PublicKey) string {
	t.Helper()
	kid, err := oidc.KeyID(pub)
	if err != nil {
		t.Fatal(err)
	}
	return kid
}

func jwksDoc(t testing.TB, keys ...oidc.JWK) []byte {
	t.Helper()
	b, err := json.Marshal(oidc.JWKS{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// issuer is an OIDC issuer on an httptest TLS server (127.0.0.1) whose JWKS
// can change, counting the fetches of each document.
type issuer struct {
	srv        *httptest.Server
	url        string
	jwks       atomic.Pointer[[]byte]
	discovery  atomic.Pointer[[]byte] // nil: the correct document
	jwksFetch  atomic.Int32
	discoFetch atomic.Int32
	hold       atomic.Pointer[chan struct{}] // when set, requests wait until it is closed
}

func newIssuer(t testing.TB, jwks []byte) *issuer {
	t.Helper()
	is := &issuer{}
	is.jwks.Store(&jwks)
	is.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h := is.hold.Load(); h != nil {
			<-*h
		}
		switch r.URL.Path {
		case "/cluster/" + oidc.DiscoveryPath:
			is.discoFetch.Add(1)
			if d := is.discovery.Load(); d != nil {
				w.Write(*d)
				return
			}
			json.NewEncoder(w).Encode(map[string]string{"issuer": is.url, "jwks_uri": is.url + "/keys"})
		case "/cluster/keys":
			is.jwksFetch.Add(1)
			w.Write(*is.jwks.Load())
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(is.srv.Close)
	is.url = is.srv.URL + "/cluster"
	return is
}

func (is *issuer) roots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(is.srv.Certificate())
	return p
}

func (is *issuer) keySet(t testing.TB, o Options) *KeySet {
	t.Helper()
	src, err := NewHTTPSource(is.url, is.roots())
	if err != nil {
		t.Fatal(err)
	}
	return NewKeySet(src, o)
}

// clock is a settable time for rate-limit tests.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestVerify(t *testing.T) {
	now := time.Now()
	claims := testClaims(now)
	rk, ek256, ek384, ek521 := rsaKey(), p256Key(), p384Key(), p521Key()
	rkid, e256kid, e384kid, e521kid := kidOf(t, &rk.PublicKey), kidOf(t, &ek256.PublicKey), kidOf(t, &ek384.PublicKey), kidOf(t, &ek521.PublicKey)
	empty := ""
	rsa2kid, noAlgKid := "legacy2", "no-alg"
	noAlg := jwk(t, &rk.PublicKey, &noAlgKid)
	noAlg.Alg = "" // "alg" is optional in a JWK: the token's alg alone must be checked
	doc := jwksDoc(t,
		jwk(t, &rk.PublicKey, nil), jwk(t, &ek256.PublicKey, nil), jwk(t, &ek384.PublicKey, nil), jwk(t, &ek521.PublicKey, nil),
		jwk(t, &rsaKey2().PublicKey, &empty), jwk(t, &rk.PublicKey, &empty), jwk(t, &rsaKey2().PublicKey, &rsa2kid), noAlg,
		jwk(t, &ek256.PublicKey, &empty),
	)
	is := newIssuer(t, doc)
	ks := is.keySet(t, Options{})
	hdr := func(alg, kid string) map[string]any { return map[string]any{"alg": alg, "kid": kid} }
	pemPub, err := x509.MarshalPKIXPublicKey(&rk.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	good := signToken(t, "RS256", rk, hdr("RS256", rkid), claims)
	gp := strings.Split(good, ".")
	tampered := claims
	tampered = map[string]any{}
	for k, v := range claims {
		tampered[k] = v
	}
	tampered["sub"] = "system:serviceaccount:ns1:admin"

	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"RS256", good, nil},
		{"ES256", signToken(t, "ES256", ek256, hdr("ES256", e256kid), claims), nil},
		{"ES384", signToken(t, "ES384", ek384, hdr("ES384", e384kid), claims), nil},
		{"ES512", signToken(t, "ES512", ek521, hdr("ES512", e521kid), claims), nil},
		{"no kid: a key with kid \"\" verifies", signToken(t, "RS256", rk, map[string]any{"alg": "RS256"}, claims), nil},
		{"kid \"\"", signToken(t, "RS256", rk, hdr("RS256", ""), claims), nil},

		{"tampered claims", gp[0] + "." + b64json(t, tampered) + "." + gp[2], ErrSignature},
		{"tampered header", b64json(t, `{"alg":"RS256","kid":"`+rkid+`","typ":"JWT"}`) + "." + gp[1] + "." + gp[2], ErrSignature},
		{"signature of another key", signToken(t, "RS256", rsaKey2(), hdr("RS256", rkid), claims), ErrSignature},
		{"no kid: an EC key with kid \"\" verifies", signToken(t, "ES256", ek256, map[string]any{"alg": "ES256"}, claims), nil},
		{"no kid: no key of the type under kid \"\"", signToken(t, "ES384", ek384, map[string]any{"alg": "ES384"}, claims), ErrAlgorithm},
		{"no kid: signed by none of the keys under kid \"\"", signToken(t, "RS256", rsaKey3(), map[string]any{"alg": "RS256"}, claims), ErrSignature},
		{"empty signature", gp[0] + "." + gp[1] + ".", ErrSignature},
		{"ES256 signature in ASN.1", asn1ES256(t, ek256, hdr("ES256", e256kid), claims), ErrSignature},
		{"alg none", signToken(t, "none", nil, hdr("none", rkid), claims), ErrAlgorithm},
		{"alg None", signToken(t, "none", nil, hdr("None", rkid), claims), ErrAlgorithm},
		{"HS256 with the public key DER as secret", signToken(t, "HS256", pemPub, hdr("HS256", rkid), claims), ErrAlgorithm},
		{"HS256 with the JWK n as secret", signToken(t, "HS256", []byte(jwk(t, &rk.PublicKey, nil).N), hdr("HS256", rkid), claims), ErrAlgorithm},
		{"RS256 with a key without alg", signToken(t, "RS256", rk, hdr("RS256", noAlgKid), claims), nil},
		{"HS256 with a key without alg", signToken(t, "HS256", []byte(noAlg.N), hdr("HS256", noAlgKid), claims), ErrAlgorithm},
		{"none with a key without alg", signToken(t, "none", nil, hdr("none", noAlgKid), claims), ErrAlgorithm},
		{"HS512", signToken(t, "HS512", []byte("k"), hdr("HS512", rkid), claims), ErrAlgorithm},
		{"PS256", swapAlg(t, good, "PS256"), ErrAlgorithm},
		{"rs256 lower case", swapAlg(t, good, "rs256"), ErrAlgorithm},
		{"RS256 token naming an EC key", signToken(t, "RS256", rk, hdr("RS256", e256kid), claims), ErrAlgorithm},
		{"ES256 token naming an RSA key", signToken(t, "ES256", ek256, hdr("ES256", rkid), claims), ErrAlgorithm},
		{"ES384 token naming a P-256 key (wrong curve)", signToken(t, "ES384", ek384, hdr("ES384", e256kid), claims), ErrAlgorithm},
		{"ES256 token naming a P-384 key (wrong curve)", signToken(t, "ES256", ek256, hdr("ES256", e384kid), claims), ErrAlgorithm},
		{"unknown kid", signToken(t, "RS256", rk, hdr("RS256", "nope"), claims), ErrUnknownKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := Parse(tc.token)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			err = ks.Verify(t.Context(), tok)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
}

// asn1ES256 signs with the ASN.1 DER signature encoding instead of JWS's r||s.
func asn1ES256(t *testing.T, k *ecdsa.PrivateKey, header, claims map[string]any) string {
	t.Helper()
	tok := signToken(t, "ES256", k, header, claims)
	i := strings.LastIndexByte(tok, '.')
	d := sha256Sum(tok[:i])
	sig, err := ecdsa.SignASN1(nil, k, d)
	if err != nil {
		t.Fatal(err)
	}
	return tok[:i] + "." + b64json(t, string(sig))
}

func sha256Sum(s string) []byte {
	h := crypto.SHA256.New()
	h.Write([]byte(s))
	return h.Sum(nil)
}

// swapAlg replaces the header of tok (keeping its kid) with one naming alg.
func swapAlg(t *testing.T, tok, alg string) string {
	t.Helper()
	p, err := Parse(tok)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.SplitN(tok, ".", 2)
	return b64json(t, map[string]any{"alg": alg, "kid": p.Kid}) + "." + parts[1]
}

func TestVerifyRefetchesRotatedKey(t *testing.T) {
	clk := &clock{now: time.Unix(1_800_000_000, 0)}
	oldKey, newKey := rsaKey(), rsaKey2()
	is := newIssuer(t, jwksDoc(t, jwk(t, &oldKey.PublicKey, nil)))
	ks := is.keySet(t, Options{MinRefetchInterval: 10 * time.Second, Now: clk.Now})
	claims := testClaims(clk.Now())
	verify := func(key *rsa.PrivateKey) error {
		tok, err := Parse(signToken(t, "RS256", key, map[string]any{"alg": "RS256", "kid": kidOf(t, &key.PublicKey)}, claims))
		if err != nil {
			t.Fatal(err)
		}
		return ks.Verify(t.Context(), tok)
	}
	steps := []struct {
		name      string
		advance   time.Duration
		rotate    bool
		key       *rsa.PrivateKey
		want      error
		wantFetch int32
	}{
		{name: "first use fetches", key: oldKey, wantFetch: 1},
		{name: "known kid: cached", key: oldKey, wantFetch: 1},
		{name: "unknown kid: one refetch, still unknown", advance: 10 * time.Second, key: newKey, want: ErrUnknownKey, wantFetch: 2},
		{name: "unknown kid again within the interval: no fetch", advance: 5 * time.Second, key: newKey, want: ErrUnknownKey, wantFetch: 2},
		{name: "key rotated in, but still within the interval", rotate: true, key: newKey, want: ErrUnknownKey, wantFetch: 2},
		{name: "after the interval: refetch finds it", advance: 5 * time.Second, key: newKey, wantFetch: 3},
		{name: "old key kept in the rotated set", key: oldKey, wantFetch: 3},
	}
	for _, s := range steps {
		clk.Add(s.advance)
		if s.rotate {
			doc := jwksDoc(t, jwk(t, &oldKey.PublicKey, nil), jwk(t, &newKey.PublicKey, nil))
			is.jwks.Store(&doc)
		}
		err := verify(s.key)
		if !errors.Is(err, s.want) || (s.want == nil) != (err == nil) {
			t.Fatalf("%s: Verify = %v, want %v", s.name, err, s.want)
		}
		if got := is.jwksFetch.Load(); got != s.wantFetch {
			t.Fatalf("%s: %d JWKS fetches, want %d", s.name, got, s.wantFetch)
		}
		if got := is.discoFetch.Load(); got != s.wantFetch {
			t.Fatalf("%s: %d discovery fetches, want %d", s.name, got, s.wantFetch)
		}
	}
}

func TestVerifyMergesConcurrentRefetches(t *testing.T) {
	is := newIssuer(t, jwksDoc(t, jwk(t, &rsaKey().PublicKey, nil)))
	release := make(chan struct{})
	is.hold.Store(&release) // hold every fetch until all callers wait on it
	ks := is.keySet(t, Options{})
	tok, err := Parse(signToken(t, "RS256", rsaKey(), map[string]any{"alg": "RS256", "kid": "unknown"}, testClaims(time.Now())))
	if err != nil {
		t.Fatal(err)
	}
	const callers = 20
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Go(func() { errs <- ks.Verify(t.Context(), tok) })
	}
	time.Sleep(100 * time.Millisecond)
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, ErrUnknownKey) {
			t.Errorf("Verify = %v, want ErrUnknownKey", err)
		}
	}
	// The first fetch (keys absent) is shared by all; the refetch for the
	// unknown kid is then rate-limited.
	if got := is.jwksFetch.Load(); got != 1 {
		t.Errorf("%d JWKS fetches for %d concurrent callers, want 1", got, callers)
	}
}

// failingSource is a Source whose answer the test sets.
type failingSource struct {
	mu    sync.Mutex
	doc   []byte
	err   error
	calls int
}

func (s *failingSource) Fetch(context.Context) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	return s.doc, s.err
}

func (s *failingSource) set(doc []byte, err error) {
	s.mu.Lock()
	s.doc, s.err = doc, err
	s.mu.Unlock()
}

func TestVerifyFetchFailures(t *testing.T) {
	clk := &clock{now: time.Unix(1_800_000_000, 0)}
	k := rsaKey()
	src := &failingSource{err: errors.New("connection refused")}
	ks := NewKeySet(src, Options{MinRefetchInterval: 10 * time.Second, MaxAge: time.Minute, Now: clk.Now})
	known, err := Parse(signToken(t, "RS256", k, map[string]any{"alg": "RS256", "kid": kidOf(t, &k.PublicKey)}, testClaims(clk.Now())))
	if err != nil {
		t.Fatal(err)
	}
	unknown, err := Parse(signToken(t, "RS256", k, map[string]any{"alg": "RS256", "kid": "other"}, testClaims(clk.Now())))
	if err != nil {
		t.Fatal(err)
	}
	good := jwksDoc(t, jwk(t, &k.PublicKey, nil))
	steps := []struct {
		name      string
		advance   time.Duration
		doc       []byte
		err       error
		tok       *Token
		want      error
		wantCalls int
	}{
		{name: "issuer down", tok: known, err: errors.New("connection refused"), want: ErrFetch, wantCalls: 1},
		{name: "still down, rate-limited: the last error, no fetch", tok: known, err: errors.New("connection refused"), want: ErrFetch, wantCalls: 1},
		{name: "never fetched, rate-limited: unknown kid is the last error", tok: unknown, err: errors.New("connection refused"), want: ErrFetch, wantCalls: 1},
		{name: "up again after the interval", advance: 10 * time.Second, tok: known, doc: good, wantCalls: 2},
		{name: "down: unknown kid reports the fetch failure", advance: 10 * time.Second, tok: unknown, err: errors.New("timeout"), want: ErrFetch, wantCalls: 3},
		{name: "down: known kid still verifies with the old keys", tok: known, err: errors.New("timeout"), wantCalls: 3},
		{name: "garbage JWKS: old keys kept", advance: 10 * time.Second, tok: unknown, doc: []byte("<html>"), want: ErrFetch, wantCalls: 4},
		{name: "rate-limited after the failure: unknown kid is unknown", advance: 5 * time.Second, tok: unknown, err: errors.New("timeout"), want: ErrUnknownKey, wantCalls: 4},
		{name: "keys older than MaxAge, refetch fails: old keys kept", advance: time.Minute, tok: known, err: errors.New("timeout"), wantCalls: 5},
		{name: "after the failed background refetch: unknown kid is unknown", tok: unknown, err: errors.New("timeout"), want: ErrUnknownKey, wantCalls: 5},
		{name: "up, unknown kid is unknown", advance: 10 * time.Second, tok: unknown, doc: good, want: ErrUnknownKey, wantCalls: 6},
	}
	for _, s := range steps {
		clk.Add(s.advance)
		src.set(s.doc, s.err)
		err := ks.Verify(t.Context(), s.tok)
		if !errors.Is(err, s.want) || (s.want == nil) != (err == nil) {
			t.Fatalf("%s: Verify = %v, want %v", s.name, err, s.want)
		}
		// The STS maps ErrFetch to a retryable error: the two never mix.
		if errors.Is(err, ErrUnknownKey) && errors.Is(err, ErrFetch) {
			t.Fatalf("%s: Verify = %v wraps both ErrUnknownKey and ErrFetch", s.name, err)
		}
		_ = ks.Refresh(t.Context()) // waits for a background refetch, fetches nothing itself
		src.mu.Lock()
		calls := src.calls
		src.mu.Unlock()
		if calls != s.wantCalls {
			t.Fatalf("%s: %d fetches, want %d", s.name, calls, s.wantCalls)
		}
	}
}

func TestVerifyRemovedKeyAfterMaxAge(t *testing.T) {
	clk := &clock{now: time.Unix(1_800_000_000, 0)}
	k := rsaKey()
	src := &failingSource{doc: jwksDoc(t, jwk(t, &k.PublicKey, nil))}
	ks := NewKeySet(src, Options{MaxAge: time.Hour, Now: clk.Now})
	tok, err := Parse(signToken(t, "RS256", k, map[string]any{"alg": "RS256", "kid": kidOf(t, &k.PublicKey)}, testClaims(clk.Now())))
	if err != nil {
		t.Fatal(err)
	}
	if err := ks.Verify(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	src.set(jwksDoc(t, jwk(t, &rsaKey2().PublicKey, nil)), nil) // the issuer removed k
	clk.Add(time.Hour)
	// The stale keys still serve this call while they are refetched.
	if err := ks.Verify(t.Context(), tok); err != nil {
		t.Fatalf("Verify with stale keys: %v", err)
	}
	// Joins the background fetch (or is rate-limited right after it).
	if err := ks.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := ks.Verify(t.Context(), tok); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("Verify with a removed key after MaxAge = %v, want ErrUnknownKey", err)
	}
}

func TestDecodeKeys(t *testing.T) {
	k := rsaKey()
	good := jwk(t, &k.PublicKey, nil)
	enc := good
	enc.Use = "enc"
	badN := good
	badN.N = "!!"
	tests := []struct {
		name     string
		doc      string
		wantErr  string
		wantKids int
	}{
		{name: "one key", doc: string(jwksDoc(t, good)), wantKids: 1},
		{name: "unusable keys skipped", doc: `{"keys":[{"kty":"oct","k":"c2VjcmV0"},{"kty":"OKP","crv":"Ed25519","x":"AA"},` + string(mustJSON(t, enc)) + `,` + string(mustJSON(t, badN)) + `,` + string(mustJSON(t, good)) + `]}`, wantKids: 1},
		{name: "not JSON", doc: `<html>`, wantErr: "not a JSON object"},
		{name: "no keys", doc: `{"keys":[]}`, wantErr: "no usable signing key"},
		{name: "only a symmetric key", doc: `{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"x"}]}`, wantErr: "no usable signing key"},
		{name: "keys not a list", doc: `{"keys":{}}`, wantErr: "not a JSON object"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			set, err := decodeKeys([]byte(tc.doc))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("decodeKeys = %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(set.byKid) != tc.wantKids {
				t.Fatalf("%d kids, want %d", len(set.byKid), tc.wantKids)
			}
		})
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// benchVerify measures Parse and Verify of one token with a warm cache.
func benchVerify(b *testing.B, alg string, key crypto.Signer) {
	src := &failingSource{doc: jwksDoc(b, jwk(b, key.Public(), nil))}
	ks := NewKeySet(src, Options{})
	token := signToken(b, alg, key, map[string]any{"alg": alg, "kid": kidOf(b, key.Public())}, testClaims(time.Now()))
	ctx := context.Background()
	tok, err := Parse(token)
	if err != nil {
		b.Fatal(err)
	}
	if err := ks.Verify(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		tok, err := Parse(token)
		if err != nil {
			b.Fatal(err)
		}
		if err := ks.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseVerifyRS256(b *testing.B) { benchVerify(b, "RS256", rsaKey()) }
func BenchmarkParseVerifyES256(b *testing.B) { benchVerify(b, "ES256", p256Key()) }

// BenchmarkParse is the part of a verification besides the signature:
// decoding the header and the claims of a service-account token.
func BenchmarkParse(b *testing.B) {
	token := signToken(b, "RS256", rsaKey(), map[string]any{"alg": "RS256", "kid": kidOf(b, &rsaKey().PublicKey)}, testClaims(time.Now()))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(token); err != nil {
			b.Fatal(err)
		}
	}
}
