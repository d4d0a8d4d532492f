package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/podiam/podiam/internal/jwks"
	"github.com/podiam/podiam/test/testutil/testjwt"
)

// TestTokenCheck covers every answer to a pod token.
func TestTokenCheck(t *testing.T) {
	tests := []struct {
		name   string
		token  func(t *testing.T) string
		keys   KeyVerifier // nil: the cluster's keys
		status int         // 0: accepted
		msg    string
	}{
		{name: "valid", token: func(t *testing.T) string { return testClaims().sign(t) }},
		{name: "garbage", token: func(*testing.T) string { return "garbage" }, status: http.StatusBadRequest, msg: "not a JWT"},
		{name: "expired", token: func(t *testing.T) string {
			c := testClaims()
			c["exp"] = testStart.Add(-time.Minute).Unix()
			return c.sign(t)
		}, status: http.StatusBadRequest, msg: "expired"},
		{name: "not yet valid", token: func(t *testing.T) string {
			c := testClaims()
			c["nbf"] = testStart.Add(time.Minute).Unix()
			return c.sign(t)
		}, status: http.StatusBadRequest, msg: "not yet valid"},
		{name: "no exp", token: func(t *testing.T) string { c := testClaims(); delete(c, "exp"); return c.sign(t) }, status: http.StatusBadRequest, msg: "exp"},
		{name: "other issuer", token: func(t *testing.T) string {
			c := testClaims()
			c["iss"] = "https://other.test"
			return c.sign(t)
		}, status: http.StatusForbidden, msg: "issuer"},
		{name: "other audience", token: func(t *testing.T) string {
			c := testClaims()
			c["aud"] = []string{"sts.amazonaws.com"}
			return c.sign(t)
		}, status: http.StatusForbidden, msg: "audience"},
		{name: "other cluster's key", token: func(t *testing.T) string { return signWith(t, otherKey, testClaims()) }, status: http.StatusForbidden, msg: "signature"},
		{name: "alg none", token: func(t *testing.T) string { return unsigned(t, testClaims()) }, status: http.StatusForbidden, msg: "signature"},
		{name: "forged signature", token: func(t *testing.T) string {
			tok := testClaims().sign(t)
			i := strings.LastIndexByte(tok, '.')
			return tok[:i+1] + strings.Repeat("A", len(tok)-i-1)
		}, status: http.StatusForbidden, msg: "signature"},
		{name: "keys unreachable", token: func(t *testing.T) string { return testClaims().sign(t) },
			keys: jwks.NewKeySet(testjwt.StaticJWKS{Err: errors.New("connection refused")}, jwks.Options{}), status: http.StatusServiceUnavailable, msg: "keys"},
		{name: "other node", token: func(t *testing.T) string { return podClaims(testPod, testUID, "node-2").sign(t) }, status: http.StatusForbidden, msg: `"node-2"`},
		{name: "no node", token: func(t *testing.T) string { c := testClaims(); delete(c.kube(), "node"); return c.sign(t) }, status: http.StatusForbidden, msg: "node"},
		{name: "not bound to a pod", token: func(t *testing.T) string { c := testClaims(); delete(c.kube(), "pod"); return c.sign(t) }, status: http.StatusForbidden, msg: "pod"},
		{name: "no kubernetes claim", token: func(t *testing.T) string { c := testClaims(); delete(c, "kubernetes.io"); return c.sign(t) }, status: http.StatusForbidden, msg: "ServiceAccount"},
		{name: "subject mismatch", token: func(t *testing.T) string {
			c := testClaims()
			c["sub"] = "system:serviceaccount:kube-system:admin"
			return c.sign(t)
		}, status: http.StatusForbidden, msg: "subject"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(o *Options) {
				if tt.keys != nil {
					o.Keys = tt.keys
				}
			})
			tok := tt.token(t)
			pt, r := e.h.tokens.check(context.Background(), tok)
			if tt.status == 0 {
				if r != nil {
					t.Fatalf("refused: %v", r)
				}
				want := podToken{Namespace: testNS, ServiceAccount: testSA, PodName: testPod, PodUID: testUID, Expiry: testStart.Add(time.Hour)}
				if *pt != want {
					t.Fatalf("facts %+v, want %+v", *pt, want)
				}
				return
			}
			if r == nil {
				t.Fatalf("accepted, want %d", tt.status)
			}
			if r.Status != tt.status || !strings.Contains(r.Message, tt.msg) {
				t.Fatalf("refusal %d %q, want %d containing %q", r.Status, r.Message, tt.status, tt.msg)
			}
			if len(tok) > 100 && strings.Contains(r.Message, tok[len(tok)-40:]) {
				t.Fatalf("the message holds the token: %q", r.Message)
			}
		})
	}
}

// TestTokenCache checks that a verified token is not verified again until it
// expires or for 10 minutes (the keys may change), that refusals are not cached, and that forgetting a pod drops the
// facts of its tokens.
func TestTokenCache(t *testing.T) {
	tests := []struct {
		name       string
		size       int
		steps      func(e *env, tok string)
		wantStatus int // of the last check; 0 accepted
		wantChecks int64
	}{
		{"hit", 0, func(e *env, tok string) {}, 0, 1},
		{"expired entry is verified again and refused", 0, func(e *env, tok string) { e.clock.advance(time.Hour) }, http.StatusBadRequest, 2},
		{"within 10 minutes a hit", 0, func(e *env, tok string) { e.clock.advance(10*time.Minute - time.Second) }, 0, 1},
		{"after 10 minutes verified again, exp or not", 0, func(e *env, tok string) { e.clock.advance(10 * time.Minute) }, 0, 2},
		{"just before exp verified again", 0, func(e *env, tok string) { e.clock.advance(time.Hour - time.Second) }, 0, 2},
		{"forget drops it", 0, func(e *env, tok string) { e.h.Forget(testUID) }, 0, 2},
		{"forget of another pod keeps it", 0, func(e *env, tok string) { e.h.Forget("other-uid") }, 0, 1},
		{"disabled", -1, func(e *env, tok string) {}, 0, 2},
		{"bounded", 1, func(e *env, tok string) {
			if _, r := e.h.tokens.check(context.Background(), podClaims("p2", "uid-2", testNode).sign(e.t())); r != nil {
				panic(r)
			}
		}, 0, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(o *Options) { o.TokenCacheSize = tt.size })
			tok := testClaims().sign(t)
			if _, r := e.h.tokens.check(context.Background(), tok); r != nil {
				t.Fatal(r)
			}
			tt.steps(e, tok)
			_, r := e.h.tokens.check(context.Background(), tok)
			switch {
			case tt.wantStatus == 0 && r != nil:
				t.Fatalf("refused: %v", r)
			case tt.wantStatus != 0 && (r == nil || r.Status != tt.wantStatus):
				t.Fatalf("got %v, want status %d", r, tt.wantStatus)
			}
			if n := e.keys.n.Load(); n != tt.wantChecks {
				t.Fatalf("%d signature checks, want %d", n, tt.wantChecks)
			}
		})
	}
}

// TestTokenCacheRefusalsNotCached checks that a refused token is checked
// again each time: a refusal must not be remembered as an acceptance.
func TestTokenCacheRefusalsNotCached(t *testing.T) {
	e := newEnv(t, nil)
	tok := podClaims(testPod, testUID, "node-2").sign(t)
	for i := range 2 {
		if _, r := e.h.tokens.check(context.Background(), tok); r == nil || r.Status != http.StatusForbidden {
			t.Fatalf("check %d: %v, want 403", i, r)
		}
	}
	if n := e.keys.n.Load(); n != 2 {
		t.Fatalf("%d signature checks, want 2", n)
	}
}

// TestTokenVerifyLimit checks the node-wide limit on signature checks: past
// the burst, new tokens are refused with 429 until the bucket refills, while
// tokens already verified are still answered from the cache.
func TestTokenVerifyLimit(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	valid := testClaims().sign(t)
	if _, r := e.h.tokens.check(ctx, valid); r != nil {
		t.Fatal(r)
	}
	for i := range verifyBurst - 1 {
		if _, r := e.h.tokens.check(ctx, fmt.Sprintf("forged-%d", i)); r == nil || r.Status != http.StatusBadRequest {
			t.Fatalf("forged token %d: %v, want 400", i, r)
		}
	}
	if _, r := e.h.tokens.check(ctx, "one-too-many"); r == nil || r.Status != http.StatusTooManyRequests {
		t.Fatalf("token past the burst: %v, want 429", r)
	}
	if _, r := e.h.tokens.check(ctx, valid); r != nil {
		t.Fatalf("cached token: %v", r)
	}
	e.clock.advance(time.Second)
	if _, r := e.h.tokens.check(ctx, "after-refill"); r == nil || r.Status != http.StatusBadRequest {
		t.Fatalf("after a second: %v, want 400", r)
	}
}
