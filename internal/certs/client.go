package certs

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"time"
)

// IssueClientCert returns a new client certificate for commonName and its key,
// both PEM: a certificate for TLS client authentication, as kube-apiserver
// presents to a webhook run with --client-ca-file. The bundle's current CA
// signs it; it is valid from now for validity, but never past the CA's expiry.
// The bundle is not modified.
func (b *Bundle) IssueClientCert(commonName string, validity time.Duration, now time.Time) (certPEM, keyPEM []byte, err error) {
	if len(b.CAs) == 0 || b.CAKey == nil {
		return nil, nil, errors.New("no CA to sign the client certificate")
	}
	l, err := b.sign("client", &x509.Certificate{
		Subject:     pkix.Name{CommonName: commonName},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, validity, now)
	if err != nil {
		return nil, nil, err
	}
	return l.certPEM, l.keyPEM, nil
}
