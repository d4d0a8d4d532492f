package certs

import (
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
	"time"
)

func TestIssueClientCert(t *testing.T) {
	b := fresh(t, t0) // the CA is valid for 300h from t0
	for _, tc := range []struct {
		name      string
		validity  time.Duration
		wantUntil time.Time
	}{
		{"within the CA's validity", time.Hour, t0.Add(time.Hour)},
		{"cut at the CA's expiry", 1000 * time.Hour, b.CAs[0].NotAfter},
	} {
		t.Run(tc.name, func(t *testing.T) {
			certPEM, keyPEM, err := b.IssueClientCert("kube-apiserver", tc.validity, t0)
			if err != nil {
				t.Fatal(err)
			}
			pair, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				t.Fatalf("the key does not match the certificate: %v", err)
			}
			c, err := x509.ParseCertificate(pair.Certificate[0])
			if err != nil {
				t.Fatal(err)
			}
			roots := x509.NewCertPool()
			roots.AddCert(b.CAs[0])
			_, err = c.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
			if err != nil {
				t.Errorf("not a client certificate of the bundle's CA: %v", err)
			}
			if c.Subject.CommonName != "kube-apiserver" || c.IsCA {
				t.Errorf("subject %q, IsCA %v", c.Subject.CommonName, c.IsCA)
			}
			if !c.NotAfter.Equal(tc.wantUntil) || !c.NotBefore.Equal(t0.Add(-backdate)) {
				t.Errorf("valid %v to %v, want %v to %v", c.NotBefore, c.NotAfter, t0.Add(-backdate), tc.wantUntil)
			}
		})
	}
	if _, _, err := (&Bundle{}).IssueClientCert("x", time.Hour, t0); err == nil || !strings.Contains(err.Error(), "no CA") {
		t.Errorf("a bundle without a CA: %v, want an error", err)
	}
}
