package auth

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiterIdle is how long a node's bucket must go unused (and be full again)
// before it is forgotten; limiterSweepEvery is how often Allow looks for
// such buckets. A forgotten bucket comes back full, which is what it was.
const (
	limiterIdle       = 10 * time.Minute
	limiterSweepEvery = time.Minute
)

// NodeLimiter is one token bucket per node: each node's agent may make r
// requests per second, in bursts of up to burst. Node names come from
// verified caller tokens, so there are as many buckets as nodes that called
// in the last minutes; idle, full buckets are forgotten. Safe for concurrent
// use. A nil *NodeLimiter allows everything.
type NodeLimiter struct {
	r     rate.Limit
	burst int
	now   func() time.Time // time.Now; tests set it

	mu        sync.Mutex
	nodes     map[string]*nodeBucket
	lastSweep time.Time
}

// nodeBucket is one node's bucket and when it was last asked.
type nodeBucket struct {
	lim  *rate.Limiter
	used time.Time
}

// NewNodeLimiter returns a limiter of r requests per second per node, with
// bursts of burst. rate.Inf allows everything.
func NewNodeLimiter(r rate.Limit, burst int) *NodeLimiter {
	return &NodeLimiter{r: r, burst: burst, now: time.Now, nodes: map[string]*nodeBucket{}}
}

// Allow reports whether node may make one more request now, taking a token
// from its bucket if so.
func (l *NodeLimiter) Allow(node string) bool {
	if l == nil {
		return true
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) >= limiterSweepEvery {
		l.sweep(now)
		l.lastSweep = now
	}
	b := l.nodes[node]
	if b == nil {
		b = &nodeBucket{lim: rate.NewLimiter(l.r, l.burst)}
		l.nodes[node] = b
	}
	b.used = now
	return b.lim.AllowN(now, 1)
}

// sweep forgets the buckets unused for limiterIdle and full again: forgetting
// a bucket that is not full would hand its node a fresh burst.
func (l *NodeLimiter) sweep(now time.Time) {
	for node, b := range l.nodes {
		if now.Sub(b.used) >= limiterIdle && b.lim.TokensAt(now) >= float64(l.burst) {
			delete(l.nodes, node)
		}
	}
}

// size is the number of buckets held, for tests.
func (l *NodeLimiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.nodes)
}
