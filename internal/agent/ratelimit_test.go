package agent

import (
	"fmt"
	"testing"
	"time"
)

// TestPodLimiter checks that each pod has its own bucket.
func TestPodLimiter(t *testing.T) {
	tests := []struct {
		name  string
		rate  float64
		burst int
		steps []string // pod UIDs asking, in order; "+1s" advances the clock
		want  []bool
	}{
		{"burst then refused", 1, 2, []string{"a", "a", "a"}, []bool{true, true, false}},
		{"per pod, not per node", 1, 1, []string{"a", "b", "a", "b"}, []bool{true, true, false, false}},
		{"refills", 1, 1, []string{"a", "a", "+1s", "a"}, []bool{true, false, true}},
		{"forget gives a full bucket", 1, 1, []string{"a", "forget a", "a"}, []bool{true, true}},
		{"no limit", 0, 0, []string{"a", "a", "a"}, []bool{true, true, true}},
		{"burst 0 means 1", 1, 0, []string{"a", "a"}, []bool{true, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClock()
			l := newPodLimiter(tt.rate, tt.burst, c.now)
			var got []bool
			for _, s := range tt.steps {
				switch {
				case s == "+1s":
					c.advance(time.Second)
				case len(s) > 7 && s[:7] == "forget ":
					l.forget(s[7:])
				default:
					got = append(got, l.allow(s))
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("allowed %v, want %v", got, tt.want)
			}
		})
	}
}

// TestPodLimiterBounded checks that the buckets kept are bounded.
func TestPodLimiterBounded(t *testing.T) {
	l := newPodLimiter(1, 1, newClock().now)
	for i := range maxLimitedPods + 100 {
		l.allow(fmt.Sprint("uid-", i))
	}
	if n := l.pods.len(); n != maxLimitedPods {
		t.Fatalf("%d buckets kept, want %d", n, maxLimitedPods)
	}
}
