package eksauth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// Authenticator adds the caller's credentials to a request whose body is
// already set (body is the same bytes, for signing).
type Authenticator interface {
	Authenticate(ctx context.Context, r *http.Request, body []byte) error
}

// SigV4 signs requests as EKS Auth expects: SigV4, service "eks-auth", with
// credentials from an SDK credentials provider (the node's, on EKS).
type SigV4 struct {
	// Credentials provides the signing credentials; wrap it in
	// aws.NewCredentialsCache to avoid fetching them on every call.
	Credentials aws.CredentialsProvider
	// Region is the signing region, e.g. "us-west-2".
	Region string
	// Now is the signing clock; nil means time.Now.
	Now func() time.Time
}

// Authenticate implements Authenticator.
func (s *SigV4) Authenticate(ctx context.Context, r *http.Request, body []byte) error {
	if s.Credentials == nil || s.Region == "" {
		return fmt.Errorf("sigv4: credentials provider and region are required")
	}
	creds, err := s.Credentials.Retrieve(ctx)
	if err != nil {
		return fmt.Errorf("retrieving AWS credentials: %w", err)
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(ctx, creds, r, hex.EncodeToString(sum[:]), SigningName, s.Region, now().UTC()); err != nil {
		return fmt.Errorf("signing the request: %w", err)
	}
	return nil
}

// BearerTokenFile sends the token in a file as "Authorization: Bearer …"
// (the agent's projected ServiceAccount token, for `podiam auth`). The file
// is read on every call because the kubelet rotates it.
type BearerTokenFile struct {
	// Path is the token file.
	Path string
}

// maxTokenFile caps how much of the token file is read.
const maxTokenFile = 64 << 10

// Authenticate implements Authenticator.
func (b *BearerTokenFile) Authenticate(_ context.Context, r *http.Request, _ []byte) error {
	f, err := os.Open(b.Path)
	if err != nil {
		return fmt.Errorf("reading the bearer token: %w", err)
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return fmt.Errorf("reading the bearer token %s: %w", b.Path, err)
	}
	if len(raw) > maxTokenFile {
		return fmt.Errorf("bearer token file %s is larger than %d bytes", b.Path, maxTokenFile)
	}
	// A trailing newline is an editor's; anything else is refused rather than
	// sent, since CR or LF inside a header value would split the request.
	token := strings.TrimSuffix(strings.TrimSuffix(string(raw), "\n"), "\r")
	if token == "" {
		return fmt.Errorf("bearer token file %s is empty", b.Path)
	}
	if strings.ContainsAny(token, "\r\n") {
		return fmt.Errorf("bearer token file %s holds a line break inside the token", b.Path)
	}
	r.Header.Set("Authorization", "Bearer "+token)
	return nil
}

// Client calls AssumeRoleForPodIdentity on EKS Auth or `podiam auth`.
type Client struct {
	// Endpoint is the service's base URL, e.g.
	// "https://eks-auth.us-west-2.api.aws" or "https://podiam-auth.podiam.svc".
	Endpoint string
	// HTTPClient sends the requests; nil means http.DefaultClient.
	HTTPClient *http.Client
	// Auth authenticates each request; nil sends it unauthenticated.
	Auth Authenticator
}

// maxResponseBody caps how much of a successful response is read.
const maxResponseBody = 1 << 20

// AssumeRoleForPodIdentity exchanges a pod's token for the credentials of
// its association's role. A refusal from the server is an *Error (see
// Error.Retryable); anything else (transport, authentication, a malformed
// response) is a plain wrapped error. It never retries.
func (c *Client) AssumeRoleForPodIdentity(ctx context.Context, clusterName, podToken string) (*Output, error) {
	if !ValidClusterName(clusterName) {
		return nil, fmt.Errorf("invalid cluster name %q", clusterName)
	}
	body, err := json.Marshal(Input{Token: podToken})
	if err != nil {
		return nil, fmt.Errorf("encoding the request: %w", err)
	}
	url := strings.TrimSuffix(c.Endpoint, "/") + Path(clusterName)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("building the request to %s: %w", c.Endpoint, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.Auth != nil {
		if err := c.Auth.Authenticate(ctx, req, body); err != nil {
			return nil, fmt.Errorf("authenticating to %s: %w", c.Endpoint, err)
		}
	}
	hc := c.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("calling %s: %w", c.Endpoint, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody)) // a cut body still has a status
		return nil, DecodeError(resp.StatusCode, resp.Header, raw)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody+1))
	if err != nil {
		return nil, fmt.Errorf("reading the response of %s: %w", c.Endpoint, err)
	}
	if len(raw) > maxResponseBody {
		return nil, fmt.Errorf("response of %s larger than %d bytes", c.Endpoint, maxResponseBody)
	}
	var out Output
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("decoding the response of %s: %w", c.Endpoint, err)
	}
	if out.Credentials.AccessKeyID == "" || out.Credentials.SecretAccessKey == "" || out.Credentials.Expiration.Unix() <= 0 {
		return nil, fmt.Errorf("response of %s has no credentials", c.Endpoint)
	}
	return &out, nil
}
