package oidc

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/podiam/podiam/test/fakes3"
)

func TestOpenDestination(t *testing.T) {
	t.Setenv("AWS_REGION", "eu-west-1")
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDPODIAMTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	for _, tc := range []struct {
		dest, want, err string
	}{
		{dest: "/srv/oidc", want: "/srv/oidc"},
		{dest: "relative/dir", want: "relative/dir"},
		{dest: "s3://my-bucket", want: "s3://my-bucket"},
		{dest: "s3://my-bucket/", want: "s3://my-bucket"},
		{dest: "s3://my-bucket/cluster-1/", want: "s3://my-bucket/cluster-1"},
		{dest: "s3://my-bucket/a/b", want: "s3://my-bucket/a/b"},
		{dest: "", err: "empty"},
		{dest: "s3://", err: "no bucket"},
		{dest: "s3:///prefix", err: "no bucket"},
		{dest: "s3://b/a/../c", err: "segments"},
		{dest: "s3://b/a//c", err: "segments"},
		{dest: "s3://b/p?versionId=1", err: "query"},
		{dest: "https://example.com/x", err: "only directories"},
		{dest: "gs://bucket", err: "only directories"},
	} {
		t.Run(tc.dest, func(t *testing.T) {
			d, err := OpenDestination(t.Context(), tc.dest, S3Options{})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d.String() != tc.want {
				t.Errorf("destination %q, want %q", d.String(), tc.want)
			}
		})
	}
}

// TestOpenDestinationNoRegion: an S3 destination without a region fails at
// once, saying so, instead of at the first request with an endpoint error.
func TestOpenDestinationNoRegion(t *testing.T) {
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	_, err := OpenDestination(t.Context(), "s3://my-bucket", S3Options{})
	if err == nil || !strings.Contains(err.Error(), "AWS_REGION") {
		t.Fatalf("error %v, want one naming AWS_REGION", err)
	}
}

// TestOpenDestinationS3FromEnvironment: the client takes its endpoint,
// region and credentials from the SDK's environment variables, as in a pod.
func TestOpenDestinationS3FromEnvironment(t *testing.T) {
	fake := fakes3.Start(t, "env-bucket")
	t.Setenv("AWS_REGION", "eu-west-1")
	t.Setenv("AWS_ENDPOINT_URL_S3", fake.URL)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDPODIAMTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	d, err := OpenDestination(t.Context(), "s3://env-bucket/p", S3Options{PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Put(t.Context(), "x.json", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if got := fake.Puts(); len(got) != 1 || got[0].Path != "/env-bucket/p/x.json" {
		t.Fatalf("PUTs %+v, want one to /env-bucket/p/x.json", got)
	}
}

func TestDirDestination(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	root := filepath.Join(t.TempDir(), "issuer")
	d := &DirDestination{Root: root}

	c, err := d.Get(ctx, JWKSPath)
	if err != nil || c.Found {
		t.Fatalf("Get of a missing file: %+v, %v; want not found, no error", c, err)
	}
	for _, body := range []string{`{"keys":[1]}`, `{"keys":[2]}`} {
		if err := d.Put(ctx, JWKSPath, []byte(body)); err != nil {
			t.Fatal(err)
		}
		c, err := d.Get(ctx, JWKSPath)
		if err != nil || !c.Found || string(c.Body) != body || c.StaleHeaders {
			t.Fatalf("Get after Put(%s): %+v, %v", body, c, err)
		}
	}
	st, err := os.Stat(filepath.Join(root, "openid", "v1", "jwks"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644 (a web server running as another user serves it)", st.Mode().Perm())
	}
	assertNoTempFiles(t, root)
}

// TestDirDestinationFailedPut: a write that cannot complete leaves the old
// file and no temporary file behind.
func TestDirDestinationFailedPut(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	root := t.TempDir()
	d := &DirDestination{Root: root}
	// The target is a non-empty directory: the rename fails.
	if err := os.MkdirAll(filepath.Join(root, "keys.json", "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	err := d.Put(ctx, "keys.json", []byte(`{}`))
	if err == nil || !strings.Contains(err.Error(), "keys.json") {
		t.Fatalf("error %v, want one naming keys.json", err)
	}
	assertNoTempFiles(t, root)
}

func assertNoTempFiles(t *testing.T, root string) {
	t.Helper()
	err := filepath.WalkDir(root, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file left behind: %s", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestS3Destination(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	fake := fakes3.Start(t, "issuer-bucket")
	for _, tc := range []struct {
		prefix, wantPath string
	}{
		{"", "/issuer-bucket/openid/v1/jwks"},
		{"cluster-1", "/issuer-bucket/cluster-1/openid/v1/jwks"},
		{"a/b", "/issuer-bucket/a/b/openid/v1/jwks"},
	} {
		d := &S3Destination{Client: fake.Client(), Bucket: "issuer-bucket", Prefix: tc.prefix}
		c, err := d.Get(ctx, JWKSPath)
		if err != nil || c.Found {
			t.Fatalf("%s: Get of a missing object: %+v, %v; want not found, no error", d, c, err)
		}
		body := `{"keys":["` + tc.prefix + `"]}`
		if err := d.Put(ctx, JWKSPath, []byte(body)); err != nil {
			t.Fatal(err)
		}
		puts := fake.Puts()
		want := fakes3.Request{Method: http.MethodPut, Path: tc.wantPath, ContentType: ContentType, CacheControl: CacheControl}
		if len(puts) != 1 || puts[0] != want {
			t.Fatalf("%s: PUTs %+v, want [%+v]", d, puts, want)
		}
		c, err = d.Get(ctx, JWKSPath)
		if err != nil || !c.Found || string(c.Body) != body || c.StaleHeaders {
			t.Fatalf("%s: Get after Put: %+v, %v", d, c, err)
		}
	}
}

// TestS3DestinationStaleContentType: an object uploaded with another
// Content-Type (`aws s3 cp` of a file without .json) is reported stale, so a
// publish rewrites it even when the content is right.
func TestS3DestinationStaleContentType(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	fake := fakes3.Start(t, "stale-bucket")
	cl := fake.Client()
	_, err := cl.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("stale-bucket"), Key: aws.String("keys.json"),
		Body: strings.NewReader(`{}`), ContentType: aws.String("binary/octet-stream")})
	if err != nil {
		t.Fatal(err)
	}
	d := &S3Destination{Client: cl, Bucket: "stale-bucket"}
	c, err := d.Get(ctx, "keys.json")
	if err != nil || !c.Found || !c.StaleHeaders {
		t.Fatalf("Get: %+v, %v; want found with stale headers", c, err)
	}
}

// cacheControlTransport sets the Cache-Control of every GET response, as a
// server that keeps the header (S3) would return it; gofakes3 does not keep
// it.
type cacheControlTransport struct{ value string }

func (c cacheControlTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err == nil && r.Method == http.MethodGet && c.value != "" {
		resp.Header.Set("Cache-Control", c.value)
	}
	return resp, err
}

// TestS3DestinationStaleCacheControl: an object with another Cache-Control
// than ours (uploaded by hand with a day-long max-age) is stale and a
// publish rewrites it; an empty one (a server that does not keep it) is not,
// or every round would rewrite both documents.
func TestS3DestinationStaleCacheControl(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	rsaKey, _, _ := pubTestKeys(t)
	live := pubLiveDocs(t, pubIssuer, rsaKey)
	for _, tc := range []struct {
		cacheControl string
		stale        bool
	}{
		{"", false},
		{CacheControl, false},
		{" MAX-AGE=300 ", false},
		{"max-age=86400", true},
		{"no-cache", true},
	} {
		t.Run(tc.cacheControl, func(t *testing.T) {
			fake := fakes3.Start(t, "cc-bucket")
			opts := fake.Client().Options()
			opts.HTTPClient = &http.Client{Transport: cacheControlTransport{tc.cacheControl}}
			d := &S3Destination{Client: s3.New(opts), Bucket: "cc-bucket"}
			src := &fakeSource{live: live}
			if _, err := Publish(ctx, src, d, PublishOptions{Issuer: pubIssuer}); err != nil {
				t.Fatal(err)
			}
			fake.Puts()
			c, err := d.Get(ctx, JWKSPath)
			if err != nil || !c.Found || c.StaleHeaders != tc.stale {
				t.Fatalf("Get: %+v, %v; want found, stale headers %v", c, err, tc.stale)
			}
			res, err := Publish(ctx, src, d, PublishOptions{Issuer: pubIssuer})
			if err != nil {
				t.Fatal(err)
			}
			want := 0
			if tc.stale {
				want = 2
			}
			if puts := fake.Puts(); len(puts) != want || len(res.Written) != want {
				t.Errorf("second publish: PUTs %+v, written %q; want %d", puts, res.Written, want)
			}
		})
	}
}

// TestS3DestinationErrors: a missing bucket is an error naming the
// destination, not "not found".
func TestS3DestinationErrors(t *testing.T) {
	t.Parallel()
	fake := fakes3.Start(t)
	d := &S3Destination{Client: fake.Client(), Bucket: "no-such-bucket"}
	_, err := d.Get(t.Context(), JWKSPath)
	if err == nil || !strings.Contains(err.Error(), "s3://no-such-bucket") {
		t.Fatalf("Get: %v, want an error naming s3://no-such-bucket", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := d.Put(ctx, JWKSPath, []byte(`{}`)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put with a cancelled context: %v", err)
	}
}

// TestDirDestinationAtomic: a reader racing with writes sees the old or the
// new document whole, never a truncated or mixed one (what a web server
// serving the directory would send).
func TestDirDestinationAtomic(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	d := &DirDestination{Root: t.TempDir()}
	bodies := [][]byte{[]byte(strings.Repeat("a", 256<<10)), []byte(strings.Repeat("b", 300<<10))}
	if err := d.Put(ctx, JWKSPath, bodies[0]); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var torn []int
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			b, err := os.ReadFile(filepath.Join(d.Root, "openid", "v1", "jwks"))
			if err != nil || (string(b) != string(bodies[0]) && string(b) != string(bodies[1])) {
				torn = append(torn, len(b))
			}
		}
	}()
	for i := range 100 {
		if err := d.Put(ctx, JWKSPath, bodies[i%2]); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if len(torn) > 0 {
		t.Fatalf("%d reads saw a partial document (lengths %v)", len(torn), torn[:min(len(torn), 5)])
	}
}
