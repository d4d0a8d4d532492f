package auth

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// TestNodeLimiter checks bursts, refill and that nodes do not share buckets,
// on a clock the test moves.
func TestNodeLimiter(t *testing.T) {
	type step struct {
		advance time.Duration // before the call
		node    string
		want    bool
	}
	tests := []struct {
		name  string
		r     rate.Limit
		burst int
		steps []step
	}{
		{name: "burst then refused", r: 1, burst: 2, steps: []step{
			{0, "a", true}, {0, "a", true}, {0, "a", false},
		}},
		{name: "refills at the rate", r: 1, burst: 1, steps: []step{
			{0, "a", true}, {500 * time.Millisecond, "a", false}, {500 * time.Millisecond, "a", true},
		}},
		{name: "nodes have their own buckets", r: 1, burst: 1, steps: []step{
			{0, "a", true}, {0, "a", false}, {0, "b", true}, {0, "b", false},
		}},
		{name: "unlimited", r: rate.Inf, burst: 0, steps: []step{
			{0, "a", true}, {0, "a", true}, {0, "a", true},
		}},
		{name: "a burst of 0 refuses", r: 10, burst: 0, steps: []step{
			{0, "a", false}, {time.Second, "a", false},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewNodeLimiter(tt.r, tt.burst)
			now := vtNow
			l.now = func() time.Time { return now }
			for i, s := range tt.steps {
				now = now.Add(s.advance)
				if got := l.Allow(s.node); got != s.want {
					t.Errorf("step %d: Allow(%s) = %v; want %v", i, s.node, got, s.want)
				}
			}
		})
	}
}

// TestNodeLimiterForgets checks that the map of buckets stays bounded: idle,
// full buckets go, a bucket still refilling stays (forgetting it would hand
// its node a fresh burst).
func TestNodeLimiterForgets(t *testing.T) {
	// 1 request per 100 s: a drained bucket of 10 needs 1,000 s to refill,
	// longer than limiterIdle.
	l := NewNodeLimiter(0.01, 10)
	now := vtNow
	l.now = func() time.Time { return now }
	for i := range 100 {
		l.Allow(fmt.Sprintf("node-%d", i)) // one token of ten taken: refilled in 100 s
	}
	for range 10 {
		l.Allow("busy") // drained
	}
	if n := l.size(); n != 101 {
		t.Fatalf("%d buckets; want 101", n)
	}
	now = now.Add(limiterIdle + limiterSweepEvery)
	l.Allow("node-0") // sweeps; node-0 comes back
	if n := l.size(); n != 2 {
		t.Errorf("%d buckets after the sweep; want 2 (busy, still refilling, and node-0)", n)
	}
	// 660 s refilled 6.6 tokens; a forgotten bucket would give 10.
	got := 0
	for l.Allow("busy") {
		got++
	}
	if got != 6 {
		t.Errorf("busy got %d requests through; want 6 (its bucket kept, not renewed)", got)
	}
}

// TestNodeLimiterNil checks that a nil limiter, no limit configured, allows.
func TestNodeLimiterNil(t *testing.T) {
	var l *NodeLimiter
	if !l.Allow("a") {
		t.Error("nil limiter refused")
	}
}

// TestNodeLimiterConcurrent lets many goroutines share one bucket: exactly
// the burst gets through (run with -race).
func TestNodeLimiterConcurrent(t *testing.T) {
	l := NewNodeLimiter(rate.Every(time.Hour), 50)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		allowed int
	)
	for range 200 {
		wg.Go(func() {
			if l.Allow("n") {
				mu.Lock()
				allowed++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if allowed != 50 {
		t.Errorf("%d allowed; want the burst, 50", allowed)
	}
}
