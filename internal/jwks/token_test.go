package jwks

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
)

// Test keys, generated once per test binary (RSA generation is slow).
var (
	rsaKey  = sync.OnceValue(func() *rsa.PrivateKey { return mustKey(rsa.GenerateKey(rand.Reader, 2048)) })
	rsaKey2 = sync.OnceValue(func() *rsa.PrivateKey { return mustKey(rsa.GenerateKey(rand.Reader, 2048)) })
	rsaKey3 = sync.OnceValue(func() *rsa.PrivateKey { return mustKey(rsa.GenerateKey(rand.Reader, 2048)) })
	p256Key = sync.OnceValue(func() *ecdsa.PrivateKey { return mustKey(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)) })
	p384Key = sync.OnceValue(func() *ecdsa.PrivateKey { return mustKey(ecdsa.GenerateKey(elliptic.P384(), rand.Reader)) })
	p521Key = sync.OnceValue(func() *ecdsa.PrivateKey { return mustKey(ecdsa.GenerateKey(elliptic.P521(), rand.Reader)) })
)

func mustKey[K any](k K, err error) K {
	if err != nil {
		panic(err)
	}
	return k
}

// testIssuer is the issuer of tokens built by testClaims.
const testIssuer = "https://issuer.example.com/cluster"

// testClaims are the claims of a pod-bound service-account token valid at
// now, as kube-apiserver issues it.
func testClaims(now time.Time) map[string]any {
	return map[string]any{
		"iss": testIssuer,
		"sub": "system:serviceaccount:ns1:app",
		"aud": []string{"sts.amazonaws.com"},
		"exp": now.Add(time.Hour).Unix(),
		"iat": now.Add(-time.Minute).Unix(),
		"nbf": now.Add(-time.Minute).Unix(),
		"kubernetes.io": map[string]any{
			"namespace":      "ns1",
			"serviceaccount": map[string]any{"name": "app", "uid": "sa-uid"},
			"pod":            map[string]any{"name": "app-1", "uid": "pod-uid"},
			"node":           map[string]any{"name": "node-1", "uid": "node-uid"},
		},
	}
}

// b64json is the unpadded base64url of v's JSON, or of v itself when it is
// a string (raw JSON).
func b64json(t testing.TB, v any) string {
	t.Helper()
	if s, ok := v.(string); ok {
		return base64.RawURLEncoding.EncodeToString([]byte(s))
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// signToken signs header and claims (maps, or raw JSON strings) with key as
// alg: RS256 and ES* with the private keys, HS256 with secret bytes.
func signToken(t testing.TB, alg string, key any, header, claims any) string {
	t.Helper()
	input := b64json(t, header) + "." + b64json(t, claims)
	var sig []byte
	switch alg {
	case "RS256":
		d := sha256.Sum256([]byte(input))
		var err error
		if sig, err = rsa.SignPKCS1v15(rand.Reader, key.(*rsa.PrivateKey), crypto.SHA256, d[:]); err != nil {
			t.Fatal(err)
		}
	case "ES256", "ES384", "ES512":
		k := key.(*ecdsa.PrivateKey)
		h := map[string]crypto.Hash{"ES256": crypto.SHA256, "ES384": crypto.SHA384, "ES512": crypto.SHA512}[alg].New()
		h.Write([]byte(input))
		r, s, err := ecdsa.Sign(rand.Reader, k, h.Sum(nil))
		if err != nil {
			t.Fatal(err)
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		sig = make([]byte, 2*size)
		r.FillBytes(sig[:size])
		s.FillBytes(sig[size:])
	case "HS256":
		m := hmac.New(sha256.New, key.([]byte))
		m.Write([]byte(input))
		sig = m.Sum(nil)
	case "HS512":
		m := hmac.New(sha512.New, key.([]byte))
		m.Write([]byte(input))
		sig = m.Sum(nil)
	case "none":
	default:
		t.Fatalf("signToken: alg %s", alg)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func TestParse(t *testing.T) {
	now := time.Unix(1_800_000_000, 0).UTC()
	good := signToken(t, "RS256", rsaKey(), map[string]any{"alg": "RS256", "kid": "k1", "typ": "JWT"}, testClaims(now))
	parts := strings.Split(good, ".")
	hdr := b64json(t, map[string]any{"alg": "RS256", "kid": "k1"})
	withClaims := func(claims string) string { return hdr + "." + b64json(t, claims) + ".c2ln" }
	withHeader := func(h string) string { return b64json(t, h) + "." + parts[1] + "." + parts[2] }

	tests := []struct {
		name    string
		token   string
		wantErr string // substring; "" for success
		check   func(t *testing.T, tok *Token)
	}{
		{name: "service-account token", token: good, check: func(t *testing.T, tok *Token) {
			if tok.Alg != "RS256" || tok.Kid != "k1" || !tok.HasKid || tok.Typ != "JWT" {
				t.Errorf("header = %q %q %v %q", tok.Alg, tok.Kid, tok.HasKid, tok.Typ)
			}
			c := tok.Claims
			if c.Issuer != testIssuer || c.Subject != "system:serviceaccount:ns1:app" || len(c.Audience) != 1 || c.Audience[0] != "sts.amazonaws.com" {
				t.Errorf("claims = %+v", c)
			}
			if !c.Expiry.Equal(now.Add(time.Hour)) || !c.IssuedAt.Equal(now.Add(-time.Minute)) || !c.NotBefore.Equal(now.Add(-time.Minute)) {
				t.Errorf("times = %v %v %v", c.Expiry, c.IssuedAt, c.NotBefore)
			}
			k := c.Kubernetes
			if k == nil || k.Namespace != "ns1" || *k.ServiceAccount != (ObjectRef{"app", "sa-uid"}) || *k.Pod != (ObjectRef{"app-1", "pod-uid"}) || *k.Node != (ObjectRef{"node-1", "node-uid"}) {
				t.Errorf("kubernetes.io = %+v", k)
			}
			if sub, ok := c.Claim("sub"); !ok || sub != "system:serviceaccount:ns1:app" {
				t.Errorf("Claim(sub) = %v, %v", sub, ok)
			}
		}},
		{name: "aud as a string, float times, amr", token: withClaims(`{"aud":"a1","exp":1800000000.5,"iat":1.8e9,"amr":["x"]}`), check: func(t *testing.T, tok *Token) {
			c := tok.Claims
			if len(c.Audience) != 1 || c.Audience[0] != "a1" {
				t.Errorf("aud = %q", c.Audience)
			}
			if want := time.Unix(1_800_000_000, 500_000_000); !c.Expiry.Equal(want) || !c.IssuedAt.Equal(now) || c.NotBefore != nil {
				t.Errorf("exp, iat, nbf = %v %v %v", c.Expiry, c.IssuedAt, c.NotBefore)
			}
			if c.Kubernetes != nil {
				t.Errorf("kubernetes.io = %+v", c.Kubernetes)
			}
			if v, _ := c.Claim("amr"); !reflect.DeepEqual(v, []any{"x"}) {
				t.Errorf("Claim(amr) = %#v", v)
			}
		}},
		{name: "no kid", token: withHeader(`{"alg":"RS256"}`), check: func(t *testing.T, tok *Token) {
			if tok.HasKid || tok.Kid != "" {
				t.Errorf("kid = %q %v", tok.Kid, tok.HasKid)
			}
		}},
		{name: "empty kid", token: withHeader(`{"alg":"RS256","kid":""}`), check: func(t *testing.T, tok *Token) {
			if !tok.HasKid || tok.Kid != "" {
				t.Errorf("kid = %q %v", tok.Kid, tok.HasKid)
			}
		}},
		{name: "alg none parses (Verify refuses it)", token: signToken(t, "none", nil, map[string]any{"alg": "none"}, testClaims(now))},

		{name: "empty", token: "", wantErr: "three"},
		{name: "two parts", token: parts[0] + "." + parts[1], wantErr: "three"},
		{name: "four parts", token: good + ".x", wantErr: "three"},
		{name: "empty header", token: "." + parts[1] + "." + parts[2], wantErr: "empty"},
		{name: "too large", token: strings.Repeat("a", MaxTokenSize+1), wantErr: "at most 20000"},
		{name: "1 MiB", token: good + strings.Repeat("A", 1<<20), wantErr: "at most 20000"},
		{name: "padded base64", token: parts[0] + "=." + parts[1] + "." + parts[2], wantErr: "is not a base64url character"},
		{name: "standard base64 alphabet", token: parts[0] + "." + parts[1] + "." + strings.NewReplacer("-", "+", "_", "/").Replace(parts[2]) + "+", wantErr: "is not a base64url character"},
		{name: "white space", token: parts[0] + ".\n" + parts[1] + "." + parts[2], wantErr: "is not a base64url character"},
		{name: "non-zero trailing bits", token: "AB." + parts[1] + "." + parts[2], wantErr: "header is not unpadded base64url"},
		{name: "bad signature base64", token: parts[0] + "." + parts[1] + ".A", wantErr: "signature is not unpadded base64url"},
		{name: "header not JSON", token: withHeader(`alg`), wantErr: "header is not a JSON object"},
		{name: "header a list", token: withHeader(`["RS256"]`), wantErr: "header is not a JSON object"},
		{name: "alg not a string", token: withHeader(`{"alg":1}`), wantErr: "header is not a JSON object"},
		{name: "duplicate kid", token: withHeader(`{"alg":"RS256","kid":"a","kid":"b"}`), wantErr: "header is not a JSON object"},
		{name: "crit", token: withHeader(`{"alg":"RS256","crit":["b64"],"b64":false}`), wantErr: "crit"},
		{name: "claims not JSON", token: withClaims(`nope`), wantErr: "claims are not a JSON object"},
		{name: "claims null", token: withClaims(`null`), wantErr: "claims are null"},
		{name: "claims a string", token: withClaims(`"x"`), wantErr: "claims are not a JSON object"},
		{name: "duplicate sub", token: withClaims(`{"sub":"a","sub":"b"}`), wantErr: "claims are not a JSON object"},
		{name: "invalid UTF-8", token: withClaims("{\"sub\":\"\xff\"}"), wantErr: "claims are not a JSON object"},
		{name: "iss a number", token: withClaims(`{"iss":1}`), wantErr: "claim iss is not a string"},
		{name: "sub a list", token: withClaims(`{"sub":["a"]}`), wantErr: "claim sub is not a string"},
		{name: "aud a number", token: withClaims(`{"aud":1}`), wantErr: "claim aud is neither"},
		{name: "aud list of numbers", token: withClaims(`{"aud":["a",1]}`), wantErr: "claim aud: element 1"},
		{name: "exp a string", token: withClaims(`{"exp":"1800000000"}`), wantErr: "claim exp is not a number"},
		{name: "exp out of range", token: withClaims(`{"exp":1e300}`), wantErr: "claim exp is out of range"},
		{name: "nbf out of range", token: withClaims(`{"nbf":-1e300}`), wantErr: "claim nbf is out of range"},
		{name: "kubernetes.io a string", token: withClaims(`{"kubernetes.io":"x"}`), wantErr: "kubernetes.io is not an object"},
		{name: "namespace a number", token: withClaims(`{"kubernetes.io":{"namespace":1}}`), wantErr: "claim kubernetes.io: claim namespace"},
		{name: "pod a string", token: withClaims(`{"kubernetes.io":{"pod":"p"}}`), wantErr: "pod is not an object"},
		{name: "serviceaccount uid a number", token: withClaims(`{"kubernetes.io":{"serviceaccount":{"uid":1}}}`), wantErr: "serviceaccount: claim uid"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := Parse(tc.token)
			if tc.wantErr != "" {
				if err == nil || !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Parse error = %v, want ErrMalformed containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if tc.check != nil {
				tc.check(t, tok)
			}
		})
	}
}

func TestClaim(t *testing.T) {
	hdr := b64json(t, map[string]any{"alg": "RS256", "kid": "k1"})
	tests := []struct {
		name   string
		claims string // raw JSON
		claim  string
		want   any
		wantOK bool
	}{
		{"list", `{"sub":"a","amr":["pwd","mfa"]}`, "amr", []any{"pwd", "mfa"}, true},
		{"string", `{"email":"x@example.com"}`, "email", "x@example.com", true},
		{"number", `{"n":1.5}`, "n", 1.5, true},
		{"null is present", `{"nul":null}`, "nul", nil, true},
		{"object", `{"obj":{"a":[1,{"b":true}]}}`, "obj", map[string]any{"a": []any{1.0, map[string]any{"b": true}}}, true},
		{"absent", `{"sub":"a"}`, "amr", nil, false},
		{"typed claim too", `{"sub":"a"}`, "sub", "a", true},
		{"exp as a number", `{"exp":1800000000}`, "exp", 1.8e9, true},
		{"white space around", "{ \"amr\" :\n [ \"x\" ] ,\t\"sub\" : \"s\" }", "amr", []any{"x"}, true},
		{"escaped name", `{"a\u006dr":"v"}`, "amr", "v", true},
		{"escaped value", `{"azp":"a\"b"}`, "azp", `a"b`, true},
		{"after kubernetes.io", `{"kubernetes.io":{"namespace":"n","pod":{"name":"p"}},"azp":"z"}`, "azp", "z", true},
		{"kubernetes.io itself", `{"kubernetes.io":{"namespace":"n"}}`, "kubernetes.io", map[string]any{"namespace": "n"}, true},
		{"number beyond float64", `{"big":1e400}`, "big", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := Parse(hdr + "." + b64json(t, tc.claims) + ".c2ln")
			if err != nil {
				t.Fatal(err)
			}
			got, ok := tok.Claims.Claim(tc.claim)
			if ok != tc.wantOK || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Claim(%q) = %#v, %v, want %#v, %v", tc.claim, got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestClaimTypedEscapes(t *testing.T) {
	hdr := b64json(t, `{"alg":"RS256","kid":"k\u0031"}`)
	tok, err := Parse(hdr + "." + b64json(t, `{"iss":"https:\/\/issuer","aud":["a\u0062"],"kubernetes.io":{"namespace":"n\ts"}}`) + ".c2ln")
	if err != nil {
		t.Fatal(err)
	}
	c := tok.Claims
	if tok.Kid != "k1" || c.Issuer != "https://issuer" || len(c.Audience) != 1 || c.Audience[0] != "ab" || c.Kubernetes.Namespace != "n\ts" {
		t.Fatalf("kid %q, claims %+v, kubernetes.io %+v", tok.Kid, c, c.Kubernetes)
	}
}

func TestClaimConcurrent(t *testing.T) {
	tok, err := Parse(signToken(t, "RS256", rsaKey(), map[string]any{"alg": "RS256"}, map[string]any{"amr": []string{"pwd"}}))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				v, ok := tok.Claims.Claim("amr")
				l, _ := v.([]any)
				if !ok || len(l) != 1 || l[0] != "pwd" {
					t.Errorf("Claim(amr) = %#v, %v", v, ok)
					return
				}
				l[0] = "changed" // a fresh value each call: the next caller does not see this
			}
		})
	}
	wg.Wait()
	var zero Claims
	if v, ok := zero.Claim("amr"); ok || v != nil {
		t.Errorf("zero Claims: Claim(amr) = %v, %v", v, ok)
	}
}

func TestParseKeepsSigningInput(t *testing.T) {
	tok := signToken(t, "ES256", p256Key(), map[string]any{"alg": "ES256", "kid": "k"}, testClaims(time.Now()))
	parsed, err := Parse(tok)
	if err != nil {
		t.Fatal(err)
	}
	i := strings.LastIndexByte(tok, '.')
	if string(parsed.signingInput) != tok[:i] || len(parsed.signature) != 64 {
		t.Errorf("signing input %q (want %q), signature %d bytes", parsed.signingInput, tok[:i], len(parsed.signature))
	}
}

func TestCheckTime(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	at := func(d time.Duration) *time.Time { v := now.Add(d); return &v }
	const leeway = 5 * time.Minute
	tests := []struct {
		name   string
		claims Claims
		want   error
	}{
		{"valid", Claims{Expiry: at(time.Hour), NotBefore: at(-time.Minute), IssuedAt: at(-time.Minute)}, nil},
		{"exp only", Claims{Expiry: at(time.Second)}, nil},
		{"no exp", Claims{}, ErrNoExpiry},
		{"no exp, nbf in the future", Claims{NotBefore: at(time.Hour)}, ErrNoExpiry},
		{"expired", Claims{Expiry: at(-leeway - time.Second)}, ErrExpired},
		{"expired within leeway", Claims{Expiry: at(-leeway + time.Second)}, nil},
		{"expired exactly at the leeway", Claims{Expiry: at(-leeway)}, ErrExpired},
		{"not yet valid", Claims{Expiry: at(time.Hour), NotBefore: at(leeway + time.Second)}, ErrNotYetValid},
		{"nbf within leeway", Claims{Expiry: at(time.Hour), NotBefore: at(leeway)}, nil},
		{"issued in the future", Claims{Expiry: at(time.Hour), IssuedAt: at(leeway + time.Second)}, ErrIssuedInFuture},
		{"iat within leeway", Claims{Expiry: at(time.Hour), IssuedAt: at(leeway - time.Second)}, nil},
		{"expired wins over nbf", Claims{Expiry: at(-time.Hour), NotBefore: at(time.Hour)}, ErrExpired},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.claims.CheckTime(now, leeway)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("CheckTime = %v, want %v", err, tc.want)
			}
			// Each error is one of a kind: the STS answers ErrExpired alone with
			// ExpiredTokenException and its expiration date.
			for _, other := range []error{ErrNoExpiry, ErrExpired, ErrNotYetValid, ErrIssuedInFuture} {
				if other != tc.want && errors.Is(err, other) {
					t.Errorf("CheckTime = %v, which also wraps %v", err, other)
				}
			}
		})
	}
}

func TestCheckTimeMessage(t *testing.T) {
	exp := time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)
	c := Claims{Expiry: &exp}
	err := c.CheckTime(exp.Add(time.Hour), 0)
	want := "token expired: current date/time 2027-01-02T04:04:05Z must be before the expiration date/time 2027-01-02T03:04:05Z"
	if err == nil || err.Error() != want {
		t.Fatalf("CheckTime = %v, want %q", err, want)
	}
}

// FuzzParse checks that no input crashes Parse and that what it accepts is
// consistent. Seeds are in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add(signToken(f, "RS256", rsaKey(), map[string]any{"alg": "RS256", "kid": "k"}, testClaims(time.Unix(1_800_000_000, 0))))
	f.Fuzz(func(t *testing.T, token string) {
		tok, err := Parse(token)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if len(token) > MaxTokenSize || !strings.HasPrefix(token, string(tok.signingInput)+".") {
			t.Fatalf("accepted a token of %d bytes with signing input %q", len(token), tok.signingInput)
		}
		_ = tok.Claims.CheckTime(time.Now(), time.Minute)
		// Claim agrees with decoding all the claims at once.
		var all map[string]any
		if err := jsonv2.Unmarshal(tok.Claims.payload, &all); err != nil {
			return // a number beyond float64, which Claim reports absent
		}
		for name, want := range all {
			if got, ok := tok.Claims.Claim(name); !ok || !reflect.DeepEqual(got, want) {
				t.Fatalf("Claim(%q) = %#v, %v, want %#v", name, got, ok, want)
			}
		}
	})
}

// TestFuzzSeeds keeps the seed corpus present: fuzzing without it starts
// from one seed only.
func TestFuzzSeeds(t *testing.T) {
	m, err := filepath.Glob("testdata/fuzz/FuzzParse/*")
	if err != nil || len(m) < 5 {
		t.Fatalf("seed corpus testdata/fuzz/FuzzParse: %d files, %v", len(m), err)
	}
	for _, p := range m {
		if _, err := os.ReadFile(p); err != nil {
			t.Fatal(err)
		}
	}
}
