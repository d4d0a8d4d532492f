package main

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// Annotations on the layout's index.json entry that name the image: the OCI
// one (the tag, as skopeo's oci-archive:FILE:TAG matches it) and containerd's
// (the full reference, which `docker load` with the containerd store uses).
const (
	refNameAnnotation    = "org.opencontainers.image.ref.name"
	imageNameAnnotation  = "io.containerd.image.name"
	dockerManifestFile   = "manifest.json"
	maxArchiveEntrySize  = 1 << 30 // a blob larger than this is not ours
	archiveDirMode       = 0o755
	archiveFileMode      = 0o644
	archiveEntryMaxCount = 1000
)

// dockerManifestEntry is one entry of the manifest.json that `docker save`
// writes next to the OCI layout; Docker's classic image store loads only
// that file.
type dockerManifestEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// writeArchive writes idx as an OCI image layout into dir (replaced whole, so
// no blob of an earlier build stays, but only if it is an OCI layout) and as
// a tarball of that layout at tarPath, with the image named tag. Both are
// byte-identical for the same idx and mtime.
func writeArchive(idx v1.ImageIndex, tag name.Tag, dir, tarPath string, mtime time.Time) error {
	if err := checkLayoutDir(dir); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("removing the old layout: %w", err)
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("writing the layout %s: %w", dir, err)
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		refNameAnnotation:   tag.TagStr(),
		imageNameAnnotation: tag.Name(),
	})); err != nil {
		return fmt.Errorf("writing the image index into %s: %w", dir, err)
	}
	manifest, err := dockerManifest(idx, tag)
	if err != nil {
		return err
	}
	if err := p.WriteFile(dockerManifestFile, manifest, archiveFileMode); err != nil {
		return fmt.Errorf("writing %s: %w", dockerManifestFile, err)
	}
	return tarDir(dir, tarPath, mtime)
}

// checkLayoutDir refuses to let writeArchive replace dir unless it is
// missing or an OCI layout (it has an oci-layout file, as every layout
// written here has): -out internal.tar must not delete ./internal.
func checkLayoutDir(dir string) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("the layout directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is where the OCI layout goes, but it is a file: choose another -out", dir)
	}
	if _, err := os.Stat(filepath.Join(dir, "oci-layout")); err != nil {
		return fmt.Errorf("%s is where the OCI layout goes, but it is a directory that is not one (no oci-layout file), which would be deleted: choose another -out", dir)
	}
	return nil
}

// dockerManifest is manifest.json for Docker's classic store, which loads one
// image per entry and cannot choose by platform: it gets the index's first
// image (linux/amd64 as `make image` orders them). The containerd store
// reads index.json and picks the host's platform.
func dockerManifest(idx v1.ImageIndex, tag name.Tag) ([]byte, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("reading the index: %w", err)
	}
	if len(im.Manifests) == 0 {
		return nil, errors.New("the index has no image")
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		return nil, fmt.Errorf("reading the first image: %w", err)
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("reading the first image's manifest: %w", err)
	}
	entry := dockerManifestEntry{Config: blobPath(m.Config.Digest), RepoTags: []string{tag.Name()}}
	for _, l := range m.Layers {
		entry.Layers = append(entry.Layers, blobPath(l.Digest))
	}
	return json.Marshal([]dockerManifestEntry{entry})
}

func blobPath(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

// tarDir writes the files under dir into a tarball at tarPath, in lexical
// order, owned by root, with fixed modes and mtime: nothing of the build
// machine (umask, clock, user) reaches it.
func tarDir(dir, tarPath string, mtime time.Time) (err error) {
	if err := os.MkdirAll(filepath.Dir(tarPath), archiveDirMode); err != nil {
		return fmt.Errorf("creating the tarball's directory: %w", err)
	}
	tmp := tarPath + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("creating the tarball: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: filepath.ToSlash(rel), ModTime: mtime.UTC(), Format: tar.FormatPAX}
		if d.IsDir() {
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, hdr.Name+"/", archiveDirMode
			return tw.WriteHeader(hdr)
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s: not a regular file", path)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, archiveFileMode, int64(len(data))
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err = tw.Write(data)
		return err
	})
	if err != nil {
		return fmt.Errorf("writing the tarball of %s: %w", dir, err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("writing the tarball: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing the tarball: %w", err)
	}
	if err := os.Rename(tmp, tarPath); err != nil {
		return fmt.Errorf("writing the tarball: %w", err)
	}
	return nil
}

// readArchive unpacks the OCI layout tarball at tarPath into dir (which must
// be empty or missing) and returns its one image index and the index.json
// entry naming it.
func readArchive(tarPath, dir string) (v1.ImageIndex, v1.Descriptor, error) {
	if err := untar(tarPath, dir); err != nil {
		return nil, v1.Descriptor{}, err
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, v1.Descriptor{}, fmt.Errorf("%s is not an OCI layout: %w", tarPath, err)
	}
	outer, err := p.ImageIndex()
	if err != nil {
		return nil, v1.Descriptor{}, fmt.Errorf("%s: reading index.json: %w", tarPath, err)
	}
	im, err := outer.IndexManifest()
	if err != nil {
		return nil, v1.Descriptor{}, fmt.Errorf("%s: reading index.json: %w", tarPath, err)
	}
	if len(im.Manifests) != 1 || !im.Manifests[0].MediaType.IsIndex() {
		return nil, v1.Descriptor{}, fmt.Errorf("%s: index.json has %d entries; want one image index", tarPath, len(im.Manifests))
	}
	desc := im.Manifests[0]
	idx, err := outer.ImageIndex(desc.Digest)
	if err != nil {
		return nil, v1.Descriptor{}, fmt.Errorf("%s: reading the image index %s: %w", tarPath, desc.Digest, err)
	}
	return idx, desc, nil
}

// untar unpacks regular files and directories only, refusing any name that
// would land outside dir.
func untar(tarPath, dir string) error {
	f, err := os.Open(tarPath)
	if err != nil {
		return fmt.Errorf("opening the image tarball: %w", err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for n := 0; ; n++ {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", tarPath, err)
		}
		if n >= archiveEntryMaxCount {
			return fmt.Errorf("%s: more than %d entries", tarPath, archiveEntryMaxCount)
		}
		clean := filepath.Clean(filepath.FromSlash(hdr.Name))
		if !filepath.IsLocal(clean) {
			return fmt.Errorf("%s: entry %q leaves the archive", tarPath, hdr.Name)
		}
		target := filepath.Join(dir, clean)
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, archiveDirMode); err != nil {
				return err
			}
		case tar.TypeReg:
			if hdr.Size > maxArchiveEntrySize {
				return fmt.Errorf("%s: entry %q is %d bytes", tarPath, hdr.Name, hdr.Size)
			}
			if err := os.MkdirAll(filepath.Dir(target), archiveDirMode); err != nil {
				return err
			}
			if err := writeFileFrom(target, tr); err != nil {
				return fmt.Errorf("%s: unpacking %q: %w", tarPath, hdr.Name, err)
			}
		default:
			return fmt.Errorf("%s: entry %q is not a file or directory", tarPath, hdr.Name)
		}
	}
}

func writeFileFrom(path string, r io.Reader) error {
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, archiveFileMode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, r); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
