package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// parseTag reads an image reference that names its tag explicitly: a
// default of :latest is never what a release means, and a digest
// (name@sha256:…) is not a place to push to but the result of a push, which
// push prints.
func parseTag(ref string) (name.Tag, error) {
	t, err := name.NewTag(ref, name.StrictValidation)
	if err != nil {
		return name.Tag{}, fmt.Errorf("image tag %q: %w (want registry/name:tag)", ref, err)
	}
	return t, nil
}

// push uploads the index and its images to the tag ref with the credentials
// of the Docker config ($DOCKER_CONFIG or ~/.docker/config.json, and its
// credential helpers), and returns the index's digest. A tag that already
// names another index is left alone unless force: pushing the same index
// again is harmless, overwriting a release with other content is not.
func push(ctx context.Context, idx v1.ImageIndex, ref string, force bool, opts ...remote.Option) (v1.Hash, error) {
	tag, err := parseTag(ref)
	if err != nil {
		return v1.Hash{}, err
	}
	digest, err := idx.Digest()
	if err != nil {
		return v1.Hash{}, fmt.Errorf("digest of the index: %w", err)
	}
	opts = append([]remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}, opts...)
	if !force {
		existing, err := remote.Head(tag, opts...)
		var terr *transport.Error
		switch {
		case errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound:
			// A new tag.
		case err != nil:
			return v1.Hash{}, fmt.Errorf("checking whether %s exists: %w", tag, err)
		case existing.Digest != digest:
			return v1.Hash{}, fmt.Errorf("%s already names %s, not this build's %s: a pushed tag is not moved (pass -force to move it anyway)", tag, existing.Digest, digest)
		}
	}
	if err := remote.WriteIndex(tag, idx, opts...); err != nil {
		return v1.Hash{}, fmt.Errorf("pushing to %s: %w", tag, err)
	}
	return digest, nil
}
