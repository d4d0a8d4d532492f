package agent

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// maxLimitedPods bounds the pods whose buckets are kept. A node runs a few
// hundred pods at most, and pod UIDs come from verified tokens of this node;
// a bucket pushed out comes back full, which only errs towards allowing.
const maxLimitedPods = 4096

// podLimiter is one token bucket per pod UID: each pod may make r requests
// per second, in bursts of up to burst. Safe for concurrent use. A nil
// *podLimiter allows everything.
type podLimiter struct {
	r     rate.Limit
	burst int
	now   func() time.Time

	mu   sync.Mutex
	pods *lru[string, *rate.Limiter]
}

// newPodLimiter returns a limiter of r requests per second per pod, or nil
// (no limit) when r is not positive.
func newPodLimiter(r float64, burst int, now func() time.Time) *podLimiter {
	if r <= 0 {
		return nil
	}
	if burst <= 0 {
		burst = 1
	}
	return &podLimiter{r: rate.Limit(r), burst: burst, now: now, pods: newLRU[string, *rate.Limiter](maxLimitedPods)}
}

// allow reports whether the pod may make one more request now, taking a
// token from its bucket if so.
func (l *podLimiter) allow(podUID string) bool {
	if l == nil {
		return true
	}
	now := l.now()
	l.mu.Lock()
	lim, ok := l.pods.get(podUID)
	if !ok {
		lim = rate.NewLimiter(l.r, l.burst)
		l.pods.put(podUID, lim)
	}
	l.mu.Unlock()
	return lim.AllowN(now, 1)
}

// forget drops the pod's bucket.
func (l *podLimiter) forget(podUID string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	l.pods.remove(podUID)
	l.mu.Unlock()
}
