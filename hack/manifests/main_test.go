package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podiam/podiam/test/chart"
)

// TestRun runs the command's two modes on a copy of the module's generated
// files: -check passes on the copy, fails naming a file edited by hand, and
// writing repairs it, printing what it updated.
func TestRun(t *testing.T) {
	files, err := chart.GeneratedFiles()
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	for name, data := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	src, err := os.ReadFile(filepath.Join(chart.ModuleRoot(), "deploy/crd/podiam.dev_podidentityassociations.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "deploy/crd"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "deploy/crd/podiam.dev_podidentityassociations.yaml"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run(root, true, &out); err != nil {
		t.Fatalf("-check on fresh files: %v", err)
	}

	const edited = "deploy/agent/eks/manifests.yaml"
	if err := os.WriteFile(filepath.Join(root, edited), []byte("edited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run(root, true, &out); err == nil || !strings.Contains(err.Error(), edited) {
		t.Fatalf("-check after an edit: %v, want an error naming %s", err, edited)
	}
	if err := run(root, false, &out); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "updated "+edited+"\n"; got != want {
		t.Errorf("printed %q, want %q", got, want)
	}
	if err := run(root, true, &out); err != nil {
		t.Fatalf("-check after writing: %v", err)
	}
}

// TestRunCheck runs what `make manifests-check` runs: deploy/ as committed
// must match a fresh rendering of the chart.
func TestRunCheck(t *testing.T) {
	if err := run(chart.ModuleRoot(), true, new(bytes.Buffer)); err != nil {
		t.Fatal(err)
	}
}
