package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
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
// SSL_CERT_DIR say: crypto/x509 loads system roots once per process, and
// the fallback can be set once only. rootsRegisterEnv=1 makes the child call
// useFallbackRoots first, as the commands that dial public TLS do.
const (
	rootsChildEnv    = "PODIAM_TEST_ROOTS_CHILD"
	rootsRegisterEnv = "PODIAM_TEST_ROOTS_REGISTER"
)

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
	if os.Getenv(rootsRegisterEnv) == "1" {
		useFallbackRoots()
	}
	err := verifyWithSystemRoots(amazonRoot(t))
	switch {
	case want == "trusted" && err != nil:
		t.Fatalf("Amazon Root CA 1 not trusted: %v", err)
	case want == "untrusted" && err == nil:
		t.Fatal("Amazon Root CA 1 trusted, although the system has roots of its own or nothing installed the fallback")
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
	missing := filepath.Join(dir, "missing.pem")
	for _, tc := range []struct {
		name, certFile, certDir, register, want string
	}{
		{"no system roots: the bundle's", missing, empty, "1", "trusted"},
		{"empty bundle file: the bundle's", emptyFile, filepath.Join(dir, "missing"), "1", "trusted"},
		{"system roots of its own: those only", ownCA, empty, "1", "untrusted"},
		// podiam version, the webhook, the agent with podiam auth: nothing
		// parsed at start, so no fallback either.
		{"not installed by a command that does not dial public TLS", missing, empty, "", "untrusted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestFallbackRootsChild$", "-test.count=1", "-test.v")
			cmd.Env = append(os.Environ(), rootsChildEnv+"="+tc.want, rootsRegisterEnv+"="+tc.register,
				"SSL_CERT_FILE="+tc.certFile, "SSL_CERT_DIR="+tc.certDir, "GODEBUG=")
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "--- PASS: TestFallbackRootsChild") {
				t.Fatalf("child: %v\n%s", err, out)
			}
		})
	}
}

// TestFallbackRootsCommands: the commands that dial public TLS install the
// fallback roots before anything else (the arguments make each fail right
// after); the others never do.
func TestFallbackRootsCommands(t *testing.T) {
	calls := 0
	saved := useFallbackRoots
	useFallbackRoots = func() { calls++ }
	t.Cleanup(func() { useFallbackRoots = saved })
	missing := filepath.Join(t.TempDir(), "missing.pem")
	for _, tc := range []struct {
		name string
		args []string
		want int
	}{
		{"auth (AWS STS)", []string{"auth", "--cluster-name="}, 1},
		{"agent on EKS (EKS Auth)", []string{"agent", "--backend=eks"}, 1},
		{"agent server on EKS", []string{"agent", "server", "--backend=eks"}, 1},
		{"agent with podiam auth", []string{"agent", "--backend=podiam"}, 0},
		{"oidc publish (S3)", []string{"oidc", "publish", "--issuer", "http://not-https.example.com", "--to", "s3://bucket"}, 1},
		{"oidc thumbprint", []string{"oidc", "thumbprint", "--ca-file", missing, "https://oidc.example.com"}, 1},
		{"sts (public issuers' JWKS)", []string{"sts", "--config", missing}, 1},
		{"version", []string{"version", "-o", "yaml"}, 0},
		{"policy check", []string{"policy", "check"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls = 0
			root := newRootCommand()
			root.SetOut(io.Discard)
			root.SetErr(io.Discard)
			root.SetArgs(tc.args)
			if err := root.Execute(); err == nil {
				t.Fatal("the arguments were meant to fail before any work")
			}
			if calls != tc.want {
				t.Errorf("useFallbackRoots called %d times, want %d", calls, tc.want)
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
