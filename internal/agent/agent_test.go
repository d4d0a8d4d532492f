package agent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/podiam/podiam/internal/eksauth"
	"github.com/podiam/podiam/internal/jwks"
	"github.com/podiam/podiam/test/testutil/testjwt"
)

// The test cluster: fixed keys (derived from seeds, so every run signs with
// the same ones), one issuer, one node, one pod.
var (
	testKey      = testjwt.FixedKey("podiam agent test key")
	otherKey     = testjwt.FixedKey("another cluster's key")
	testStart    = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	testListen   = "169.254.170.23:80"
	testListenV6 = "[fd00:ec2::23]:80"
)

const (
	testIssuer  = "https://issuer.test/cluster"
	testCluster = "test-cluster"
	testNode    = "node-1"
	testNS      = "shop"
	testSA      = "cart"
	testPod     = "cart-5d9f"
	testUID     = "pod-uid-1"
	testSecret  = "SECRET-wJalrXUtnFEMI"
	testSession = "SESSION-FwoGZXIvYXdzE"
	testAccount = "111122223333"
)

// testJWKS is the JWKS document of testKey, as kube-apiserver publishes it.
func testJWKS(t testing.TB) []byte { return testjwt.JWKS(t, testKey) }

// countingKeys is a KeyVerifier that counts signature checks.
type countingKeys struct {
	KeyVerifier
	n atomic.Int64
}

func (k *countingKeys) Verify(ctx context.Context, tok *jwks.Token) error {
	k.n.Add(1)
	return k.KeyVerifier.Verify(ctx, tok)
}

// clock is a settable test clock.
type clock struct{ ns atomic.Int64 }

func newClock() *clock { c := &clock{}; c.set(testStart); return c }

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) set(t time.Time)         { c.ns.Store(t.UnixNano()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// claims are a token's claims, as kube-apiserver writes those of a token
// bound to a pod.
type claims map[string]any

// podClaims are the claims of a token of pod name (uid) on node, valid for an
// hour from testStart.
func podClaims(name, uid, node string) claims {
	return testjwt.Pod{
		Issuer: testIssuer, Audience: eksauth.Audience,
		Namespace: testNS, ServiceAccount: testSA,
		Name: name, UID: uid, Node: node, Now: testStart,
	}.Claims()
}

// testClaims are the claims of the test pod's token.
func testClaims() claims { return podClaims(testPod, testUID, testNode) }

// kube returns the kubernetes.io claim for editing.
func (c claims) kube() map[string]any { return testjwt.Kube(c) }

// sign signs c with testKey.
func (c claims) sign(t testing.TB) string { return signWith(t, testKey, c) }

// signWith signs c with key (ES256, the key's kid), as kube-apiserver does.
func signWith(t testing.TB, key *ecdsa.PrivateKey, c claims) string {
	t.Helper()
	return testjwt.Sign(t, key, testjwt.KeyID(t, key), c)
}

// unsigned builds a token with header alg "none", c and no signature.
func unsigned(t testing.TB, c claims) string {
	t.Helper()
	return testjwt.Compact(t, map[string]any{"alg": "none", "typ": "JWT"}, c, nil)
}

// fakeBackend issues credentials valid for life from the clock, or fails with
// err; it counts calls, and those running at once, and may hold them until
// hold is closed.
type fakeBackend struct {
	clock *clock
	mu    sync.Mutex
	life  time.Duration
	err   error
	hold  chan struct{} // non-nil: each call waits for it to close
	// errFor, when set, fails the calls made with some tokens.
	errFor func(token string) error
	calls  atomic.Int64
	seq    atomic.Int64
	// running is the calls running now, max the most that ran at once.
	running, max atomic.Int64
}

func (b *fakeBackend) set(life time.Duration, err error) {
	b.mu.Lock()
	b.life, b.err = life, err
	b.mu.Unlock()
}

func (b *fakeBackend) AssumeRoleForPodIdentity(ctx context.Context, clusterName, token string) (*eksauth.Output, error) {
	b.calls.Add(1)
	n := b.running.Add(1)
	defer b.running.Add(-1)
	for m := b.max.Load(); n > m && !b.max.CompareAndSwap(m, n); m = b.max.Load() {
	}
	b.mu.Lock()
	life, err, hold := b.life, b.err, b.hold
	if b.errFor != nil && err == nil {
		err = b.errFor(token)
	}
	b.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if err != nil {
		return nil, err
	}
	if clusterName != testCluster || token == "" {
		return nil, eksauth.NewError(eksauth.CodeInvalidRequest, "unexpected call")
	}
	seq := b.seq.Add(1)
	return &eksauth.Output{
		Subject:                eksauth.Subject{Namespace: testNS, ServiceAccount: testSA},
		Audience:               eksauth.Audience,
		PodIdentityAssociation: eksauth.PodIdentityAssociation{AssociationID: "a-1234"},
		AssumedRoleUser:        eksauth.AssumedRoleUser{Arn: "arn:aws:sts::" + testAccount + ":assumed-role/cart/eks-test-cluster-cart"},
		Credentials: eksauth.Credentials{
			AccessKeyID:     "ASIA" + string(rune('A'+seq%26)),
			SecretAccessKey: testSecret,
			SessionToken:    testSession,
			Expiration:      b.clock.now().Add(life),
		},
	}, nil
}

// env is a handler over the test cluster with its fakes.
type env struct {
	h       *Handler
	clock   *clock
	backend *fakeBackend
	keys    *countingKeys
	logs    *syncBuffer
	reg     *prometheus.Registry
	tb      testing.TB
	// renewals receives a value at the end of each background renewal.
	renewals chan struct{}
}

// awaitRenewal waits for a background renewal to end.
func (e *env) awaitRenewal() {
	e.tb.Helper()
	select {
	case <-e.renewals:
	case <-time.After(10 * time.Second):
		e.tb.Fatal("no background renewal ended")
	}
}

// t is the test the env belongs to.
func (e *env) t() testing.TB { return e.tb }

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newEnv builds a handler with the defaults of `podiam agent` (no per-pod or
// backend limit unless edit sets one), credentials valid for an hour.
func newEnv(t testing.TB, edit func(*Options)) *env {
	t.Helper()
	c := newClock()
	e := &env{
		clock:   c,
		backend: &fakeBackend{clock: c, life: time.Hour},
		keys:    &countingKeys{KeyVerifier: jwks.NewKeySet(testjwt.StaticJWKS{Doc: testJWKS(t)}, jwks.Options{Now: c.now})},
		logs:    &syncBuffer{},
		reg:     prometheus.NewRegistry(),
		tb:      t,
	}
	o := Options{
		ClusterName: testCluster, NodeName: testNode, Issuer: testIssuer,
		Keys: e.keys, Backend: e.backend, ListenAddrs: []string{testListen, testListenV6},
		MaxCacheSize: DefaultMaxCacheSize, MaxRetention: DefaultMaxRetention,
		Metrics: NewMetrics(e.reg),
		Logger:  slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:     c.now,
	}
	if edit != nil {
		edit(&o)
	}
	h, err := NewHandler(o)
	if err != nil {
		t.Fatal(err)
	}
	e.h = h
	e.renewals = make(chan struct{}, 100)
	h.creds.renewalDone = func() { e.renewals <- struct{}{} }
	return e
}

// get sends GET /v1/credentials with the Host and Authorization given.
func (e *env) get(host, token string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, Path, nil)
	r.Host = host
	if token != "" {
		r.Header.Set("Authorization", token)
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	return w
}

// TestLRU covers the bounded map under every cache of the agent.
func TestLRU(t *testing.T) {
	tests := []struct {
		name string
		max  int
		ops  func(c *lru[string, int])
		want []string // keys left, most recently used first
	}{
		{"bounded, oldest out", 2, func(c *lru[string, int]) { c.put("a", 1); c.put("b", 2); c.put("c", 3) }, []string{"c", "b"}},
		{"get marks used", 2, func(c *lru[string, int]) { c.put("a", 1); c.put("b", 2); c.get("a"); c.put("c", 3) }, []string{"c", "a"}},
		{"put replaces", 2, func(c *lru[string, int]) { c.put("a", 1); c.put("b", 2); c.put("a", 9) }, []string{"a", "b"}},
		{"zero keeps nothing", 0, func(c *lru[string, int]) { c.put("a", 1) }, nil},
		{"remove", 3, func(c *lru[string, int]) { c.put("a", 1); c.put("b", 2); c.remove("a"); c.remove("x") }, []string{"b"}},
		{"removeIf", 3, func(c *lru[string, int]) {
			c.put("a", 1)
			c.put("b", 2)
			c.put("c", 1)
			c.removeIf(func(v int) bool { return v == 1 })
		}, []string{"b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newLRU[string, int](tt.max)
			tt.ops(c)
			var got []string
			for e := c.order.Front(); e != nil; e = e.Next() {
				got = append(got, e.Value.(*lruItem[string, int]).key)
			}
			if len(got) != len(tt.want) || c.len() != len(tt.want) {
				t.Fatalf("keys %v (len %d), want %v", got, c.len(), tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("keys %v, want %v", got, tt.want)
				}
			}
		})
	}
}

// TestNewHandlerRefuses covers the options NewHandler refuses.
func TestNewHandlerRefuses(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Options)
	}{
		{"no cluster", func(o *Options) { o.ClusterName = "" }},
		{"no node", func(o *Options) { o.NodeName = "" }},
		{"no issuer", func(o *Options) { o.Issuer = "" }},
		{"no keys", func(o *Options) { o.Keys = nil }},
		{"no backend", func(o *Options) { o.Backend = nil }},
		{"no listen address", func(o *Options) { o.ListenAddrs = nil }},
		{"listen address without port", func(o *Options) { o.ListenAddrs = []string{"169.254.170.23"} }},
		{"negative cache size", func(o *Options) { o.MaxCacheSize = -1 }},
		{"negative concurrent misses", func(o *Options) { o.MaxConcurrentMisses = -1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := Options{ClusterName: testCluster, NodeName: testNode, Issuer: testIssuer,
				Keys: &countingKeys{}, Backend: &fakeBackend{}, ListenAddrs: []string{testListen}}
			if _, err := NewHandler(o); err != nil {
				t.Fatalf("valid options refused: %v", err)
			}
			tt.edit(&o)
			if _, err := NewHandler(o); err == nil {
				t.Fatal("NewHandler accepted them")
			}
		})
	}
}
