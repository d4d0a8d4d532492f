// Command image builds podiam's container image without Docker and pushes it.
//
//	go run ./hack/image build -version v0.1.0 -commit $(git rev-parse HEAD) \
//	  -source-date-epoch $(git log -1 --format=%ct) -tag ghcr.io/podiam/podiam:v0.1.0
//	go run ./hack/image push -image registry.example.com/podiam:v0.1.0
//
// build compiles podiam for each platform and writes an OCI image index (one
// image per platform: an empty base, /podiam, user 65532, OCI labels) as an
// OCI layout, bin/podiam-image/, and as its tarball, bin/podiam-image.tar,
// which docker load, skopeo and crane read. The same commit and
// SOURCE_DATE_EPOCH give the same digest; a commit ending in -dirty (the
// Makefile's, for a checkout with uncommitted changes) is refused unless
// -allow-dirty, since nothing could rebuild that image. push sends the
// tarball's index to a registry tag with the Docker config's credentials,
// and refuses to move a tag that already names another index unless
// -force. Both print the index digest. `make image` and `make image-push`
// run them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

const usage = "usage: image build [flags] | image push [flags] (-h for the flags)"

func run(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	switch args[0] {
	case "build":
		return runBuild(ctx, args[1:], stdout)
	case "push":
		return runPush(ctx, args[1:], stdout)
	default:
		return fmt.Errorf("unknown command %q; %s", args[0], usage)
	}
}

func runBuild(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("build", flag.ContinueOnError)
	version := fs.String("version", "", "release version (the chart's appVersion), e.g. v0.1.0")
	commit := fs.String("commit", "", "the commit built (git rev-parse HEAD), with -dirty when the checkout has changes")
	allowDirty := fs.Bool("allow-dirty", false, "build although -commit ends in -dirty: the image holds uncommitted changes and no commit rebuilds it")
	epoch := fs.String("source-date-epoch", os.Getenv("SOURCE_DATE_EPOCH"), "creation time in seconds since 1970 (the commit's: git log -1 --format=%ct)")
	tag := fs.String("tag", "", "the image's name in the archive, e.g. ghcr.io/podiam/podiam:v0.1.0")
	platforms := fs.String("platforms", "linux/amd64,linux/arm64", "comma-separated platforms; the first is the one Docker's classic store loads")
	out := fs.String("out", "bin/podiam-image.tar", "the OCI layout tarball to write; the layout itself goes next to it, without .tar (replaced only if it is an OCI layout)")
	goCmd := fs.String("go", "go", "the go command")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("build: unexpected arguments %q", fs.Args())
	}
	created, err := parseEpoch(*epoch)
	if err != nil {
		return err
	}
	meta := Metadata{Version: *version, Commit: *commit, Created: created}
	if err := meta.validate(); err != nil {
		return err
	}
	if strings.HasSuffix(meta.Commit, "-dirty") && !*allowDirty {
		return fmt.Errorf("commit %s: the checkout has uncommitted changes, which would go into an image labelled with that commit; commit them, or pass -allow-dirty (make image ALLOW_DIRTY=1) for an image that is not a release", meta.Commit)
	}
	t, err := parseTag(*tag)
	if err != nil {
		return err
	}
	plats, err := parsePlatforms(*platforms)
	if err != nil {
		return err
	}
	root, err := moduleRoot(ctx, *goCmd)
	if err != nil {
		return err
	}
	outPath, err := filepath.Abs(*out)
	if err != nil {
		return err
	}
	layoutDir := layoutDirOf(outPath)
	if err := checkLayoutDir(layoutDir); err != nil { // before minutes of building
		return err
	}
	// The binaries go next to the output, not into the system's temporary
	// directory: whatever a killed build leaves stays where its output is
	// (bin/, which make clean removes), not in /tmp for good.
	if err := os.MkdirAll(filepath.Dir(outPath), archiveDirMode); err != nil {
		return fmt.Errorf("creating the output directory: %w", err)
	}
	binDir, err := os.MkdirTemp(filepath.Dir(outPath), ".podiam-image-build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(binDir)
	bins, err := buildBinaries(ctx, *goCmd, root, binDir, plats, meta)
	if err != nil {
		return err
	}
	idx, err := newIndex(bins, meta)
	if err != nil {
		return err
	}
	if err := writeArchive(idx, t, layoutDir, outPath, created); err != nil {
		return err
	}
	digest, err := idx.Digest()
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s: %s@%s (%d platforms; layout in %s)\n", *out, t.Name(), digest, len(bins), layoutDir)
	return err
}

func runPush(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("push", flag.ContinueOnError)
	image := fs.String("image", "", "where to push, registry/name:tag")
	in := fs.String("in", "bin/podiam-image.tar", "the OCI layout tarball `image build` wrote")
	force := fs.Bool("force", false, "push although the tag already names another index (a release tag is never moved otherwise)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("push: unexpected arguments %q", fs.Args())
	}
	if *image == "" {
		return errors.New("push: -image registry/name:tag is required (make image-push IMAGE=...)")
	}
	if _, err := parseTag(*image); err != nil { // before reading anything
		return err
	}
	dir, err := os.MkdirTemp("", "podiam-image-push-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	idx, _, err := readArchive(*in, dir)
	if err != nil {
		return err
	}
	digest, err := push(ctx, idx, *image, *force)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "pushed %s@%s\n", *image, digest)
	return err
}

// parseEpoch reads SOURCE_DATE_EPOCH.
func parseEpoch(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, errors.New("no creation time: set -source-date-epoch or SOURCE_DATE_EPOCH (git log -1 --format=%ct)")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return time.Time{}, fmt.Errorf("source date epoch %q: want seconds since 1970", s)
	}
	return time.Unix(n, 0).UTC(), nil
}

// layoutDirOf is where the OCI layout of the tarball outPath goes: the same
// name without its extension (bin/podiam-image for bin/podiam-image.tar), or
// with .layout added when it has none.
func layoutDirOf(outPath string) string {
	dir := strings.TrimSuffix(outPath, filepath.Ext(outPath))
	if dir == outPath {
		dir += ".layout"
	}
	return dir
}
