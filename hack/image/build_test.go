package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
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

// TestBuildEnv: nothing of the build machine's environment that changes the
// binary reaches go build; the rest (PATH, caches, proxy) does.
func TestBuildEnv(t *testing.T) {
	machine := []string{
		"PATH=/usr/bin", "HOME=/home/dev", "GOCACHE=/cache", "GOPROXY=https://proxy.example.com",
		"GOAMD64=v3", "GOARM64=v9.0", "GOFLAGS=-race -tags=dev", "GOEXPERIMENT=jsonv2",
		"GOWORK=/src/go.work", "GOTOOLCHAIN=local", "CGO_ENABLED=1", "GOOS=darwin", "GOARCH=386", "GOFIPS140=latest",
	}
	for _, tc := range []struct {
		platform v1.Platform
		want     []string
	}{
		{v1.Platform{OS: "linux", Architecture: "amd64"}, []string{"GOOS=linux", "GOARCH=amd64"}},
		{v1.Platform{OS: "linux", Architecture: "arm64"}, []string{"GOOS=linux", "GOARCH=arm64"}},
	} {
		t.Run(tc.platform.String(), func(t *testing.T) {
			env := buildEnv(machine, tc.platform)
			want := append([]string{
				"PATH=/usr/bin", "HOME=/home/dev", "GOCACHE=/cache", "GOPROXY=https://proxy.example.com",
				"CGO_ENABLED=0", "GOAMD64=v1", "GOARM64=v8.0", "GOFLAGS=-mod=readonly", "GOWORK=off",
				"GOEXPERIMENT=", "GOFIPS140=off", "GOTOOLCHAIN=" + goRelease,
			}, tc.want...)
			slices.Sort(env)
			slices.Sort(want)
			if !slices.Equal(env, want) {
				t.Errorf("buildEnv =\n%q\nwant\n%q", env, want)
			}
		})
	}
}

// TestCheckBuildInfo: a binary that the go command built otherwise than the
// release settings say is refused.
func TestCheckBuildInfo(t *testing.T) {
	amd64 := v1.Platform{OS: "linux", Architecture: "amd64"}
	arm64 := v1.Platform{OS: "linux", Architecture: "arm64"}
	info := func(goVersion string, settings ...string) *debug.BuildInfo {
		bi := &debug.BuildInfo{GoVersion: goVersion}
		for i := 0; i+1 < len(settings); i += 2 {
			bi.Settings = append(bi.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
		}
		return bi
	}
	good := []string{"-trimpath", "true", "CGO_ENABLED", "0", "GOOS", "linux"}
	for _, tc := range []struct {
		name     string
		bi       *debug.BuildInfo
		platform v1.Platform
		wantErr  string
	}{
		{"amd64", info(goRelease, append(good, "GOARCH", "amd64", "GOAMD64", "v1")...), amd64, ""},
		{"arm64", info(goRelease, append(good, "GOARCH", "arm64", "GOARM64", "v8.0")...), arm64, ""},
		{"another Go release", info("go1.26.8", append(good, "GOARCH", "amd64", "GOAMD64", "v1")...), amd64, "built with go1.26.8, want " + goRelease},
		{"x86-64-v3", info(goRelease, append(good, "GOARCH", "amd64", "GOAMD64", "v3")...), amd64, `GOAMD64 is "v3", want "v1"`},
		{"ARMv9", info(goRelease, append(good, "GOARCH", "arm64", "GOARM64", "v9.0")...), arm64, `GOARM64 is "v9.0", want "v8.0"`},
		{"experiment", info(goRelease, append(good, "GOARCH", "amd64", "GOAMD64", "v1", "GOEXPERIMENT", "jsonv2")...), amd64, `GOEXPERIMENT is "jsonv2"`},
		{"cgo", info(goRelease, "-trimpath", "true", "CGO_ENABLED", "1", "GOOS", "linux", "GOARCH", "amd64", "GOAMD64", "v1"), amd64, `CGO_ENABLED is "1"`},
		{"other architecture", info(goRelease, append(good, "GOARCH", "arm64", "GOARM64", "v8.0")...), amd64, `GOARCH is "arm64", want "amd64"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkBuildInfo(tc.bi, tc.platform)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestGoReleaseIsTheMakefiles: the image is built with the Go release that
// the Makefile builds and tests podiam with.
func TestGoReleaseIsTheMakefiles(t *testing.T) {
	root, err := moduleRoot(context.Background(), "go")
	if err != nil {
		t.Fatal(err)
	}
	makefile, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^export GOTOOLCHAIN := (\S+)$`).FindSubmatch(makefile)
	if m == nil {
		t.Fatal("the Makefile exports no GOTOOLCHAIN")
	}
	if string(m[1]) != goRelease {
		t.Errorf("the Makefile's GOTOOLCHAIN is %s, hack/image's goRelease %s", m[1], goRelease)
	}
}
