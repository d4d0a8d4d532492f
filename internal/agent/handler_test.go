package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/podiam/podiam/internal/eksauth"
	"github.com/podiam/podiam/internal/jwks"
)

// TestHandlerAnswers covers every status the handler answers with.
func TestHandlerAnswers(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*Options)
		backend error
		method  string
		path    string
		token   func(t *testing.T) string
		status  int
		msg     string
	}{
		{name: "credentials", status: http.StatusOK},
		{name: "no Authorization", token: func(*testing.T) string { return "" }, status: http.StatusBadRequest, msg: "no Authorization header"},
		{name: "garbage token", token: func(*testing.T) string { return "garbage" }, status: http.StatusBadRequest, msg: "not a JWT"},
		{name: "Bearer prefix is not a token", token: func(t *testing.T) string { return "Bearer " + testClaims().sign(t) }, status: http.StatusBadRequest, msg: "not a JWT"},
		{name: "expired token", token: func(t *testing.T) string {
			c := testClaims()
			c["exp"] = testStart.Add(-time.Hour).Unix()
			return c.sign(t)
		}, status: http.StatusBadRequest, msg: "expired"},
		{name: "other audience", token: func(t *testing.T) string {
			c := testClaims()
			c["aud"] = "sts.amazonaws.com"
			return c.sign(t)
		}, status: http.StatusForbidden, msg: "audience"},
		{name: "other cluster", token: func(t *testing.T) string { return signWith(t, otherKey, testClaims()) }, status: http.StatusForbidden, msg: "signature"},
		{name: "other node", token: func(t *testing.T) string { return podClaims(testPod, testUID, "node-2").sign(t) }, status: http.StatusForbidden, msg: "not this node"},
		{name: "no association", backend: eksauth.NewError(eksauth.CodeResourceNotFound, "none"), status: http.StatusNotFound, msg: "no Pod Identity association matches service account shop/cart"},
		{name: "backend refuses the token", backend: eksauth.NewError(eksauth.CodeInvalidToken, "pod not found"), status: http.StatusForbidden, msg: "pod not found"},
		{name: "backend throttles", backend: eksauth.NewError(eksauth.CodeThrottling, "slow"), status: http.StatusServiceUnavailable, msg: "retry later"},
		{name: "backend fails", backend: eksauth.NewError(eksauth.CodeInternalServer, "boom"), status: http.StatusInternalServerError, msg: "failed"},
		{name: "rate limited", edit: func(o *Options) { o.PodRate, o.PodBurst = 0.001, 1 }, status: http.StatusTooManyRequests, msg: "too many requests from pod shop/cart-5d9f"},
		{name: "wrong method", method: http.MethodPost, status: http.StatusMethodNotAllowed, msg: "use GET"},
		{name: "wrong path", path: "/v1/other", status: http.StatusNotFound, msg: "not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.edit)
			if tt.backend != nil {
				e.backend.set(time.Hour, tt.backend)
			}
			tok := testClaims().sign(t)
			if tt.token != nil {
				tok = tt.token(t)
			}
			method, path := http.MethodGet, Path
			if tt.method != "" {
				method = tt.method
			}
			if tt.path != "" {
				path = tt.path
			}
			if tt.status == http.StatusTooManyRequests {
				// The first request takes the only token of the bucket.
				if w := e.get(testListen, tok); w.Code != http.StatusOK {
					t.Fatalf("first request: %d %s", w.Code, w.Body)
				}
			}
			r := httptest.NewRequest(method, "http://"+testListen+path, nil)
			if tok != "" {
				r.Header.Set("Authorization", tok)
			}
			w := httptest.NewRecorder()
			e.h.ServeHTTP(w, r)
			if w.Code != tt.status {
				t.Fatalf("status %d (%s), want %d", w.Code, w.Body, tt.status)
			}
			if got := testutil.ToFloat64(e.h.m.Requests.WithLabelValues(statusLabel(tt.status))); got != 1 {
				t.Fatalf("requests_total{code=%d} = %v, want 1", tt.status, got)
			}
			if tt.status == http.StatusOK {
				checkCredentials(t, w)
				return
			}
			if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Fatalf("error Content-Type %q, want text/plain", ct)
			}
			if !strings.Contains(w.Body.String(), tt.msg) {
				t.Fatalf("body %q does not contain %q", w.Body, tt.msg)
			}
		})
	}
}

// checkCredentials checks a SPEC §6 answer of the fake backend.
func checkCredentials(t *testing.T, w *httptest.ResponseRecorder) {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	var got map[string]string
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatalf("body %s: %v", w.Body, err)
	}
	exp, err := time.Parse(time.RFC3339Nano, got["Expiration"])
	if err != nil || !exp.Equal(testStart.Add(time.Hour)) {
		t.Fatalf("Expiration %q (%v), want %v", got["Expiration"], err, testStart.Add(time.Hour))
	}
	if len(got) != 5 || !strings.HasPrefix(got["AccessKeyId"], "ASIA") || got["SecretAccessKey"] != testSecret ||
		got["Token"] != testSession || got["AccountId"] != testAccount {
		t.Fatalf("answer %v", got)
	}
}

// TestHandlerHost checks that the Host header must name a listen address.
func TestHandlerHost(t *testing.T) {
	tests := []struct {
		listen []string
		host   string
		ok     bool
	}{
		{[]string{testListen}, "169.254.170.23", true},
		{[]string{testListen}, "169.254.170.23:80", true},
		{[]string{testListen}, "169.254.170.23:8080", false},
		{[]string{testListen}, "169.254.170.2", false},
		{[]string{testListen}, "example.com", false},
		{[]string{testListen}, "", false},
		{[]string{testListenV6}, "[fd00:ec2::23]", true},
		{[]string{testListenV6}, "[fd00:ec2::23]:80", true},
		{[]string{testListenV6}, "[FD00:EC2:0::23]:80", true},
		{[]string{testListenV6}, "[FD00:EC2::23]", true},
		{[]string{testListenV6}, "fd00:ec2::23", false},
		{[]string{testListenV6}, "[fd00:ec2::24]", false},
		{[]string{testListenV6}, "169.254.170.23", false},
		{[]string{"127.0.0.1:34567"}, "127.0.0.1:34567", true},
		{[]string{"127.0.0.1:34567"}, "127.0.0.1", false},
		{[]string{"127.0.0.1:34567"}, "localhost:34567", false},
		{[]string{"[::1]:34567"}, "[::1]:34567", true},
		{[]string{"localhost:80"}, "LocalHost", true},
		{[]string{"[::ffff:127.0.0.1]:80"}, "127.0.0.1", true},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.listen, ",")+"/"+tt.host, func(t *testing.T) {
			e := newEnv(t, func(o *Options) { o.ListenAddrs = tt.listen })
			w := e.get(tt.host, testClaims().sign(t))
			if ok := w.Code == http.StatusOK; ok != tt.ok {
				t.Fatalf("status %d (%s), want ok=%v", w.Code, w.Body, tt.ok)
			}
			if !tt.ok && (w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "Host")) {
				t.Fatalf("status %d (%s), want 403 naming the Host", w.Code, w.Body)
			}
		})
	}
}

// TestHandlerCachedPath checks that repeated requests of a pod, with its
// token rotated, cost one signature check per token and one backend call.
func TestHandlerCachedPath(t *testing.T) {
	e := newEnv(t, nil)
	tok1 := testClaims().sign(t)
	c := testClaims()
	c["jti"] = "rotated"
	tok2 := c.sign(t)
	for _, tok := range []string{tok1, tok1, tok1, tok2, tok2} {
		if w := e.get(testListen, tok); w.Code != http.StatusOK {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
	if n := e.keys.n.Load(); n != 2 {
		t.Fatalf("%d signature checks, want 2 (one per token)", n)
	}
	if n := e.backend.calls.Load(); n != 1 {
		t.Fatalf("%d backend calls, want 1 (one per pod)", n)
	}
}

// holdingKeys is a KeyVerifier whose checks wait for hold to close; it
// records how many ran at once.
type holdingKeys struct {
	KeyVerifier
	hold         chan struct{}
	calls        atomic.Int64
	running, max atomic.Int64
}

func (k *holdingKeys) Verify(ctx context.Context, tok *jwks.Token) error {
	k.calls.Add(1)
	n := k.running.Add(1)
	defer k.running.Add(-1)
	for m := k.max.Load(); n > m && !k.max.CompareAndSwap(m, n); m = k.max.Load() {
	}
	<-k.hold
	return k.KeyVerifier.Verify(ctx, tok)
}

// waitFor polls cond until it holds or 10 seconds have passed, then leaves
// a moment for anything more to happen; it reports whether cond held.
func waitFor(cond func() bool) bool {
	deadline := time.Now().Add(10 * time.Second)
	for !cond() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	return cond()
}

// TestHandlerBoundsMisses checks that when many pods ask at once (an agent
// restart), at most maxConcurrentVerifies signature checks and
// Options.MaxConcurrentMisses backend calls run at a time, each bound filled
// by its own work, that the others are answered after their wait, that the
// requests of one pod share its one call without taking the slots of other
// pods, and that a request waiting for its turn to verify finds what another
// request with its token got meanwhile.
func TestHandlerBoundsMisses(t *testing.T) {
	// limit differs from maxConcurrentVerifies, so that each bound is seen
	// to be its own.
	const limit, pods = 3, 40
	tests := []struct {
		name string
		// holdKeys holds signature checks, else backend calls.
		holdKeys bool
		// samePod: requests have the test pod's one token (all of them, or
		// the first samePod ones, started before the others).
		samePod int
		// wantRunning is the checks or calls running while held.
		wantRunning int64
		// maxChecks bounds the signature checks: one token is checked by
		// the requests that took a slot before any check ended, not by the
		// others.
		maxChecks, wantCalls int64
	}{
		{name: "signature checks", holdKeys: true, wantRunning: maxConcurrentVerifies, maxChecks: pods, wantCalls: pods},
		{name: "backend calls", wantRunning: limit, maxChecks: pods, wantCalls: pods},
		{name: "one token verified by the first requests only", holdKeys: true, samePod: pods,
			wantRunning: maxConcurrentVerifies, maxChecks: maxConcurrentVerifies, wantCalls: 1},
		{name: "one pod's backend call once", samePod: pods, wantRunning: 1, maxChecks: maxConcurrentVerifies, wantCalls: 1},
		// A pod's burst (20 requests) waiting for its call takes one slot:
		// the other pods' calls run beside it.
		{name: "one pod's requests take one backend slot", samePod: pods / 2, wantRunning: limit,
			maxChecks: maxConcurrentVerifies + pods/2, wantCalls: 1 + pods/2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// hold holds the signature checks or the backend calls.
			hold := make(chan struct{})
			keys := &holdingKeys{hold: hold}
			e := newEnv(t, func(o *Options) {
				o.MaxConcurrentMisses = limit
				if tt.holdKeys {
					keys.KeyVerifier = o.Keys
					o.Keys = keys
				}
			})
			if !tt.holdKeys {
				e.backend.hold = hold
			}
			podTok := testClaims().sign(t)
			tokens := make([]string, pods)
			for i := range tokens {
				if i < tt.samePod {
					tokens[i] = podTok
					continue
				}
				tokens[i] = podClaims(fmt.Sprint("pod-", i), fmt.Sprint("uid-", i), testNode).sign(t)
			}
			running := func() int64 {
				if tt.holdKeys {
					return keys.running.Load()
				}
				return e.backend.running.Load()
			}
			var wg sync.WaitGroup
			codes := make(chan int, pods)
			for i, tok := range tokens {
				if i == tt.samePod && i > 0 {
					// The pod's requests wait for its call before the
					// other pods ask.
					waitFor(func() bool { return running() == 1 })
				}
				wg.Go(func() { codes <- e.get(testListen, tok).Code })
			}
			if !waitFor(func() bool { return running() >= tt.wantRunning }) || running() != tt.wantRunning {
				t.Errorf("%d running at once, want %d", running(), tt.wantRunning)
			}
			close(hold)
			wg.Wait()
			close(codes)
			for code := range codes {
				if code != http.StatusOK {
					t.Fatalf("status %d, want 200 for every pod", code)
				}
			}
			if m := keys.max.Load(); m > maxConcurrentVerifies {
				t.Errorf("%d signature checks at once, want at most %d", m, maxConcurrentVerifies)
			}
			if m := e.backend.max.Load(); m > limit {
				t.Errorf("%d backend calls at once, want at most %d", m, limit)
			}
			if n := e.keys.n.Load(); n > tt.maxChecks {
				t.Errorf("%d signature checks, want at most %d", n, tt.maxChecks)
			}
			if n := e.backend.calls.Load(); n != tt.wantCalls {
				t.Errorf("%d backend calls, want %d", n, tt.wantCalls)
			}
		})
	}
}

// TestHandlerBackendSlotHeldByCall checks that a backend call keeps its slot
// until it ends, though the client that started it gave up (the SDKs wait 1
// to 5 seconds, a backend call up to BackendTimeout): pods asking one after
// another while the backend hangs start no more calls than the bound, and
// the calls of the pods that left still run, one at a time, once the backend
// answers, caching their credentials for the pods' next requests.
func TestHandlerBackendSlotHeldByCall(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxConcurrentMisses = 1 })
	hold := make(chan struct{})
	e.backend.hold = hold
	pods := []string{"a", "b", "c"}
	for _, pod := range pods {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		r := httptest.NewRequestWithContext(ctx, http.MethodGet, Path, nil)
		r.Host = testListen
		r.Header.Set("Authorization", podClaims(pod, "uid-"+pod, testNode).sign(t))
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, r)
		cancel()
		if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "waiting for the credential service") {
			t.Fatalf("pod %s: %d %s, want 503 waiting for the credential service", pod, w.Code, w.Body)
		}
	}
	if n := e.backend.calls.Load(); n != 1 {
		t.Errorf("%d backend calls started with MaxConcurrentMisses=1, want 1", n)
	}
	close(hold)
	if !waitFor(func() bool { return e.backend.calls.Load() == int64(len(pods)) && e.backend.running.Load() == 0 }) {
		t.Fatalf("%d backend calls after the backend answered, want %d (each pod's, kept when its client left)", e.backend.calls.Load(), len(pods))
	}
	if m := e.backend.max.Load(); m != 1 {
		t.Errorf("%d backend calls at once, want 1", m)
	}
	for _, pod := range pods {
		if w := e.get(testListen, podClaims(pod, "uid-"+pod, testNode).sign(t)); w.Code != http.StatusOK {
			t.Fatalf("pod %s asking again: %d %s", pod, w.Code, w.Body)
		}
	}
	if n := e.backend.calls.Load(); n != int64(len(pods)) {
		t.Errorf("%d backend calls, want %d (the pods asking again are served from the cache)", n, len(pods))
	}
}

// TestHandlerVerifyNotBehindBackend checks that a pod whose credentials are
// cached, presenting a token not verified yet (kubelet rotated it), is
// answered at once while every backend slot is taken by calls the backend
// does not answer, and more pods than there are verification slots wait for
// their credentials.
func TestHandlerVerifyNotBehindBackend(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxConcurrentMisses = 1 })
	if w := e.get(testListen, testClaims().sign(t)); w.Code != http.StatusOK {
		t.Fatalf("first request: %d %s", w.Code, w.Body)
	}
	hold := make(chan struct{})
	e.backend.hold = hold
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(hold)
	waiting := 2*maxConcurrentVerifies + 1
	for i := range waiting {
		tok := podClaims(fmt.Sprint("pod-", i), fmt.Sprint("uid-", i), testNode).sign(t)
		wg.Go(func() { e.get(testListen, tok) })
	}
	// One call holds the only backend slot; the waiting pods' tokens are
	// verified all the same.
	if !waitFor(func() bool { return e.backend.calls.Load() == 2 }) {
		t.Fatalf("%d backend calls, want 2", e.backend.calls.Load())
	}
	if !waitFor(func() bool { return e.keys.n.Load() == int64(1+waiting) }) {
		t.Errorf("%d signature checks, want %d (every waiting pod's token)", e.keys.n.Load(), 1+waiting)
	}
	rotated := testClaims()
	rotated["jti"] = "rotated"
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	r := httptest.NewRequestWithContext(ctx, http.MethodGet, Path, nil)
	r.Host = testListen
	r.Header.Set("Authorization", rotated.sign(t))
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		t.Fatalf("cached pod with a rotated token: %d %s, want 200 within a second", w.Code, w.Body)
	}
	checkCredentials(t, w)
}

// TestHandlerMissWaitEnds checks that a request whose client leaves while it
// waits (for its turn to verify its token, or for its pod's backend call) is
// answered 503, and that its pod is served once the work ahead of it ended:
// its verification slot was not taken, its backend call went on.
func TestHandlerMissWaitEnds(t *testing.T) {
	tests := []struct {
		name string
		// holdKeys holds signature checks, else backend calls.
		holdKeys  bool
		msg       string
		wantCalls int64 // backend calls in all
	}{
		{"verification", true, "waiting for its turn to verify the token", 1 + maxConcurrentVerifies},
		{"backend call", false, "waiting for the credential service", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hold := make(chan struct{})
			keys := &holdingKeys{hold: hold}
			e := newEnv(t, func(o *Options) {
				o.MaxConcurrentMisses = 1
				if tt.holdKeys {
					keys.KeyVerifier = o.Keys
					o.Keys = keys
				}
			})
			ahead := 1 // requests taking every slot of the held kind
			if tt.holdKeys {
				ahead = maxConcurrentVerifies
			} else {
				e.backend.hold = hold
			}
			var wg sync.WaitGroup
			codes := make(chan int, ahead)
			for i := range ahead {
				tok := podClaims(fmt.Sprint("pod-", i), fmt.Sprint("uid-", i), testNode).sign(t)
				wg.Go(func() { codes <- e.get(testListen, tok).Code })
			}
			if !waitFor(func() bool { return keys.running.Load()+e.backend.running.Load() == int64(ahead) }) {
				t.Fatalf("%d checks and %d calls running, want %d in all", keys.running.Load(), e.backend.running.Load(), ahead)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			other := podClaims("other", "uid-other", testNode).sign(t)
			r := httptest.NewRequestWithContext(ctx, http.MethodGet, Path, nil)
			r.Host = testListen
			r.Header.Set("Authorization", other)
			w := httptest.NewRecorder()
			e.h.ServeHTTP(w, r)
			if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), tt.msg) {
				t.Fatalf("status %d (%s), want 503 %s", w.Code, w.Body, tt.msg)
			}
			close(hold)
			wg.Wait()
			close(codes)
			for code := range codes {
				if code != http.StatusOK {
					t.Fatalf("a request ahead: %d", code)
				}
			}
			if w := e.get(testListen, other); w.Code != http.StatusOK {
				t.Fatalf("after the wait: %d %s", w.Code, w.Body)
			}
			if n := e.backend.calls.Load(); n != tt.wantCalls {
				t.Fatalf("%d backend calls, want %d", n, tt.wantCalls)
			}
		})
	}
}

// TestHandlerDeletedPod checks that once a pod is forgotten (deleted), its
// tokens, still valid, are refused without a backend call, new tokens of it
// included, and that the pod is remembered for a day at most.
func TestHandlerDeletedPod(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.PodRate, o.PodBurst = 1, 1 })
	tok := testClaims().sign(t)
	if w := e.get(testListen, tok); w.Code != http.StatusOK {
		t.Fatalf("before: %d %s", w.Code, w.Body)
	}
	e.h.Forget(testUID)
	c := testClaims()
	c["jti"] = "another"
	for i, tk := range []string{tok, tok, c.sign(t)} {
		if w := e.get(testListen, tk); w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "pod shop/cart-5d9f was deleted") {
			t.Fatalf("request %d after deletion: %d %s, want 403 saying the pod was deleted", i, w.Code, w.Body)
		}
	}
	if n := e.backend.calls.Load(); n != 1 {
		t.Fatalf("%d backend calls, want 1 (none after the deletion)", n)
	}
	e.clock.advance(tombstoneTTL)
	if !e.h.creds.deleted(testUID) {
		t.Fatal("forgotten within a day")
	}
	e.clock.advance(time.Second)
	if e.h.creds.deleted(testUID) {
		t.Fatal("remembered more than a day")
	}
}

// TestHandlerLogsNoSecrets runs requests that succeed and fail and checks
// that no token or credential reaches the logs, while issuance is logged.
func TestHandlerLogsNoSecrets(t *testing.T) {
	e := newEnv(t, nil)
	tok := testClaims().sign(t)
	expired := testClaims()
	expired["exp"] = testStart.Add(-time.Hour).Unix()
	expTok := expired.sign(t)
	e.get(testListen, tok)
	e.get(testListen, tok)
	e.get(testListen, expTok)
	e.get("evil.example", tok)
	e.backend.set(time.Hour, eksauth.NewError(eksauth.CodeServiceUnavailable, "down"))
	e.clock.advance(50 * time.Minute)
	e.get(testListen, tok) // cached credentials served, the renewal fails: Warn
	e.awaitRenewal()
	e.clock.advance(time.Hour)
	e.get(testListen, podClaims(testPod, testUID, testNode).sign(t)) // expired token now: 400
	logs := e.logs.String()
	for _, secret := range []string{tok, tok[len(tok)-43:], expTok[len(expTok)-43:], testSecret, testSession} {
		if strings.Contains(logs, secret) {
			t.Fatalf("logs hold a secret %q:\n%s", secret[:10], logs)
		}
	}
	for _, want := range []string{"credentials issued", "associationId=a-1234", "pod=" + testPod, "serviceAccount=" + testSA,
		"credentials served from cache", "the cached credentials are served while still valid"} {
		if !strings.Contains(logs, want) {
			t.Fatalf("logs lack %q:\n%s", want, logs)
		}
	}
}

// discardWriter is a ResponseWriter that keeps only the status, reused
// across requests so that the benchmark measures the handler alone.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }

// BenchmarkHandlerCached measures a request answered from both caches (token
// and credentials), the path every SDK refresh takes: run it with -cpu 1.
func BenchmarkHandlerCached(b *testing.B) {
	// Info, as `podiam agent` logs by default: a hit is logged at Debug.
	e := newEnv(b, func(o *Options) {
		o.PodRate, o.PodBurst = DefaultPodRate*1e6, DefaultPodBurst
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	})
	r := httptest.NewRequest(http.MethodGet, "http://"+testListen+Path, nil)
	r.Header.Set("Authorization", testClaims().sign(b))
	w := &discardWriter{h: http.Header{}}
	e.h.ServeHTTP(w, r)
	if w.code != 0 && w.code != http.StatusOK {
		b.Fatalf("status %d", w.code)
	}
	b.ReportAllocs()
	for b.Loop() {
		w.code = 0
		// The test clock moves a microsecond a request, so that the pod's
		// bucket refills (1 µs × b.N stays far inside the token's hour).
		e.clock.advance(time.Microsecond)
		e.h.ServeHTTP(w, r)
	}
	if w.code != 0 {
		b.Fatalf("status %d", w.code)
	}
}

// FuzzHandler sends arbitrary Host and Authorization headers: the handler
// must answer with one of its statuses, never panic, and return credentials
// only for a valid token of this node on a listen address. Seeds are in
// testdata/fuzz/FuzzHandler (among them a valid token of the test cluster,
// whose keys and clock are fixed).
func FuzzHandler(f *testing.F) {
	valid := testClaims().sign(f)
	expired := testClaims()
	expired["exp"] = testStart.Add(-time.Hour).Unix()
	f.Add(testListen, valid)
	f.Add("[fd00:ec2::23]", valid)
	f.Add("169.254.170.23", expired.sign(f))
	f.Add("evil.example", valid)
	f.Add("169.254.170.23", "")
	f.Add("169.254.170.23", "e30.e30.")
	e := newEnv(f, func(o *Options) { o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil)) })
	statuses := map[int]bool{200: true, 400: true, 403: true, 404: true, 429: true, 500: true, 503: true}
	f.Fuzz(func(t *testing.T, host, auth string) {
		r := httptest.NewRequest(http.MethodGet, Path, nil)
		r.Host = host
		r.Header["Authorization"] = []string{auth}
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, r)
		if !statuses[w.Code] {
			t.Fatalf("status %d", w.Code)
		}
		if w.Code != http.StatusOK {
			return
		}
		if !e.h.hostAllowed(host) || !strings.HasPrefix(auth, "ey") {
			t.Fatalf("credentials for Host %q and Authorization %q", host, auth)
		}
		var got map[string]string
		if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || got["AccessKeyId"] == "" {
			t.Fatalf("answer %s: %v", w.Body, err)
		}
	})
}
