package v1alpha1

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestGeneratedFilesUpToDate regenerates the deepcopy code and the CRD with
// the pinned controller-gen (hack/codegen) into a temporary directory and
// compares them with the committed files, so that a marker or field changed
// without `make generate` fails `make test`. Building controller-gen costs
// about 40 s on 2 cores with a cold build cache and nothing afterwards (it is
// cached); -short skips the test.
func TestGeneratedFilesUpToDate(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the regeneration with controller-gen")
	}
	// go test runs in the package directory: the module root is two up.
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	// Read so that go test's result cache notices a new controller-tools pin.
	if _, err := os.ReadFile(filepath.Join(root, "hack", "codegen", "go.mod")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()

	// `go tool -n` builds the tool (once, into the build cache) and prints
	// its path without running it; it must then run from the module root so
	// that ./api/... names podiam's packages, not hack/codegen's.
	cg, err := run(ctx, root, "go", "-C", filepath.Join(root, "hack", "codegen"), "tool", "-n", "controller-gen")
	if err != nil {
		t.Fatalf("building controller-gen: %v", err)
	}
	out := t.TempDir()
	objDir, crdDir := filepath.Join(out, "object"), filepath.Join(out, "crd")
	if _, err := run(ctx, root, strings.TrimSpace(cg),
		"object", "paths=./api/...", "output:object:dir="+objDir,
		"crd", "paths=./api/...", "output:crd:dir="+crdDir); err != nil {
		t.Fatalf("running controller-gen: %v", err)
	}

	for _, c := range []struct{ generated, committed string }{
		{filepath.Join(objDir, "zz_generated.deepcopy.go"), filepath.Join(root, "api", "v1alpha1", "zz_generated.deepcopy.go")},
		{filepath.Join(crdDir, "podiam.dev_podidentityassociations.yaml"), filepath.Join(root, "deploy", "crd", "podiam.dev_podidentityassociations.yaml")},
	} {
		want, err := os.ReadFile(c.generated)
		if err != nil {
			t.Fatalf("controller-gen did not write %s: %v", filepath.Base(c.generated), err)
		}
		got, err := os.ReadFile(c.committed)
		if err != nil {
			t.Errorf("%v (run `make generate`)", err)
			continue
		}
		if line, ok := firstDiff(got, want); !ok {
			t.Errorf("%s is stale at line %d: run `make generate`", c.committed, line)
		}
	}
	// A new kind would add a CRD file that deploy/crd lacks.
	entries, err := os.ReadDir(crdDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("controller-gen wrote %d CRDs, deploy/crd and this test know of 1: add the new ones", len(entries))
	}
}

// run runs name with args in dir and returns its stdout; the error carries
// stderr.
func run(ctx context.Context, dir, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// firstDiff reports whether a and b are equal, and if not the 1-based number
// of the first line where they differ.
func firstDiff(a, b []byte) (int, bool) {
	if bytes.Equal(a, b) {
		return 0, true
	}
	la, lb := bytes.Split(a, []byte("\n")), bytes.Split(b, []byte("\n"))
	for i := range min(len(la), len(lb)) {
		if !bytes.Equal(la[i], lb[i]) {
			return i + 1, false
		}
	}
	return min(len(la), len(lb)) + 1, false
}
