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
	host := newRegistry(t)

	t.Run("with the Docker config's credentials", func(t *testing.T) {
		useDockerConfig(t, host, true)
		digest, err := push(context.Background(), idx, host+"/podiam/podiam:v9.8.7")
		if err != nil {
			t.Fatal(err)
		}
		checkPulled(t, host, idx, digest)
	})
	t.Run("without credentials", func(t *testing.T) {
		useDockerConfig(t, host, false)
		_, err := push(context.Background(), idx, host+"/podiam/other:v9.8.7")
		if err == nil || !strings.Contains(err.Error(), "pushing to "+host+"/podiam/other:v9.8.7") || !strings.Contains(err.Error(), "401") {
			t.Fatalf("error %v, want the registry's refusal", err)
		}
	})
}

func TestParseImageRef(t *testing.T) {
	for _, tc := range []struct {
		ref, wantErr string
	}{
		{ref: "registry.example.com/podiam:v0.1.0"},
		{ref: "127.0.0.1:5000/podiam/podiam:v0.1.0"},
		{ref: "registry.example.com/podiam@sha256:" + strings.Repeat("a", 64)},
		{ref: "registry.example.com/podiam", wantErr: "want registry/name:tag"},
		{ref: "Not A Ref!", wantErr: `image reference "Not A Ref!"`},
		{ref: "registry.example.com/podiam:", wantErr: "want registry/name:tag"},
		{ref: "", wantErr: `image reference ""`},
	} {
		t.Run(tc.ref, func(t *testing.T) {
			_, err := parseImageRef(tc.ref)
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
