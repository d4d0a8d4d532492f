package main

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// parseImageRef reads an image reference that names its tag or digest
// explicitly: a default of :latest is never what a release means.
func parseImageRef(ref string) (name.Reference, error) {
	r, err := name.ParseReference(ref, name.StrictValidation)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %w (want registry/name:tag)", ref, err)
	}
	return r, nil
}

// parseTag reads the tag the archive names its image with.
func parseTag(ref string) (name.Tag, error) {
	t, err := name.NewTag(ref, name.StrictValidation)
	if err != nil {
		return name.Tag{}, fmt.Errorf("image tag %q: %w (want registry/name:tag)", ref, err)
	}
	return t, nil
}

// push uploads the index and its images to ref with the credentials of the
// Docker config ($DOCKER_CONFIG or ~/.docker/config.json, and its credential
// helpers), and returns the index's digest.
func push(ctx context.Context, idx v1.ImageIndex, ref string, opts ...remote.Option) (v1.Hash, error) {
	r, err := parseImageRef(ref)
	if err != nil {
		return v1.Hash{}, err
	}
	digest, err := idx.Digest()
	if err != nil {
		return v1.Hash{}, fmt.Errorf("digest of the index: %w", err)
	}
	opts = append([]remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}, opts...)
	if err := remote.WriteIndex(r, idx, opts...); err != nil {
		return v1.Hash{}, fmt.Errorf("pushing to %s: %w", r, err)
	}
	return digest, nil
}
