package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Fixed parts of every podiam image.
const (
	sourceURL  = "https://github.com/podiam/podiam"
	title      = "podiam"
	entrypoint = "/podiam"
	// user is distroless's "nonroot": no root, and no passwd file needed.
	user = "65532:65532"
)

// Metadata is what distinguishes one release build from another.
type Metadata struct {
	Version string    // release version, e.g. v0.1.0 (the chart's appVersion)
	Commit  string    // full VCS commit
	Created time.Time // SOURCE_DATE_EPOCH: the commit's time, not the build's
}

// Binary is one platform's podiam executable on disk.
type Binary struct {
	Platform v1.Platform
	Path     string
}

// annotations are the OCI image labels and annotations
// (org.opencontainers.image.*) for both the configs and the manifests.
func (m Metadata) annotations() map[string]string {
	return map[string]string{
		"org.opencontainers.image.source":   sourceURL,
		"org.opencontainers.image.url":      sourceURL,
		"org.opencontainers.image.title":    title,
		"org.opencontainers.image.version":  m.Version,
		"org.opencontainers.image.revision": m.Commit,
		"org.opencontainers.image.created":  m.Created.UTC().Format(time.RFC3339),
	}
}

func (m Metadata) validate() error {
	switch {
	case m.Version == "":
		return fmt.Errorf("no version (the chart's appVersion)")
	case m.Commit == "":
		return fmt.Errorf("no commit")
	case m.Created.IsZero() || m.Created.Unix() <= 0:
		return fmt.Errorf("no creation time (SOURCE_DATE_EPOCH)")
	}
	return nil
}

// parsePlatforms reads a comma-separated list such as
// "linux/amd64,linux/arm64". Only Linux makes sense for a container image.
func parsePlatforms(list string) ([]v1.Platform, error) {
	var out []v1.Platform
	seen := map[string]bool{}
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		goos, arch, ok := strings.Cut(s, "/")
		if !ok || goos != "linux" || arch == "" || strings.Contains(arch, "/") {
			return nil, fmt.Errorf("platform %q: want linux/<arch>, e.g. linux/amd64", s)
		}
		if seen[s] {
			return nil, fmt.Errorf("platform %q given twice", s)
		}
		seen[s] = true
		out = append(out, v1.Platform{OS: goos, Architecture: arch})
	}
	return out, nil
}

// newIndex assembles the OCI image index of one podiam image per binary: the
// same inputs always give the same digest (no clock, no file metadata of the
// build machine).
func newIndex(bins []Binary, meta Metadata) (v1.ImageIndex, error) {
	if len(bins) == 0 {
		return nil, fmt.Errorf("no binaries")
	}
	if err := meta.validate(); err != nil {
		return nil, err
	}
	adds := make([]mutate.IndexAddendum, 0, len(bins))
	for _, bin := range bins {
		img, err := newImage(bin, meta)
		if err != nil {
			return nil, fmt.Errorf("image for %s: %w", bin.Platform, err)
		}
		platform := bin.Platform
		adds = append(adds, mutate.IndexAddendum{Add: imageEntry{img}, Descriptor: v1.Descriptor{Platform: &platform}})
	}
	idx := mutate.IndexMediaType(mutate.AppendManifests(empty.Index, adds...), types.OCIImageIndex)
	return mutate.Annotations(idx, meta.annotations()).(v1.ImageIndex), nil
}

// imageEntry is an image as the index lists it: media type, size and
// digest, without the artifactType that go-containerregistry would copy
// from the config's media type. That OCI 1.1 field is for artifacts; tools
// of OCI 1.0 (skopeo 1.9) drop it, which changes the index's digest, and
// refuse to copy the index at all with --preserve-digests.
type imageEntry struct{ v1.Image }

// Descriptor is the index entry (mutate.AppendManifests asks for it).
func (e imageEntry) Descriptor() (*v1.Descriptor, error) {
	var d v1.Descriptor
	var err error
	if d.MediaType, err = e.MediaType(); err != nil {
		return nil, err
	}
	if d.Size, err = e.Size(); err != nil {
		return nil, err
	}
	if d.Digest, err = e.Digest(); err != nil {
		return nil, err
	}
	return &d, nil
}

// newImage is one platform's image: an empty base and one layer holding
// /podiam.
func newImage(bin Binary, meta Metadata) (v1.Image, error) {
	data, err := os.ReadFile(bin.Path)
	if err != nil {
		return nil, fmt.Errorf("reading the binary: %w", err)
	}
	layer, err := binaryLayer(data, meta.Created)
	if err != nil {
		return nil, err
	}
	created := v1.Time{Time: meta.Created.UTC()}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{Created: created, CreatedBy: "podiam " + meta.Version + " (make image)", Comment: "podiam binary"},
	})
	if err != nil {
		return nil, fmt.Errorf("adding the layer: %w", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading the config: %w", err)
	}
	cfg = cfg.DeepCopy()
	cfg.Created = created
	cfg.OS = bin.Platform.OS
	cfg.Architecture = bin.Platform.Architecture
	cfg.Variant = bin.Platform.Variant
	cfg.Config = v1.Config{
		Entrypoint: []string{entrypoint},
		User:       user,
		Labels:     meta.annotations(),
	}
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		return nil, fmt.Errorf("setting the config: %w", err)
	}
	return mutate.Annotations(img, meta.annotations()).(v1.Image), nil
}

// binaryLayer is a gzipped tar with one entry, podiam at the root: owned by
// root, mode 0755, modified at mtime.
func binaryLayer(data []byte, mtime time.Time) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     strings.TrimPrefix(entrypoint, "/"),
		Mode:     0o755,
		Size:     int64(len(data)),
		ModTime:  mtime.UTC(),
		Format:   tar.FormatPAX, // a fixed format: the writer would otherwise pick one by content
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, fmt.Errorf("layer header: %w", err)
	}
	if _, err := tw.Write(data); err != nil {
		return nil, fmt.Errorf("layer content: %w", err)
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	tarData := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(tarData)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	return layer, nil
}
