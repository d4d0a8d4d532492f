package jwks

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"

	"github.com/podiam/podiam/internal/oidc"
)

// Size caps of the fetched documents: a discovery document is a few hundred
// bytes and a JWKS a few KiB; anything far larger is not an issuer's.
const (
	MaxDiscoverySize = 64 << 10
	MaxJWKSSize      = 1 << 20
)

// DefaultFetchTimeout bounds one fetch (discovery and JWKS together).
const DefaultFetchTimeout = 10 * time.Second

// HTTPSource fetches an issuer's keys as AWS STS does: the discovery document
// at <issuer>/.well-known/openid-configuration, which must name the same
// issuer, then the JWKS at its https jwks_uri.
type HTTPSource struct {
	issuer  string
	client  *http.Client
	timeout time.Duration
}

// HTTPOption configures an HTTPSource.
type HTTPOption func(*HTTPSource)

// WithHTTPClient makes the source use c (its Transport, redirect policy)
// instead of its own client; roots are then ignored.
func WithHTTPClient(c *http.Client) HTTPOption {
	return func(s *HTTPSource) { s.client = c }
}

// WithTimeout bounds each fetch (discovery and JWKS together);
// DefaultFetchTimeout when not given.
func WithTimeout(d time.Duration) HTTPOption {
	return func(s *HTTPSource) { s.timeout = d }
}

// NewHTTPSource returns a Source for issuer, an https URL as AWS accepts it
// (oidc.ValidateIssuer). roots, when not nil, are the CAs trusted for the
// issuer's and jwks_uri's hosts instead of the system's.
func NewHTTPSource(issuer string, roots *x509.CertPool, opts ...HTTPOption) (*HTTPSource, error) {
	if err := oidc.ValidateIssuer(issuer); err != nil {
		return nil, fmt.Errorf("issuer %q: %w", issuer, err)
	}
	s := &HTTPSource{issuer: issuer, timeout: DefaultFetchTimeout}
	for _, o := range opts {
		o(s)
	}
	if s.client == nil {
		s.client = newClient(roots)
	}
	return s, nil
}

// newClient returns a client trusting roots (the system's when nil) that
// follows at most 3 redirects, to https only, and uses no proxy: an issuer
// is reached directly, as AWS reaches it.
func newClient(roots *x509.CertPool) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout:   5 * time.Second,
			ResponseHeaderTimeout: 5 * time.Second,
			MaxIdleConns:          4,
			IdleConnTimeout:       90 * time.Second,
		},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 3 {
				return errors.New("more than 3 redirects")
			}
			if req.URL.Scheme != "https" {
				return fmt.Errorf("redirect to %s, which is not https", req.URL.Redacted())
			}
			return nil
		},
	}
}

// Issuer returns the issuer URL the source fetches for.
func (s *HTTPSource) Issuer() string { return s.issuer }

// Fetch implements Source.
func (s *HTTPSource) Fetch(ctx context.Context) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	discoveryURL := s.issuer + "/" + oidc.DiscoveryPath
	body, err := s.get(ctx, discoveryURL, MaxDiscoverySize)
	if err != nil {
		return nil, err
	}
	var d struct {
		Issuer  *string `json:"issuer"`
		JWKSURI *string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(body, &d); err != nil {
		return nil, fmt.Errorf("%s is not a JSON discovery document: %w", discoveryURL, err)
	}
	if d.Issuer == nil || *d.Issuer != s.issuer {
		got := "no issuer"
		if d.Issuer != nil {
			got = fmt.Sprintf("issuer %q", *d.Issuer)
		}
		return nil, fmt.Errorf("%s names %s, not %q", discoveryURL, got, s.issuer)
	}
	if d.JWKSURI == nil {
		return nil, fmt.Errorf("%s has no jwks_uri", discoveryURL)
	}
	u, err := url.Parse(*d.JWKSURI)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("%s: jwks_uri %q is not an https URL", discoveryURL, *d.JWKSURI)
	}
	return s.get(ctx, u.String(), MaxJWKSSize)
}

// get returns the body of a 200 answer to a GET of u, of at most limit bytes.
func (s *HTTPSource) get(ctx context.Context, u string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: HTTP status %s", u, resp.Status)
	}
	if resp.ContentLength > limit {
		return nil, fmt.Errorf("GET %s: %d bytes, more than the %d accepted", u, resp.ContentLength, limit)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: reading the body: %w", u, err)
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("GET %s: more than the %d bytes accepted", u, limit)
	}
	return body, nil
}

// KubeSource reads the keys from the API server's /openid/v1/jwks.
type KubeSource struct {
	client rest.Interface
}

// NewKubeSource returns a Source reading /openid/v1/jwks with cfg's
// credentials, which need the ClusterRole
// system:service-account-issuer-discovery (bound to every authenticated
// identity by default).
func NewKubeSource(cfg *rest.Config) (*KubeSource, error) {
	c := rest.CopyConfig(cfg)
	if c.Timeout == 0 {
		c.Timeout = DefaultFetchTimeout
	}
	dc, err := discovery.NewDiscoveryClientForConfig(c)
	if err != nil {
		return nil, fmt.Errorf("API server client: %w", err)
	}
	return &KubeSource{client: dc.RESTClient()}, nil
}

// Fetch implements Source.
func (s *KubeSource) Fetch(ctx context.Context) ([]byte, error) {
	body, err := s.client.Get().AbsPath("/" + oidc.JWKSPath).DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading /%s from the API server: %w", oidc.JWKSPath, err)
	}
	if len(body) > MaxJWKSSize {
		return nil, fmt.Errorf("/%s from the API server: %d bytes, more than the %d accepted", oidc.JWKSPath, len(body), MaxJWKSSize)
	}
	return body, nil
}
