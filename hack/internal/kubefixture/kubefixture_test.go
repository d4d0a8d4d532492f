package kubefixture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/podiam/podiam/test/harness"
	"github.com/podiam/podiam/test/testcluster"
)

// TestParallel checks that every index runs once on at most workers
// goroutines, and that the first error comes back.
func TestParallel(t *testing.T) {
	tests := []struct {
		name    string
		n       int
		workers int
		failAt  int // -1: none fails
	}{
		{"more items than workers", 100, 8, -1},
		{"fewer items than workers", 3, 32, -1},
		{"none", 0, 4, -1},
		{"one fails", 50, 4, 17},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var ran []int
			var busy, most atomic.Int64
			err := Parallel(tt.n, tt.workers, func(i int) error {
				now := busy.Add(1)
				defer busy.Add(-1)
				for m := most.Load(); now > m && !most.CompareAndSwap(m, now); m = most.Load() {
				}
				time.Sleep(time.Millisecond)
				mu.Lock()
				ran = append(ran, i)
				mu.Unlock()
				if i == tt.failAt {
					return fmt.Errorf("item %d", i)
				}
				return nil
			})
			if most.Load() > int64(tt.workers) {
				t.Errorf("%d at once, want at most %d", most.Load(), tt.workers)
			}
			slices.Sort(ran)
			if tt.failAt >= 0 {
				if err == nil || err.Error() != fmt.Sprintf("item %d", tt.failAt) {
					t.Errorf("error %v, want item %d's", err, tt.failAt)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for i, got := range ran {
				if got != i {
					t.Fatalf("ran %v, want each of 0..%d once", ran, tt.n-1)
				}
			}
			if len(ran) != tt.n {
				t.Errorf("ran %d items, want %d", len(ran), tt.n)
			}
		})
	}
}

// TestWaitReady checks that it waits for 200, gives up after its timeout,
// and fails at once when the process exits.
func TestWaitReady(t *testing.T) {
	tests := []struct {
		name    string
		command []string
		status  int
		timeout time.Duration
		wantErr string // "" for ready
	}{
		{"ready", []string{"sleep", "30"}, http.StatusOK, 10 * time.Second, ""},
		{"never ready", []string{"sleep", "30"}, http.StatusServiceUnavailable, 300 * time.Millisecond, "server not ready at"},
		{"exits", []string{"false"}, http.StatusServiceUnavailable, 10 * time.Second, "server exited with status 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(tt.status) }))
			defer srv.Close()
			p, err := harness.StartPodiam(tt.command[0], io.Discard, nil, tt.command[1:]...)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Kill()
			start := time.Now()
			err = WaitReady(t.Context(), p, srv.URL+"/readyz", "server", tt.timeout)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one with %q", err, tt.wantErr)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("took %v to fail", took)
			}
		})
	}
}

// TestWriteLogTail checks that a failed run shows the end of a log, and
// nothing for a log never written.
func TestWriteLogTail(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short.log")
	long := filepath.Join(dir, "long.log")
	if err := os.WriteFile(short, []byte("ready\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(long, []byte("first line\n"+strings.Repeat("x", 6<<10)), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, want string
	}{
		{"short", short, "--- end of the podiam sts log (" + short + "):\nready\n\n"},
		{"long: the end only", long, "--- end of the podiam sts log (" + long + "):\n" + strings.Repeat("x", 6<<10) + "\n"},
		{"not started", "", ""},
		{"no file", filepath.Join(dir, "none.log"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out strings.Builder
			WriteLogTail(&out, "podiam sts", tt.path)
			if out.String() != tt.want {
				t.Errorf("wrote %.80q…, want %.80q…", out.String(), tt.want)
			}
		})
	}
}

// TestObjects builds, on a real control plane, what the programs build: the
// CRD, a node, a ServiceAccount, a pod on the node and its token in a file,
// bound to the pod.
func TestObjects(t *testing.T) {
	c := testcluster.StartForTest(t, testcluster.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	client, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	if err := InstallCRD(ctx, c.RESTConfig(), "kubefixture-test"); err != nil {
		t.Fatal(err)
	}
	const ns = "kubefixture-objects"
	if err := c.EnsureNamespace(ctx, ns, nil); err != nil {
		t.Fatal(err)
	}
	if err := CreateNode(ctx, client, "node-objects"); err != nil {
		t.Fatal(err)
	}
	if err := CreateServiceAccount(ctx, client, ns, "app"); err != nil {
		t.Fatal(err)
	}
	if err := CreateServiceAccount(ctx, client, ns, "app"); !apierrors.IsAlreadyExists(errors.Unwrap(err)) {
		t.Errorf("second CreateServiceAccount: %v, want AlreadyExists", err)
	}
	pod, err := CreatePod(ctx, client, ns, "pod-0", "app", "node-objects")
	if err != nil {
		t.Fatal(err)
	}
	if pod.UID == "" || pod.Spec.NodeName != "node-objects" {
		t.Fatalf("pod UID %q on node %q", pod.UID, pod.Spec.NodeName)
	}
	path := filepath.Join(t.TempDir(), "token")
	if err := WriteBoundToken(ctx, client, pod, "pods.eks.amazonaws.com", path); err != nil {
		t.Fatal(err)
	}
	token, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, claims, err := c.VerifyToken(string(token))
	if err != nil {
		t.Fatal(err)
	}
	if claims.Sub != "system:serviceaccount:"+ns+":app" || !slices.Equal(claims.Aud, []string{"pods.eks.amazonaws.com"}) ||
		claims.Kubernetes.Pod == nil || claims.Kubernetes.Pod.UID != string(pod.UID) || claims.Exp-claims.Iat != 3600 {
		t.Errorf("token claims %+v", claims)
	}
	// A pod of the same name but another UID: gone and recreated.
	gone := pod.DeepCopy()
	gone.UID = "00000000-0000-0000-0000-000000000000"
	if _, err := BoundToken(ctx, client, gone, "pods.eks.amazonaws.com"); err == nil {
		t.Error("a token bound to a pod UID that does not exist")
	}
}
