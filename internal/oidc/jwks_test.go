package oidc

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/jwks")

// loadTestKeys loads testdata/keys files, failing t on error.
func loadTestKeys(t *testing.T, names ...string) []crypto.PublicKey {
	t.Helper()
	var files []string
	for _, n := range names {
		files = append(files, keyFile(n))
	}
	keys, err := LoadKeys(files...)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestNewJWKSMatchesAPIServerEncoding encodes keys the way kube-apiserver
// does (pkg/serviceaccount/openidmetadata.go: a go-jose JSONWebKey with the
// kid, the alg and use "sig", in a JSONWebKeySet, through json.Marshal) and
// compares bytes.
func TestNewJWKSMatchesAPIServerEncoding(t *testing.T) {
	tests := []struct {
		name    string
		files   []string
		wantAlg []string
	}{
		{"rsa", []string{"rsa.pub"}, []string{"RS256"}},
		{"p256", []string{"ec-p256.pub"}, []string{"ES256"}},
		{"p384", []string{"ec-p384.key"}, []string{"ES384"}},
		{"p521", []string{"ec-p521.crt"}, []string{"ES512"}},
		{"all", []string{"rsa.pub", "ec-p256.pub", "ec-p384.key", "ec-p521.key"}, []string{"ES256", "ES384", "ES512", "RS256"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys := loadTestKeys(t, tt.files...)
			set, err := NewJWKS(keys, false)
			if err != nil {
				t.Fatal(err)
			}
			got, err := set.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			var want jose.JSONWebKeySet
			for _, k := range keys {
				kid, err := KeyID(k)
				if err != nil {
					t.Fatal(err)
				}
				want.Keys = append(want.Keys, jose.JSONWebKey{Key: k, KeyID: kid, Algorithm: apiServerAlg(t, k), Use: "sig"})
			}
			slices.SortFunc(want.Keys, func(a, b jose.JSONWebKey) int { return strings.Compare(a.KeyID, b.KeyID) })
			wantJSON, err := json.Marshal(want)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, wantJSON) {
				t.Errorf("JWKS differs from kube-apiserver's encoding\n got: %s\nwant: %s", got, wantJSON)
			}
			if algs := set.Algorithms(); !slices.Equal(algs, tt.wantAlg) {
				t.Errorf("Algorithms() = %v, want %v", algs, tt.wantAlg)
			}
		})
	}
}

// apiServerAlg is kube-apiserver's algorithmFromPublicKey.
func apiServerAlg(t *testing.T, k crypto.PublicKey) string {
	t.Helper()
	switch k := k.(type) {
	case *rsa.PublicKey:
		return "RS256"
	case *ecdsa.PublicKey:
		return map[elliptic.Curve]string{elliptic.P256(): "ES256", elliptic.P384(): "ES384", elliptic.P521(): "ES512"}[k.Curve]
	}
	t.Fatalf("unexpected key %T", k)
	return ""
}

// TestNewJWKSGolden pins the exact bytes for a set with every key type,
// duplicates and the legacy empty kid.
func TestNewJWKSGolden(t *testing.T) {
	tests := []struct {
		golden string
		legacy bool
	}{
		{"all.json", false},
		{"all-legacy.json", true},
	}
	files := []string{"rsa-pkcs1.key", "ec-p521.crt", "two-blocks.pem", "ec-p256-params.key", "rsa.crt", "ec-p521.key"}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			set, err := NewJWKS(loadTestKeys(t, files...), tt.legacy)
			if err != nil {
				t.Fatal(err)
			}
			got, err := set.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", "jwks", tt.golden)
			if *update {
				if err := os.WriteFile(path, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, bytes.TrimSuffix(want, []byte("\n"))) {
				t.Errorf("JWKS differs from %s (go test -update rewrites it)\n got: %s\nwant: %s", path, got, want)
			}
		})
	}
}

// TestNewJWKSOrderAndLegacy checks sorting by kid, duplicates once, and the
// legacy copies: RSA keys only, "kid": "" kept in the output, after the
// sorted keys.
func TestNewJWKSOrderAndLegacy(t *testing.T) {
	keys := loadTestKeys(t, "rsa.pub", "ec-p384.key", "rsa-pkcs8.key", "ec-p256.pub", "ec-p521.key", "rsa.crt")
	tests := []struct {
		legacy bool
		want   []string
	}{
		{false, []string{kidP384, kidRSA, kidP256, kidP521}}, // byte order: "N" < "Y" < "Z" < "p"
		{true, []string{kidP384, kidRSA, kidP256, kidP521, ""}},
	}
	for _, tt := range tests {
		set, err := NewJWKS(keys, tt.legacy)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, k := range set.Keys {
			got = append(got, k.Kid)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("legacy=%v: kids = %q, want %q", tt.legacy, got, tt.want)
		}
		if !tt.legacy {
			continue
		}
		last := set.Keys[len(set.Keys)-1]
		if last.Kty != "RSA" || last.N != set.Keys[1].N {
			t.Errorf("legacy copy %+v is not the RSA key", last)
		}
		b, err := set.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte(`{"use":"sig","kty":"RSA","kid":"","alg":"RS256","n":"`)) {
			t.Errorf(`marshalled JWKS lacks the "kid":"" key: %s`, b)
		}
	}
}

func TestNewJWKSRejects(t *testing.T) {
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		keys []crypto.PublicKey
		want string
	}{
		{"none", nil, "no keys"},
		{"rsa 1024", []crypto.PublicKey{&small.PublicKey}, "1024 bits"},
		{"ed25519", []crypto.PublicKey{edPub}, "Ed25519"},
		{"p224", []crypto.PublicKey{&p224.PublicKey}, "P-224"},
		{"string", []crypto.PublicKey{"key"}, "unsupported key type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewJWKS(tt.keys, false); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestNewJWKSPrivateKey: a private key given as a crypto.PublicKey is
// published as its public half only.
func TestNewJWKSPrivateKey(t *testing.T) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	fromPrivate, err := NewJWKS([]crypto.PublicKey{k}, false)
	if err != nil {
		t.Fatal(err)
	}
	fromPublic, err := NewJWKS([]crypto.PublicKey{&k.PublicKey}, false)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := fromPrivate.Marshal()
	b, _ := fromPublic.Marshal()
	if !bytes.Equal(a, b) {
		t.Errorf("private key encoded as %s, public as %s", a, b)
	}
}

func TestParseJWKSRoundTrip(t *testing.T) {
	for _, golden := range []string{"all.json", "all-legacy.json"} {
		data, err := os.ReadFile(filepath.Join("testdata", "jwks", golden))
		if err != nil {
			t.Fatal(err)
		}
		set, err := ParseJWKS(data)
		if err != nil {
			t.Fatalf("%s: %v", golden, err)
		}
		out, err := set.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, bytes.TrimSpace(data)) {
			t.Errorf("%s: round trip changed the document\n got: %s\nwant: %s", golden, out, data)
		}
		for _, k := range set.Keys {
			pub, err := k.PublicKey()
			if err != nil {
				t.Fatal(err)
			}
			if kid, _ := KeyID(pub); k.Kid != "" && kid != k.Kid {
				t.Errorf("key %s decodes to a key with kid %s", k.Kid, kid)
			}
		}
	}
}

func TestParseJWKSRejects(t *testing.T) {
	set, err := NewJWKS(loadTestKeys(t, "rsa.pub", "ec-p256.pub"), false)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, ecKey := set.Keys[0], set.Keys[1] // sorted by kid
	if rsaKey.Kty != "RSA" || ecKey.Kty != "EC" {
		t.Fatalf("unexpected order: %+v", set.Keys)
	}
	doc := func(keys ...any) string {
		b, err := json.Marshal(map[string]any{"keys": keys})
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	with := func(k JWK, f func(*JWK)) JWK { f(&k); return k }
	withPrivate := map[string]any{"use": "sig", "kty": "EC", "kid": ecKey.Kid, "crv": "P-256", "alg": "ES256",
		"x": ecKey.X, "y": ecKey.Y, "d": "c2VjcmV0LXNjYWxhcg"}
	tests := []struct {
		name, data, want string
	}{
		{"not json", "{", "not a JSON object"},
		{"array", "[]", "not a JSON object"},
		{"no keys", "{}", `no "keys" array`},
		{"empty keys", `{"keys":[]}`, "no keys"},
		{"key not object", `{"keys":[1]}`, "key 1: not a JSON object"},
		{"unknown kty", doc(with(rsaKey, func(k *JWK) { k.Kty = "oct" })), `"kty" is "oct"`},
		{"private member", doc(withPrivate), "private or symmetric key material"},
		{"alg mismatch", doc(with(rsaKey, func(k *JWK) { k.Alg = "ES256" })), `"alg" is "ES256"`},
		{"no alg", doc(with(ecKey, func(k *JWK) { k.Alg = "" })), `"alg" is ""`},
		{"use enc", doc(with(rsaKey, func(k *JWK) { k.Use = "enc" })), `"use" is "enc"`},
		{"short x", doc(with(ecKey, func(k *JWK) { k.X = k.X[:20] })), "must be 32 bytes"},
		{"off curve", doc(with(ecKey, func(k *JWK) { k.X, k.Y = k.Y, k.X })), "not a point on P-256"},
		{"unknown curve", doc(with(ecKey, func(k *JWK) { k.Crv = "P-224" })), `"crv" is "P-224"`},
		{"padded n", doc(with(rsaKey, func(k *JWK) { k.N += "=" })), `"n" is not unpadded base64url`},
		{"missing e", doc(with(rsaKey, func(k *JWK) { k.E = "" })), `"e" is missing`},
		{"even e", doc(with(rsaKey, func(k *JWK) { k.E = "AQAA" })), `"e" is not a valid RSA exponent`},
		{"short n", doc(with(rsaKey, func(k *JWK) { k.N = k.N[:100] })), "bits; at least 2048"},
		{"rsa with crv", doc(with(rsaKey, func(k *JWK) { k.Crv = "P-256" })), "RSA key with EC members"},
		{"second key bad", doc(rsaKey, with(ecKey, func(k *JWK) { k.Kty = "" })), "key 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseJWKS([]byte(tt.data))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want one containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "c2VjcmV0") {
				t.Errorf("error shows the private member: %v", err)
			}
		})
	}
}

// FuzzParseJWKS feeds arbitrary documents to ParseJWKS: it must not panic,
// and a document it accepts must survive Marshal and ParseJWKS unchanged
// (what publish writes, it can read back to the same bytes). Seeds: the
// golden files and testdata/fuzz/FuzzParseJWKS.
func FuzzParseJWKS(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "jwks", "*.json"))
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		set, err := ParseJWKS(data)
		if err != nil {
			return
		}
		once, err := set.Marshal()
		if err != nil {
			t.Fatalf("accepted JWKS does not marshal: %v", err)
		}
		again, err := ParseJWKS(once)
		if err != nil {
			t.Fatalf("marshalled JWKS does not parse: %v\n%s", err, once)
		}
		twice, err := again.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(once, twice) {
			t.Fatalf("round trip not stable:\n%s\n%s", once, twice)
		}
		for i, k := range set.Keys {
			if _, err := k.PublicKey(); err != nil {
				t.Fatalf("accepted key %d does not decode: %v", i, err)
			}
		}
	})
}
