package testjwt

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/podiam/podiam/internal/jwks"
)

// TestSignVerifies checks that a signed token verifies against the JWKS of its
// key and reads back as the claims it was made of, and that anything else
// (another key, a junk signature) does not: the verifiers' tests rely on both.
func TestSignVerifies(t *testing.T) {
	key, other := FixedKey("seed a"), FixedKey("seed b")
	now := time.Unix(1_800_000_000, 0).UTC()
	pod := Pod{
		Issuer: "https://issuer.test", Audience: "aud", Namespace: "ns", ServiceAccount: "sa",
		Name: "p", UID: "uid", Node: "n", Now: now, JTI: "j",
	}
	keys := jwks.NewKeySet(StaticJWKS{Doc: JWKS(t, key)}, jwks.Options{Now: func() time.Time { return now }})
	tests := []struct {
		name    string
		token   string
		wantErr bool
	}{
		{name: "signed by the published key", token: Sign(t, key, KeyID(t, key), pod.Claims())},
		{name: "another key under its kid", token: Sign(t, other, KeyID(t, key), pod.Claims()), wantErr: true},
		{name: "junk signature", token: Compact(t, map[string]any{"alg": "ES256", "kid": KeyID(t, key)}, pod.Claims(), []byte("x")), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := jwks.Parse(tt.token)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			err = keys.Verify(context.Background(), tok)
			if (err != nil) != tt.wantErr {
				t.Fatalf("verify: %v, want error %v", err, tt.wantErr)
			}
			c := tok.Claims
			k := c.Kubernetes
			if c.Issuer != pod.Issuer || c.Subject != "system:serviceaccount:ns:sa" ||
				len(c.Audience) != 1 || c.Audience[0] != pod.Audience ||
				c.Expiry == nil || !c.Expiry.Equal(now.Add(time.Hour)) ||
				c.NotBefore == nil || !c.NotBefore.Equal(now.Add(-time.Minute)) ||
				k == nil || k.Namespace != "ns" || k.ServiceAccount == nil || k.ServiceAccount.Name != "sa" ||
				k.Pod == nil || k.Pod.Name != "p" || k.Pod.UID != "uid" || k.Node == nil || k.Node.Name != "n" {
				t.Fatalf("claims read back as %+v (kubernetes.io %+v)", c, k)
			}
			if jti, _ := c.Claim("jti"); jti != "j" {
				t.Fatalf("jti = %v, want j", jti)
			}
		})
	}
}

// TestFixedKey checks that a seed always derives the same key and that two
// seeds derive two keys: tokens in fuzz corpora depend on the first.
func TestFixedKey(t *testing.T) {
	if !FixedKey("s").Equal(FixedKey("s")) {
		t.Fatal("one seed derived two keys")
	}
	if FixedKey("s").Equal(FixedKey("t")) {
		t.Fatal("two seeds derived one key")
	}
}

// TestStaticJWKS checks that the source fails as told, as an unreachable
// issuer does.
func TestStaticJWKS(t *testing.T) {
	boom := errors.New("connection refused")
	if _, err := (StaticJWKS{Err: boom}).Fetch(context.Background()); !errors.Is(err, boom) {
		t.Fatalf("Fetch = %v, want %v", err, boom)
	}
}

// TestPodWithoutJTI checks that a Pod without JTI writes no jti claim, as
// the agent's tests expect of their tokens.
func TestPodWithoutJTI(t *testing.T) {
	if jti, ok := (Pod{}).Claims()["jti"]; ok {
		t.Fatalf("a Pod without JTI wrote jti %v", jti)
	}
}
