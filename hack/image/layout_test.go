package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// tarEntries reads a tarball's headers and file contents by name.
func tarEntries(t *testing.T, path string) ([]*tar.Header, map[string][]byte) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var hdrs []*tar.Header
	files := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return hdrs, files
		}
		if err != nil {
			t.Fatal(err)
		}
		hdrs = append(hdrs, hdr)
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[hdr.Name] = data
	}
}

// checkArchive checks the tarball as docker load, skopeo and crane read it:
// the OCI layout naming the index by tag and full name, Docker's
// manifest.json pointing at blobs that are there, fixed entry metadata. It
// returns the index read back. The real build's tests use it too.
func checkArchive(t *testing.T, tarPath, tag string, meta Metadata) (v1.ImageIndex, v1.Descriptor) {
	t.Helper()
	hdrs, files := tarEntries(t, tarPath)
	for _, h := range hdrs {
		wantMode := int64(0o644)
		if h.Typeflag == tar.TypeDir {
			wantMode = 0o755
		}
		if h.Mode != wantMode || h.Uid != 0 || h.Gid != 0 || h.Uname != "" || !h.ModTime.Equal(meta.Created) {
			t.Errorf("entry %s: mode %o uid %d gid %d uname %q mtime %v", h.Name, h.Mode, h.Uid, h.Gid, h.Uname, h.ModTime)
		}
	}
	if !strings.Contains(string(files["oci-layout"]), `"imageLayoutVersion"`) {
		t.Errorf("oci-layout is %q", files["oci-layout"])
	}
	var dm []dockerManifestEntry
	if err := json.Unmarshal(files["manifest.json"], &dm); err != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	if len(dm) != 1 || len(dm[0].RepoTags) != 1 || dm[0].RepoTags[0] != tag || len(dm[0].Layers) != 1 {
		t.Errorf("manifest.json is %+v", dm)
	} else {
		for _, p := range append([]string{dm[0].Config}, dm[0].Layers...) {
			if _, ok := files[p]; !ok {
				t.Errorf("manifest.json names %s, which the tarball does not hold", p)
			}
		}
	}

	idx, desc, err := readArchive(tarPath, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	checkDockerLoad(t, tarPath, tag, idx)
	wantRef := tag[strings.LastIndex(tag, ":")+1:]
	if desc.Annotations[refNameAnnotation] != wantRef || desc.Annotations[imageNameAnnotation] != tag {
		t.Errorf("index.json names the image %v; want %s=%s, %s=%s", desc.Annotations, refNameAnnotation, wantRef, imageNameAnnotation, tag)
	}
	if digest, _ := idx.Digest(); digest != desc.Digest {
		t.Errorf("index read back has digest %s, index.json says %s", digest, desc.Digest)
	}
	return idx, desc
}

// checkDockerLoad reads the tarball as Docker's classic store does (by
// manifest.json and the tag) and checks that it gets the index's first image
// (linux/amd64 as `make image` orders them), config and layers.
func checkDockerLoad(t *testing.T, tarPath, tag string, idx v1.ImageIndex) {
	t.Helper()
	ref, err := name.NewTag(tag)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := tarball.ImageFromPath(tarPath, &ref)
	if err != nil {
		t.Fatalf("reading %s as docker load does: %v", tarPath, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	first, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	gotConfig, err := loaded.ConfigName()
	if err != nil {
		t.Fatalf("docker load's config: %v", err)
	}
	wantConfig, err := first.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	if gotConfig != wantConfig {
		t.Errorf("docker load gets config %s, the index's first image (%v) has %s", gotConfig, im.Manifests[0].Platform, wantConfig)
	}
	gotLayers, err := loaded.Layers()
	if err != nil {
		t.Fatal(err)
	}
	wantLayers, err := first.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(gotLayers) != len(wantLayers) {
		t.Fatalf("docker load gets %d layers, want %d", len(gotLayers), len(wantLayers))
	}
	for i := range gotLayers {
		got, err := gotLayers[i].Digest()
		if err != nil {
			t.Fatal(err)
		}
		want, err := wantLayers[i].Digest()
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("docker load's layer %d is %s, want %s", i, got, want)
		}
	}
}

func TestWriteArchive(t *testing.T) {
	idx, err := newIndex(fakeBinaries(t, "linux/amd64", "linux/arm64"), testMeta)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := parseTag("ghcr.io/podiam/podiam:v9.8.7")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	layoutDir, tarPath := filepath.Join(dir, "podiam-image"), filepath.Join(dir, "podiam-image.tar")
	// A blob left in the layout of an earlier build must not end up in the
	// tarball.
	if err := os.MkdirAll(filepath.Join(layoutDir, "blobs", "sha256"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(layoutDir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(layoutDir, "blobs", "sha256", strings.Repeat("0", 64))
	if err := os.WriteFile(stale, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeArchive(idx, tag, layoutDir, tarPath, testMeta.Created); err != nil {
		t.Fatal(err)
	}
	back, _ := checkArchive(t, tarPath, tag.Name(), testMeta)
	checkIndex(t, back, testMeta, []string{"linux/amd64", "linux/arm64"})
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale blob still in the layout (%v)", err)
	}
	first, err := os.ReadFile(tarPath)
	if err != nil {
		t.Fatal(err)
	}

	// The same index written again, elsewhere: the same bytes.
	dir2 := t.TempDir()
	tar2 := filepath.Join(dir2, "again.tar")
	if err := writeArchive(idx, tag, filepath.Join(dir2, "again"), tar2, testMeta.Created); err != nil {
		t.Fatal(err)
	}
	second, err := os.ReadFile(tar2)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, second) {
		t.Error("the same index gave two different tarballs")
	}

	// A directory that is not a layout is never replaced.
	source := filepath.Join(t.TempDir(), "internal")
	if err := os.MkdirAll(source, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(source, "code.go"), []byte("package internal\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err = writeArchive(idx, tag, source, source+".tar", testMeta.Created)
	if err == nil || !strings.Contains(err.Error(), "no oci-layout file") {
		t.Errorf("writing over a source directory: error %v", err)
	}
	if _, err := os.Stat(filepath.Join(source, "code.go")); err != nil {
		t.Errorf("the source directory lost its file: %v", err)
	}
}

// writeTar writes entries (name → content; a name ending in "->" is a
// symlink) into a tarball.
func writeTar(t *testing.T, entries ...[2]string) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{Name: e[0], Mode: 0o644, Size: int64(len(e[1])), Typeflag: tar.TypeReg}
		if target, ok := strings.CutSuffix(e[0], "->"); ok {
			hdr = &tar.Header{Name: target, Linkname: e[1], Typeflag: tar.TypeSymlink}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := tw.Write([]byte(e[1])); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "x.tar")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestReadArchiveErrors(t *testing.T) {
	notTar := filepath.Join(t.TempDir(), "not.tar")
	if err := os.WriteFile(notTar, []byte("this is not a tarball, but long enough to read a header from it..."), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, wantErr string
	}{
		{"missing file", filepath.Join(t.TempDir(), "none.tar"), "opening the image tarball"},
		{"not a tarball", notTar, "not.tar"},
		{"entry leaving the directory", writeTar(t, [2]string{"../evil", "x"}), `entry "../evil" leaves the archive`},
		{"absolute entry", writeTar(t, [2]string{"/etc/evil", "x"}), "leaves the archive"},
		{"symlink", writeTar(t, [2]string{"index.json->", "/etc/passwd"}), "not a file or directory"},
		{"no layout", writeTar(t, [2]string{"hello", "x"}), "is not an OCI layout"},
		{"layout without an index", writeTar(t, [2]string{"oci-layout", `{"imageLayoutVersion":"1.0.0"}`}, [2]string{"index.json", `{"schemaVersion":2,"manifests":[]}`}), "index.json has 0 entries; want one image index"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			_, _, err := readArchive(tc.path, dir)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "evil")); err == nil {
				t.Error("an entry was written outside the directory")
			}
		})
	}
}
