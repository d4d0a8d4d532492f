// Package testutil holds the small helpers that tests across the module share:
// polling for a condition, free loopback ports, a buffer safe for concurrent
// writers, unique names for objects in a shared API server, and the module's
// root directory. It depends on
// no package of this module, so that any package's tests can import it.
package testutil

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"
)

// Condition is what Eventually polls: a func() bool, or a func() (bool, string)
// whose string, returned with false, says in a failure what was seen last.
type Condition interface {
	func() bool | func() (ok bool, state string)
}

// Eventually calls cond every interval until it reports true, and fails t
// (t.Fatalf) if it has not after timeout or when t's context ends. It is the
// module's one polling helper, on apimachinery's wait.
func Eventually[C Condition](t testing.TB, timeout, interval time.Duration, what string, cond C) {
	t.Helper()
	var check func() (bool, string)
	switch c := any(cond).(type) {
	case func() bool:
		check = func() (bool, string) { return c(), "" }
	case func() (bool, string):
		check = c
	}
	var state string
	err := wait.PollUntilContextTimeout(t.Context(), interval, timeout, true, func(context.Context) (bool, error) {
		var ok bool
		ok, state = check()
		return ok, nil
	})
	if err != nil {
		t.Fatalf("timed out after %v waiting for %s (%v); last: %s", timeout, what, err, state)
	}
}

// FreePorts returns n distinct TCP ports that were free on 127.0.0.1 a moment
// ago. All n are held open together while they are picked, so they differ;
// another process may still take one before the caller binds it.
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	lns := make([]net.Listener, 0, n)
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("picking a free port: %w", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// UniqueName returns prefix, a dash and five random lowercase alphanumerics:
// a valid DNS label (for a prefix of at most 57 such characters) that differs
// between runs, so tests that share one API server do not meet objects of an
// earlier run (`go test -count=2`) or of a parallel test.
func UniqueName(prefix string) string {
	return strings.ToLower(prefix) + "-" + rand.String(5)
}

// SyncBuffer is a bytes.Buffer that several goroutines may write (a logger, a
// child process's stdout and stderr) while a test reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// ModulePath is the path of this module, whose go.mod ModuleRoot looks for.
const ModulePath = "github.com/podiam/podiam"

// ModuleRoot returns the directory of this module's go.mod, found by walking
// up from the working directory (tests run in their package's directory).
func ModuleRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding the module root: %w", err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if modulePath(filepath.Join(dir, "go.mod")) == ModulePath {
			return dir, nil
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("no go.mod of %s above %s", ModulePath, wd)
		}
	}
}

// modulePath returns the module path declared in a go.mod file, or "".
func modulePath(gomod string) string {
	b, err := os.ReadFile(gomod)
	if err != nil {
		return ""
	}
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`+"`")
		}
	}
	return ""
}
