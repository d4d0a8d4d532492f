package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// makeCheckout copies the Makefile and the files it reads when it starts
// into a new directory, as a git checkout with one commit (dated
// 2026-11-27T04:00:00Z) unless git is false, and returns its path.
func makeCheckout(t *testing.T, git bool) string {
	t.Helper()
	root, err := moduleRoot(context.Background(), "go")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, f := range []string{"Makefile", "charts/podiam/Chart.yaml", "hack/vulncheck/go.mod", "hack/tools/go.mod", "hack/tools/go.sum"} {
		data, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if git {
		for _, args := range [][]string{
			{"init", "-q"},
			{"add", "."},
			{"-c", "user.name=podiam", "-c", "user.email=podiam@example.com", "commit", "-q", "-m", "release", "--date=2026-11-27T04:00:00Z"},
		} {
			cmd := exec.Command("git", args...)
			cmd.Dir, cmd.Env = dir, makeEnv(dir)
			cmd.Env = append(cmd.Env, "GIT_COMMITTER_DATE=2026-11-27T04:00:00Z")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("git %s: %v\n%s", args, err, out)
			}
		}
	}
	return dir
}

// makeEnv is this process's environment without what would change what the
// Makefile computes: its variables, an outer make's flags, git's location.
// Git looks no higher than dir's parent, so a checkout around the temporary
// directory is not found.
func makeEnv(dir string) []string {
	drop := map[string]bool{
		"VERSION": true, "COMMIT": true, "SOURCE_DATE_EPOCH": true, "DATE": true, "IMAGE": true, "ALLOW_DIRTY": true, "FORCE": true,
		"MAKEFLAGS": true, "MFLAGS": true, "MAKELEVEL": true, "MAKEOVERRIDES": true, "GO": true,
		"GIT_DIR": true, "GIT_WORK_TREE": true, "GIT_CEILING_DIRECTORIES": true,
	}
	var env []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); !drop[k] {
			env = append(env, kv)
		}
	}
	return append(env, "GIT_CEILING_DIRECTORIES="+filepath.Dir(dir), "TZ=UTC")
}

// TestMakefile: the commands `make build`, `make image` and `make
// image-push` run (make -n prints them without running them), in a clean
// checkout, a modified one and outside git.
func TestMakefile(t *testing.T) {
	for _, tool := range []string{"make", "git"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s: %v", tool, err)
		}
	}
	clean := makeCheckout(t, true)
	dirty := makeCheckout(t, true)
	if err := os.WriteFile(filepath.Join(dirty, "charts/podiam/Chart.yaml"), []byte("appVersion: v0.1.0\n# an edit\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	noGit := makeCheckout(t, false)
	commit := func(dir string) string {
		out, err := exec.Command("git", "-C", dir, "rev-parse", "HEAD").Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}
	const date = "-X github.com/podiam/podiam/internal/version.Date=2026-11-27T04:00:00Z"
	for _, tc := range []struct {
		name    string
		dir     string
		args    []string
		want    []string // in the printed commands
		notWant []string
		wantErr string // in make's stderr, and make fails
	}{
		{name: "build, clean checkout", dir: clean, args: []string{"build"},
			want:    []string{"Commit=" + commit(clean) + " ", date, "Version=v0.1.0 "},
			notWant: []string{"-dirty"}},
		{name: "build, modified checkout", dir: dirty, args: []string{"build"},
			want: []string{"Commit=" + commit(dirty) + "-dirty ", date}},
		{name: "build outside git: no commit, no date, no error", dir: noGit, args: []string{"build"},
			want: []string{"Commit= ", "Date='", "Version=v0.1.0 "}},
		{name: "image, clean checkout", dir: clean, args: []string{"image"},
			want:    []string{"-go 'go'", "-commit '" + commit(clean) + "'", "-tag 'ghcr.io/podiam/podiam:v0.1.0'"},
			notWant: []string{"-allow-dirty"}},
		{name: "image with the go command given", dir: clean, args: []string{"image", "GO=/opt/go/bin/go"},
			want: []string{"/opt/go/bin/go run ./hack/image build -go '/opt/go/bin/go'"}},
		{name: "image, modified checkout", dir: dirty, args: []string{"image"},
			want: []string{"-commit '" + commit(dirty) + "-dirty'"}, notWant: []string{"-allow-dirty"}},
		{name: "image, modified checkout allowed", dir: dirty, args: []string{"image", "ALLOW_DIRTY=1"},
			want: []string{"-commit '" + commit(dirty) + "-dirty' -allow-dirty"}},
		{name: "image-push without IMAGE", dir: clean, args: []string{"image-push"},
			wantErr: "make image-push needs IMAGE=registry/name:tag: the default, ghcr.io/podiam/podiam:v0.1.0, is the release's tag"},
		{name: "image-push", dir: clean, args: []string{"image-push", "IMAGE=registry.example.com/podiam:v0.1.0"},
			want:    []string{"-tag 'registry.example.com/podiam:v0.1.0'", "push -in bin/podiam-image.tar -image 'registry.example.com/podiam:v0.1.0'"},
			notWant: []string{"-force"}},
		{name: "image-push forced", dir: clean, args: []string{"image-push", "IMAGE=registry.example.com/podiam:v0.1.0", "FORCE=1"},
			want: []string{"-image 'registry.example.com/podiam:v0.1.0' -force"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command("make", append([]string{"-n", "--no-print-directory"}, tc.args...)...)
			cmd.Dir, cmd.Env = tc.dir, makeEnv(tc.dir)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(stderr.String(), tc.wantErr) || stdout.Len() != 0 {
					t.Fatalf("make %s: %v, printed %q, stderr %q; want it to fail with %q before anything", tc.args, err, stdout.String(), stderr.String(), tc.wantErr)
				}
				return
			}
			if err != nil || stderr.Len() != 0 {
				t.Fatalf("make %s: %v, stderr %q", tc.args, err, stderr.String())
			}
			for _, want := range tc.want {
				if !strings.Contains(stdout.String(), want) {
					t.Errorf("make %s printed\n%s\nwithout %q", tc.args, stdout.String(), want)
				}
			}
			for _, bad := range tc.notWant {
				if strings.Contains(stdout.String(), bad) {
					t.Errorf("make %s printed\n%s\nwith %q", tc.args, stdout.String(), bad)
				}
			}
		})
	}
}
