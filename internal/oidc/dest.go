package oidc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// Headers of published objects.
const (
	// ContentType is what both documents are served as.
	ContentType = "application/json"
	// CacheControl lets caches in front of the bucket (CloudFront, proxies)
	// keep a document five minutes: after a new signing key is published, it
	// reaches every reader within that time, which is well within a rotation's
	// "add the new key, wait, then promote it", while a steady stream of
	// readers costs one origin request per cache per five minutes.
	CacheControl = "max-age=300"
)

// maxDocumentBytes bounds what is read back from a destination: both
// documents are a few kilobytes, and a huge object there is not ours.
const maxDocumentBytes = 1 << 20

// Current is what a destination holds at one path.
type Current struct {
	// Body is the object's content; nil when not Found.
	Body []byte
	// Found is false when nothing is stored at the path.
	Found bool
	// StaleHeaders is set when the object's Content-Type is not
	// ContentType or its Cache-Control is set and is not CacheControl: it
	// is rewritten even when Body is already right.
	StaleHeaders bool
}

// Destination is where the documents are published: a directory, or an S3
// bucket and prefix. Paths are slash-separated and relative to its root.
type Destination interface {
	// Get returns what is stored at p.
	Get(ctx context.Context, p string) (Current, error)
	// Put stores body at p whole: a reader sees the old content or the new,
	// never a part.
	Put(ctx context.Context, p string, body []byte) error
	// String names the destination for messages (never credentials).
	String() string
}

// S3Options configures the S3 client of an s3:// destination. Region,
// endpoint (AWS_ENDPOINT_URL_S3) and credentials come from the SDK's default
// configuration chain.
type S3Options struct {
	// PathStyle addresses the bucket as https://endpoint/bucket/key, which
	// most S3-compatible servers need, instead of https://bucket.endpoint/key.
	PathStyle bool
	// Configure, if set, adjusts the S3 client options last (tests use it).
	Configure func(*s3.Options)
}

// OpenDestination returns the destination that dest names: s3://bucket[/prefix]
// for an S3 bucket, else a directory (created on the first write).
func OpenDestination(ctx context.Context, dest string, o S3Options) (Destination, error) {
	if dest == "" {
		return nil, errors.New("destination: empty; want a directory or s3://bucket/prefix")
	}
	if !strings.HasPrefix(dest, "s3://") {
		if strings.Contains(dest, "://") {
			return nil, fmt.Errorf("destination %q: only directories and s3://bucket/prefix are supported", dest)
		}
		return &DirDestination{Root: dest}, nil
	}
	bucket, prefix, err := parseS3URL(dest)
	if err != nil {
		return nil, err
	}
	client, err := newS3Client(ctx, o)
	if err != nil {
		return nil, err
	}
	return &S3Destination{Client: client, Bucket: bucket, Prefix: prefix}, nil
}

// parseS3URL splits s3://bucket/prefix into the bucket and the prefix without
// its slashes at either end.
func parseS3URL(dest string) (bucket, prefix string, err error) {
	u, err := url.Parse(dest)
	if err != nil {
		return "", "", fmt.Errorf("destination %q: %w", dest, err)
	}
	if u.Host == "" {
		return "", "", fmt.Errorf("destination %q: no bucket; want s3://bucket/prefix", dest)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", "", fmt.Errorf("destination %q: want s3://bucket/prefix, without user, query or fragment", dest)
	}
	prefix = strings.Trim(u.Path, "/")
	if prefix != path.Clean("/" + prefix)[1:] {
		return "", "", fmt.Errorf("destination %q: the prefix %q has empty, . or .. segments", dest, prefix)
	}
	return u.Host, prefix, nil
}

// newS3Client builds an S3 client from the SDK's default configuration
// (AWS_REGION, AWS_ENDPOINT_URL_S3, credentials from the environment, a web
// identity token as IRSA injects, the Pod Identity agent, profiles).
func newS3Client(ctx context.Context, o S3Options) (*s3.Client, error) {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading the AWS SDK configuration: %w", err)
	}
	if cfg.Region == "" {
		// Without it every request fails with an endpoint error that does not
		// say what is missing.
		return nil, errors.New("no AWS region for the S3 client: set AWS_REGION (or a profile's region)")
	}
	return s3.NewFromConfig(cfg, func(so *s3.Options) {
		so.UsePathStyle = o.PathStyle
		if o.Configure != nil {
			o.Configure(so)
		}
	}), nil
}

// DirDestination publishes into a directory, for a web server (or `podiam
// oidc serve`) that serves it.
type DirDestination struct {
	Root string
}

// String implements Destination.
func (d *DirDestination) String() string { return d.Root }

func (d *DirDestination) file(p string) string {
	return filepath.Join(d.Root, filepath.FromSlash(p))
}

// Get implements Destination.
func (d *DirDestination) Get(_ context.Context, p string) (Current, error) {
	f, err := os.Open(d.file(p))
	if errors.Is(err, os.ErrNotExist) {
		return Current{}, nil
	}
	if err != nil {
		return Current{}, fmt.Errorf("reading %s: %w", p, err)
	}
	defer f.Close()
	body, err := io.ReadAll(io.LimitReader(f, maxDocumentBytes+1))
	if err != nil {
		return Current{}, fmt.Errorf("reading %s: %w", d.file(p), err)
	}
	// An oversized file is reported as found with its first bytes: it differs
	// from any document and is replaced.
	return Current{Body: body, Found: true}, nil
}

// Put implements Destination: the content goes to a temporary file next to
// the target, is synced, and is renamed over it, so a web server serving the
// directory never sends a partial document.
func (d *DirDestination) Put(_ context.Context, p string, body []byte) (err error) {
	target := d.file(p)
	dir := filepath.Dir(target)
	// World-readable: the documents are public and a web server running as
	// another user serves them.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("writing %s: %w", p, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(target)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", p, err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(body); err != nil {
		return fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	if err = tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	if err = os.Rename(tmp.Name(), target); err != nil {
		return fmt.Errorf("writing %s: %w", p, err)
	}
	// Sync the directory so that the rename survives a crash: the JWKS must be
	// durable before the discovery document that names it is written.
	if dh, derr := os.Open(dir); derr == nil {
		_ = dh.Sync()
		_ = dh.Close()
	}
	return nil
}

// S3Destination publishes into an S3 bucket under a prefix. A PutObject
// replaces an object atomically: readers get the old or the new object.
type S3Destination struct {
	Client *s3.Client
	Bucket string
	Prefix string // without slashes at either end; may be empty
}

// String implements Destination.
func (d *S3Destination) String() string {
	if d.Prefix == "" {
		return "s3://" + d.Bucket
	}
	return "s3://" + d.Bucket + "/" + d.Prefix
}

func (d *S3Destination) key(p string) string {
	if d.Prefix == "" {
		return p
	}
	return d.Prefix + "/" + p
}

// Get implements Destination.
func (d *S3Destination) Get(ctx context.Context, p string) (Current, error) {
	out, err := d.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(d.Bucket), Key: aws.String(d.key(p))})
	if err != nil {
		if isS3NotFound(err) {
			return Current{}, nil
		}
		return Current{}, fmt.Errorf("reading %s/%s: %w", d, p, err)
	}
	defer out.Body.Close()
	body, err := io.ReadAll(io.LimitReader(out.Body, maxDocumentBytes+1))
	if err != nil {
		return Current{}, fmt.Errorf("reading %s/%s: %w", d, p, err)
	}
	return Current{Body: body, Found: true, StaleHeaders: staleHeaders(out.ContentType, out.CacheControl)}, nil
}

// staleHeaders reports whether an object's headers differ from those Put
// sets. An empty Cache-Control is not stale: several S3-compatible servers
// (gofakes3 among them) do not keep it, and a document rewritten on every
// round would defeat "a steady state writes nothing". Another non-empty one
// (an upload by hand, "no-cache" or a day-long max-age) is.
func staleHeaders(contentType, cacheControl *string) bool {
	if !strings.EqualFold(strings.TrimSpace(aws.ToString(contentType)), ContentType) {
		return true
	}
	cc := strings.TrimSpace(aws.ToString(cacheControl))
	return cc != "" && !strings.EqualFold(cc, CacheControl)
}

// Put implements Destination.
func (d *S3Destination) Put(ctx context.Context, p string, body []byte) error {
	_, err := d.Client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        aws.String(d.Bucket),
		Key:           aws.String(d.key(p)),
		Body:          bytes.NewReader(body),
		ContentLength: aws.Int64(int64(len(body))),
		ContentType:   aws.String(ContentType),
		CacheControl:  aws.String(CacheControl),
	})
	if err != nil {
		return fmt.Errorf("writing %s/%s: %w", d, p, err)
	}
	return nil
}

// isS3NotFound reports whether err says the object does not exist.
func isS3NotFound(err error) bool {
	var nsk *types.NoSuchKey
	if errors.As(err, &nsk) {
		return true
	}
	var api smithy.APIError
	return errors.As(err, &api) && (api.ErrorCode() == "NoSuchKey" || api.ErrorCode() == "NotFound")
}
