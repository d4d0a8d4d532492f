package agent

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sync/semaphore"
	"golang.org/x/time/rate"

	"github.com/podiam/podiam/internal/eksauth"
	"github.com/podiam/podiam/internal/podtoken"
)

// podToken is what a verified token says about its pod. It holds no part of
// the token and is never modified once cached.
type podToken struct {
	Namespace, ServiceAccount, PodName, PodUID string
	// Expiry is the token's exp: the facts are cached until then at most.
	Expiry time.Time
}

// refusal is why a request is refused: the HTTP status and a plain-text
// message for the caller, which never holds a token or a credential.
type refusal struct {
	Status  int
	Message string
}

func (r *refusal) Error() string { return strconv.Itoa(r.Status) + ": " + r.Message }

func refuse(status int, format string, args ...any) *refusal {
	return &refusal{Status: status, Message: fmt.Sprintf(format, args...)}
}

// Token verification bounds.
const (
	// maxTokenCacheAge bounds how long a verified token is trusted without
	// being verified again, whatever its exp: the cluster's keys may have
	// been rotated (a key withdrawn for a leak) since it was checked.
	maxTokenCacheAge = 10 * time.Minute
	// verifyRate and verifyBurst limit the signature checks of the whole
	// node (token-cache misses) per second. A node's pods present a few new
	// tokens an hour each (kubelet rotates them), so legitimate misses stay
	// far below; a flood of forged tokens (right issuer and audience, known
	// kid) is cut at the cost of a few milliseconds of CPU per second, with
	// 429 answers (the SDKs retry). The burst covers every pod of a full
	// node asking at once after an agent restart (at 100, a node of 250 pods
	// had about half of them answered 429 first: docs/benchmarks.md).
	verifyRate  = 500
	verifyBurst = 500
	// maxConcurrentVerifies bounds the signature checks running at once. A
	// check is CPU work (tens of microseconds for RS256): more at once than
	// the agent has cores finish no sooner and only add to the memory peak
	// of a cold burst. The bound is the checks' own, never shared with the
	// waits for the backend, so that a pod whose credentials are cached gets
	// its rotated token verified whatever the backend does. A check waits on
	// the network only to refetch the cluster's keys for an unknown kid,
	// which the key set rate-limits.
	maxConcurrentVerifies = 4
)

// tokenChecker checks pod tokens locally and remembers the facts of those it
// verified by the SHA-256 of the token, until the token expires or for
// maxTokenCacheAge, whichever comes first. Safe for concurrent use.
type tokenChecker struct {
	pods podtoken.Checker
	node string
	now  func() time.Time
	m    *Metrics
	// verifies limits token-cache misses per second, node-wide; checking
	// bounds those verified at once (maxConcurrentVerifies).
	verifies *rate.Limiter
	checking *semaphore.Weighted

	mu    sync.Mutex
	cache *lru[[sha256.Size]byte, cachedToken]
}

// cachedToken is a verified token's facts and until when they are trusted.
type cachedToken struct {
	pt    *podToken
	until time.Time
}

func newTokenChecker(o *Options) *tokenChecker {
	size := o.TokenCacheSize
	if size == 0 {
		size = DefaultTokenCacheSize
	}
	return &tokenChecker{
		pods: podtoken.Checker{Keys: o.Keys, Issuer: o.Issuer, Leeway: o.Leeway},
		node: o.NodeName, now: o.Now, m: o.Metrics,
		verifies: rate.NewLimiter(verifyRate, verifyBurst),
		checking: semaphore.NewWeighted(maxConcurrentVerifies),
		cache:    newLRU[[sha256.Size]byte, cachedToken](size),
	}
}

// check returns the facts of a valid pod token: from the cache when this very
// token was verified before and its cache time has not passed, else by
// verifying it (at most maxConcurrentVerifies at once). A refusal is 400 for
// a token that is unparsable or expired, 403 for one that is not for this
// cluster, audience or node, 429 when the node verifies too many new tokens,
// 503 when the cluster's keys could not be fetched or the request ended
// while waiting for its turn.
func (c *tokenChecker) check(ctx context.Context, token string) (*podToken, *refusal) {
	// The token is hashed in place: a copy would cost an allocation per
	// request, and Sum256 only reads it.
	sum := sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token)))
	now := c.now()
	if pt := c.cached(sum, now); pt != nil {
		return pt, nil
	}
	if !c.verifies.AllowN(now, 1) {
		return nil, refuse(http.StatusTooManyRequests, "too many new tokens to verify on this node; retry later")
	}
	if c.checking.Acquire(ctx, 1) != nil {
		return nil, refuse(http.StatusServiceUnavailable, "the request ended while waiting for its turn to verify the token: %v", ctx.Err())
	}
	defer c.checking.Release(1)
	// Another request with this token may have verified it meanwhile.
	now = c.now()
	if pt := c.cached(sum, now); pt != nil {
		return pt, nil
	}
	pt, r := c.verify(ctx, token, now)
	if r != nil {
		return nil, r
	}
	until := pt.Expiry
	if limit := now.Add(maxTokenCacheAge); limit.Before(until) {
		until = limit
	}
	if now.Before(until) {
		c.mu.Lock()
		c.cache.put(sum, cachedToken{pt: pt, until: until})
		n := c.cache.len()
		c.mu.Unlock()
		c.m.tokensCached(n)
	}
	return pt, nil
}

// cached returns the facts of the token whose hash is sum when they are
// cached and still trusted at now, else nil.
func (c *tokenChecker) cached(sum [sha256.Size]byte, now time.Time) *podToken {
	c.mu.Lock()
	defer c.mu.Unlock()
	ct, ok := c.cache.get(sum)
	if !ok {
		return nil
	}
	if !now.Before(ct.until) {
		c.cache.remove(sum)
		return nil
	}
	return ct.pt
}

// verify checks the token the one way podiam checks pod tokens
// (podtoken.Check: issuer and audience first, so that a token of another
// cluster cannot make the key set refetch for its unknown kid, then the
// signature, the times, and the pod and node it is bound to: this node).
func (c *tokenChecker) verify(ctx context.Context, token string, now time.Time) (*podToken, *refusal) {
	p, f := c.pods.Check(ctx, token, podtoken.Want{Audience: eksauth.Audience, Node: c.node}, now)
	if f != nil {
		return nil, c.refusal(f)
	}
	return &podToken{Namespace: p.Namespace, ServiceAccount: p.ServiceAccount, PodName: p.Name, PodUID: p.UID, Expiry: p.Expiry}, nil
}

// refusal is the answer to a token verify refused: 400 for a token that is
// not a JWT or whose times are wrong, 503 when the cluster's keys could not
// be fetched, 403 for any other.
func (c *tokenChecker) refusal(f *podtoken.Failure) *refusal {
	switch f.Kind {
	case podtoken.Malformed:
		return refuse(http.StatusBadRequest, "the token in the Authorization header is not a JWT: %v", f)
	case podtoken.WrongIssuer:
		return refuse(http.StatusForbidden, "the token's issuer %s is not this cluster's (%s)", quote(f.Claims.Issuer), quote(c.pods.Issuer))
	case podtoken.WrongAudience:
		return refuse(http.StatusForbidden, "the token's audience does not include %s; project the token with that audience", eksauth.Audience)
	case podtoken.KeysUnavailable:
		return refuse(http.StatusServiceUnavailable, "the cluster's keys could not be fetched to verify the token: %v", f)
	case podtoken.BadSignature:
		return refuse(http.StatusForbidden, "the token's signature is not the cluster's: %v", f)
	case podtoken.Expired, podtoken.BadTime:
		return refuse(http.StatusBadRequest, "%v", f)
	case podtoken.NotServiceAccount:
		return refuse(http.StatusForbidden, "the token is not a ServiceAccount token (no kubernetes.io namespace and serviceaccount)")
	case podtoken.WrongSubject:
		return refuse(http.StatusForbidden, "the token's subject %s does not match its kubernetes.io claim", quote(f.Claims.Subject))
	case podtoken.NotBoundToPod:
		return refuse(http.StatusForbidden, "the token is not bound to a pod; use a projected ServiceAccount token")
	case podtoken.WrongNode:
		node := ""
		if k := f.Claims.Kubernetes; k.Node != nil {
			node = k.Node.Name
		}
		return refuse(http.StatusForbidden, "the token names node %s, not this node (%s)", quote(node), quote(c.node))
	}
	// Unconfigured: NewHandler refuses an Options without an issuer.
	return refuse(http.StatusInternalServerError, "the agent cannot verify tokens: %v", f)
}

// forget drops the cached facts of every token of the pod.
func (c *tokenChecker) forget(podUID string) {
	c.mu.Lock()
	c.cache.removeIf(func(ct cachedToken) bool { return ct.pt.PodUID == podUID })
	n := c.cache.len()
	c.mu.Unlock()
	c.m.tokensCached(n)
}

// quote quotes a value taken from a token or a request for a message, cut
// so that a hostile one cannot make messages and logs large (podtoken.Quote).
func quote(s string) string { return podtoken.Quote(s) }
