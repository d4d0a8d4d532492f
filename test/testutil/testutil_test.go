package testutil

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

// recorder is a testing.TB whose Fatalf records the failure instead of
// ending the test, to check what Eventually reports.
type recorder struct {
	testing.TB
	ctx    context.Context
	failed string
}

func (r *recorder) Helper()                  {}
func (r *recorder) Context() context.Context { return r.ctx }
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
}

func TestEventually(t *testing.T) {
	tests := []struct {
		name      string
		trueAfter int // calls until cond holds; 0: never
		wantCalls int // at least
		wantFail  string
	}{
		{name: "holds at once", trueAfter: 1, wantCalls: 1},
		{name: "holds on the fifth call", trueAfter: 5, wantCalls: 5},
		{name: "never holds", trueAfter: 0, wantCalls: 2, wantFail: "waiting for the thing (context deadline exceeded); last: call "},
	}
	for _, tt := range tests {
		// Both shapes of condition; only the one with a state reports it.
		for _, withState := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s, state %v", tt.name, withState), func(t *testing.T) {
				r := &recorder{TB: t, ctx: t.Context()}
				calls := 0
				if withState {
					Eventually(r, 200*time.Millisecond, time.Millisecond, "the thing", func() (bool, string) {
						calls++
						return calls == tt.trueAfter, "call " + strconv.Itoa(calls)
					})
				} else {
					Eventually(r, 200*time.Millisecond, time.Millisecond, "the thing", func() bool {
						calls++
						return calls == tt.trueAfter
					})
				}
				wantFail := tt.wantFail
				if !withState {
					wantFail = strings.TrimSuffix(wantFail, "call ")
				}
				if calls < tt.wantCalls || (tt.trueAfter > 0 && calls != tt.trueAfter) {
					t.Errorf("cond called %d times, want %d", calls, max(tt.wantCalls, tt.trueAfter))
				}
				if wantFail == "" && r.failed != "" {
					t.Errorf("failed: %s", r.failed)
				}
				if !strings.Contains(r.failed, wantFail) {
					t.Errorf("failure %q, want it to contain %q", r.failed, wantFail)
				}
			})
		}
	}
}

func TestEventuallyStopsWithTheTest(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	r := &recorder{TB: t, ctx: ctx}
	begin := time.Now()
	Eventually(r, time.Minute, time.Millisecond, "the thing", func() (bool, string) { return false, "" })
	if r.failed == "" || time.Since(begin) > 10*time.Second {
		t.Fatalf("after the test's context ended: failed %q after %v", r.failed, time.Since(begin))
	}
}

func TestFreePorts(t *testing.T) {
	for _, n := range []int{1, 4} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			ports, err := FreePorts(n)
			if err != nil {
				t.Fatal(err)
			}
			seen := map[int]bool{}
			for _, p := range ports {
				if p <= 0 || seen[p] {
					t.Fatalf("ports %v: want %d distinct ports", ports, n)
				}
				seen[p] = true
				ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
				if err != nil {
					t.Fatalf("port %d is not free: %v", p, err)
				}
				ln.Close()
			}
			if len(ports) != n {
				t.Fatalf("got %d ports, want %d", len(ports), n)
			}
		})
	}
}

func TestUniqueName(t *testing.T) {
	for _, prefix := range []string{"e2e-faults", "Team-A", "zz-e2e-late-sidecar"} {
		t.Run(prefix, func(t *testing.T) {
			a, b := UniqueName(prefix), UniqueName(prefix)
			if a == b {
				t.Errorf("two names alike: %s", a)
			}
			for _, n := range []string{a, b} {
				if !strings.HasPrefix(n, strings.ToLower(prefix)+"-") {
					t.Errorf("%s does not start with %s-", n, strings.ToLower(prefix))
				}
				if errs := validation.IsDNS1123Label(n); len(errs) > 0 {
					t.Errorf("%s is not a DNS label: %v", n, errs)
				}
			}
		})
	}
}

func TestSyncBuffer(t *testing.T) {
	var b SyncBuffer
	const writers, lines = 8, 100
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range lines {
				fmt.Fprintf(&b, "writer %d line %d\n", w, i)
				_ = b.String() // a reader while others write
			}
		})
	}
	wg.Wait()
	if got := strings.Count(b.String(), "\n"); got != writers*lines {
		t.Fatalf("%d lines, want %d", got, writers*lines)
	}
}

func TestModuleRoot(t *testing.T) {
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if got := modulePath(filepath.Join(root, "go.mod")); got != ModulePath {
		t.Fatalf("ModuleRoot() = %s, whose go.mod declares %q", root, got)
	}
	if _, err := os.Stat(filepath.Join(root, "test", "testutil", "testutil.go")); err != nil {
		t.Fatalf("ModuleRoot() = %s is not this module's root: %v", root, err)
	}
}
