// Package testjwt makes the tokens that unit tests of pod-token verifiers
// check: ServiceAccount tokens bound to a pod, written and signed (ES256, with
// the key's kid) as kube-apiserver writes them, by keys derived from fixed
// seeds so that every run and every fuzz worker signs with the same ones, and
// the JWKS document that publishes those keys. It lives apart from testutil
// because it depends on this module's internal/oidc.
package testjwt

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/podiam/podiam/internal/oidc"
)

// FixedKey derives a P-256 key from seed: the same seed, the same key.
func FixedKey(seed string) *ecdsa.PrivateKey {
	d := sha256.Sum256([]byte(seed))
	k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d[:])
	if err != nil {
		// Only a seed whose hash is not a valid P-256 scalar gets here, which
		// no caller can fix at run time.
		panic(fmt.Sprintf("deriving a P-256 key from seed %q: %v", seed, err))
	}
	return k
}

// StaticJWKS is a JWKS source (jwks.Source) that serves Doc, or fails with Err
// as an unreachable issuer does.
type StaticJWKS struct {
	Doc []byte
	Err error
}

// Fetch returns Doc and Err.
func (s StaticJWKS) Fetch(context.Context) ([]byte, error) { return s.Doc, s.Err }

// JWKS returns the JWKS document of key's public key, as kube-apiserver
// publishes it (kid included).
func JWKS(t testing.TB, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	set, err := oidc.NewJWKS([]crypto.PublicKey{key.Public()}, false)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := set.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// KeyID returns the kid kube-apiserver gives key.
func KeyID(t testing.TB, key *ecdsa.PrivateKey) string {
	t.Helper()
	kid, err := oidc.KeyID(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	return kid
}

// Pod describes a token of ServiceAccount Namespace/ServiceAccount bound to
// pod Name (UID) on Node, for Audience, from Issuer.
type Pod struct {
	Issuer, Audience          string
	Namespace, ServiceAccount string
	Name, UID, Node           string
	// Now is when the token is checked: it was issued (iat, nbf) a minute
	// before and expires (exp) an hour after.
	Now time.Time
	// JTI is the token's jti claim; none when empty.
	JTI string
}

// Claims returns p's claims, as kube-apiserver writes them, for a test to edit
// before it signs them.
func (p Pod) Claims() map[string]any {
	c := map[string]any{
		"iss": p.Issuer,
		"aud": []string{p.Audience},
		"sub": "system:serviceaccount:" + p.Namespace + ":" + p.ServiceAccount,
		"exp": p.Now.Add(time.Hour).Unix(),
		"iat": p.Now.Add(-time.Minute).Unix(),
		"nbf": p.Now.Add(-time.Minute).Unix(),
		"kubernetes.io": map[string]any{
			"namespace":      p.Namespace,
			"serviceaccount": map[string]any{"name": p.ServiceAccount, "uid": "sa-uid"},
			"pod":            map[string]any{"name": p.Name, "uid": p.UID},
			"node":           map[string]any{"name": p.Node, "uid": "node-uid"},
		},
	}
	if p.JTI != "" {
		c["jti"] = p.JTI
	}
	return c
}

// Kube returns the kubernetes.io claim of claims made by Pod.Claims, for
// editing in place.
func Kube(claims map[string]any) map[string]any {
	return claims["kubernetes.io"].(map[string]any)
}

// Sign signs claims with key (ES256) under kid, as kube-apiserver does, and
// returns the compact token.
func Sign(t testing.TB, key *ecdsa.PrivateKey, kid string, claims map[string]any) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Compact writes a compact token of header, claims and signature without
// signing anything: for algorithms ("none", HS256) a verifier must refuse
// outright.
func Compact(t testing.TB, header, claims map[string]any, signature []byte) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	p, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	return enc(h) + "." + enc(p) + "." + enc(signature)
}
