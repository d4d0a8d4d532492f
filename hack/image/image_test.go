package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

var testMeta = Metadata{
	Version: "v9.8.7",
	Commit:  "0123456789abcdef0123456789abcdef01234567",
	Created: time.Date(2026, 11, 27, 4, 0, 0, 0, time.UTC),
}

// fakeBinaries writes one small file per platform: the assembly does not
// care what the bytes are, and these tests stay fast.
func fakeBinaries(t *testing.T, platforms ...string) []Binary {
	t.Helper()
	dir := t.TempDir()
	var bins []Binary
	for _, p := range platforms {
		plats, err := parsePlatforms(p)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, strings.ReplaceAll(p, "/", "_"))
		if err := os.WriteFile(path, []byte("podiam for "+p), 0o600); err != nil {
			t.Fatal(err)
		}
		bins = append(bins, Binary{Platform: plats[0], Path: path})
	}
	return bins
}

func TestParsePlatforms(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []v1.Platform
		wantErr string
	}{
		{in: "linux/amd64,linux/arm64", want: []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}}},
		{in: " linux/arm64 ", want: []v1.Platform{{OS: "linux", Architecture: "arm64"}}},
		{in: "linux", wantErr: `platform "linux": want linux/<arch>`},
		{in: "windows/amd64", wantErr: `platform "windows/amd64": want linux/<arch>`},
		{in: "linux/arm/v7", wantErr: `platform "linux/arm/v7"`},
		{in: "linux/", wantErr: `platform "linux/"`},
		{in: "", wantErr: `platform ""`},
		{in: "linux/amd64,linux/amd64", wantErr: "given twice"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parsePlatforms(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if !got[i].Equals(tc.want[i]) {
					t.Errorf("[%d] = %v, want %v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

// checkIndex checks everything the image promises: OCI media types, one
// image per platform in order, and each image's config and single layer.
// The real build's tests use it too.
func checkIndex(t *testing.T, idx v1.ImageIndex, meta Metadata, wantPlatforms []string) {
	t.Helper()
	if mt, err := idx.MediaType(); err != nil || mt != types.OCIImageIndex {
		t.Errorf("index media type %q (%v), want %q", mt, err, types.OCIImageIndex)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	wantAnn := meta.annotations()
	for k, v := range wantAnn {
		if im.Annotations[k] != v {
			t.Errorf("index annotation %s = %q, want %q", k, im.Annotations[k], v)
		}
	}
	if len(im.Manifests) != len(wantPlatforms) {
		t.Fatalf("index has %d images, want %d (%v)", len(im.Manifests), len(wantPlatforms), wantPlatforms)
	}
	for i, desc := range im.Manifests {
		if desc.Platform == nil || desc.Platform.String() != wantPlatforms[i] {
			t.Errorf("image %d: platform %v, want %s", i, desc.Platform, wantPlatforms[i])
		}
		if desc.MediaType != types.OCIManifestSchema1 || desc.ArtifactType != "" {
			t.Errorf("image %d: media type %q, artifact type %q (none for an image)", i, desc.MediaType, desc.ArtifactType)
		}
		img, err := idx.Image(desc.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.OS + "/" + cfg.Architecture; got != wantPlatforms[i] {
			t.Errorf("image %d: config platform %s, want %s", i, got, wantPlatforms[i])
		}
		if !cfg.Created.Time.Equal(meta.Created) {
			t.Errorf("image %d: created %v, want %v", i, cfg.Created.Time, meta.Created)
		}
		if cfg.Config.User != "65532:65532" {
			t.Errorf("image %d: user %q", i, cfg.Config.User)
		}
		if strings.Join(cfg.Config.Entrypoint, " ") != "/podiam" || len(cfg.Config.Cmd) != 0 {
			t.Errorf("image %d: entrypoint %q cmd %q", i, cfg.Config.Entrypoint, cfg.Config.Cmd)
		}
		for k, v := range wantAnn {
			if cfg.Config.Labels[k] != v {
				t.Errorf("image %d: label %s = %q, want %q", i, k, cfg.Config.Labels[k], v)
			}
		}
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		if m.Config.MediaType != types.OCIConfigJSON || m.Annotations["org.opencontainers.image.revision"] != meta.Commit {
			t.Errorf("image %d: manifest config %q, annotations %v", i, m.Config.MediaType, m.Annotations)
		}
		layers, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		if len(layers) != 1 || len(cfg.RootFS.DiffIDs) != 1 {
			t.Fatalf("image %d: %d layers, %d diff IDs; want one", i, len(layers), len(cfg.RootFS.DiffIDs))
		}
		if mt, _ := layers[0].MediaType(); mt != types.OCILayer {
			t.Errorf("image %d: layer media type %q", i, mt)
		}
	}
}

// layerFile returns the one file of the image's one layer, checking its
// header: /podiam, root-owned, 0755, modified at the build's date.
func layerFile(t *testing.T, img v1.Image, mtime time.Time) []byte {
	t.Helper()
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("%d layers (%v), want 1", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	hdr, err := tr.Next()
	if err != nil {
		t.Fatal(err)
	}
	if hdr.Name != "podiam" || hdr.Typeflag != tar.TypeReg || hdr.FileInfo().Mode().Perm() != 0o755 ||
		hdr.Uid != 0 || hdr.Gid != 0 || !hdr.ModTime.Equal(mtime) {
		t.Errorf("layer entry %q type %c mode %v uid %d gid %d mtime %v", hdr.Name, hdr.Typeflag, hdr.FileInfo().Mode(), hdr.Uid, hdr.Gid, hdr.ModTime)
	}
	data, err := io.ReadAll(tr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("layer has more than /podiam (%v)", err)
	}
	return data
}

func TestNewIndex(t *testing.T) {
	bins := fakeBinaries(t, "linux/amd64", "linux/arm64")
	idx, err := newIndex(bins, testMeta)
	if err != nil {
		t.Fatal(err)
	}
	checkIndex(t, idx, testMeta, []string{"linux/amd64", "linux/arm64"})
	im, _ := idx.IndexManifest()
	for i, desc := range im.Manifests {
		img, err := idx.Image(desc.Digest)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(layerFile(t, img, testMeta.Created)); got != "podiam for "+bins[i].Platform.String() {
			t.Errorf("image %d holds %q", i, got)
		}
	}
}

// TestNewIndexDigest: the digest depends on the inputs and nothing else: not
// on the binaries' file times or modes, nor on the clock.
func TestNewIndexDigest(t *testing.T) {
	digest := func(bins []Binary, meta Metadata) v1.Hash {
		t.Helper()
		idx, err := newIndex(bins, meta)
		if err != nil {
			t.Fatal(err)
		}
		h, err := idx.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	bins := fakeBinaries(t, "linux/amd64", "linux/arm64")
	base := digest(bins, testMeta)

	touched := fakeBinaries(t, "linux/amd64", "linux/arm64")
	for _, b := range touched {
		if err := os.Chtimes(b.Path, time.Now(), time.Now().Add(-time.Hour)); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(b.Path, fs.FileMode(0o700)); err != nil {
			t.Fatal(err)
		}
	}
	if got := digest(touched, testMeta); got != base {
		t.Errorf("same bytes, other file times and modes: digest %s, want %s", got, base)
	}

	otherCommit := testMeta
	otherCommit.Commit = strings.Repeat("f", 40)
	otherDate := testMeta
	otherDate.Created = testMeta.Created.Add(time.Second)
	for _, tc := range []struct {
		name string
		bins []Binary
		meta Metadata
	}{
		{"another commit", bins, otherCommit},
		{"another date", bins, otherDate},
		{"one platform fewer", bins[:1], testMeta},
		{"platforms swapped", []Binary{bins[1], bins[0]}, testMeta},
	} {
		if got := digest(tc.bins, tc.meta); got == base {
			t.Errorf("%s: digest unchanged (%s)", tc.name, got)
		}
	}
}

func TestNewIndexErrors(t *testing.T) {
	bins := fakeBinaries(t, "linux/amd64")
	missing := []Binary{{Platform: bins[0].Platform, Path: filepath.Join(t.TempDir(), "podiam")}}
	noCommit := testMeta
	noCommit.Commit = ""
	noVersion := testMeta
	noVersion.Version = ""
	noDate := testMeta
	noDate.Created = time.Time{}
	for _, tc := range []struct {
		name    string
		bins    []Binary
		meta    Metadata
		wantErr string
	}{
		{"missing binary", missing, testMeta, "image for linux/amd64: reading the binary: open " + missing[0].Path},
		{"no binaries", nil, testMeta, "no binaries"},
		{"no commit", bins, noCommit, "no commit"},
		{"no version", bins, noVersion, "no version"},
		{"no date", bins, noDate, "SOURCE_DATE_EPOCH"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newIndex(tc.bins, tc.meta)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestBinaryLayerIsDeterministic(t *testing.T) {
	a, err := binaryLayer([]byte("x"), testMeta.Created)
	if err != nil {
		t.Fatal(err)
	}
	b, err := binaryLayer([]byte("x"), testMeta.Created)
	if err != nil {
		t.Fatal(err)
	}
	da, _ := a.Digest()
	db, _ := b.Digest()
	if da != db {
		t.Errorf("digests %s and %s", da, db)
	}
	ca, _ := a.Compressed()
	raw, _ := io.ReadAll(ca)
	if !bytes.HasPrefix(raw, []byte{0x1f, 0x8b}) {
		t.Error("layer is not gzipped")
	}
}
