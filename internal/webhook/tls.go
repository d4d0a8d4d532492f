package webhook

import (
	"crypto/tls"
	"fmt"
	"strings"
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
