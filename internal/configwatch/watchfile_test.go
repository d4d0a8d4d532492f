package configwatch

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// TestWatchFile checks that WatchFile calls OnChange once the watch is in place,
// on a change seen by fsnotify (without waiting for a poll), and by polling when
// the directory did not exist at start-up.
func TestWatchFile(t *testing.T) {
	tests := []struct {
		name   string
		poll   time.Duration
		before func(t *testing.T, dir string) // prepares the directory
		change func(t *testing.T, dir string)
		want   string // the content OnChange reads after change
	}{{
		name:   "written in place",
		poll:   time.Hour,
		before: func(t *testing.T, dir string) { mustWrite(t, filepath.Join(dir, "f"), "1") },
		change: func(t *testing.T, dir string) { mustWrite(t, filepath.Join(dir, "f"), "2") },
		want:   "2",
	}, {
		name:   "replaced by rename",
		poll:   time.Hour,
		before: func(t *testing.T, dir string) { mustWrite(t, filepath.Join(dir, "f"), "1") },
		change: func(t *testing.T, dir string) {
			mustWrite(t, filepath.Join(dir, "f.tmp"), "2")
			if err := os.Rename(filepath.Join(dir, "f.tmp"), filepath.Join(dir, "f")); err != nil {
				t.Fatal(err)
			}
		},
		want: "2",
	}, {
		name:   "directory created later",
		poll:   50 * time.Millisecond,
		before: func(t *testing.T, dir string) { _ = os.RemoveAll(dir) },
		change: func(t *testing.T, dir string) {
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			mustWrite(t, filepath.Join(dir, "f"), "1")
		},
		want: "1",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "d")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			tt.before(t, dir)
			path := filepath.Join(dir, "f")
			var calls atomic.Int32
			var seen atomic.Value // last content OnChange read
			seen.Store("")
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				defer close(done)
				WatchFile(ctx, WatchOptions{Path: path, PollInterval: tt.poll, Name: "test file", Logger: slog.New(slog.DiscardHandler),
					OnChange: func() {
						calls.Add(1)
						b, _ := os.ReadFile(path)
						seen.Store(string(b))
					}})
			}()
			defer func() { cancel(); <-done }()
			waitFor(t, func() bool { return calls.Load() >= 1 }, "the first call")
			tt.change(t, dir)
			waitFor(t, func() bool { return seen.Load() == tt.want }, "a call after the change")
		})
	}
}

func mustWrite(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond for up to 5 seconds: far below the hour-long poll of the
// event-driven cases, so those pass only through fsnotify.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
