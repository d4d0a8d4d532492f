package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/podiam/podiam/internal/eksauth"
)

// testPodToken are the facts of the test pod's token.
func testPodToken(uid string) *podToken {
	return &podToken{Namespace: testNS, ServiceAccount: testSA, PodName: testPod, PodUID: uid, Expiry: testStart.Add(time.Hour)}
}

// TestCredentialCache walks the life of a pod's cached credentials: each
// case runs steps after a first successful get (credentials valid an hour:
// refresh window 15 minutes, servable until 5.5 minutes are left), then one
// more get, and checks its answer and, once the background renewal it may
// start has ended, the number of backend calls in all.
func TestCredentialCache(t *testing.T) {
	unavailable := eksauth.NewError(eksauth.CodeServiceUnavailable, "down")
	get := func(e *env) {
		if _, r := e.h.creds.get(context.Background(), testPodToken(testUID), "tok"); r != nil {
			panic(r)
		}
	}
	tests := []struct {
		name        string
		edit        func(*Options)
		steps       func(e *env)
		wantCalls   int64
		wantErr     int  // status of the last get's refusal, 0 for none
		wantNew     bool // the last get returned credentials other than the first
		wantRenewal bool // the last get started a background renewal
	}{
		{name: "hit", steps: func(e *env) { e.clock.advance(44 * time.Minute) }, wantCalls: 1},
		{name: "inside the window: served at once, renewed in the background",
			steps: func(e *env) { e.clock.advance(45 * time.Minute) }, wantCalls: 2, wantRenewal: true},
		{name: "renewed credentials served after the renewal", steps: func(e *env) {
			e.clock.advance(45 * time.Minute)
			get(e)
			e.awaitRenewal()
		}, wantCalls: 2, wantNew: true},
		{name: "one renewal for the requests of the pod", steps: func(e *env) {
			e.backend.hold = make(chan struct{})
			e.clock.advance(45 * time.Minute)
			get(e)
			get(e)
			close(e.backend.hold)
			e.awaitRenewal()
		}, wantCalls: 2, wantNew: true},
		{name: "short lifetime: window lifetime/2, cached until then", steps: func(e *env) {
			// The next credentials live 12 minutes: window 6 minutes.
			e.backend.set(12*time.Minute, nil)
			e.clock.advance(45 * time.Minute)
			get(e)
			e.awaitRenewal()                                // new ones expire at +57 min
			e.clock.advance(5*time.Minute + 59*time.Second) // 6 min 1 s left
		}, wantCalls: 2, wantNew: true},
		{name: "short lifetime: renewed with 6 minutes left", steps: func(e *env) {
			e.backend.set(12*time.Minute, nil)
			e.clock.advance(45 * time.Minute)
			get(e)
			e.awaitRenewal()
			e.clock.advance(6 * time.Minute)
		}, wantCalls: 3, wantNew: true, wantRenewal: true},
		{name: "short lifetime: 5.5 minutes left is not servable", steps: func(e *env) {
			e.backend.set(12*time.Minute, nil)
			e.clock.advance(45 * time.Minute)
			get(e)
			e.awaitRenewal()
			e.clock.advance(6*time.Minute + 30*time.Second)
			e.backend.set(time.Hour, unavailable)
		}, wantCalls: 3, wantErr: http.StatusServiceUnavailable},
		{name: "max retention caps reuse", edit: func(o *Options) { o.MaxRetention = 10 * time.Minute },
			steps: func(e *env) { e.clock.advance(10 * time.Minute) }, wantCalls: 2, wantRenewal: true},
		{name: "no max retention", edit: func(o *Options) { o.MaxRetention = 0 },
			steps: func(e *env) { e.clock.advance(44 * time.Minute) }, wantCalls: 1},
		{name: "cache disabled", edit: func(o *Options) { o.MaxCacheSize = 0 }, wantCalls: 2, wantNew: true},
		{name: "forget: the answer of a deleted pod is refused", steps: func(e *env) { e.h.Forget(testUID) },
			wantCalls: 2, wantErr: http.StatusForbidden},
		{name: "forget another pod", steps: func(e *env) { e.h.Forget("uid-x") }, wantCalls: 1},
		{name: "LRU bound pushes the pod out", edit: func(o *Options) { o.MaxCacheSize = 1 }, steps: func(e *env) {
			if _, r := e.h.creds.get(context.Background(), testPodToken("uid-2"), "tok"); r != nil {
				panic(r)
			}
		}, wantCalls: 3, wantNew: true},
		{name: "LRU keeps the recently used", edit: func(o *Options) { o.MaxCacheSize = 2 }, steps: func(e *env) {
			e.h.creds.get(context.Background(), testPodToken("uid-2"), "tok")
			e.h.creds.get(context.Background(), testPodToken(testUID), "tok")
			e.h.creds.get(context.Background(), testPodToken("uid-3"), "tok") // pushes uid-2 out
		}, wantCalls: 3},
		{name: "backend down, still servable: served", steps: func(e *env) {
			e.backend.set(time.Hour, unavailable)
			e.clock.advance(54 * time.Minute)
		}, wantCalls: 2, wantRenewal: true},
		{name: "backend unreachable, still servable: served", steps: func(e *env) {
			e.backend.set(time.Hour, errors.New("dial tcp: connection refused"))
			e.clock.advance(50 * time.Minute)
		}, wantCalls: 2, wantRenewal: true},
		{name: "agent's own credentials refused: cached credentials kept", steps: func(e *env) {
			e.backend.set(time.Hour, &eksauth.Error{Code: eksauth.CodeAccessDenied, Message: "caller token refused", Status: http.StatusForbidden})
			e.clock.advance(50 * time.Minute)
			get(e)
			e.awaitRenewal()
		}, wantCalls: 2},
		{name: "failed renewal: not retried within 15 seconds", steps: func(e *env) {
			e.backend.set(time.Hour, unavailable)
			e.clock.advance(50 * time.Minute)
			get(e)
			e.awaitRenewal()
			e.clock.advance(14 * time.Second)
		}, wantCalls: 2},
		{name: "failed renewal: retried after 20 seconds", steps: func(e *env) {
			e.backend.set(time.Hour, unavailable)
			e.clock.advance(50 * time.Minute)
			get(e)
			e.awaitRenewal()
			e.clock.advance(20 * time.Second)
		}, wantCalls: 3, wantRenewal: true},
		{name: "backend down, 5 minutes left: error", steps: func(e *env) {
			e.backend.set(time.Hour, unavailable)
			e.clock.advance(55 * time.Minute)
		}, wantCalls: 2, wantErr: http.StatusServiceUnavailable},
		{name: "backend down, expired: error", steps: func(e *env) {
			e.backend.set(time.Hour, unavailable)
			e.clock.advance(2 * time.Hour)
		}, wantCalls: 2, wantErr: http.StatusServiceUnavailable},
		{name: "association gone: cached credentials dropped", steps: func(e *env) {
			e.backend.set(time.Hour, eksauth.NewError(eksauth.CodeResourceNotFound, "no association"))
			e.clock.advance(50 * time.Minute)
			get(e) // served; the renewal's refusal drops them
			e.awaitRenewal()
		}, wantCalls: 3, wantErr: http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.edit)
			ctx := context.Background()
			first, r := e.h.creds.get(ctx, testPodToken(testUID), "tok")
			if r != nil {
				t.Fatal(r)
			}
			if tt.steps != nil {
				tt.steps(e)
			}
			got, r := e.h.creds.get(ctx, testPodToken(testUID), "tok")
			switch {
			case tt.wantErr == 0 && r != nil:
				t.Fatalf("refused: %v", r)
			case tt.wantErr != 0 && (r == nil || r.Status != tt.wantErr):
				t.Fatalf("got %v, want status %d", r, tt.wantErr)
			case tt.wantErr == 0 && (got != first) != tt.wantNew:
				t.Fatalf("new credentials: %v, want %v", got != first, tt.wantNew)
			}
			if tt.wantRenewal {
				e.awaitRenewal()
			} else {
				select {
				case <-e.renewals:
					t.Fatal("the last get started a background renewal")
				case <-time.After(20 * time.Millisecond):
				}
			}
			if n := e.backend.calls.Load(); n != tt.wantCalls {
				t.Fatalf("%d backend calls, want %d", n, tt.wantCalls)
			}
		})
	}
}

// TestCredentialSlowBackend checks that a slow backend does not hold back
// credentials still servable: the SDKs give up on the agent after 1 to 2
// seconds, long before the backend's timeout.
func TestCredentialSlowBackend(t *testing.T) {
	e := newEnv(t, nil)
	first, r := e.h.creds.get(context.Background(), testPodToken(testUID), "tok")
	if r != nil {
		t.Fatal(r)
	}
	e.backend.hold = make(chan struct{})
	e.clock.advance(50 * time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	got, r := e.h.creds.get(ctx, testPodToken(testUID), "tok")
	if r != nil || got != first {
		t.Fatalf("got %v (cached: %v) after %v, want the cached credentials at once", r, got == first, time.Since(start))
	}
	close(e.backend.hold)
	e.awaitRenewal()
}

// TestCredentialMerge checks that concurrent misses of one pod make one
// backend call, and that a caller leaving does not fail the others.
func TestCredentialMerge(t *testing.T) {
	e := newEnv(t, nil)
	hold := make(chan struct{})
	e.backend.hold = hold
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	// The first caller starts the call, then leaves while it is held.
	leaver, leave := context.WithCancel(context.Background())
	wg.Go(func() {
		if _, r := e.h.creds.get(leaver, testPodToken(testUID), "tok"); r == nil || r.Status != http.StatusServiceUnavailable {
			errs <- fmt.Errorf("the caller that left got %v", r)
		}
	})
	for e.backend.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	for range n - 1 {
		wg.Go(func() {
			if _, r := e.h.creds.get(context.Background(), testPodToken(testUID), "tok"); r != nil {
				errs <- r
			}
		})
	}
	time.Sleep(50 * time.Millisecond) // let them join the call
	leave()
	time.Sleep(10 * time.Millisecond)
	close(hold)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if c := e.backend.calls.Load(); c != 1 {
		t.Fatalf("%d backend calls for %d concurrent misses, want 1", c, n)
	}
}

// TestCredentialBackendSlotWait checks that a backend call waits for one of
// the node's backend slots at most the backend timeout, failing as limited
// (503) when none is freed, and that a call which got its slot late still has
// the whole timeout for itself.
func TestCredentialBackendSlotWait(t *testing.T) {
	tests := []struct {
		name    string
		timeout time.Duration
		// release frees the slot the test holds, answer lets the backend
		// answer, both after the get started; 0: never during the get.
		release, answer time.Duration
		wantErr         int
		wantCalls       int64
	}{
		{name: "no slot within the timeout", timeout: 50 * time.Millisecond,
			wantErr: http.StatusServiceUnavailable, wantCalls: 0},
		{name: "a slot freed in time, then the call's own timeout", timeout: time.Second,
			release: 600 * time.Millisecond, answer: 1200 * time.Millisecond, wantCalls: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(o *Options) {
				o.MaxConcurrentMisses = 1
				o.BackendTimeout = tt.timeout
			})
			c := e.h.creds
			if c.calls.Acquire(context.Background(), 1) != nil {
				t.Fatal("no free slot")
			}
			if tt.release == 0 {
				defer c.calls.Release(1)
			} else {
				hold := make(chan struct{})
				e.backend.hold = hold
				time.AfterFunc(tt.release, func() { c.calls.Release(1) })
				time.AfterFunc(tt.answer, func() { close(hold) })
			}
			_, r := c.get(context.Background(), testPodToken(testUID), "tok")
			switch {
			case tt.wantErr == 0 && r != nil:
				t.Fatalf("refused: %v", r)
			case tt.wantErr != 0 && (r == nil || r.Status != tt.wantErr || !strings.Contains(r.Message, "at once is taken")):
				t.Fatalf("got %v, want %d saying the backend calls are all taken", r, tt.wantErr)
			}
			if n := e.backend.calls.Load(); n != tt.wantCalls {
				t.Fatalf("%d backend calls, want %d", n, tt.wantCalls)
			}
			limited := testutil.ToFloat64(e.h.m.BackendCalls.WithLabelValues(ResultLimited))
			if want := float64(1 - tt.wantCalls); limited != want {
				t.Fatalf("limited calls %v, want %v", limited, want)
			}
		})
	}
}

// TestCredentialRenewalHoldsSlot checks that background renewals count
// towards the node's backend calls at once: a renewal the backend does not
// answer holds the only slot, and another pod's first call waits for it.
func TestCredentialRenewalHoldsSlot(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxConcurrentMisses = 1 })
	c := e.h.creds
	first, r := c.get(context.Background(), testPodToken(testUID), "tok")
	if r != nil {
		t.Fatal(r)
	}
	hold := make(chan struct{})
	e.backend.hold = hold
	e.clock.advance(50 * time.Minute) // inside the refresh window
	if got, r := c.get(context.Background(), testPodToken(testUID), "tok"); r != nil || got != first {
		t.Fatalf("got %v (cached: %v), want the cached credentials", r, got == first)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, r := c.get(ctx, testPodToken("uid-2"), "tok"); r == nil || r.Status != http.StatusServiceUnavailable {
		t.Fatalf("another pod got %v, want 503 while the renewal holds the slot", r)
	}
	if n := e.backend.calls.Load(); n != 2 {
		t.Fatalf("%d backend calls, want 2 (the other pod's waits for the slot)", n)
	}
	close(hold)
	e.awaitRenewal()
	if _, r := c.get(context.Background(), testPodToken("uid-2"), "tok"); r != nil {
		t.Fatalf("the other pod after the renewal: %v", r)
	}
	if n := e.backend.calls.Load(); n != 3 {
		t.Fatalf("%d backend calls, want 3", n)
	}
}

// TestCredentialCallFindsCached checks that a pod's call finds credentials
// cached by the pod's previous call, which may end between a request's look
// at the cache and the start of its call: no second backend call.
func TestCredentialCallFindsCached(t *testing.T) {
	e := newEnv(t, nil)
	c := e.h.creds
	first, r := c.get(context.Background(), testPodToken(testUID), "tok")
	if r != nil {
		t.Fatal(r)
	}
	got, err := c.await(context.Background(), testPodToken(testUID), "tok", false)
	if err != nil || got != first {
		t.Fatalf("got %v (cached: %v), want the cached credentials", err, got == first)
	}
	if n := e.backend.calls.Load(); n != 1 {
		t.Fatalf("%d backend calls, want 1", n)
	}
}

// TestCredentialForgetDuringCall checks that a backend call in flight when
// its pod is forgotten neither caches nor returns its answer, and that the
// forgetting of another pod does not discard it.
func TestCredentialForgetDuringCall(t *testing.T) {
	tests := []struct {
		name      string
		forget    string
		wantErr   int   // status of the call in flight
		wantCalls int64 // after one more get
	}{
		{"the pod", testUID, http.StatusForbidden, 2},
		{"another pod", "uid-other", 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			hold := make(chan struct{})
			e.backend.hold = hold
			done := make(chan *refusal)
			go func() {
				_, r := e.h.creds.get(context.Background(), testPodToken(testUID), "tok")
				done <- r
			}()
			for e.backend.calls.Load() == 0 {
				time.Sleep(time.Millisecond)
			}
			e.h.Forget(tt.forget)
			close(hold)
			if r := <-done; (r == nil) != (tt.wantErr == 0) || (r != nil && r.Status != tt.wantErr) {
				t.Fatalf("call in flight got %v, want status %d", r, tt.wantErr)
			}
			e.backend.hold = nil
			e.h.creds.get(context.Background(), testPodToken(testUID), "tok")
			if c := e.backend.calls.Load(); c != tt.wantCalls {
				t.Fatalf("%d backend calls, want %d", c, tt.wantCalls)
			}
		})
	}
}

// TestCredentialMergeOtherToken checks that a refusal of the token a merged
// call was made with is not the answer for a request of the same pod with
// another token: that one is sent alone.
func TestCredentialMergeOtherToken(t *testing.T) {
	e := newEnv(t, nil)
	hold := make(chan struct{})
	e.backend.hold = hold
	e.backend.errFor = func(token string) error {
		if token == "old" {
			return eksauth.NewError(eksauth.CodeInvalidToken, "token revoked")
		}
		return nil
	}
	oldDone := make(chan *refusal)
	go func() {
		_, r := e.h.creds.get(context.Background(), testPodToken(testUID), "old")
		oldDone <- r
	}()
	for e.backend.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	newDone := make(chan *refusal)
	go func() {
		_, r := e.h.creds.get(context.Background(), testPodToken(testUID), "new")
		newDone <- r
	}()
	time.Sleep(50 * time.Millisecond) // let it join the call
	e.backend.mu.Lock()
	e.backend.hold = nil
	e.backend.mu.Unlock()
	close(hold)
	if r := <-oldDone; r == nil || r.Status != http.StatusForbidden {
		t.Fatalf("old token got %v, want 403", r)
	}
	if r := <-newDone; r != nil {
		t.Fatalf("new token got %v, want credentials", r)
	}
}

// TestBackendErrors maps every backend failure to the agent's answer.
func TestBackendErrors(t *testing.T) {
	tests := []struct {
		err    error
		status int
		msg    string
	}{
		{eksauth.NewError(eksauth.CodeResourceNotFound, "no association for shop/cart"), http.StatusNotFound, "no Pod Identity association matches service account shop/cart in cluster test-cluster"},
		{eksauth.NewError(eksauth.CodeAccessDenied, "denied"), http.StatusForbidden, "denied"},
		{eksauth.NewError(eksauth.CodeInvalidToken, "pod deleted"), http.StatusForbidden, "pod deleted"},
		{eksauth.NewError(eksauth.CodeExpiredToken, "expired"), http.StatusInternalServerError, "this agent's own credentials"},
		{&eksauth.Error{Code: eksauth.CodeExpiredToken, Message: "node session expired", Status: http.StatusForbidden}, http.StatusInternalServerError, "this agent's own credentials"},
		{&eksauth.Error{Code: eksauth.CodeAccessDenied, Message: "caller token refused", Status: http.StatusForbidden}, http.StatusInternalServerError, "this agent's own credentials"},
		{&eksauth.Error{Code: "UnrecognizedClientException", Message: "bad signature", Status: http.StatusUnauthorized}, http.StatusInternalServerError, "this agent's own credentials"},
		{eksauth.NewError(eksauth.CodeInvalidParameter, "bad"), http.StatusBadRequest, "bad"},
		{eksauth.NewError(eksauth.CodeThrottling, "slow down"), http.StatusServiceUnavailable, "ThrottlingException"},
		{eksauth.NewError(eksauth.CodeServiceUnavailable, "down"), http.StatusServiceUnavailable, "ServiceUnavailableException"},
		{eksauth.NewError(eksauth.CodeInternalServer, "oops"), http.StatusInternalServerError, "InternalServerException"},
		{eksauth.NewError("WeirdException", "?"), http.StatusInternalServerError, "WeirdException"},
		{errors.New("dial tcp 127.0.0.1:1: connection refused"), http.StatusInternalServerError, "could not be reached"},
	}
	for _, tt := range tests {
		t.Run(tt.err.Error(), func(t *testing.T) {
			e := newEnv(t, nil)
			e.backend.set(time.Hour, tt.err)
			_, r := e.h.creds.get(context.Background(), testPodToken(testUID), "tok")
			if r == nil || r.Status != tt.status || !strings.Contains(r.Message, tt.msg) {
				t.Fatalf("got %v, want %d containing %q", r, tt.status, tt.msg)
			}
			// The agent's own failures need an operator: logged at Error.
			if own := strings.Contains(tt.msg, "own credentials"); own != strings.Contains(e.logs.String(), "level=ERROR") {
				t.Fatalf("logged at Error: %v, want %v:\n%s", !own, own, e.logs)
			}
		})
	}
}

// TestBackendUnusableCredentials checks that credentials the SDKs would take
// as expired at once are a backend failure, not an answer.
func TestBackendUnusableCredentials(t *testing.T) {
	tests := []struct {
		name   string
		life   time.Duration
		status int
	}{
		{"already expired", -time.Minute, http.StatusInternalServerError},
		{"5 minutes left", 5 * time.Minute, http.StatusInternalServerError},
		{"5.5 minutes left", 5*time.Minute + 30*time.Second, http.StatusInternalServerError},
		{"6 minutes left", 6 * time.Minute, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.backend.set(tt.life, nil)
			_, r := e.h.creds.get(context.Background(), testPodToken(testUID), "tok")
			switch {
			case tt.status == 0 && r != nil:
				t.Fatalf("refused: %v", r)
			case tt.status != 0 && (r == nil || r.Status != tt.status || !strings.Contains(r.Message, "the SDKs need")):
				t.Fatalf("got %v, want %d saying why", r, tt.status)
			}
		})
	}
}

// TestBackendQPS checks that the node's backend limit paces background
// renewals only: first fetches of several pods, and fetches of pods whose
// credentials have expired (after a backend outage longer than their
// lifetime), all go through at once, and a renewal that cannot start within
// the timeout leaves the pod with its credentials, counted as "limited".
func TestBackendQPS(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.BackendQPS = 1 // one token, refilled after a second
		o.BackendTimeout = 100 * time.Millisecond
	})
	uids := []string{"uid-1", "uid-2", "uid-3"}
	getAll := func(what string) map[string]*credEntry {
		got := map[string]*credEntry{}
		for _, uid := range uids {
			e, r := e.h.creds.get(context.Background(), testPodToken(uid), "tok")
			if r != nil {
				t.Fatalf("%s of %s: %v", what, uid, r)
			}
			got[uid] = e
		}
		return got
	}
	getAll("first fetch")
	e.clock.advance(2 * time.Hour) // every pod's credentials expired
	expired := getAll("fetch after expiry")
	if c := e.backend.calls.Load(); c != 6 {
		t.Fatalf("%d backend calls for six unlimited fetches, want 6", c)
	}
	e.clock.advance(45 * time.Minute) // inside every pod's refresh window
	for _, uid := range uids[:2] {
		if got, r := e.h.creds.get(context.Background(), testPodToken(uid), "tok"); r != nil || got != expired[uid] {
			t.Fatalf("renewal of %s: %v (cached: %v), want the cached credentials", uid, r, got == expired[uid])
		}
		e.awaitRenewal()
	}
	if c := e.backend.calls.Load(); c != 7 {
		t.Fatalf("%d backend calls, want 7 (the second renewal held back)", c)
	}
	m := e.h.m
	if got := testutil.ToFloat64(m.BackendCalls.WithLabelValues(ResultLimited)); got != 1 {
		t.Fatalf("limited calls %v, want 1", got)
	}
	if got := testutil.CollectAndCount(m.BackendCalls); got != 2 {
		t.Fatalf("%d result labels, want ok and limited", got)
	}
	if n := histogramCount(t, m.BackendCallDuration); n != 7 {
		t.Fatalf("%d backend call durations, want 7 (none for the limited one)", n)
	}
}

// TestBackendQPSWithoutCache checks that with no cache every backend call is
// limited, as in Amazon's agent.
func TestBackendQPSWithoutCache(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.MaxCacheSize = 0
		o.BackendQPS = 1
		o.BackendTimeout = 100 * time.Millisecond
	})
	if _, r := e.h.creds.get(context.Background(), testPodToken("uid-1"), "tok"); r != nil {
		t.Fatal(r)
	}
	if _, r := e.h.creds.get(context.Background(), testPodToken("uid-2"), "tok"); r == nil || r.Status != http.StatusServiceUnavailable {
		t.Fatalf("second call got %v, want 503 (limited)", r)
	}
}

// histogramCount is the number of observations of h.
func histogramCount(t *testing.T, h prometheus.Histogram) uint64 {
	t.Helper()
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

// TestCredentialsJSON checks the SPEC §6 answer and the entry's times.
func TestCredentialsJSON(t *testing.T) {
	exp := time.Date(2026, 3, 1, 13, 0, 0, 123456789, time.FixedZone("x", 3600))
	tests := []struct {
		name        string
		arn         string
		retention   time.Duration
		wantAccount string
		wantRefresh time.Time
	}{
		{"assumed role", "arn:aws:sts::111122223333:assumed-role/r/s", 0, "111122223333", exp.Add(-15 * time.Minute)},
		{"china partition", "arn:aws-cn:sts::444455556666:assumed-role/r/s", 0, "444455556666", exp.Add(-15 * time.Minute)},
		{"not an ARN", "garbage", 0, "", exp.Add(-15 * time.Minute)},
		{"retention", "arn:aws:sts::111122223333:assumed-role/r/s", 10 * time.Minute, "111122223333", exp.Add(-50 * time.Minute)},
	}
	// Refresh windows by lifetime: max(15 min, lifetime/4) capped at
	// lifetime/2, never later than 5.5 minutes before expiry.
	windows := []struct {
		life, window time.Duration
	}{
		{6 * time.Hour, 90 * time.Minute},
		{time.Hour, 15 * time.Minute},
		{20 * time.Minute, 10 * time.Minute},
		{10 * time.Minute, 5*time.Minute + 30*time.Second},
	}
	for _, w := range windows {
		out := &eksauth.Output{Credentials: eksauth.Credentials{AccessKeyID: "ASIA1", SecretAccessKey: "s", Expiration: exp}}
		e, err := newCredEntry(out, exp.Add(-w.life), 0)
		if err != nil {
			t.Fatal(err)
		}
		if got := exp.Sub(e.refreshAt); got != w.window {
			t.Errorf("lifetime %v: refresh window %v, want %v", w.life, got, w.window)
		}
		if got := exp.Sub(e.staleUntil); got != 5*time.Minute+30*time.Second {
			t.Errorf("lifetime %v: servable until %v before expiry", w.life, got)
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := &eksauth.Output{
				PodIdentityAssociation: eksauth.PodIdentityAssociation{AssociationID: "a-1"},
				AssumedRoleUser:        eksauth.AssumedRoleUser{Arn: tt.arn},
				Credentials:            eksauth.Credentials{AccessKeyID: "ASIA1", SecretAccessKey: "s", SessionToken: "t", Expiration: exp},
			}
			// Issued an hour before exp: the window is lifetime/4.
			e, err := newCredEntry(out, exp.Add(-time.Hour), tt.retention)
			if err != nil {
				t.Fatal(err)
			}
			want := `{"AccessKeyId":"ASIA1","SecretAccessKey":"s","Token":"t","AccountId":"` + tt.wantAccount +
				`","Expiration":"2026-03-01T12:00:00.123456789Z"}`
			if string(e.body) != want {
				t.Fatalf("body %s\nwant %s", e.body, want)
			}
			if !json.Valid(e.body) || !e.refreshAt.Equal(tt.wantRefresh) || e.AssociationID != "a-1" {
				t.Fatalf("refreshAt %v, want %v; association %q", e.refreshAt, tt.wantRefresh, e.AssociationID)
			}
		})
	}
	if _, err := newCredEntry(&eksauth.Output{}, testStart, 0); err == nil {
		t.Fatal("an answer without credentials was accepted")
	}
}

// TestCredentialMetrics checks the cache and backend counters.
func TestCredentialMetrics(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	e.h.creds.get(ctx, testPodToken(testUID), "tok")
	e.h.creds.get(ctx, testPodToken(testUID), "tok")
	e.backend.set(time.Hour, eksauth.NewError(eksauth.CodeResourceNotFound, "none"))
	e.h.creds.get(ctx, testPodToken("uid-2"), "tok")
	m := e.h.m
	for name, tc := range map[string]struct {
		got, want float64
	}{
		"hits":        {testutil.ToFloat64(m.CacheHits), 1},
		"misses":      {testutil.ToFloat64(m.CacheMisses), 2},
		"backend ok":  {testutil.ToFloat64(m.BackendCalls.WithLabelValues(ResultOK)), 1},
		"backend 404": {testutil.ToFloat64(m.BackendCalls.WithLabelValues(eksauth.CodeResourceNotFound)), 1},
		"entries":     {testutil.ToFloat64(m.CacheEntries), 1},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %v, want %v", name, tc.got, tc.want)
		}
	}
}
