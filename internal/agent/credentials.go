package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"

	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"

	"github.com/podiam/podiam/internal/eksauth"
)

// Refresh and reuse bounds of cached credentials. The SDKs treat credentials
// as expired sdkExpiryWindow before their Expiration (the Go SDK's
// ExpiryWindow; botocore and the JS SDK are close): credentials served with
// less left make every SDK call ask the agent again. So cached credentials
// are renewed in a refresh window of max(minRefreshWindow, lifetime/4),
// capped at lifetime/2, before they expire, and served (while a renewal is
// pending or failing) only while more than sdkExpiryWindow + staleMargin
// remain.
const (
	// sdkExpiryWindow is how long before Expiration the SDKs stop using
	// credentials.
	sdkExpiryWindow = 5 * time.Minute
	// staleMargin is kept on top of sdkExpiryWindow for clock skew between
	// the agent and the pod and for the answer's way to the SDK.
	staleMargin = 30 * time.Second
	// minRefreshWindow is the least refresh window of long-lived
	// credentials: renewals start early enough for several retries before
	// the credentials stop being servable.
	minRefreshWindow = 15 * time.Minute
	// retryAfterFailure (plus up to retryJitter, so that the pods of a node
	// do not retry in step) is how long a pod's failed background renewal
	// waits before the next one.
	retryAfterFailure = 15 * time.Second
	retryJitter       = 5 * time.Second
)

// Forgotten pods: the UIDs of deleted pods are remembered (maxTombstones,
// least recently used first out, each for tombstoneTTL), so that a deleted
// pod's token, still valid until its exp, gets no credentials from the agent.
// Pod UIDs are never reused; the bound keeps memory fixed on a node that
// churns through many pods, and a day outlives the tokens kubelet projects.
const (
	maxTombstones = 4096
	tombstoneTTL  = 24 * time.Hour
)

var (
	// errBackendBusy is a backend call that could not start within its
	// timeout because of the node's backend rate limit (Options.BackendQPS).
	errBackendBusy = errors.New("too many backend calls on this node (--max-service-qps)")
	// errBackendSaturated is a backend call that found no free slot within
	// its timeout: the node's calls at once (Options.MaxConcurrentMisses)
	// were all taken by calls the credential service was slow to answer.
	errBackendSaturated = errors.New("every backend call this node may make at once is taken (the credential service is slow)")
	// errPodDeleted is the answer for a pod forgotten (deleted) while its
	// credentials were being fetched.
	errPodDeleted = errors.New("the pod was deleted")
	// errUnusableAnswer is a backend answer whose credentials cannot be
	// served; the wrapping error says why.
	errUnusableAnswer = errors.New("the credential service's answer is unusable")
)

// credEntry is one pod's credentials, immutable once made.
type credEntry struct {
	AssociationID string
	Expiration    time.Time
	// refreshAt is when the credentials stop being served without asking
	// the backend: the start of the refresh window, or MaxRetention after
	// they were issued.
	refreshAt time.Time
	// staleUntil is when they stop being served at all: sdkExpiryWindow +
	// staleMargin before Expiration.
	staleUntil time.Time
	// body is the SPEC §6 answer, rendered once so that a cached answer is
	// one write.
	body []byte
}

// credSlot is a cache entry: the credentials and, after a failed background
// renewal, when the next one may start. Guarded by credentialCache.mu.
type credSlot struct {
	e       *credEntry
	retryAt time.Time
}

// credentialsJSON is the SPEC §6 answer, with the field names the SDKs read.
type credentialsJSON struct {
	AccessKeyID     string `json:"AccessKeyId"`
	SecretAccessKey string `json:"SecretAccessKey"`
	Token           string `json:"Token"`
	AccountID       string `json:"AccountId"`
	Expiration      string `json:"Expiration"`
}

// newCredEntry makes the cache entry of a backend answer received at now. An
// answer whose credentials the SDKs would take as expired at once is refused
// (errUnusableAnswer): serving it would only make the pod ask again.
func newCredEntry(out *eksauth.Output, now time.Time, maxRetention time.Duration) (*credEntry, error) {
	c := out.Credentials
	if c.AccessKeyID == "" || c.SecretAccessKey == "" || c.Expiration.IsZero() {
		return nil, fmt.Errorf("%w: it has no credentials", errUnusableAnswer)
	}
	lifetime := c.Expiration.Sub(now)
	if lifetime <= sdkExpiryWindow+staleMargin {
		return nil, fmt.Errorf("%w: its credentials expire at %s, in %v, less than the %v the SDKs need (are the clocks of the node and the credential service right?)",
			errUnusableAnswer, c.Expiration.UTC().Format(time.RFC3339), lifetime.Round(time.Second), sdkExpiryWindow+staleMargin)
	}
	body, err := json.Marshal(credentialsJSON{
		AccessKeyID:     c.AccessKeyID,
		SecretAccessKey: c.SecretAccessKey,
		Token:           c.SessionToken,
		AccountID:       accountID(out.AssumedRoleUser.Arn),
		Expiration:      c.Expiration.UTC().Format(time.RFC3339Nano),
	})
	if err != nil {
		return nil, fmt.Errorf("encoding the credentials: %w", err)
	}
	window := min(max(minRefreshWindow, lifetime/4), lifetime/2)
	staleUntil := c.Expiration.Add(-sdkExpiryWindow - staleMargin)
	refreshAt := c.Expiration.Add(-window)
	if refreshAt.After(staleUntil) {
		// Short-lived credentials: renewed while still servable.
		refreshAt = staleUntil
	}
	if maxRetention > 0 && now.Add(maxRetention).Before(refreshAt) {
		refreshAt = now.Add(maxRetention)
	}
	return &credEntry{
		AssociationID: out.PodIdentityAssociation.AssociationID,
		Expiration:    c.Expiration,
		refreshAt:     refreshAt,
		staleUntil:    staleUntil,
		body:          body,
	}, nil
}

// accountID is the account of an ARN (arn:partition:service:region:account:…),
// "" when arn is not one.
func accountID(arn string) string {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) < 6 || parts[0] != "arn" {
		return ""
	}
	return parts[4]
}

// credentialCache keeps each pod's credentials by pod UID and gets them from
// the backend on a miss or inside the refresh window, one call per pod at a
// time. Safe for concurrent use.
type credentialCache struct {
	backend      Backend
	cluster      string
	timeout      time.Duration
	maxRetention time.Duration
	// disabled: MaxCacheSize 0, every request calls the backend.
	disabled bool
	qps      *rate.Limiter // nil: no limit
	now      func() time.Time
	m        *Metrics
	log      *slog.Logger

	flight singleflight.Group // keyed by pod UID
	// calls bounds the backend calls in flight (Options.MaxConcurrentMisses):
	// each call holds a slot from its start to its end, whether requests
	// still wait for it or not; requests hold none.
	calls *semaphore.Weighted
	// renewalDone, when set (by tests), is called at the end of each
	// background renewal.
	renewalDone func()

	mu      sync.Mutex
	entries *lru[string, *credSlot]
	// tombstones are the UIDs of forgotten (deleted) pods, with when they
	// were forgotten.
	tombstones *lru[string, time.Time]
}

func newCredentialCache(o *Options) *credentialCache {
	c := &credentialCache{
		backend: o.Backend, cluster: o.ClusterName, timeout: o.BackendTimeout, maxRetention: o.MaxRetention,
		disabled: o.MaxCacheSize == 0, now: o.Now, m: o.Metrics, log: o.Logger, calls: semaphore.NewWeighted(int64(max(o.MaxConcurrentMisses, 1))),
		entries:    newLRU[string, *credSlot](o.MaxCacheSize),
		tombstones: newLRU[string, time.Time](maxTombstones),
	}
	if c.timeout <= 0 {
		c.timeout = DefaultBackendTimeout
	}
	if o.BackendQPS > 0 {
		c.qps = rate.NewLimiter(rate.Limit(o.BackendQPS), max(o.BackendBurst, 1))
	}
	return c
}

// fetched is what a merged backend call hands to every caller: the entry,
// or with the error, the token the call was made with (a refusal of one
// token is not the answer for another).
type fetched struct {
	e     *credEntry
	token string
}

// get returns the pod's credentials. Cached ones are served at once while
// servable: until their refresh time as they are, then (until staleUntil)
// while a renewal runs in the background, detached from the request, so that
// a slow or failing backend never holds back credentials still good (the
// SDKs give up on the agent after 1 to 2 seconds). A failed background
// renewal is retried no sooner than retryAfterFailure; one refused for the
// pod (no association any more, token refused) drops the cached credentials,
// so that the next request gets the refusal. Only a pod with nothing servable
// waits for the backend, merged with the other requests of the pod: the
// pod's one call waits for a backend slot (Options.MaxConcurrentMisses), its
// requests hold none.
func (c *credentialCache) get(ctx context.Context, pt *podToken, token string) (*credEntry, *refusal) {
	if e := c.servable(ctx, pt, token); e != nil {
		c.m.hit()
		return e, nil
	}
	c.m.miss()
	// Nothing servable: not a renewal, so not held back by the node's
	// backend limit, unless there is no cache (then every call is limited,
	// as in Amazon's agent).
	e, err := c.await(ctx, pt, token, c.disabled)
	if err == nil {
		return e, nil
	}
	var r *refusal
	if errors.As(err, &r) {
		return nil, r // the request ended while waiting
	}
	r = c.refusalFor(err, pt)
	c.logFailure("getting credentials failed", pt, r, err)
	return nil, r
}

// servable returns the pod's cached credentials while they may be served,
// nil when there are none, and starts their renewal in the background when it
// is due.
func (c *credentialCache) servable(ctx context.Context, pt *podToken, token string) *credEntry {
	now := c.now()
	c.mu.Lock()
	var cached *credEntry
	renew := false
	if slot, ok := c.entries.get(pt.PodUID); ok && now.Before(slot.e.staleUntil) {
		cached = slot.e
		if !now.Before(cached.refreshAt) && !now.Before(slot.retryAt) {
			renew = true
			// One request starts the renewal; the others of the pod meanwhile
			// are served the cached credentials without touching the flight.
			slot.retryAt = now.Add(c.timeout)
		}
	}
	c.mu.Unlock()
	if cached == nil {
		return nil
	}
	if renew {
		c.renewInBackground(ctx, pt, token)
	}
	if c.log.Enabled(ctx, slog.LevelDebug) {
		c.log.Debug("credentials served from cache", "pod", pt.PodName, "namespace", pt.Namespace,
			"serviceAccount", pt.ServiceAccount, "associationId", cached.AssociationID, "renewing", renew)
	}
	return cached
}

// await makes the pod's backend call, merged with those in flight for the
// pod, and waits for it while ctx lasts. A refusal of the pod made with
// another token of the pod is not taken as this request's answer: this
// token is sent alone.
func (c *credentialCache) await(ctx context.Context, pt *podToken, token string, limited bool) (*credEntry, error) {
	// The call runs detached from this request (its values kept, its
	// cancellation not): requests merged into it must not fail because the
	// first one left.
	detached := context.WithoutCancel(ctx)
	ch := c.flight.DoChan(pt.PodUID, func() (any, error) {
		// The pod's previous call may have ended between this request's
		// look at the cache and the start of this call.
		if e := c.cached(pt.PodUID); e != nil {
			return &fetched{e: e, token: token}, nil
		}
		e, err := c.fetch(detached, pt, token, limited)
		return &fetched{e: e, token: token}, err
	})
	var res singleflight.Result
	select {
	case res = <-ch:
	case <-ctx.Done():
		return nil, refuse(http.StatusServiceUnavailable, "the request ended while waiting for the credential service: %v", ctx.Err())
	}
	f := res.Val.(*fetched)
	if res.Err != nil && f.token != token && c.refusalFor(res.Err, pt).Status < http.StatusInternalServerError &&
		!errors.Is(res.Err, errPodDeleted) {
		return c.fetch(ctx, pt, token, limited)
	}
	return f.e, res.Err
}

// cached returns the pod's cached credentials while they may be served, nil
// when there are none; unlike servable, it starts no renewal.
func (c *credentialCache) cached(podUID string) *credEntry {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if slot, ok := c.entries.get(podUID); ok && now.Before(slot.e.staleUntil) {
		return slot.e
	}
	return nil
}

// renewInBackground starts a renewal of the pod's credentials (merged with a
// call in flight for the pod) and returns without waiting for it. The node's
// backend limit applies: a renewal is what it paces.
func (c *credentialCache) renewInBackground(ctx context.Context, pt *podToken, token string) {
	detached := context.WithoutCancel(ctx)
	// DoChan's channel is buffered: nobody needs to read it.
	c.flight.DoChan(pt.PodUID, func() (any, error) {
		defer func() {
			// The answer is cached (or the failure noted) by now: a request
			// arriving from here on must start its own call rather than
			// join this finished one, which would not renew again.
			c.flight.Forget(pt.PodUID)
			if c.renewalDone != nil {
				c.renewalDone()
			}
		}()
		e, err := c.fetch(detached, pt, token, true)
		if err != nil {
			c.renewalFailed(pt, err)
		}
		return &fetched{e: e, token: token}, err
	})
}

// renewalFailed handles a failed background renewal: a refusal of the pod
// drops its credentials; a failure of the backend or of the agent's own
// credentials leaves them served while servable, and the next renewal waits
// retryAfterFailure (+ jitter).
func (c *credentialCache) renewalFailed(pt *podToken, err error) {
	r := c.refusalFor(err, pt)
	c.mu.Lock()
	if slot, ok := c.entries.get(pt.PodUID); ok {
		if r.Status < http.StatusInternalServerError {
			c.entries.remove(pt.PodUID)
		} else {
			slot.retryAt = c.now().Add(retryAfterFailure + rand.N(retryJitter))
		}
	}
	n := c.entries.len()
	c.mu.Unlock()
	c.m.cacheEntries(n)
	if r.Status < http.StatusInternalServerError {
		c.logFailure("credential renewal refused; the cached credentials are dropped", pt, r, err)
		return
	}
	c.logFailure("credential renewal failed; the cached credentials are served while still valid", pt, r, err)
}

// logFailure logs a failed backend call: at Error when the agent's own
// credentials were refused (every pod of the node is affected until an
// operator acts), else at Warn.
func (c *credentialCache) logFailure(msg string, pt *podToken, r *refusal, err error) {
	level := slog.LevelWarn
	if agentsOwnFailure(err) {
		level = slog.LevelError
	}
	c.log.Log(context.Background(), level, msg, "pod", pt.PodName, "namespace", pt.Namespace,
		"serviceAccount", pt.ServiceAccount, "status", r.Status, "error", err)
}

// fetch calls the backend for the pod and caches the answer. limited calls
// wait for the node's backend limit (Amazon's --max-service-qps): renewals,
// and every call when there is no cache. A pod's first credentials, or those
// of a pod whose cached ones are no longer servable, are not limited: they
// must not wait behind other pods' renewals (after an agent restart, or after
// a backend outage longer than the credentials' lifetime, every pod of the
// node asks at once); they are bounded by the pods on the node, each merged
// into one call at a time. Every call, limited or not, holds one of the
// node's backend slots while it runs (turn), so that calls left running by
// requests that gave up cannot pile up. A call held back past its timeout
// fails with errBackendBusy or errBackendSaturated; once started, it has a
// timeout of its own.
func (c *credentialCache) fetch(ctx context.Context, pt *podToken, token string, limited bool) (*credEntry, error) {
	if err := c.turn(ctx, limited); err != nil {
		c.m.backendLimited()
		return nil, err
	}
	defer c.calls.Release(1)
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	start := time.Now()
	out, err := c.backend.AssumeRoleForPodIdentity(ctx, c.cluster, token)
	c.m.backendCall(resultOf(err), time.Since(start).Seconds())
	if err != nil {
		return nil, err
	}
	now := c.now()
	e, err := newCredEntry(out, now, c.maxRetention)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.deletedLocked(pt.PodUID, now) {
		c.mu.Unlock()
		return nil, errPodDeleted
	}
	c.entries.put(pt.PodUID, &credSlot{e: e})
	n := c.entries.len()
	c.mu.Unlock()
	c.m.cacheEntries(n)
	c.log.Info("credentials issued", "pod", pt.PodName, "namespace", pt.Namespace,
		"serviceAccount", pt.ServiceAccount, "associationId", e.AssociationID, "expiration", e.Expiration)
	return e, nil
}

// turn waits, at most the backend timeout, for a backend call's turn: the
// node's backend limit for a limited call, then a free backend slot, which
// the caller must release. The limit comes first, so that a renewal waiting
// for it holds no slot that a pod's first credentials need.
func (c *credentialCache) turn(ctx context.Context, limited bool) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if c.qps != nil && limited {
		if err := c.qps.Wait(ctx); err != nil {
			return errBackendBusy
		}
	}
	if c.calls.Acquire(ctx, 1) != nil {
		return errBackendSaturated
	}
	return nil
}

// forget drops the pod's credentials and remembers the pod as deleted: its
// requests are refused from now on, and a backend call in flight for it does
// not cache its answer.
func (c *credentialCache) forget(podUID string) {
	c.mu.Lock()
	c.entries.remove(podUID)
	c.tombstones.put(podUID, c.now())
	n := c.entries.len()
	c.mu.Unlock()
	c.m.cacheEntries(n)
}

// deleted reports whether the pod was forgotten (deleted).
func (c *credentialCache) deleted(podUID string) bool {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.deletedLocked(podUID, now)
}

func (c *credentialCache) deletedLocked(podUID string, now time.Time) bool {
	at, ok := c.tombstones.get(podUID)
	if ok && now.Sub(at) > tombstoneTTL {
		c.tombstones.remove(podUID)
		return false
	}
	return ok
}

// knownCodes are the backend error codes used as metric labels; any other
// code a server sends is counted as "other", so that labels stay few.
var knownCodes = map[string]bool{
	eksauth.CodeAccessDenied: true, eksauth.CodeExpiredToken: true, eksauth.CodeInternalServer: true,
	eksauth.CodeInvalidParameter: true, eksauth.CodeInvalidRequest: true, eksauth.CodeInvalidToken: true,
	eksauth.CodeResourceNotFound: true, eksauth.CodeServiceUnavailable: true, eksauth.CodeThrottling: true,
}

// resultOf is the result label of a backend call.
func resultOf(err error) string {
	var e *eksauth.Error
	switch {
	case err == nil:
		return ResultOK
	case errors.As(err, &e) && knownCodes[e.Code]:
		return e.Code
	case errors.As(err, &e):
		return "other"
	default:
		return ResultUnreachable
	}
}

// agentsOwnFailure reports whether a backend refusal is of the agent's own
// credentials, not of the pod: HTTP 401 or 403 (EKS Auth's SigV4 layer
// refusing the node's session, ExpiredTokenException included; `podiam auth`
// refusing the agent's token), or ExpiredTokenException whatever its status
// (the pod's token was just found unexpired here, so the expired token is
// the agent's, or the clocks disagree).
func agentsOwnFailure(err error) bool {
	var e *eksauth.Error
	if !errors.As(err, &e) {
		return false
	}
	s := e.HTTPStatus()
	return s == http.StatusUnauthorized || s == http.StatusForbidden || e.Code == eksauth.CodeExpiredToken
}

// refusalFor maps a failed backend call to the answer of the request: the
// backend's refusals of the pod keep their meaning (no association 404,
// denied or invalid token 403, invalid request 400); its own failures, and
// refusals of the agent's own credentials, are 503 when it asks to come back
// later and 500 otherwise. Every answer below 500 is a refusal of the pod.
func (c *credentialCache) refusalFor(err error, pt *podToken) *refusal {
	switch {
	case errors.Is(err, errBackendBusy), errors.Is(err, errBackendSaturated):
		return refuse(http.StatusServiceUnavailable, "%v; retry later", err)
	case errors.Is(err, errPodDeleted):
		return refuse(http.StatusForbidden, "pod %s/%s was deleted", pt.Namespace, pt.PodName)
	case errors.Is(err, errUnusableAnswer):
		return refuse(http.StatusInternalServerError, "%v", err)
	}
	var e *eksauth.Error
	if !errors.As(err, &e) {
		return refuse(http.StatusInternalServerError, "the credential service could not be reached or answered badly")
	}
	if agentsOwnFailure(err) {
		return refuse(http.StatusInternalServerError, "the credential service refused this agent's own credentials (%s, HTTP %d); see the agent's logs",
			quote(e.Code), e.HTTPStatus())
	}
	switch e.Code {
	case eksauth.CodeResourceNotFound:
		return refuse(http.StatusNotFound, "no Pod Identity association matches service account %s/%s in cluster %s: %s",
			pt.Namespace, pt.ServiceAccount, c.cluster, e.Message)
	case eksauth.CodeAccessDenied:
		return refuse(http.StatusForbidden, "the credential service denied access: %s", e.Message)
	case eksauth.CodeInvalidToken:
		return refuse(http.StatusForbidden, "the credential service refused the token: %s", e.Message)
	case eksauth.CodeInvalidParameter, eksauth.CodeInvalidRequest:
		return refuse(http.StatusBadRequest, "the credential service refused the request: %s", e.Message)
	case eksauth.CodeThrottling, eksauth.CodeServiceUnavailable:
		return refuse(http.StatusServiceUnavailable, "the credential service is unavailable (%s); retry later", e.Code)
	default:
		return refuse(http.StatusInternalServerError, "the credential service failed (%s)", quote(e.Code))
	}
}
