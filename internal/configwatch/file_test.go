package configwatch

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/podiam/podiam/internal/identity"
	"github.com/podiam/podiam/internal/metrics"
	"github.com/podiam/podiam/test/testutil"
)

// ccJSON renders a container-credentials file for "namespace/serviceAccount" ids.
func ccJSON(ids ...string) string {
	var parts []string
	for _, id := range ids {
		ns, sa, _ := strings.Cut(id, "/")
		parts = append(parts, fmt.Sprintf(`{"namespace":%q,"serviceAccount":%q}`, ns, sa))
	}
	return `{"identities":[` + strings.Join(parts, ",") + `]}`
}

// writeAtomic replaces path via a temporary file and rename, so no reader sees a
// partial or empty file.
func writeAtomic(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// writeInPlace truncates and rewrites path, as an editor or `echo >` would.
func writeInPlace(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// appendTo appends to path without truncating it, as a writer finishing the second
// half of a file would.
func appendTo(t *testing.T, path, content string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// kubeletWrite updates dir the way the kubelet's atomic writer updates a ConfigMap
// volume: write a new timestamped directory, point a temporary symlink at it, rename
// that over "..data", make sure the user-visible "config.json -> ..data/config.json"
// exists, and remove the previous timestamped directory.
func kubeletWrite(t *testing.T, dir, ts, content string) {
	t.Helper()
	tsDir := filepath.Join(dir, ts)
	if err := os.Mkdir(tsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tsDir, "config.json"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "config.json")
	if _, err := os.Lstat(link); os.IsNotExist(err) {
		if err := os.Symlink(filepath.Join("..data", "config.json"), link); err != nil {
			t.Fatal(err)
		}
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
			t.Fatal(err)
		}
	}
}

// ccWant is the expected state after a step.
type ccWant struct {
	members []string // exact set, "namespace/serviceAccount"
	err     float64  // cumulative error reloads
}

func checkCC(cc *identity.ContainerCredentials, met *metrics.Webhook, want ccWant) bool {
	if cc.Len() != len(want.members) ||
		reloads(met, metrics.SourceContainerCredentials, metrics.ResultError) != want.err ||
		entries(met, metrics.SourceContainerCredentials) != float64(len(want.members)) {
		return false
	}
	for _, id := range want.members {
		ns, sa, _ := strings.Cut(id, "/")
		if !cc.Contains(ns, sa) {
			return false
		}
	}
	return true
}

func describeCC(w *FileWatcher, met *metrics.Webhook) string {
	return fmt.Sprintf("len=%d ok=%v err=%v entries=%v", w.Current().Len(),
		reloads(met, metrics.SourceContainerCredentials, metrics.ResultOK),
		reloads(met, metrics.SourceContainerCredentials, metrics.ResultError),
		entries(met, metrics.SourceContainerCredentials))
}

// startFileWatcher creates a watcher, checks the synchronous first read against
// initial, and runs it until the test ends.
func startFileWatcher(t *testing.T, path string, poll time.Duration, initial ccWant) (*FileWatcher, *metrics.Webhook) {
	t.Helper()
	met := metrics.NewWebhook(prometheus.NewRegistry())
	w, err := NewFileWatcher(FileOptions{Path: path, PollInterval: poll, Metrics: met, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if !checkCC(w.Current(), met, initial) {
		t.Fatalf("after NewFileWatcher: %s, want %+v", describeCC(w, met), initial)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return w, met
}

type ccStep struct {
	name string
	do   func(t *testing.T, dir, path string)
	want ccWant
}

func TestFileWatcher(t *testing.T) {
	atomicW := func(content string) func(t *testing.T, dir, path string) {
		return func(t *testing.T, _, path string) { writeAtomic(t, path, content) }
	}
	inPlace := func(content string) func(t *testing.T, dir, path string) {
		return func(t *testing.T, _, path string) { writeInPlace(t, path, content) }
	}
	remove := func(t *testing.T, _, path string) {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	}
	kubelet := func(ts, content string) func(t *testing.T, dir, path string) {
		return func(t *testing.T, dir, _ string) { kubeletWrite(t, dir, ts, content) }
	}
	full := ccJSON("team-b/api", "team-c/worker")
	half := full[:len(full)/2]

	tests := []struct {
		name  string
		setup func(t *testing.T, dir, path string) // nil: the file does not exist
		poll  time.Duration                        // 0: an hour, so only fsnotify can see changes
		steps []ccStep                             // the first step's do is ignored: it is the state after NewFileWatcher
	}{
		{
			name: "missing at start then created",
			steps: []ccStep{
				{"initial", nil, ccWant{nil, 0}},
				{"created", atomicW(ccJSON("team-a/app")), ccWant{[]string{"team-a/app"}, 0}},
			},
		},
		{
			name:  "empty file",
			setup: func(t *testing.T, _, path string) { writeInPlace(t, path, "") },
			steps: []ccStep{
				{"initial", nil, ccWant{nil, 0}},
				{"filled", atomicW(ccJSON("team-a/app")), ccWant{[]string{"team-a/app"}, 0}},
				{"emptied", atomicW(" \n"), ccWant{nil, 0}},
			},
		},
		{
			name:  "valid then rewritten",
			setup: func(t *testing.T, _, path string) { writeInPlace(t, path, ccJSON("team-a/app")) },
			steps: []ccStep{
				{"initial", nil, ccWant{[]string{"team-a/app"}, 0}},
				{"rewritten in place", inPlace(ccJSON("team-b/api", "team-c/worker")), ccWant{[]string{"team-b/api", "team-c/worker"}, 0}},
				{"replaced by rename", atomicW(ccJSON("team-d/db")), ccWant{[]string{"team-d/db"}, 0}},
			},
		},
		{
			name:  "malformed keeps last good",
			setup: func(t *testing.T, _, path string) { writeInPlace(t, path, ccJSON("team-a/app")) },
			steps: []ccStep{
				{"initial", nil, ccWant{[]string{"team-a/app"}, 0}},
				{"bad JSON", atomicW(`{"identities": [`), ccWant{[]string{"team-a/app"}, 1}},
				{"missing field", atomicW(`{"identities":[{"namespace":"team-x"}]}`), ccWant{[]string{"team-a/app"}, 2}},
				{"wrong type", atomicW(`[]`), ccWant{[]string{"team-a/app"}, 3}},
				{"fixed", atomicW(ccJSON("team-b/api")), ccWant{[]string{"team-b/api"}, 3}},
			},
		},
		{
			name:  "malformed at start",
			setup: func(t *testing.T, _, path string) { writeInPlace(t, path, "not json") },
			steps: []ccStep{
				{"initial", nil, ccWant{nil, 1}},
				{"fixed", atomicW(ccJSON("team-a/app")), ccWant{[]string{"team-a/app"}, 1}},
			},
		},
		{
			name:  "half-written",
			setup: func(t *testing.T, _, path string) { writeInPlace(t, path, ccJSON("team-a/app")) },
			steps: []ccStep{
				{"initial", nil, ccWant{[]string{"team-a/app"}, 0}},
				{"first half", atomicW(half), ccWant{[]string{"team-a/app"}, 1}},
				{"second half", func(t *testing.T, _, path string) { appendTo(t, path, full[len(half):]) },
					ccWant{[]string{"team-b/api", "team-c/worker"}, 1}},
			},
		},
		{
			name:  "ConfigMap volume symlink swap",
			setup: func(t *testing.T, dir, _ string) { kubeletWrite(t, dir, "..2026_01", ccJSON("team-a/app")) },
			steps: []ccStep{
				{"initial", nil, ccWant{[]string{"team-a/app"}, 0}},
				{"swapped", kubelet("..2026_02", ccJSON("team-b/api", "team-c/worker")), ccWant{[]string{"team-b/api", "team-c/worker"}, 0}},
				{"swapped to malformed", kubelet("..2026_03", `{"identities":`), ccWant{[]string{"team-b/api", "team-c/worker"}, 1}},
				{"swapped again", kubelet("..2026_04", ccJSON("team-d/db")), ccWant{[]string{"team-d/db"}, 1}},
			},
		},
		{
			name:  "ConfigMap volume created after start",
			setup: func(t *testing.T, dir, _ string) {},
			steps: []ccStep{
				{"initial", nil, ccWant{nil, 0}},
				{"projected", kubelet("..2026_01", ccJSON("team-a/app")), ccWant{[]string{"team-a/app"}, 0}},
			},
		},
		{
			name:  "deleted file",
			setup: func(t *testing.T, _, path string) { writeInPlace(t, path, ccJSON("team-a/app")) },
			steps: []ccStep{
				{"initial", nil, ccWant{[]string{"team-a/app"}, 0}},
				{"deleted", remove, ccWant{nil, 0}},
				{"recreated", atomicW(ccJSON("team-b/api")), ccWant{[]string{"team-b/api"}, 0}},
			},
		},
		{
			name: "unreadable path keeps last good",
			setup: func(t *testing.T, _, path string) {
				writeInPlace(t, path, ccJSON("team-a/app"))
			},
			steps: []ccStep{
				{"initial", nil, ccWant{[]string{"team-a/app"}, 0}},
				{"replaced by a symlink to a directory", func(t *testing.T, dir, path string) {
					// Atomically, so the watcher never sees the file missing.
					if err := os.Mkdir(filepath.Join(dir, "adir"), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.Symlink("adir", filepath.Join(dir, "tmp-link")); err != nil {
						t.Fatal(err)
					}
					if err := os.Rename(filepath.Join(dir, "tmp-link"), path); err != nil {
						t.Fatal(err)
					}
				}, ccWant{[]string{"team-a/app"}, 1}},
				{"file again", atomicW(ccJSON("team-b/api")), ccWant{[]string{"team-b/api"}, 1}},
			},
		},
		{
			// fsnotify watches path's directory; a change to a symlink target in
			// another directory is only seen by polling.
			name: "poll catches symlink target in another directory",
			setup: func(t *testing.T, _, path string) {
				target := filepath.Join(t.TempDir(), "target.json")
				writeInPlace(t, target, ccJSON("team-a/app"))
				if err := os.Symlink(target, path); err != nil {
					t.Fatal(err)
				}
			},
			poll: 20 * time.Millisecond,
			steps: []ccStep{
				{"initial", nil, ccWant{[]string{"team-a/app"}, 0}},
				{"target rewritten", func(t *testing.T, _, path string) {
					target, err := os.Readlink(path)
					if err != nil {
						t.Fatal(err)
					}
					writeAtomic(t, target, ccJSON("team-b/api"))
				}, ccWant{[]string{"team-b/api"}, 0}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := filepath.Join(dir, "config.json")
			if tt.setup != nil {
				tt.setup(t, dir, path)
			}
			poll := tt.poll
			if poll == 0 {
				poll = time.Hour
			}
			w, met := startFileWatcher(t, path, poll, tt.steps[0].want)
			for _, s := range tt.steps[1:] {
				s.do(t, dir, path)
				testutil.Eventually(t, waitTimeout, pollInterval, s.name, func() (bool, string) {
					return checkCC(w.Current(), met, s.want), describeCC(w, met)
				})
			}
		})
	}
}

func TestFileWatcherDirectoryCreatedLater(t *testing.T) {
	// The directory does not exist when Run starts, so only polling can find the
	// file; Run then re-establishes the directory watch.
	dir := filepath.Join(t.TempDir(), "later")
	path := filepath.Join(dir, "config.json")
	w, met := startFileWatcher(t, path, 20*time.Millisecond, ccWant{nil, 0})
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, path, ccJSON("team-a/app"))
	want := ccWant{[]string{"team-a/app"}, 0}
	testutil.Eventually(t, waitTimeout, pollInterval, "file in new directory", func() (bool, string) {
		return checkCC(w.Current(), met, want), describeCC(w, met)
	})
}

func TestFileWatcherSkipsUnchangedContent(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.json")
	writeInPlace(t, path, ccJSON("team-a/app"))
	w, met := startFileWatcher(t, path, 20*time.Millisecond, ccWant{[]string{"team-a/app"}, 0})

	// Same content again, and time for several polls and an event-driven read: no
	// reload may be counted. Then a real change proves the watcher is alive, and the
	// ok count proves the unchanged writes were skipped.
	writeAtomic(t, path, ccJSON("team-a/app"))
	now := time.Now().Add(time.Minute)
	if err := os.Chtimes(path, now, now); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // let polls and events happen; not an assertion
	writeAtomic(t, path, ccJSON("team-b/api"))
	want := ccWant{[]string{"team-b/api"}, 0}
	testutil.Eventually(t, waitTimeout, pollInterval, "changed content", func() (bool, string) {
		return checkCC(w.Current(), met, want), describeCC(w, met)
	})
	if got := reloads(met, metrics.SourceContainerCredentials, metrics.ResultOK); got != 2 {
		t.Errorf("ok reloads = %v, want 2 (initial and one change)", got)
	}
}

func TestFileWatcherRunStopsOnCancel(t *testing.T) {
	w, err := NewFileWatcher(FileOptions{Path: filepath.Join(t.TempDir(), "config.json"), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	cancel()
	select {
	case <-done:
	case <-time.After(waitTimeout):
		t.Fatal("Run did not return after cancel")
	}
}

func TestNewFileWatcher(t *testing.T) {
	dir := t.TempDir()
	valid := filepath.Join(dir, "valid.json")
	writeInPlace(t, valid, ccJSON("team-a/app"))
	secret := filepath.Join(dir, "secret.json")
	writeInPlace(t, secret, `{"identities":[{"namespace":"team-a","serviceAccount":"app"}],"token":"SECRETVALUE`)

	tests := []struct {
		name     string
		opts     FileOptions
		wantErr  bool
		wantLen  int
		wantPoll time.Duration
	}{
		{name: "empty path", opts: FileOptions{}, wantErr: true},
		{name: "valid", opts: FileOptions{Path: valid}, wantLen: 1, wantPoll: DefaultPollInterval},
		{name: "missing", opts: FileOptions{Path: filepath.Join(dir, "nope.json"), PollInterval: time.Second}, wantPoll: time.Second},
		{name: "negative poll", opts: FileOptions{Path: valid, PollInterval: -1}, wantLen: 1, wantPoll: DefaultPollInterval},
		{name: "malformed does not fail", opts: FileOptions{Path: secret}, wantPoll: DefaultPollInterval},
		{name: "relative path", opts: FileOptions{Path: "testdata-does-not-exist.json"}, wantPoll: DefaultPollInterval},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			tt.opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			w, err := NewFileWatcher(tt.opts)
			if tt.wantErr {
				if err == nil {
					t.Fatal("no error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := w.Current().Len(); got != tt.wantLen {
				t.Errorf("Len = %d, want %d", got, tt.wantLen)
			}
			if w.poll != tt.wantPoll {
				t.Errorf("poll = %v, want %v", w.poll, tt.wantPoll)
			}
			if !filepath.IsAbs(w.path) {
				t.Errorf("path %q is not absolute", w.path)
			}
			if strings.Contains(logs.String(), "SECRETVALUE") {
				t.Errorf("log contains file content:\n%s", logs.String())
			}
			if logs.Len() == 0 {
				t.Error("first read logged nothing")
			}
		})
	}
}
