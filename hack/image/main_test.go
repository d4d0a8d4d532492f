package main

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/podiam/podiam/internal/version"
)

// shared is a directory for the whole test binary: the real image is built
// once and its tests share it. What it costs: two cross-compiles of podiam
// (about 900 packages each, with -trimpath, so nothing is shared with the
// -race and vet builds of `make test`): several CPU minutes on a cold build
// cache, seconds on a warm one; about 120 MB on disk while the tests run.
var shared string

// sharedPrefix names the shared directory, followed by the test process's
// ID, so that a run can tell a directory of a live run from one that a run
// killed by its -timeout left (a timeout exits without any cleanup).
const sharedPrefix = "podiam-image-test-"

func TestMain(m *testing.M) {
	removeLeftovers(os.TempDir())
	shared = filepath.Join(os.TempDir(), sharedPrefix+strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(shared, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(shared)
	os.Exit(code)
}

// removeLeftovers removes the shared directories in tmp of test processes
// that are gone: at most the directory of one killed run is ever left, and
// only until the next run.
func removeLeftovers(tmp string) {
	entries, _ := os.ReadDir(tmp) // nothing to clean up when unreadable
	for _, e := range entries {
		pid, err := strconv.Atoi(strings.TrimPrefix(e.Name(), sharedPrefix))
		if !e.IsDir() || !strings.HasPrefix(e.Name(), sharedPrefix) || err != nil || pid <= 0 || processAlive(pid) {
			continue
		}
		os.RemoveAll(filepath.Join(tmp, e.Name()))
	}
}

// processAlive reports whether process pid exists (signal 0 checks without
// sending anything; EPERM means it exists but is another user's).
func processAlive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	err = p.Signal(syscall.Signal(0))
	return err == nil || errors.Is(err, syscall.EPERM)
}

const realTag = "ghcr.io/podiam/podiam:v9.8.7-test"

var realMeta = Metadata{
	Version: "v9.8.7-test",
	Commit:  "fedcba9876543210fedcba9876543210fedcba98",
	Created: testMeta.Created,
}

var digestRE = regexp.MustCompile(`@(sha256:[0-9a-f]{64})`)

// buildImage runs `image build` as `make image` does, into dir, and returns
// the tarball's path and the digest it printed.
func buildImage(dir string) (string, v1.Hash, error) {
	tarPath := filepath.Join(dir, "podiam-image.tar")
	var out bytes.Buffer
	err := run(context.Background(), []string{"build",
		"-version", realMeta.Version, "-commit", realMeta.Commit,
		"-source-date-epoch", strconv.FormatInt(realMeta.Created.Unix(), 10),
		"-tag", realTag, "-out", tarPath,
	}, &out)
	if err != nil {
		return "", v1.Hash{}, err
	}
	m := digestRE.FindStringSubmatch(out.String())
	if m == nil {
		return "", v1.Hash{}, fmt.Errorf("build printed no digest: %q", out.String())
	}
	h, err := v1.NewHash(m[1])
	return tarPath, h, err
}

// builtImages are two builds of the same tree, one right after the other,
// for every test of the real image; TestImageReproducible compares them. The
// second build's compiles are hits in the go build cache (seconds), so the
// comparison proves that the assembly and the build's settings are
// deterministic; that the compiler gives the same bytes on another machine
// is Go's own guarantee for the same release (goRelease) and settings
// (buildSettings, checked in each binary by checkBuildInfo).
type builtImages struct {
	tar, tar2       string
	digest, digest2 v1.Hash
}

var realImages = sync.OnceValues(func() (builtImages, error) {
	var r builtImages
	var err error
	for i, out := range []struct {
		tar    *string
		digest *v1.Hash
	}{{&r.tar, &r.digest}, {&r.tar2, &r.digest2}} {
		dir := filepath.Join(shared, strconv.Itoa(i))
		if err := os.Mkdir(dir, 0o755); err != nil {
			return r, err
		}
		if *out.tar, *out.digest, err = buildImage(dir); err != nil {
			return r, err
		}
	}
	return r, nil
})

func builtImage(t *testing.T) builtImages {
	t.Helper()
	r, err := realImages()
	if err != nil {
		t.Fatalf("make image's build: %v", err)
	}
	return r
}

// TestImage: the tarball `make image` writes holds both platforms, each a
// static podiam that runs and reports the version and commit it was built
// with.
func TestImage(t *testing.T) {
	r := builtImage(t)
	tarPath, digest := r.tar, r.digest
	idx, desc := checkArchive(t, tarPath, realTag, realMeta)
	if desc.Digest != digest {
		t.Errorf("printed digest %s, index.json says %s", digest, desc.Digest)
	}
	platforms := []string{"linux/amd64", "linux/arm64"}
	checkIndex(t, idx, realMeta, platforms)
	if _, err := os.Stat(strings.TrimSuffix(tarPath, ".tar") + "/index.json"); err != nil {
		t.Errorf("no layout directory next to the tarball: %v", err)
	}

	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	machines := map[string]elf.Machine{"linux/amd64": elf.EM_X86_64, "linux/arm64": elf.EM_AARCH64}
	for i, d := range im.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "podiam")
		if err := os.WriteFile(path, layerFile(t, img, realMeta.Created), 0o755); err != nil {
			t.Fatal(err)
		}
		checkStatic(t, path, machines[platforms[i]])
		if platforms[i] == runtime.GOOS+"/"+runtime.GOARCH {
			checkVersion(t, path)
		}
	}
}

// checkStatic: the binary is for machine and needs no dynamic loader (the
// image has no libc).
func checkStatic(t *testing.T, path string, machine elf.Machine) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	defer f.Close()
	if f.Machine != machine {
		t.Errorf("%s: machine %v, want %v", path, f.Machine, machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s (%v): dynamically linked", path, machine)
		}
	}
}

// checkVersion runs the image's podiam as the container would and checks
// what the build linked into it.
func checkVersion(t *testing.T, path string) {
	t.Helper()
	out, err := exec.Command(path, "version", "-o", "json").Output()
	if err != nil {
		t.Fatalf("podiam version: %v", err)
	}
	var got version.Info
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("podiam version printed %q: %v", out, err)
	}
	want := version.Info{
		Version: realMeta.Version, Commit: realMeta.Commit, Date: "2026-11-27T04:00:00Z",
		GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH,
	}
	if got != want {
		t.Errorf("podiam version -o json = %+v\nwant %+v", got, want)
	}
}

// TestImageReproducible: a second build of the same commit, in another
// directory, gives the same digest and the same tarball, byte for byte.
func TestImageReproducible(t *testing.T) {
	r := builtImage(t)
	tarPath, digest, again, digest2 := r.tar, r.digest, r.tar2, r.digest2
	if tarPath == again {
		t.Fatal("both builds wrote the same file")
	}
	if digest2 != digest {
		t.Errorf("second build: digest %s, first %s", digest2, digest)
	}
	a, err := os.ReadFile(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(again)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Error("second build: the tarballs differ")
	}
}

// TestImagePush: `make image-push` sends the tarball's index to a registry
// with the Docker config's credentials; pulled by digest it is the same.
func TestImagePush(t *testing.T) {
	r := builtImage(t)
	tarPath, digest := r.tar, r.digest
	host := newRegistry(t)
	useDockerConfig(t, host, true)
	var out bytes.Buffer
	ref := host + "/podiam/podiam:v9.8.7-test"
	if err := run(context.Background(), []string{"push", "-in", tarPath, "-image", ref}, &out); err != nil {
		t.Fatal(err)
	}
	if want := "pushed " + ref + "@" + digest.String() + "\n"; out.String() != want {
		t.Errorf("printed %q, want %q", out.String(), want)
	}
	idx, _, err := readArchive(tarPath, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	checkPulled(t, host, idx, digest)
}

// TestRunErrors: bad input is refused with a message that says what to fix,
// before anything is built or pushed.
func TestRunErrors(t *testing.T) {
	// -out x.tar puts the layout in x, which a build replaces: never a
	// directory or file of something else.
	sourceDir := filepath.Join(t.TempDir(), "internal")
	if err := os.Mkdir(sourceDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sourceDir, "code.go"), []byte("package internal\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sourceFile := filepath.Join(t.TempDir(), "README")
	if err := os.WriteFile(sourceFile, []byte("read me\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// -out in a directory of the test: should a check fail to stop a build,
	// nothing lands in the source tree.
	good := []string{"-version", "v1.0.0", "-commit", "abc", "-source-date-epoch", "1795752338", "-tag", "ghcr.io/podiam/podiam:v1.0.0", "-out", filepath.Join(t.TempDir(), "podiam-image.tar")}
	with := func(flags ...string) []string { return append(append([]string{"build"}, good...), flags...) }
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"no command", nil, "usage: image build"},
		{"unknown command", []string{"bake"}, `unknown command "bake"`},
		{"bad platform", with("-platforms", "linux/amd64,darwin/arm64"), `platform "darwin/arm64": want linux/<arch>`},
		{"tag without a tag", with("-tag", "ghcr.io/podiam/podiam"), `image tag "ghcr.io/podiam/podiam"`},
		{"bad tag", with("-tag", "Bad Name:v1"), `image tag "Bad Name:v1"`},
		{"no epoch", with("-source-date-epoch", ""), "set -source-date-epoch or SOURCE_DATE_EPOCH"},
		{"bad epoch", with("-source-date-epoch", "yesterday"), `source date epoch "yesterday"`},
		{"no commit", with("-commit", ""), "no commit"},
		{"stray argument", with("extra"), "unexpected arguments"},
		{"push without image", []string{"push"}, "-image registry/name:tag is required"},
		{"push to a bad reference", []string{"push", "-image", "not a ref"}, `image tag "not a ref"`},
		{"push to a digest", []string{"push", "-image", "registry.example.com/podiam@sha256:" + strings.Repeat("a", 64)}, "want registry/name:tag"},
		{"dirty commit", with("-commit", "abc-dirty"), "commit abc-dirty: the checkout has uncommitted changes"},
		// -allow-dirty gets past that check, to the next one.
		{"dirty commit allowed", with("-commit", "abc-dirty", "-allow-dirty", "-platforms", "windows/amd64"), `platform "windows/amd64"`},
		{"layout directory that is a source directory", with("-out", sourceDir+".tar"), "is a directory that is not one (no oci-layout file)"},
		{"layout directory that is a file", with("-out", sourceFile+".tar"), "it is a file"},
		{"push without a tag", []string{"push", "-image", "registry.example.com/podiam"}, "want registry/name:tag"},
		{"push a missing tarball", []string{"push", "-image", "registry.example.com/podiam:v1", "-in", filepath.Join(t.TempDir(), "none.tar")}, "opening the image tarball"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(context.Background(), tc.args, &out)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
			if out.Len() != 0 {
				t.Errorf("printed %q on failure", out.String())
			}
			if _, err := os.Stat(filepath.Join(sourceDir, "code.go")); err != nil {
				t.Errorf("the source directory lost its file: %v", err)
			}
			if _, err := os.Stat(sourceFile); err != nil {
				t.Errorf("the file next to -out is gone: %v", err)
			}
		})
	}
}

// TestRemoveLeftovers: a shared directory of a process that is gone is
// removed; this process's, a live process's and anything else stay.
func TestRemoveLeftovers(t *testing.T) {
	tmp := t.TempDir()
	// A child that has exited and been waited for: its ID names no process
	// (until the system reuses it, which a test run does not wait for).
	child := exec.Command("sh", "-c", "exit 0")
	if err := child.Run(); err != nil {
		t.Fatal(err)
	}
	gonePID := strconv.Itoa(child.Process.Pid)
	dirs := []struct {
		name     string
		wantGone bool
	}{
		{sharedPrefix + gonePID, true},
		{sharedPrefix + strconv.Itoa(os.Getpid()), false},
		{sharedPrefix + "1", false}, // init: alive (or another user's)
		{sharedPrefix + "notapid", false},
		{"podiam-other-" + gonePID, false},
	}
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(tmp, d.name, "0"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	removeLeftovers(tmp)
	for _, d := range dirs {
		_, err := os.Stat(filepath.Join(tmp, d.name))
		if gone := errors.Is(err, os.ErrNotExist); gone != d.wantGone {
			t.Errorf("%s: gone %v, want %v", d.name, gone, d.wantGone)
		}
	}
}
