package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

const (
	registryUser     = "pusher"
	registryPassword = "s3cret-for-tests"
)

// newRegistry starts an in-process registry on 127.0.0.1 that wants HTTP
// basic auth, as a real one does, and returns its host:port.
func newRegistry(t *testing.T) string {
	t.Helper()
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != registryUser || p != registryPassword {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"who are you"}]}`, http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// useDockerConfig points the Docker keychain at a config.json of this test:
// with the registry's credentials, or none at all.
func useDockerConfig(t *testing.T, host string, withCredentials bool) {
	t.Helper()
	dir := t.TempDir()
	config := `{"auths":{}}`
	if withCredentials {
		auth := base64.StdEncoding.EncodeToString([]byte(registryUser + ":" + registryPassword))
		config = fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, host, auth)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", dir)
}

// checkPulled pulls ref's index by digest from the registry and compares it,
// each image and each layer with idx. The real build's tests use it too.
func checkPulled(t *testing.T, host string, idx v1.ImageIndex, digest v1.Hash) {
	t.Helper()
	want, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if digest != want {
		t.Fatalf("push returned %s, the index is %s", digest, want)
	}
	ref, err := name.NewDigest(host + "/podiam/podiam@" + digest.String())
	if err != nil {
		t.Fatal(err)
	}
	auth := remote.WithAuth(&authn.Basic{Username: registryUser, Password: registryPassword})
	pulled, err := remote.Index(ref, auth)
	if err != nil {
		t.Fatalf("pulling %s: %v", ref, err)
	}
	if got, _ := pulled.Digest(); got != want {
		t.Fatalf("pulled index %s, want %s", got, want)
	}
	wantIM, _ := idx.IndexManifest()
	for _, desc := range wantIM.Manifests {
		img, err := pulled.Image(desc.Digest)
		if err != nil {
			t.Fatalf("pulling image %s: %v", desc.Digest, err)
		}
		layers, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range layers {
			rc, err := l.Compressed()
			if err != nil {
				t.Fatal(err)
			}
			n, err := io.Copy(io.Discard, rc) // verifies the blob's digest as it reads
			rc.Close()
			if err != nil || n == 0 {
				t.Errorf("image %s: layer read %d bytes: %v", desc.Digest, n, err)
			}
		}
	}
}

func TestPush(t *testing.T) {
	idx, err := newIndex(fakeBinaries(t, "linux/amd64", "linux/arm64"), testMeta)
	if err != nil {
		t.Fatal(err)
	}
	other := testMeta
	other.Commit = "1111111111111111111111111111111111111111"
	otherIdx, err := newIndex(fakeBinaries(t, "linux/amd64", "linux/arm64"), other)
	if err != nil {
		t.Fatal(err)
	}
	otherDigest, err := otherIdx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	host := newRegistry(t)
	basicAuth := base64.StdEncoding.EncodeToString([]byte(registryUser + ":" + registryPassword))

	// Each step pushes to the registry as the one before left it.
	for _, tc := range []struct {
		name        string
		credentials bool
		idx         v1.ImageIndex
		ref         string
		force       bool
		wantErr     []string // all of them; none means success
	}{
		{name: "with the Docker config's credentials", credentials: true, idx: idx, ref: host + "/podiam/podiam:v9.8.7"},
		{name: "the same index to the same tag again", credentials: true, idx: idx, ref: host + "/podiam/podiam:v9.8.7"},
		{name: "other content to an existing tag", credentials: true, idx: otherIdx, ref: host + "/podiam/podiam:v9.8.7",
			wantErr: []string{host + "/podiam/podiam:v9.8.7 already names", "not this build's " + otherDigest.String(), "-force"}},
		{name: "other content to a new tag", credentials: true, idx: otherIdx, ref: host + "/podiam/podiam:v9.8.8"},
		{name: "without credentials", idx: idx, ref: host + "/podiam/other:v9.8.7",
			wantErr: []string{host + "/podiam/other:v9.8.7", "401"}},
		{name: "without credentials, forced", idx: idx, ref: host + "/podiam/other:v9.8.7", force: true,
			wantErr: []string{"pushing to " + host + "/podiam/other:v9.8.7", "401"}},
		{name: "to a digest", credentials: true, idx: idx, ref: host + "/podiam/podiam@sha256:" + strings.Repeat("a", 64),
			wantErr: []string{"want registry/name:tag"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			useDockerConfig(t, host, tc.credentials)
			digest, err := push(context.Background(), tc.idx, tc.ref, tc.force)
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				checkPulled(t, host, tc.idx, digest)
				return
			}
			if err == nil {
				t.Fatalf("pushed %s, want an error", digest)
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
			for _, secret := range []string{registryPassword, basicAuth} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q shows the registry's credentials", err)
				}
			}
		})
	}
	// The refused push left the tag as it was; the forced one moves it.
	t.Run("other content to an existing tag, forced", func(t *testing.T) {
		useDockerConfig(t, host, true)
		checkTag(t, host+"/podiam/podiam:v9.8.7", idx)
		digest, err := push(context.Background(), otherIdx, host+"/podiam/podiam:v9.8.7", true)
		if err != nil {
			t.Fatal(err)
		}
		checkTag(t, host+"/podiam/podiam:v9.8.7", otherIdx)
		checkPulled(t, host, otherIdx, digest)
	})
}

// checkTag: the registry's tag ref names idx.
func checkTag(t *testing.T, ref string, idx v1.ImageIndex) {
	t.Helper()
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Head(tag, remote.WithAuth(&authn.Basic{Username: registryUser, Password: registryPassword}))
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := idx.Digest(); desc.Digest != want {
		t.Errorf("%s names %s, want %s", ref, desc.Digest, want)
	}
}

func TestParseTag(t *testing.T) {
	for _, tc := range []struct {
		ref, wantErr string
	}{
		{ref: "registry.example.com/podiam:v0.1.0"},
		{ref: "127.0.0.1:5000/podiam/podiam:v0.1.0"},
		{ref: "registry.example.com/podiam@sha256:" + strings.Repeat("a", 64), wantErr: "want registry/name:tag"},
		{ref: "registry.example.com/podiam:v0.1.0@sha256:" + strings.Repeat("a", 64), wantErr: "want registry/name:tag"},
		{ref: "registry.example.com/podiam", wantErr: "want registry/name:tag"},
		{ref: "Not A Ref!", wantErr: `image tag "Not A Ref!"`},
		{ref: "registry.example.com/podiam:", wantErr: "want registry/name:tag"},
		{ref: "", wantErr: `image tag ""`},
	} {
		t.Run(tc.ref, func(t *testing.T) {
			_, err := parseTag(tc.ref)
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
