package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// rootsChildEnv makes the test binary, run again by TestFallbackRoots, do the
// verification in a process whose system roots are what SSL_CERT_FILE and
// SSL_CERT_DIR say: crypto/x509 loads system roots once per process.
const rootsChildEnv = "PODIAM_TEST_ROOTS_CHILD"

// amazonRoot is a public root from the bundle: the one AWS endpoints chain to.
func amazonRoot(t *testing.T) *x509.Certificate {
	t.Helper()
	for root := range bundle.Roots() {
		cert, err := x509.ParseCertificate(root.Certificate)
		if err != nil {
			t.Fatal(err)
		}
		if cert.Subject.CommonName == "Amazon Root CA 1" {
			return cert
		}
	}
	t.Fatal("Amazon Root CA 1 is not in the bundle")
	return nil
}

// verifyWithSystemRoots verifies cert as a TLS client does without RootCAs:
// against the system pool (or the fallback when there is none).
func verifyWithSystemRoots(cert *x509.Certificate) error {
	_, err := cert.Verify(x509.VerifyOptions{CurrentTime: cert.NotBefore.Add(time.Hour)})
	return err
}

// TestFallbackRootsChild is the child's side; it does nothing in a normal run.
func TestFallbackRootsChild(t *testing.T) {
	want := os.Getenv(rootsChildEnv)
	if want == "" {
		t.Skip("run by TestFallbackRoots")
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		t.Fatalf("SystemCertPool: %v", err)
	}
	if pool.Equal(x509.NewCertPool()) {
		t.Fatal("SystemCertPool is empty")
	}
	err = verifyWithSystemRoots(amazonRoot(t))
	switch {
	case want == "trusted" && err != nil:
		t.Fatalf("Amazon Root CA 1 not trusted: %v", err)
	case want == "untrusted" && err == nil:
		t.Fatal("Amazon Root CA 1 trusted although the system has its own roots")
	}
}

func TestFallbackRoots(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("SSL_CERT_FILE and SSL_CERT_DIR choose the system roots on Linux only; elsewhere the platform verifier decides")
	}
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	emptyFile := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(emptyFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ownCA := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ownCA, selfSignedPEM(t), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, certFile, certDir, want string
	}{
		{"no system roots: the bundle's", filepath.Join(dir, "missing.pem"), empty, "trusted"},
		{"empty bundle file: the bundle's", emptyFile, filepath.Join(dir, "missing"), "trusted"},
		{"system roots of its own: those only", ownCA, empty, "untrusted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestFallbackRootsChild$", "-test.count=1", "-test.v")
			cmd.Env = append(os.Environ(), rootsChildEnv+"="+tc.want, "SSL_CERT_FILE="+tc.certFile, "SSL_CERT_DIR="+tc.certDir, "GODEBUG=")
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "--- PASS: TestFallbackRootsChild") {
				t.Fatalf("child: %v\n%s", err, out)
			}
		})
	}
}

// TestFallbackRootsPool: every root of the bundle is in the pool, as the
// anchor of its own chain (a lazily parsed root that failed to parse would
// be missing).
func TestFallbackRootsPool(t *testing.T) {
	pool := fallbackRoots()
	n := 0
	for root := range bundle.Roots() {
		n++
		cert, err := x509.ParseCertificate(root.Certificate)
		if err != nil {
			t.Fatal(err)
		}
		opts := x509.VerifyOptions{Roots: pool, CurrentTime: cert.NotBefore.Add(time.Hour)}
		if _, err := cert.Verify(opts); err != nil {
			t.Errorf("%s: %v", cert.Subject, err)
		}
	}
	if n < 100 {
		t.Errorf("bundle has %d roots; want Mozilla's (over 100)", n)
	}
}

func selfSignedPEM(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "own root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
