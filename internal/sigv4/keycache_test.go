package sigv4

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
)

// TestDeriveSigningKey checks the derivation against the example in AWS's
// SigV4 documentation.
func TestDeriveSigningKey(t *testing.T) {
	tests := []struct {
		secret, date, region, service, want string
	}{
		{"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215", "us-east-1", "iam",
			"f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"},
	}
	for _, tc := range tests {
		t.Run(tc.service, func(t *testing.T) {
			got := hex.EncodeToString(deriveSigningKey(tc.secret, tc.date, tc.region, tc.service))
			if got != tc.want {
				t.Fatalf("signing key = %s, want %s", got, tc.want)
			}
		})
	}
}

// TestSigningKeySum checks the precomputed-pad HMAC against crypto/hmac.
func TestSigningKeySum(t *testing.T) {
	key := deriveSigningKey(testSecret, "20260101", testRegion, "sts")
	k := newSigningKey(key)
	for _, n := range []int{0, 1, 55, 56, 64, 150, 256, 300, 1000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			msg := []byte(strings.Repeat("x", n))
			mac := hmac.New(sha256.New, key)
			mac.Write(msg)
			got := k.sum(msg)
			if !hmac.Equal(got[:], mac.Sum(nil)) {
				t.Fatalf("HMAC of %d bytes differs from crypto/hmac", n)
			}
		})
	}
}

// TestKeyCacheStoresOnlyVerifiedKeys: a failed verification must not fill
// the cache (a client choosing arbitrary regions could otherwise grow it).
func TestKeyCacheStoresOnlyVerifiedKeys(t *testing.T) {
	tests := []struct {
		name   string
		secret string
		want   int
	}{
		{"right secret", testSecret, 1},
		{"wrong secret", testOtherSecret, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := NewVerifier("sts")
			r, body := signedGCI(t, userCreds)
			lookup := func(context.Context, string, string) (string, error) { return tc.secret, nil }
			_, _ = v.Verify(r, body, signTime, lookup)
			if got := len(v.keys.keys); got != tc.want {
				t.Fatalf("cache holds %d keys, want %d", got, tc.want)
			}
			// A second verification finds the key cached and still agrees.
			_, err := v.Verify(r, body, signTime, lookup)
			if (err == nil) != (tc.want == 1) {
				t.Fatalf("second Verify: %v", err)
			}
		})
	}
}

func TestKeyCacheBounded(t *testing.T) {
	c := newKeyCache()
	for i := range maxCachedKeys + 10 {
		k := keyCacheKey{secret: "s", date: "20260101", region: fmt.Sprintf("r%d", i), service: "sts"}
		key, cached := c.get(k)
		if cached {
			t.Fatalf("key %d found before it was stored", i)
		}
		c.put(k, key)
		if len(c.keys) > maxCachedKeys {
			t.Fatalf("cache grew to %d keys", len(c.keys))
		}
	}
	k := keyCacheKey{secret: "s", date: "20260101", region: fmt.Sprintf("r%d", maxCachedKeys+9), service: "sts"}
	if _, cached := c.get(k); !cached {
		t.Fatal("the last stored key is not cached")
	}
}
