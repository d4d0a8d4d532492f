package webhook

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// TLSConfig builds the serving configuration from the --tls-min-version and
// --tls-cipher-suites flag values. getCert supplies the current certificate.
func TLSConfig(minVersion, cipherSuites string, getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) (*tls.Config, error) {
	v, err := ParseTLSVersion(minVersion)
	if err != nil {
		return nil, err
	}
	suites, err := ParseCipherSuites(cipherSuites)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion:     v,
		CipherSuites:   suites,
		GetCertificate: getCert,
		// The API server speaks HTTP/1.1 and HTTP/2; both are fine.
		NextProtos: []string{"h2", "http/1.1"},
	}
	if !http2Allowed(v, suites) {
		// Go's HTTP/2 server refuses to start without an ECDHE AES-128-GCM
		// suite (RFC 7540 §9.2.2); serve HTTP/1.1 rather than fail.
		cfg.NextProtos = []string{"http/1.1"}
	}
	return cfg, nil
}

func http2Allowed(minVersion uint16, suites []uint16) bool {
	if minVersion >= tls.VersionTLS13 || suites == nil {
		return true
	}
	for _, id := range suites {
		if id == tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 || id == tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 {
			return true
		}
	}
	return false
}

// ParseTLSVersion accepts "1.2", "1.3" and the Go/Kubernetes spellings
// "VersionTLS12", "VersionTLS13". Empty means TLS 1.2. Older versions are refused:
// the API server has not needed them for years.
func ParseTLSVersion(s string) (uint16, error) {
	switch s {
	case "", "1.2", "VersionTLS12":
		return tls.VersionTLS12, nil
	case "1.3", "VersionTLS13":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("unsupported TLS version %q: want 1.2 or 1.3", s)
}

// ParseCipherSuites maps a comma-separated list of IANA cipher suite names to ids.
// Empty means Go's defaults. Suites Go considers insecure are refused.
func ParseCipherSuites(list string) ([]uint16, error) {
	if strings.TrimSpace(list) == "" {
		return nil, nil
	}
	known := map[string]uint16{}
	for _, cs := range tls.CipherSuites() {
		known[cs.Name] = cs.ID
	}
	var ids []uint16
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		id, ok := known[name]
		if !ok {
			return nil, fmt.Errorf("unknown or insecure TLS cipher suite %q", name)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// clientCARecheck is how often, at most, ClientCAs looks at its file again. A
// handshake is rare (the API server keeps its connections), so a stat per
// handshake would also do; the bound keeps a reconnect storm from hammering it.
const clientCARecheck = 5 * time.Second

// ClientCAs is the pool of --client-ca-file: the CAs whose client certificates
// may call /mutate (the API server's, from its admission kubeconfig). The file is
// looked at again on a handshake at most every clientCARecheck and reloaded when
// it changed (kubelet's Secret and ConfigMap volumes swap a symlink); a file that
// turns unreadable or invalid keeps the last good pool and is logged.
type ClientCAs struct {
	path    string
	logger  *slog.Logger
	recheck time.Duration

	mu      sync.Mutex
	pool    *x509.CertPool
	info    os.FileInfo // of the loaded file, to tell a change
	checked time.Time
}

// LoadClientCAs reads the PEM CA certificates in path. It fails when the file is
// missing, unreadable or holds no certificate, so a bad flag stops the start.
func LoadClientCAs(path string, logger *slog.Logger) (*ClientCAs, error) {
	if logger == nil {
		logger = slog.Default()
	}
	c := &ClientCAs{path: path, logger: logger, recheck: clientCARecheck}
	pool, info, err := readCAFile(path)
	if err != nil {
		return nil, err
	}
	c.pool, c.info, c.checked = pool, info, time.Now()
	return c, nil
}

func readCAFile(path string) (*x509.CertPool, os.FileInfo, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, nil, fmt.Errorf("client CA file: %w", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("client CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, nil, fmt.Errorf("client CA file %s: no PEM certificate in it", path)
	}
	return pool, info, nil
}

// Pool returns the current pool, reloading the file first if it changed.
func (c *ClientCAs) Pool() *x509.CertPool {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if now.Sub(c.checked) < c.recheck {
		return c.pool
	}
	c.checked = now
	info, err := os.Stat(c.path)
	if err == nil && os.SameFile(info, c.info) && info.ModTime().Equal(c.info.ModTime()) && info.Size() == c.info.Size() {
		return c.pool
	}
	pool, info, err := readCAFile(c.path)
	if err != nil {
		c.logger.Warn("keeping the previous client CAs", "error", err.Error())
		return c.pool
	}
	c.pool, c.info = pool, info
	c.logger.Info("reloaded client CAs", "path", c.path)
	return c.pool
}

// RequireClientCerts makes cfg verify client certificates against cas. They are
// verified when given, not required by the handshake, so that probes of the TLS
// port's /healthz and /readyz work without one; the server refuses /mutate
// without a verified certificate (Server.RequireClientCert). A certificate from
// another CA fails the handshake.
//
// Once the file has been reloaded, handshakes use a copy of cfg with the new
// pool; one copy serves every handshake until the pool changes again, rather
// than a clone per handshake (a Clone copies the whole configuration). Session
// tickets are sealed with cfg's keys whichever copy serves the handshake
// (crypto/tls uses the original Config's automatic keys), so connections
// resume across reloads.
func RequireClientCerts(cfg *tls.Config, cas *ClientCAs) {
	cfg.ClientAuth = tls.VerifyClientCertIfGiven
	cfg.ClientCAs = cas.Pool()
	base := cfg.Clone()
	// current is the copy of base for the latest reloaded pool.
	type poolConfig struct {
		pool *x509.CertPool
		cfg  *tls.Config
	}
	var current atomic.Pointer[poolConfig]
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		pool := cas.Pool()
		if pool == base.ClientCAs {
			return nil, nil // unchanged: the listener's own configuration
		}
		cur := current.Load()
		if cur != nil && cur.pool == pool {
			return cur.cfg, nil
		}
		c := base.Clone()
		c.ClientCAs = pool
		// Handshakes racing here may each build a copy; the last one stored
		// serves the next handshakes, which is as good.
		current.Store(&poolConfig{pool: pool, cfg: c})
		return c, nil
	}
}
