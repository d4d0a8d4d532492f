package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// versionPkg is where the linker writes the release metadata.
const versionPkg = "github.com/podiam/podiam/internal/version"

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
// path of this machine (-trimpath) and no VCS stamp (-buildvcs=false; the
// commit comes from meta), so one commit always gives the same bytes.
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
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Architecture)
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stderr, &stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("go build for %s: %w\n%s", p, err, stderr.Bytes())
		}
		bins = append(bins, Binary{Platform: p, Path: out})
	}
	return bins, nil
}

// moduleRoot is the directory of the main module's go.mod, where
// ./cmd/podiam is.
func moduleRoot(ctx context.Context, goCmd string) (string, error) {
	out, err := exec.CommandContext(ctx, goCmd, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside podiam's module (go env GOMOD is %q)", gomod)
	}
	return filepath.Dir(gomod), nil
}
