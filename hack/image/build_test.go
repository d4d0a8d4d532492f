package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestLdflags(t *testing.T) {
	got := ldflags(testMeta)
	for _, want := range []string{
		"-s -w",
		"-X github.com/podiam/podiam/internal/version.Version=v9.8.7",
		"-X github.com/podiam/podiam/internal/version.Commit=" + testMeta.Commit,
		"-X github.com/podiam/podiam/internal/version.Date=2026-11-27T04:00:00Z",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("ldflags %q lack %q", got, want)
		}
	}
}

func TestModuleRoot(t *testing.T) {
	root, err := moduleRoot(context.Background(), "go")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "cmd", "podiam", "main.go")); err != nil {
		t.Errorf("module root %s has no cmd/podiam: %v", root, err)
	}
}

// TestBuildBinariesErrors: a failed build says which platform and why; the
// real build is TestImage's.
func TestBuildBinariesErrors(t *testing.T) {
	amd64 := []v1.Platform{{OS: "linux", Architecture: "amd64"}}
	noCommit := testMeta
	noCommit.Commit = ""
	for _, tc := range []struct {
		name      string
		goCmd     string
		moduleDir string
		meta      Metadata
		wantErr   string
	}{
		{"no commit", "go", t.TempDir(), noCommit, "no commit"},
		{"not podiam's module", "go", t.TempDir(), testMeta, "go build for linux/amd64"},
		{"no go command", filepath.Join(t.TempDir(), "go"), t.TempDir(), testMeta, "go build for linux/amd64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := buildBinaries(context.Background(), tc.goCmd, tc.moduleDir, t.TempDir(), amd64, tc.meta)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}
