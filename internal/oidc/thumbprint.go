package oidc

import (
	"context"
	"crypto/sha1" // #nosec G505 -- IAM defines the thumbprint as SHA-1; it is an identifier, not a signature.
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// MaxThumbprints is how many thumbprints IAM accepts for one OIDC provider.
const MaxThumbprints = 5

// dialTimeout bounds the connection and handshake to one host when ctx has no
// earlier deadline, so an unreachable host fails in seconds rather than
// after the operating system's TCP timeout.
const dialTimeout = 10 * time.Second

// maxDiscoveryBytes bounds the discovery document read by IssuerURLs; a real
// one is under a kilobyte.
const maxDiscoveryBytes = 1 << 20

// Thumbprints returns the thumbprints IAM asks for when registering an OIDC
// provider: for each distinct host (host:port) of urls, in order, the lowercase
// hex SHA-1 of the DER of the last certificate the host's TLS server sends,
// which is the top of the chain it presents (usually the top intermediate CA).
// A server that sends only its leaf certificate gets the leaf's thumbprint:
// that is the last certificate it sends, and what IAM computes too, so the leaf
// must then be re-registered whenever it is renewed.
//
// The chain is verified against roots (the system roots when nil) and the
// host name, so a thumbprint is never taken from an impostor. Hosts are
// reached directly, without a proxy, as IAM reaches them. Hosts sharing one CA
// give one thumbprint: equal values appear once. More than MaxThumbprints
// distinct hosts, a URL that is not https://, an unreachable host or a TLS
// failure is an error naming the URL.
func Thumbprints(ctx context.Context, urls []string, roots *x509.CertPool) ([]string, error) {
	hosts, err := distinctHosts(urls)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, h := range hosts {
		tp, err := thumbprint(ctx, h.addr, h.name, roots)
		if err != nil {
			return nil, fmt.Errorf("thumbprint of %s: %w", h.url, err)
		}
		if !slices.Contains(out, tp) {
			out = append(out, tp)
		}
	}
	return out, nil
}

// host is one TLS endpoint to take a thumbprint from.
type host struct {
	url  string // as given, for messages
	addr string // host:port to dial
	name string // server name to verify
}

// distinctHosts parses urls and keeps the first URL of each host:port.
func distinctHosts(urls []string) ([]host, error) {
	if len(urls) == 0 {
		return nil, errors.New("thumbprints: no URL given")
	}
	var hosts []host
	for _, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("thumbprints: bad URL %q: %w", raw, err)
		}
		if u.Scheme != "https" {
			return nil, fmt.Errorf("thumbprints: URL %q is not https://: IAM only trusts OIDC providers over HTTPS", raw)
		}
		if u.Hostname() == "" {
			return nil, fmt.Errorf("thumbprints: URL %q has no host", raw)
		}
		port := u.Port()
		if port == "" {
			port = "443"
		}
		addr := net.JoinHostPort(u.Hostname(), port)
		if slices.ContainsFunc(hosts, func(h host) bool { return h.addr == addr }) {
			continue
		}
		hosts = append(hosts, host{url: raw, addr: addr, name: u.Hostname()})
	}
	if len(hosts) > MaxThumbprints {
		return nil, fmt.Errorf("thumbprints: %d distinct hosts, IAM accepts at most %d thumbprints", len(hosts), MaxThumbprints)
	}
	return hosts, nil
}

// thumbprint connects to addr and hashes the last certificate the server sends.
func thumbprint(ctx context.Context, addr, serverName string, roots *x509.CertPool) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	d := tls.Dialer{Config: &tls.Config{RootCAs: roots, ServerName: serverName, MinVersion: tls.VersionTLS12}}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		var certErr *tls.CertificateVerificationError
		var opErr *net.OpError
		switch {
		case errors.As(err, &certErr):
			return "", fmt.Errorf("TLS certificate of %s not trusted (for a private CA, give its certificate): %w", addr, err)
		case errors.As(err, &opErr) && opErr.Op == "dial":
			return "", fmt.Errorf("cannot reach %s: %w", addr, err)
		case errors.Is(err, context.DeadlineExceeded):
			return "", fmt.Errorf("cannot reach %s within %s: %w", addr, dialTimeout, err)
		}
		return "", fmt.Errorf("TLS handshake with %s: %w", addr, err)
	}
	defer conn.Close()
	certs := conn.(*tls.Conn).ConnectionState().PeerCertificates
	if len(certs) == 0 { // a verified handshake always has one; be safe anyway
		return "", fmt.Errorf("TLS server %s sent no certificate", addr)
	}
	sum := sha1.Sum(certs[len(certs)-1].Raw) // #nosec G401 -- see the import
	return hex.EncodeToString(sum[:]), nil
}

// IssuerURLs returns the URLs whose hosts IAM needs thumbprints of for
// issuer: the jwks_uri of its discovery document, fetched over HTTPS and
// verified against roots (system roots when nil), then the issuer itself.
// Thumbprints drops the issuer's host when it is the jwks_uri's. It refuses a
// discovery document that names another issuer or a jwks_uri that is not
// https://, since AWS STS refuses those too.
func IssuerURLs(ctx context.Context, issuer string, roots *x509.CertPool) ([]string, error) {
	u, err := url.Parse(issuer)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("issuer %q is not an https:// URL with a host", issuer)
	}
	docURL := strings.TrimSuffix(issuer, "/") + "/" + DiscoveryPath
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, docURL, nil)
	if err != nil {
		return nil, fmt.Errorf("discovery document %s: %w", docURL, err)
	}
	// Directly, as IAM does, and with the same roots as the thumbprints.
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
	}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching discovery document %s: %w", docURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching discovery document %s: HTTP %s", docURL, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDiscoveryBytes))
	if err != nil {
		return nil, fmt.Errorf("reading discovery document %s: %w", docURL, err)
	}
	var doc Discovery
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("discovery document %s is not JSON: %w", docURL, err)
	}
	if strings.TrimSuffix(doc.Issuer, "/") != strings.TrimSuffix(issuer, "/") {
		return nil, fmt.Errorf("discovery document %s names issuer %q, not %q: AWS STS would refuse its tokens", docURL, doc.Issuer, issuer)
	}
	j, err := url.Parse(doc.JWKSURI)
	if err != nil || j.Scheme != "https" || j.Host == "" {
		return nil, fmt.Errorf("discovery document %s: jwks_uri %q is not an https:// URL with a host", docURL, doc.JWKSURI)
	}
	return []string{doc.JWKSURI, issuer}, nil
}
