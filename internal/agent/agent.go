// Package agent is `podiam agent`'s request path: the node-local endpoint
// GET /v1/credentials that the AWS SDKs' container credential provider calls
// with a pod's projected ServiceAccount token (SPEC §6), answered with the
// credentials of the pod's PodIdentityAssociation.
//
// The pieces, in the order a request meets them:
//
//   - Handler (handler.go) checks the Host header against the listen
//     addresses, reads the raw token from Authorization, and writes SPEC §6's
//     JSON or a plain-text error.
//   - tokenChecker (tokens.go) checks the token locally, with no call to the
//     API server: signature with the cluster's keys (Options.Keys, a
//     *jwks.KeySet), issuer, audience pods.eks.amazonaws.com, time, a bound
//     pod, and the node named in the token must be this node. The facts of a
//     verified token are cached by the SHA-256 of the token until it expires,
//     so a repeated request pays no signature check. A few signature checks
//     run at once (a semaphore of their own, tokens.go).
//   - podLimiter (ratelimit.go) limits the requests of each pod (by UID), not
//     of the whole node.
//   - credentialCache (credentials.go) keeps each pod's credentials (by pod
//     UID, with the association that issued them) and calls the Backend
//     (EKS Auth or `podiam auth`) on a miss, merging concurrent calls for one
//     pod, and in the background inside the refresh window, limiting the
//     node's renewals to Options.BackendQPS and its backend calls at once to
//     Options.MaxConcurrentMisses (a node's pods asking together after an
//     agent restart). Credentials still servable are served at once, while
//     the backend is slow or fails.
//   - Metrics (metrics.go) are the Prometheus collectors.
//
// Handler.Forget drops what is known of a pod once it is deleted (the pod
// watcher calls it) and remembers its UID for a while, so that the agent
// neither renews nor serves the credentials of a pod that is gone.
package agent

import (
	"container/list"
	"context"
	"log/slog"
	"time"

	"github.com/podiam/podiam/internal/eksauth"
	"github.com/podiam/podiam/internal/jwks"
)

// Backend exchanges a pod's token for credentials: *eksauth.Client, talking
// to EKS Auth or to `podiam auth`. A refusal is an *eksauth.Error; anything
// else (transport, a malformed answer) is a plain error.
type Backend interface {
	AssumeRoleForPodIdentity(ctx context.Context, clusterName, podToken string) (*eksauth.Output, error)
}

// KeyVerifier checks a token's signature with the cluster's keys;
// *jwks.KeySet implements it (and refetches the keys on an unknown kid).
// Errors wrap the jwks errors, jwks.ErrFetch when the keys could not be
// fetched.
type KeyVerifier interface {
	Verify(ctx context.Context, tok *jwks.Token) error
}

// Defaults of Options, those of Amazon's agent where it has the setting.
const (
	// DefaultMaxCacheSize is Amazon's --max-cache-size.
	DefaultMaxCacheSize = 2000
	// DefaultMaxRetention is Amazon's --max-credential-retention-before-renewal.
	DefaultMaxRetention = 3 * time.Hour
	// DefaultBackendQPS is Amazon's --max-service-qps.
	DefaultBackendQPS = 3
	// DefaultPodRate and DefaultPodBurst are the per-pod request limit
	// (--pod-rate-limit, --pod-burst).
	DefaultPodRate  = 10
	DefaultPodBurst = 20
	// DefaultTokenCacheSize bounds the verified tokens remembered.
	DefaultTokenCacheSize = 10000
	// DefaultBackendTimeout bounds one backend call.
	DefaultBackendTimeout = 10 * time.Second
	// DefaultLeeway is the clock skew allowed on token times.
	DefaultLeeway = 60 * time.Second
	// DefaultMaxConcurrentMisses bounds the backend calls in flight at once:
	// as many as the backend connections `podiam agent` opens (16), so that
	// waiting in the agent rather than for a connection costs no time.
	DefaultMaxConcurrentMisses = 16
)

// Options configure a Handler. ClusterName, NodeName, Issuer, Keys, Backend
// and ListenAddrs are required; zero numbers mean what each field says.
type Options struct {
	// ClusterName is sent to the backend (--cluster-name).
	ClusterName string
	// NodeName is this node (--node-name): a token naming another node is
	// refused.
	NodeName string
	// Issuer is the cluster's service-account issuer; a token's iss must
	// equal it.
	Issuer string
	// Keys verifies token signatures (a *jwks.KeySet over the cluster's keys).
	Keys KeyVerifier
	// Backend issues credentials.
	Backend Backend
	// ListenAddrs are the addresses the agent listens on, as host:port
	// ("169.254.170.23:80", "[fd00:ec2::23]:80", or a listener's
	// Addr().String() in tests). A request's Host header must name one of
	// them, with its port or, when the port is 80, without it.
	ListenAddrs []string

	// MaxCacheSize bounds the pods whose credentials are cached (least
	// recently used first out); 0 disables the credential cache (every
	// request calls the backend), negative is refused.
	MaxCacheSize int
	// MaxRetention caps how long credentials are reused after they were
	// issued, whatever their expiration; 0 means no cap.
	MaxRetention time.Duration
	// TokenCacheSize bounds the verified tokens remembered;
	// DefaultTokenCacheSize when 0, negative disables the token cache.
	TokenCacheSize int
	// BackendQPS limits the renewals the whole node asks of the backend per
	// second (bursts of BackendBurst, 1 when 0); 0 means no limit. A renewal
	// is a background refresh of credentials still served; a pod with nothing
	// servable cached (first credentials, or expired ones) is not limited by
	// it, unless MaxCacheSize is 0: then every call is. A renewal waits for
	// its turn up to BackendTimeout, then fails like a backend failure (the
	// cached credentials keep being served, retried later).
	BackendQPS   float64
	BackendBurst int
	// BackendTimeout bounds one backend call, which runs detached from the
	// requests waiting for it, and, apart, the call's wait for its turn
	// (BackendQPS, MaxConcurrentMisses); DefaultBackendTimeout when 0.
	BackendTimeout time.Duration
	// PodRate and PodBurst limit the requests of each pod (by pod UID); 0
	// PodRate means no limit. PodBurst is 1 when 0.
	PodRate  float64
	PodBurst int
	// Leeway is the clock skew allowed on a token's exp, nbf and iat;
	// 0 means none (pass DefaultLeeway).
	Leeway time.Duration
	// MaxConcurrentMisses bounds the backend calls in flight at once: a
	// pod's first credentials (or those after its cached ones expired) and
	// background renewals. A call holds its slot until it ends, even when
	// every request waiting for it has given up; the requests of a pod share
	// its one call and hold no slot. A call waits for a slot up to
	// BackendTimeout, then fails as limited (503, retry later). When every
	// pod of a node asks at once (after an agent restart), or the backend is
	// slow, the backend calls in flight (and their memory) stay this few.
	// Signature checks have their own bound and never wait for the backend:
	// a pod whose credentials are cached is answered, its rotated token
	// verified, while the backend is down.
	// DefaultMaxConcurrentMisses when 0; negative is refused.
	MaxConcurrentMisses int

	// Metrics records requests, cache and backend use; nil records nothing.
	Metrics *Metrics
	// Logger receives the agent's logs, which never hold a token or a
	// credential; slog.Default() when nil.
	Logger *slog.Logger
	// Now returns the current time; time.Now when nil.
	Now func() time.Time
}

// Path is the endpoint the SDKs call (AWS_CONTAINER_CREDENTIALS_FULL_URI).
const Path = "/v1/credentials"

// lru is a bounded map that forgets its least recently used entry first. It
// is not safe for concurrent use: each cache guards its own with a mutex.
// The three caches of the agent (tokens, credentials, rate limits) use it.
type lru[K comparable, V any] struct {
	max   int
	items map[K]*list.Element
	order list.List // front is the most recently used; values are *lruItem
}

type lruItem[K comparable, V any] struct {
	key K
	val V
}

func newLRU[K comparable, V any](max int) *lru[K, V] {
	return &lru[K, V]{max: max, items: make(map[K]*list.Element)}
}

// get returns the value of k and marks it used.
func (c *lru[K, V]) get(k K) (V, bool) {
	e, ok := c.items[k]
	if !ok {
		var zero V
		return zero, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*lruItem[K, V]).val, true
}

// put sets k's value, forgetting the least recently used entry when full.
func (c *lru[K, V]) put(k K, v V) {
	if c.max <= 0 {
		return
	}
	if e, ok := c.items[k]; ok {
		e.Value.(*lruItem[K, V]).val = v
		c.order.MoveToFront(e)
		return
	}
	for c.order.Len() >= c.max {
		c.remove(c.order.Back().Value.(*lruItem[K, V]).key)
	}
	c.items[k] = c.order.PushFront(&lruItem[K, V]{key: k, val: v})
}

// remove forgets k.
func (c *lru[K, V]) remove(k K) {
	if e, ok := c.items[k]; ok {
		c.order.Remove(e)
		delete(c.items, k)
	}
}

// removeIf forgets every entry for which drop is true.
func (c *lru[K, V]) removeIf(drop func(V) bool) {
	for e := c.order.Front(); e != nil; {
		next := e.Next()
		if it := e.Value.(*lruItem[K, V]); drop(it.val) {
			c.order.Remove(e)
			delete(c.items, it.key)
		}
		e = next
	}
}

func (c *lru[K, V]) len() int { return len(c.items) }
