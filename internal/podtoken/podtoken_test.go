package podtoken

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podiam/podiam/internal/jwks"
	"github.com/podiam/podiam/test/testutil/testjwt"
)

// The tokens are signed with ES256 by fixed keys and checked at a fixed
// time, so that every run sees the same tokens.
var (
	ptKey      = testjwt.FixedKey("podtoken test key")
	ptOtherKey = testjwt.FixedKey("podtoken other cluster's key")
	ptNow      = time.Unix(1_800_000_000, 0).UTC()
)

const (
	ptIssuer   = "https://issuer.test/cluster"
	ptAudience = "pods.eks.amazonaws.com"
	ptNS       = "shop"
	ptSA       = "cart"
	ptPod      = "cart-5d9f"
	ptUID      = "pod-uid-1"
	ptNode     = "node-1"
)

// countingKeys is the cluster's key set, counting the signatures it is
// asked to check: issuer and audience must be refused before.
type countingKeys struct {
	keys KeyVerifier
	n    atomic.Int64
}

func (k *countingKeys) Verify(ctx context.Context, tok *jwks.Token) error {
	k.n.Add(1)
	return k.keys.Verify(ctx, tok)
}

// ptKeys is the key set of the test cluster, or of one whose issuer cannot
// be reached.
func ptKeys(t *testing.T, unreachable bool) *countingKeys {
	src := testjwt.StaticJWKS{Doc: testjwt.JWKS(t, ptKey)}
	if unreachable {
		src = testjwt.StaticJWKS{Err: errors.New("connection refused")}
	}
	return &countingKeys{keys: jwks.NewKeySet(src, jwks.Options{Now: func() time.Time { return ptNow }})}
}

// ptClaims are the claims of the test pod's token, as kube-apiserver writes
// them for a projected volume.
func ptClaims() map[string]any {
	return testjwt.Pod{
		Issuer: ptIssuer, Audience: ptAudience, Namespace: ptNS, ServiceAccount: ptSA,
		Name: ptPod, UID: ptUID, Node: ptNode, Now: ptNow,
	}.Claims()
}

// TestCheck covers every outcome of Check: each Kind, the order of the
// checks (which one a token failing several gets) and what a valid token
// yields.
func TestCheck(t *testing.T) {
	kid := testjwt.KeyID(t, ptKey)
	sign := func(edit func(c, kube map[string]any)) func(*testing.T) string {
		return func(t *testing.T) string {
			c := ptClaims()
			if edit != nil {
				edit(c, testjwt.Kube(c))
			}
			return testjwt.Sign(t, ptKey, kid, c)
		}
	}
	agent := &ServiceAccount{Namespace: "kube-system", Name: "podiam-agent"}
	asAgent := func(c, kube map[string]any) {
		c["sub"] = "system:serviceaccount:kube-system:podiam-agent"
		kube["namespace"] = "kube-system"
		kube["serviceaccount"] = map[string]any{"name": "podiam-agent"}
	}
	tests := []struct {
		name        string
		issuer      string // "" for ptIssuer; "-" for none
		unreachable bool   // the keys cannot be fetched
		token       func(*testing.T) string
		want        Want // Audience ptAudience when ""
		wantKind    Kind // 0: accepted
		wantErr     error
		wantPod     Pod // for an accepted token; the test pod when zero
		wantChecked int64
	}{
		{name: "valid", token: sign(nil), wantChecked: 1},
		{name: "valid, audience among others", token: sign(func(c, _ map[string]any) {
			c["aud"] = []string{"sts.amazonaws.com", ptAudience}
		}), wantChecked: 1},
		{name: "valid on the node wanted", token: sign(nil), want: Want{Node: ptNode}, wantChecked: 1},
		{name: "valid, the ServiceAccount wanted", token: sign(asAgent), want: Want{ServiceAccount: agent}, wantChecked: 1,
			wantPod: Pod{Namespace: "kube-system", ServiceAccount: "podiam-agent", Name: ptPod, UID: ptUID, NodeName: ptNode, Expiry: ptNow.Add(time.Hour)}},
		{name: "valid within the leeway", token: sign(func(c, _ map[string]any) { c["exp"] = ptNow.Add(-5 * time.Second).Unix() }), wantChecked: 1,
			wantPod: Pod{Namespace: ptNS, ServiceAccount: ptSA, Name: ptPod, UID: ptUID, NodeName: ptNode, Expiry: ptNow.Add(-5 * time.Second)}},

		{name: "no issuer configured", issuer: "-", token: sign(func(c, _ map[string]any) { delete(c, "iss") }), wantKind: Unconfigured},
		{name: "garbage", token: func(*testing.T) string { return "garbage" }, wantKind: Malformed, wantErr: jwks.ErrMalformed},
		{name: "another cluster's issuer", token: func(t *testing.T) string {
			c := ptClaims()
			c["iss"] = "https://other.test"
			return testjwt.Sign(t, ptOtherKey, "other-kid", c)
		}, wantKind: WrongIssuer},
		{name: "no issuer", token: sign(func(c, _ map[string]any) { delete(c, "iss") }), wantKind: WrongIssuer},
		{name: "another audience", token: sign(func(c, _ map[string]any) { c["aud"] = "sts.amazonaws.com" }), wantKind: WrongAudience},
		{name: "no audience", token: sign(func(c, _ map[string]any) { delete(c, "aud") }), wantKind: WrongAudience},
		{name: "keys unreachable", unreachable: true, token: sign(nil), wantKind: KeysUnavailable, wantErr: jwks.ErrFetch, wantChecked: 1},
		{name: "another cluster's key", token: func(t *testing.T) string { return testjwt.Sign(t, ptOtherKey, kid, ptClaims()) },
			wantKind: BadSignature, wantErr: jwks.ErrSignature, wantChecked: 1},
		{name: "unknown kid", token: func(t *testing.T) string { return testjwt.Sign(t, ptKey, "no-such-kid", ptClaims()) },
			wantKind: BadSignature, wantErr: jwks.ErrUnknownKey, wantChecked: 1},
		{name: "alg none", token: func(t *testing.T) string {
			return testjwt.Compact(t, map[string]any{"alg": "none", "kid": kid}, ptClaims(), []byte("x"))
		}, wantKind: BadSignature, wantErr: jwks.ErrAlgorithm, wantChecked: 1},
		{name: "expired", token: sign(func(c, _ map[string]any) { c["exp"] = ptNow.Add(-time.Minute).Unix() }),
			wantKind: Expired, wantErr: jwks.ErrExpired, wantChecked: 1},
		{name: "no exp", token: sign(func(c, _ map[string]any) { delete(c, "exp") }), wantKind: BadTime, wantErr: jwks.ErrNoExpiry, wantChecked: 1},
		{name: "not yet valid", token: sign(func(c, _ map[string]any) { c["nbf"] = ptNow.Add(time.Hour).Unix() }),
			wantKind: BadTime, wantErr: jwks.ErrNotYetValid, wantChecked: 1},
		{name: "issued in the future", token: sign(func(c, _ map[string]any) { c["iat"] = ptNow.Add(time.Hour).Unix() }),
			wantKind: BadTime, wantErr: jwks.ErrIssuedInFuture, wantChecked: 1},

		// The kubernetes.io claims of any ServiceAccount's token.
		{name: "no kubernetes.io", token: sign(func(c, _ map[string]any) { delete(c, "kubernetes.io") }), wantKind: NotServiceAccount, wantChecked: 1},
		{name: "no namespace", token: sign(func(_, k map[string]any) { delete(k, "namespace") }), wantKind: NotServiceAccount, wantChecked: 1},
		{name: "no serviceaccount", token: sign(func(_, k map[string]any) { delete(k, "serviceaccount") }), wantKind: NotServiceAccount, wantChecked: 1},
		{name: "serviceaccount without name", token: sign(func(_, k map[string]any) { k["serviceaccount"] = map[string]any{"uid": "u"} }),
			wantKind: NotServiceAccount, wantChecked: 1},
		{name: "subject of another ServiceAccount", token: sign(func(c, _ map[string]any) { c["sub"] = "system:serviceaccount:shop:admin" }),
			wantKind: WrongSubject, wantChecked: 1},
		{name: "no kubernetes.io and another subject: the claim first", token: sign(func(c, _ map[string]any) {
			delete(c, "kubernetes.io")
			c["sub"] = "someone"
		}), wantKind: NotServiceAccount, wantChecked: 1},
		{name: "not bound to a pod", token: sign(func(_, k map[string]any) { delete(k, "pod") }), wantKind: NotBoundToPod, wantChecked: 1},
		{name: "pod without uid", token: sign(func(_, k map[string]any) { k["pod"] = map[string]any{"name": ptPod} }), wantKind: NotBoundToPod, wantChecked: 1},
		{name: "pod without name", token: sign(func(_, k map[string]any) { k["pod"] = map[string]any{"uid": ptUID} }), wantKind: NotBoundToPod, wantChecked: 1},
		{name: "no node", token: sign(func(_, k map[string]any) { delete(k, "node") }), wantKind: WrongNode, wantChecked: 1},
		{name: "node without name", token: sign(func(_, k map[string]any) { k["node"] = map[string]any{"uid": "n"} }), wantKind: WrongNode, wantChecked: 1},

		// Want.ServiceAccount: the subject first, then the claim.
		{name: "not the ServiceAccount wanted", token: sign(nil), want: Want{ServiceAccount: agent}, wantKind: WrongSubject, wantChecked: 1},
		{name: "the name wanted in another namespace", token: sign(func(c, k map[string]any) {
			c["sub"] = "system:serviceaccount:shop:podiam-agent"
			k["serviceaccount"] = map[string]any{"name": "podiam-agent"}
		}), want: Want{ServiceAccount: agent}, wantKind: WrongSubject, wantChecked: 1},
		{name: "subject wanted, claim of another ServiceAccount", token: sign(func(c, _ map[string]any) {
			c["sub"] = "system:serviceaccount:kube-system:podiam-agent"
		}), want: Want{ServiceAccount: agent}, wantKind: NotServiceAccount, wantChecked: 1},
		{name: "subject wanted, no kubernetes.io", token: sign(func(c, _ map[string]any) {
			c["sub"] = "system:serviceaccount:kube-system:podiam-agent"
			delete(c, "kubernetes.io")
		}), want: Want{ServiceAccount: agent}, wantKind: NotServiceAccount, wantChecked: 1},
		{name: "the ServiceAccount wanted, not bound to a pod", token: sign(func(c, k map[string]any) {
			asAgent(c, k)
			delete(k, "pod")
		}), want: Want{ServiceAccount: agent}, wantKind: NotBoundToPod, wantChecked: 1},

		// Want.Node.
		{name: "another node", token: sign(nil), want: Want{Node: "node-2"}, wantKind: WrongNode, wantChecked: 1},
		{name: "no node, one wanted", token: sign(func(_, k map[string]any) { delete(k, "node") }), want: Want{Node: ptNode}, wantKind: WrongNode, wantChecked: 1},

		// The order: a token failing several checks gets the first.
		{name: "wrong issuer and audience: issuer", token: sign(func(c, _ map[string]any) {
			c["iss"] = "https://other.test"
			c["aud"] = "other"
		}), wantKind: WrongIssuer},
		{name: "wrong audience, keys unreachable: audience, no fetch", unreachable: true,
			token: sign(func(c, _ map[string]any) { c["aud"] = "other" }), wantKind: WrongAudience},
		{name: "forged and expired: signature", token: func(t *testing.T) string {
			c := ptClaims()
			c["exp"] = ptNow.Add(-time.Hour).Unix()
			return testjwt.Sign(t, ptOtherKey, kid, c)
		}, wantKind: BadSignature, wantErr: jwks.ErrSignature, wantChecked: 1},
		{name: "expired and not bound to a pod: time", token: sign(func(c, k map[string]any) {
			c["exp"] = ptNow.Add(-time.Hour).Unix()
			delete(k, "pod")
		}), wantKind: Expired, wantErr: jwks.ErrExpired, wantChecked: 1},
		{name: "no pod and no node: pod", token: sign(func(_, k map[string]any) {
			delete(k, "pod")
			delete(k, "node")
		}), wantKind: NotBoundToPod, wantChecked: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys := ptKeys(t, tt.unreachable)
			c := &Checker{Keys: keys, Issuer: ptIssuer, Leeway: 10 * time.Second}
			if tt.issuer == "-" {
				c.Issuer = ""
			}
			want := tt.want
			if want.Audience == "" {
				want.Audience = ptAudience
			}
			tok := tt.token(t)
			pod, f := c.Check(context.Background(), tok, want, ptNow)
			if n := keys.n.Load(); n != tt.wantChecked {
				t.Errorf("%d signature checks; want %d", n, tt.wantChecked)
			}
			if tt.wantKind == 0 {
				if f != nil {
					t.Fatalf("refused: %v (%v)", f.Kind, f)
				}
				wantPod := tt.wantPod
				if wantPod == (Pod{}) {
					wantPod = Pod{Namespace: ptNS, ServiceAccount: ptSA, Name: ptPod, UID: ptUID, NodeName: ptNode, Expiry: ptNow.Add(time.Hour)}
				}
				if pod != wantPod {
					t.Errorf("Pod = %+v; want %+v", pod, wantPod)
				}
				return
			}
			if f == nil {
				t.Fatalf("accepted (%+v); want %v", pod, tt.wantKind)
			}
			if f.Kind != tt.wantKind {
				t.Errorf("Kind = %v (%v); want %v", f.Kind, f, tt.wantKind)
			}
			if pod != (Pod{}) {
				t.Errorf("Pod = %+v with a refusal; want none", pod)
			}
			if tt.wantErr != nil && !errors.Is(f, tt.wantErr) {
				t.Errorf("error %v; want one wrapping %v", f, tt.wantErr)
			}
			if (f.Claims == nil) != (f.Kind <= Malformed) {
				t.Errorf("Claims = %v for %v; want them for every kind after Malformed", f.Claims, f.Kind)
			}
			if strings.Contains(f.Error(), tok) {
				t.Errorf("the refusal holds the token: %q", f.Error())
			}
		})
	}
}

// TestKindString checks that every Kind has a name.
func TestKindString(t *testing.T) {
	for k := Unconfigured; k <= WrongNode; k++ {
		if s := k.String(); s == "" || strings.HasPrefix(s, "Kind(") {
			t.Errorf("Kind %d has no name", k)
		}
	}
	if s := Kind(99).String(); s != "Kind(99)" {
		t.Errorf("Kind(99) = %q", s)
	}
}

// TestQuote checks that values quoted in messages stay short and printable:
// they come from unverified tokens and requests and reach logs.
func TestQuote(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://x", `"https://x"`},
		{"a\nb", `"a\nb"`},
		{"", `""`},
		{strings.Repeat("a", maxQuoted), `"` + strings.Repeat("a", maxQuoted) + `"`},
		{strings.Repeat("a", 200), `"` + strings.Repeat("a", maxQuoted) + `"…`},
	}
	for _, tt := range tests {
		if got := Quote(tt.in); got != tt.want {
			t.Errorf("Quote(%.20q) = %q; want %q", tt.in, got, tt.want)
		}
	}
	lists := []struct {
		in   []string
		want string
	}{
		{nil, "(none)"},
		{[]string{"a"}, `["a"]`},
		{[]string{"1", "2", "3", "4", "5", "6", "7"}, `["1" "2" "3" "4" "5" …]`},
	}
	for _, tt := range lists {
		if got := QuoteList(tt.in); got != tt.want {
			t.Errorf("QuoteList(%q) = %s; want %s", tt.in, got, tt.want)
		}
	}
}
