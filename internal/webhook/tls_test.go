package webhook

import (
	"crypto/tls"
	"slices"
	"strings"
	"testing"
)

func TestParseTLSVersion(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    uint16
		wantErr bool
	}{
		{"", tls.VersionTLS12, false},
		{"1.2", tls.VersionTLS12, false},
		{"VersionTLS12", tls.VersionTLS12, false},
		{"1.3", tls.VersionTLS13, false},
		{"VersionTLS13", tls.VersionTLS13, false},
		{"1.0", 0, true},
		{"1.1", 0, true},
		{"VersionTLS10", 0, true},
		{"VersionTLS11", 0, true},
		{"1.4", 0, true},
		{"tls1.2", 0, true},
		{" 1.2", 0, true},
		{"versiontls12", 0, true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseTLSVersion(tc.in)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("ParseTLSVersion(%q) = %#x, %v; want %#x, error %v", tc.in, got, err, tc.want, tc.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), tc.in) {
				t.Errorf("error %q does not name the value", err)
			}
		})
	}
}

func TestParseCipherSuites(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		want    []uint16
		wantErr string
	}{
		{"empty", "", nil, ""},
		{"blank", "  ", nil, ""},
		{"one", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}, ""},
		{"several in order, with spaces", " TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 ,TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,  TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
			[]uint16{tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}, ""},
		{"TLS 1.3 suite name", "TLS_AES_128_GCM_SHA256", []uint16{tls.TLS_AES_128_GCM_SHA256}, ""},
		{"unknown", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_NOPE", nil, `"TLS_NOPE"`},
		{"insecure RC4", "TLS_RSA_WITH_RC4_128_SHA", nil, `"TLS_RSA_WITH_RC4_128_SHA"`},
		{"insecure 3DES", "TLS_RSA_WITH_3DES_EDE_CBC_SHA", nil, `"TLS_RSA_WITH_3DES_EDE_CBC_SHA"`},
		{"insecure CBC-SHA256", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", nil, `"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256"`},
		{"lower case", "tls_ecdhe_rsa_with_aes_128_gcm_sha256", nil, "tls_ecdhe_rsa_with_aes_128_gcm_sha256"},
		{"Go constant spelling with prefix", "tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", nil, "tls.TLS_"},
		{"empty item", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", nil, `""`},
		{"trailing comma", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,", nil, `""`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseCipherSuites(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseCipherSuites(%q) = %v, %v; want an error naming %s", tc.in, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("ParseCipherSuites(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
		})
	}
}

// Every suite Go considers secure is accepted by its IANA name; none of the
// insecure ones is.
func TestParseCipherSuitesAllKnown(t *testing.T) {
	for _, cs := range tls.CipherSuites() {
		if got, err := ParseCipherSuites(cs.Name); err != nil || !slices.Equal(got, []uint16{cs.ID}) {
			t.Errorf("%s: %v, %v", cs.Name, got, err)
		}
	}
	for _, cs := range tls.InsecureCipherSuites() {
		if got, err := ParseCipherSuites(cs.Name); err == nil {
			t.Errorf("insecure %s accepted as %v", cs.Name, got)
		}
	}
}

func TestTLSConfig(t *testing.T) {
	called := false
	getCert := func(*tls.ClientHelloInfo) (*tls.Certificate, error) { called = true; return nil, nil }
	cfg, err := TLSConfig("1.3", "TLS_AES_256_GCM_SHA384", getCert)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MinVersion != tls.VersionTLS13 || !slices.Equal(cfg.CipherSuites, []uint16{tls.TLS_AES_256_GCM_SHA384}) {
		t.Errorf("config %+v", cfg)
	}
	if !slices.Contains(cfg.NextProtos, "h2") || !slices.Contains(cfg.NextProtos, "http/1.1") {
		t.Errorf("NextProtos %v, want h2 and http/1.1", cfg.NextProtos)
	}
	if cfg.GetCertificate == nil {
		t.Fatal("no GetCertificate")
	}
	_, _ = cfg.GetCertificate(nil)
	if !called {
		t.Error("GetCertificate is not the one passed in")
	}
	if cfg.Certificates != nil || cfg.InsecureSkipVerify {
		t.Errorf("unexpected static certificates or verification settings: %+v", cfg)
	}
	for _, bad := range [][2]string{{"1.1", ""}, {"1.2", "TLS_RSA_WITH_RC4_128_SHA"}} {
		if cfg, err := TLSConfig(bad[0], bad[1], getCert); err == nil || cfg != nil {
			t.Errorf("TLSConfig(%q, %q) = %v, %v; want an error", bad[0], bad[1], cfg, err)
		}
	}
}

// HTTP/2 needs an ECDHE AES-128-GCM suite below TLS 1.3; without one the server
// must fall back to HTTP/1.1 instead of failing to start.
func TestTLSConfigHTTP2NeedsAES128GCM(t *testing.T) {
	tests := []struct {
		minVersion, suites string
		want               []string
	}{
		{"1.2", "", []string{"h2", "http/1.1"}},
		{"1.2", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", []string{"http/1.1"}},
		{"1.2", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", []string{"h2", "http/1.1"}},
		{"1.3", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", []string{"h2", "http/1.1"}},
	}
	for _, tt := range tests {
		cfg, err := TLSConfig(tt.minVersion, tt.suites, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(cfg.NextProtos, tt.want) {
			t.Errorf("TLSConfig(%s, %q).NextProtos = %q, want %q", tt.minVersion, tt.suites, cfg.NextProtos, tt.want)
		}
	}
}
