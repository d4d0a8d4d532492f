package auth

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/podiam/podiam/internal/eksauth"
	"github.com/podiam/podiam/internal/jwks"
	"github.com/podiam/podiam/test/testutil/testjwt"
)

// The tokens of these tests are signed with ES256 by fixed keys, so that a
// token written into the fuzz corpus verifies in every run and every fuzz
// worker; the verifiers' clock is fixed for the same reason.
var (
	vtKey      = testjwt.FixedKey("podiam auth test key")
	vtOtherKey = testjwt.FixedKey("another cluster's key")
	vtNow      = time.Unix(1_800_000_000, 0).UTC()
)

const (
	vtIssuer     = "https://issuer.test/cluster"
	vtAgentNS    = "kube-system"
	vtAgentSA    = "podiam-agent"
	vtAgentAud   = DefaultAgentAudience
	vtAgentPod   = "podiam-agent-x7k2p"
	vtAgentUID   = "agent-uid-1"
	vtNode       = "node-1"
	vtOtherNode  = "node-2"
	vtPodNS      = "shop"
	vtPodSA      = "cart"
	vtPodName    = "cart-5d9f"
	vtPodUID     = "pod-uid-1"
	vtBadKidName = "no-such-kid"
)

// vtKeySet is a key set holding vtKey's public key, as kube-apiserver
// publishes it (kid included).
func vtKeySet(t testing.TB) *jwks.KeySet {
	t.Helper()
	return jwks.NewKeySet(testjwt.StaticJWKS{Doc: testjwt.JWKS(t, vtKey)}, jwks.Options{Now: func() time.Time { return vtNow }})
}

// vtKid is the kid of vtKey.
func vtKid(t testing.TB) string {
	t.Helper()
	return testjwt.KeyID(t, vtKey)
}

// vtVerifier is the Verifier `podiam auth` would build for the test cluster.
func vtVerifier(t testing.TB) *Verifier {
	return &Verifier{
		Keys: vtKeySet(t), Issuer: vtIssuer,
		AgentNamespace: vtAgentNS, AgentServiceAccount: vtAgentSA, AgentAudience: vtAgentAud,
		Now: func() time.Time { return vtNow }, Leeway: 10 * time.Second,
	}
}

// vtVerifierWith is vtVerifier with keys as its key set, unless keys is nil.
func vtVerifierWith(t testing.TB, keys KeyVerifier) *Verifier {
	v := vtVerifier(t)
	if keys != nil {
		v.Keys = keys
	}
	return v
}

// vtUnreachableKeys is a key set whose issuer cannot be reached.
func vtUnreachableKeys() KeyVerifier {
	return jwks.NewKeySet(testjwt.StaticJWKS{Err: errors.New("connection refused")}, jwks.Options{})
}

// vtClaims are a token's claims, as kube-apiserver writes those of a token
// bound to a pod.
type vtClaims map[string]any

// vtKubeClaims are the claims of a token of ServiceAccount ns/sa bound to pod
// name (uid) on node, for audience aud.
func vtKubeClaims(aud, ns, sa, pod, uid, node string) vtClaims {
	return testjwt.Pod{
		Issuer: vtIssuer, Audience: aud, Namespace: ns, ServiceAccount: sa,
		Name: pod, UID: uid, Node: node, Now: vtNow, JTI: "jti-1",
	}.Claims()
}

// vtPodClaims are the claims of the test pod's token, on vtNode.
func vtPodClaims() vtClaims {
	return vtKubeClaims(eksauth.Audience, vtPodNS, vtPodSA, vtPodName, vtPodUID, vtNode)
}

// vtAgentClaims are the claims of the agent's token, on vtNode.
func vtAgentClaims() vtClaims {
	return vtKubeClaims(vtAgentAud, vtAgentNS, vtAgentSA, vtAgentPod, vtAgentUID, vtNode)
}

// kube returns the kubernetes.io claim for editing.
func (c vtClaims) kube() map[string]any { return testjwt.Kube(c) }

// sign signs c with vtKey (ES256, vtKey's kid).
func (c vtClaims) sign(t testing.TB) string {
	t.Helper()
	return vtSignES256(t, vtKey, vtKid(t), c)
}

// vtSignES256 signs c with key under kid, as kube-apiserver does.
func vtSignES256(t testing.TB, key *ecdsa.PrivateKey, kid string, c vtClaims) string {
	t.Helper()
	return testjwt.Sign(t, key, kid, c)
}

// vtUnsigned builds a token with the given header and c and a junk signature,
// for algorithms a verifier must refuse outright.
func vtUnsigned(t testing.TB, header map[string]any, c vtClaims) string {
	t.Helper()
	return testjwt.Compact(t, header, c, []byte("not a signature"))
}

// TestVerifierPod covers every answer to a pod token.
func TestVerifierPod(t *testing.T) {
	tests := []struct {
		name  string
		token func(t *testing.T) string
		// keys, when set, replaces the verifier's key set.
		keys     KeyVerifier
		wantCode string // "" for success
		wantMsg  string // a part of the message
		// wantExpiry is the Expiry of an accepted token; vtNow + 1h when zero.
		wantExpiry time.Time
	}{
		{name: "valid", token: func(t *testing.T) string { return vtPodClaims().sign(t) }},
		{name: "malformed", token: func(*testing.T) string { return "abc.def" },
			wantCode: eksauth.CodeInvalidToken, wantMsg: "malformed"},
		{name: "forged with another key under the cluster's kid", token: func(t *testing.T) string {
			return vtSignES256(t, vtOtherKey, vtKid(t), vtPodClaims())
		}, wantCode: eksauth.CodeInvalidToken, wantMsg: "signature"},
		{name: "unknown kid", token: func(t *testing.T) string {
			return vtSignES256(t, vtKey, vtBadKidName, vtPodClaims())
		}, wantCode: eksauth.CodeInvalidToken, wantMsg: "no matching verification key"},
		{name: "alg none", token: func(t *testing.T) string {
			return vtUnsigned(t, map[string]any{"alg": "none", "kid": vtKid(t)}, vtPodClaims())
		}, wantCode: eksauth.CodeInvalidToken, wantMsg: "algorithm"},
		{name: "alg HS256", token: func(t *testing.T) string {
			return vtUnsigned(t, map[string]any{"alg": "HS256", "kid": vtKid(t)}, vtPodClaims())
		}, wantCode: eksauth.CodeInvalidToken, wantMsg: "algorithm"},
		{name: "another cluster's issuer", token: func(t *testing.T) string {
			c := vtPodClaims()
			c["iss"] = "https://other.test/cluster"
			return vtSignES256(t, vtOtherKey, "other", c)
		}, wantCode: eksauth.CodeInvalidToken, wantMsg: "issuer"},
		{name: "agent audience", token: func(t *testing.T) string {
			c := vtPodClaims()
			c["aud"] = []string{vtAgentAud}
			return c.sign(t)
		}, wantCode: eksauth.CodeInvalidToken, wantMsg: "audience"},
		{name: "no audience", token: func(t *testing.T) string {
			c := vtPodClaims()
			delete(c, "aud")
			return c.sign(t)
		}, wantCode: eksauth.CodeInvalidToken, wantMsg: "audience (none)"},
		{name: "audience among others", token: func(t *testing.T) string {
			c := vtPodClaims()
			c["aud"] = []string{"sts.amazonaws.com", eksauth.Audience}
			return c.sign(t)
		}},
		{name: "expired", token: func(t *testing.T) string {
			c := vtPodClaims()
			c["exp"] = vtNow.Add(-time.Minute).Unix()
			return c.sign(t)
		}, wantCode: eksauth.CodeExpiredToken, wantMsg: "expired"},
		{name: "expired within the leeway", token: func(t *testing.T) string {
			c := vtPodClaims()
			c["exp"] = vtNow.Add(-5 * time.Second).Unix()
			return c.sign(t)
		}, wantExpiry: vtNow.Add(-5 * time.Second)},
		{name: "no exp", token: func(t *testing.T) string {
			c := vtPodClaims()
			delete(c, "exp")
			return c.sign(t)
		}, wantCode: eksauth.CodeInvalidToken, wantMsg: "exp"},
		{name: "not yet valid", token: func(t *testing.T) string {
			c := vtPodClaims()
			c["nbf"] = vtNow.Add(time.Hour).Unix()
			return c.sign(t)
		}, wantCode: eksauth.CodeInvalidToken, wantMsg: "not yet valid"},
		{name: "not a ServiceAccount token", token: func(t *testing.T) string {
			c := vtPodClaims()
			delete(c, "kubernetes.io")
			return c.sign(t)
		}, wantCode: eksauth.CodeInvalidToken, wantMsg: "not a ServiceAccount token"},
		{name: "subject of another ServiceAccount", token: func(t *testing.T) string {
			c := vtPodClaims()
			c["sub"] = "system:serviceaccount:" + vtPodNS + ":admin"
			return c.sign(t)
		}, wantCode: eksauth.CodeInvalidToken, wantMsg: "does not match"},
		{name: "not bound to a pod", token: func(t *testing.T) string {
			c := vtPodClaims()
			delete(c.kube(), "pod")
			return c.sign(t)
		}, wantCode: eksauth.CodeInvalidToken, wantMsg: "not bound to a pod"},
		{name: "pod without uid", token: func(t *testing.T) string {
			c := vtPodClaims()
			c.kube()["pod"] = map[string]any{"name": vtPodName}
			return c.sign(t)
		}, wantCode: eksauth.CodeInvalidToken, wantMsg: "not bound to a pod"},
		{name: "no node", token: func(t *testing.T) string {
			c := vtPodClaims()
			delete(c.kube(), "node")
			return c.sign(t)
		}, wantCode: eksauth.CodeInvalidToken, wantMsg: "names no node"},
		{name: "keys unreachable", token: func(t *testing.T) string { return vtPodClaims().sign(t) },
			keys:     vtUnreachableKeys(),
			wantCode: eksauth.CodeServiceUnavailable, wantMsg: "could not be fetched"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := vtVerifierWith(t, tt.keys)
			tok := tt.token(t)
			pod, eerr := v.Pod(context.Background(), tok)
			if tt.wantCode == "" {
				if eerr != nil {
					t.Fatalf("Pod: %v", eerr)
				}
				want := Pod{Namespace: vtPodNS, ServiceAccount: vtPodSA, Name: vtPodName, UID: vtPodUID,
					NodeName: vtNode, Expiry: tt.wantExpiry}
				if want.Expiry.IsZero() {
					want.Expiry = vtNow.Add(time.Hour)
				}
				if pod != want {
					t.Errorf("Pod = %+v; want %+v", pod, want)
				}
				return
			}
			vtCheckRefusal(t, eerr, tt.wantCode, tt.wantMsg, tok)
		})
	}
}

// vtCheckRefusal checks e's code, HTTP status and message, and that the message does not
// hold the token.
func vtCheckRefusal(t *testing.T, e *eksauth.Error, code, msg, tok string) {
	t.Helper()
	if e == nil {
		t.Fatalf("accepted; want %s", code)
	}
	if e.Code != code {
		t.Errorf("code = %s (%s); want %s", e.Code, e.Message, code)
	}
	// A refusal of the caller's own token (AccessDeniedException here) is
	// sent with 403, so that the agent tells it from a refusal of a pod (400).
	wantStatus := eksauth.StatusFor(code)
	if code == eksauth.CodeAccessDenied {
		wantStatus = http.StatusForbidden
	}
	if e.HTTPStatus() != wantStatus {
		t.Errorf("HTTP status %d; want %d", e.HTTPStatus(), wantStatus)
	}
	if !strings.Contains(e.Message, msg) {
		t.Errorf("message %q does not contain %q", e.Message, msg)
	}
	if tok != "" && strings.Contains(e.Message, tok) {
		t.Errorf("message holds the token: %q", e.Message)
	}
}

// TestVerifierCaller covers every answer to a caller's Authorization header.
func TestVerifierCaller(t *testing.T) {
	bearer := func(c vtClaims) func(t *testing.T) string {
		return func(t *testing.T) string { return "Bearer " + c.sign(t) }
	}
	edit := func(f func(c vtClaims)) vtClaims {
		c := vtAgentClaims()
		f(c)
		return c
	}
	tests := []struct {
		name     string
		header   func(t *testing.T) string
		keys     KeyVerifier
		wantCode string
		wantMsg  string
	}{
		{name: "valid", header: bearer(vtAgentClaims())},
		{name: "lower-case scheme", header: func(t *testing.T) string { return "bearer " + vtAgentClaims().sign(t) }},
		{name: "no header", header: func(*testing.T) string { return "" },
			wantCode: eksauth.CodeAccessDenied, wantMsg: "no Authorization header"},
		{name: "basic scheme", header: func(*testing.T) string { return "Basic dXNlcjpwYXNz" },
			wantCode: eksauth.CodeAccessDenied, wantMsg: "not \"Bearer <token>\""},
		{name: "bearer without token", header: func(*testing.T) string { return "Bearer  " },
			wantCode: eksauth.CodeAccessDenied, wantMsg: "not \"Bearer <token>\""},
		{name: "token without scheme", header: func(t *testing.T) string { return vtAgentClaims().sign(t) },
			wantCode: eksauth.CodeAccessDenied, wantMsg: "not \"Bearer <token>\""},
		{name: "malformed", header: func(*testing.T) string { return "Bearer x.y" },
			wantCode: eksauth.CodeAccessDenied, wantMsg: "malformed"},
		{name: "forged", header: func(t *testing.T) string {
			return "Bearer " + vtSignES256(t, vtOtherKey, vtKid(t), vtAgentClaims())
		}, wantCode: eksauth.CodeAccessDenied, wantMsg: "signature"},
		{name: "pod audience", header: bearer(edit(func(c vtClaims) { c["aud"] = []string{eksauth.Audience} })),
			wantCode: eksauth.CodeAccessDenied, wantMsg: "audience"},
		{name: "wrong issuer", header: bearer(edit(func(c vtClaims) { c["iss"] = "https://other.test" })),
			wantCode: eksauth.CodeAccessDenied, wantMsg: "issuer"},
		{name: "expired", header: bearer(edit(func(c vtClaims) { c["exp"] = vtNow.Add(-time.Hour).Unix() })),
			wantCode: eksauth.CodeAccessDenied, wantMsg: "expired"},
		{name: "another ServiceAccount", header: bearer(vtKubeClaims(vtAgentAud, vtPodNS, vtPodSA, vtPodName, vtPodUID, vtNode)),
			wantCode: eksauth.CodeAccessDenied, wantMsg: "not the agent's ServiceAccount kube-system/podiam-agent"},
		{name: "agent name in another namespace", header: bearer(vtKubeClaims(vtAgentAud, vtPodNS, vtAgentSA, vtPodName, vtPodUID, vtNode)),
			wantCode: eksauth.CodeAccessDenied, wantMsg: "not the agent's ServiceAccount"},
		{name: "kubernetes.io of another ServiceAccount", header: bearer(edit(func(c vtClaims) {
			c.kube()["serviceaccount"] = map[string]any{"name": "default", "uid": "x"}
		})), wantCode: eksauth.CodeAccessDenied, wantMsg: "kubernetes.io claim does not name"},
		{name: "no kubernetes.io", header: bearer(edit(func(c vtClaims) { delete(c, "kubernetes.io") })),
			wantCode: eksauth.CodeAccessDenied, wantMsg: "kubernetes.io claim does not name"},
		{name: "not bound to a pod", header: bearer(edit(func(c vtClaims) { delete(c.kube(), "pod") })),
			wantCode: eksauth.CodeAccessDenied, wantMsg: "not bound to a pod"},
		{name: "no node", header: bearer(edit(func(c vtClaims) { c.kube()["node"] = map[string]any{"uid": "n"} })),
			wantCode: eksauth.CodeAccessDenied, wantMsg: "names no node"},
		{name: "keys unreachable", header: bearer(vtAgentClaims()),
			keys:     vtUnreachableKeys(),
			wantCode: eksauth.CodeServiceUnavailable, wantMsg: "could not be fetched"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := vtVerifierWith(t, tt.keys)
			h := tt.header(t)
			c, eerr := v.Caller(context.Background(), h)
			if tt.wantCode == "" {
				if eerr != nil {
					t.Fatalf("Caller: %v", eerr)
				}
				want := Caller{Namespace: vtAgentNS, ServiceAccount: vtAgentSA, PodName: vtAgentPod, PodUID: vtAgentUID, NodeName: vtNode}
				if c != want {
					t.Errorf("Caller = %+v; want %+v", c, want)
				}
				return
			}
			_, tok, _ := strings.Cut(h, " ")
			if len(tok) < 20 {
				tok = "" // too short to tell from the message's words
			}
			vtCheckRefusal(t, eerr, tt.wantCode, tt.wantMsg, tok)
		})
	}
}

// TestVerifierWithoutIssuer checks that a Verifier whose Issuer is empty
// refuses every token, those without iss included, which would otherwise
// match it.
func TestVerifierWithoutIssuer(t *testing.T) {
	v := vtVerifier(t)
	v.Issuer = ""
	tests := []struct {
		name  string
		check func(tok string) *eksauth.Error
		c     vtClaims
	}{
		{"caller", func(tok string) *eksauth.Error { _, e := v.Caller(context.Background(), "Bearer "+tok); return e }, vtAgentClaims()},
		{"pod", func(tok string) *eksauth.Error { _, e := v.Pod(context.Background(), tok); return e }, vtPodClaims()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			delete(tt.c, "iss")
			if e := tt.check(tt.c.sign(t)); e == nil || !strings.Contains(e.Message, "no issuer configured") {
				t.Errorf("error %v; want a refusal saying no issuer is configured", e)
			}
		})
	}
}
