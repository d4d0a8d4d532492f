package main

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// versionPkg is where the linker writes the release metadata.
const versionPkg = "github.com/podiam/podiam/internal/version"

// goRelease is the Go release every image is built with: the Makefile's
// GOTOOLCHAIN (TestGoReleaseIsTheMakefiles keeps the two equal). A binary is
// the same bytes only from the same compiler, so the build pins it, whatever
// go command runs it; the go command fetches this release through the module
// proxy when it is not the local one.
const goRelease = "go1.26.10"

// buildSettings are the environment variables of the go command that change
// the compiled bytes or what they run on, fixed for every build whatever the
// build machine's environment says (the environment also overrides a value
// `go env -w` put in the go env file). The CPU levels are the defaults the
// image promises to run on: any x86-64, any ARMv8.0. GOFLAGS could carry
// -race, -tags or -mod=mod; GOWORK could swap modules; GOEXPERIMENT changes
// the runtime.
var buildSettings = []string{
	"CGO_ENABLED=0",
	"GOAMD64=v1",
	"GOARM64=v8.0",
	"GOFLAGS=-mod=readonly",
	"GOWORK=off",
	"GOEXPERIMENT=",
	"GOFIPS140=off",
	"GOTOOLCHAIN=" + goRelease,
}

// buildEnv is the environment of `go build` for platform p: base (the
// machine's, for PATH, HOME, GOCACHE, GOPROXY and such) without any variable
// that buildSettings or the platform set, then those.
func buildEnv(base []string, p v1.Platform) []string {
	set := append(append([]string{}, buildSettings...), "GOOS="+p.OS, "GOARCH="+p.Architecture)
	fixed := map[string]bool{}
	for _, kv := range set {
		k, _, _ := strings.Cut(kv, "=")
		fixed[k] = true
	}
	env := make([]string, 0, len(base)+len(set))
	for _, kv := range base {
		if k, _, _ := strings.Cut(kv, "="); !fixed[k] {
			env = append(env, kv)
		}
	}
	return append(env, set...)
}

// ldflags links meta into the binary (internal/version) and strips the
// symbol table and DWARF: an image is not debugged with a debugger, and
// stack traces keep their function names and lines.
func ldflags(meta Metadata) string {
	return strings.Join([]string{
		"-s", "-w",
		"-X", versionPkg + ".Version=" + meta.Version,
		"-X", versionPkg + ".Commit=" + meta.Commit,
		"-X", versionPkg + ".Date=" + meta.Created.UTC().Format(time.RFC3339),
	}, " ")
}

// buildBinaries builds ./cmd/podiam of the module at moduleDir once per
// platform into outDir/<os>_<arch>/podiam: static (CGO_ENABLED=0), with no
// path of this machine (-trimpath), no VCS stamp (-buildvcs=false; the
// commit comes from meta) and buildEnv's settings, so one commit always gives
// the same bytes. Each binary's embedded build information is checked
// against those settings afterwards (checkBuildInfo).
func buildBinaries(ctx context.Context, goCmd, moduleDir, outDir string, platforms []v1.Platform, meta Metadata) ([]Binary, error) {
	if err := meta.validate(); err != nil {
		return nil, err
	}
	var bins []Binary
	for _, p := range platforms {
		out := filepath.Join(outDir, p.OS+"_"+p.Architecture, "podiam")
		cmd := exec.CommandContext(ctx, goCmd, "build", "-trimpath", "-buildvcs=false",
			"-ldflags", ldflags(meta), "-o", out, "./cmd/podiam")
		cmd.Dir = moduleDir
		cmd.Env = buildEnv(os.Environ(), p)
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stderr, &stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("go build for %s: %w\n%s", p, err, stderr.Bytes())
		}
		bi, err := buildinfo.ReadFile(out)
		if err != nil {
			return nil, fmt.Errorf("go build for %s: reading the binary's build information: %w", p, err)
		}
		if err := checkBuildInfo(bi, p); err != nil {
			return nil, fmt.Errorf("go build for %s: %w", p, err)
		}
		bins = append(bins, Binary{Platform: p, Path: out})
	}
	return bins, nil
}

// checkBuildInfo verifies what the go command says it did: the pinned Go
// release, a static build without experiments, the baseline CPU level. A go
// env file or a go command that ignored the environment would otherwise
// slip a different binary into a release unnoticed.
func checkBuildInfo(bi *debug.BuildInfo, p v1.Platform) error {
	if bi.GoVersion != goRelease {
		return fmt.Errorf("built with %s, want %s", bi.GoVersion, goRelease)
	}
	want := [][2]string{{"GOOS", p.OS}, {"GOARCH", p.Architecture}, {"CGO_ENABLED", "0"}, {"-trimpath", "true"}, {"GOEXPERIMENT", ""}}
	switch p.Architecture {
	case "amd64":
		want = append(want, [2]string{"GOAMD64", "v1"})
	case "arm64":
		want = append(want, [2]string{"GOARM64", "v8.0"})
	}
	got := map[string]string{}
	for _, s := range bi.Settings {
		got[s.Key] = s.Value
	}
	for _, kv := range want { // in order: the platform first, the most telling
		if got[kv[0]] != kv[1] {
			return fmt.Errorf("build setting %s is %q, want %q", kv[0], got[kv[0]], kv[1])
		}
	}
	return nil
}

// moduleRoot is the directory of the main module's go.mod, where
// ./cmd/podiam is.
func moduleRoot(ctx context.Context, goCmd string) (string, error) {
	cmd := exec.CommandContext(ctx, goCmd, "env", "GOMOD")
	cmd.Env = buildEnv(os.Environ(), v1.Platform{OS: "linux", Architecture: "amd64"})
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside podiam's module (go env GOMOD is %q)", gomod)
	}
	return filepath.Dir(gomod), nil
}
