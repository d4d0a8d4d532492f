// Package certs gives the webhook its own serving certificate without
// cert-manager: a CA and a serving certificate kept in a Secret, the CA written
// into the caBundle of the MutatingWebhookConfiguration, both rotated before
// they expire. Replicas share the Secret; optimistic concurrency on it decides
// which replica's rotation wins, and the others adopt it.
package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"time"
)

// Secret data keys. tls.crt and tls.key make the Secret a standard
// kubernetes.io/tls Secret that other tools understand.
const (
	KeyCACert  = "ca.crt" // PEM bundle: the current CA first, then older CAs still valid
	KeyCAKey   = "ca.key"
	KeyTLSCert = "tls.crt"
	KeyTLSKey  = "tls.key"
)

// Bundle is the certificate material kept in the Secret.
type Bundle struct {
	// CAs are the trusted CAs, newest first; CAs[0] signs new serving certificates.
	CAs   []*x509.Certificate
	CAKey crypto.Signer
	Cert  *x509.Certificate
	Key   crypto.Signer
	// certPEM and keyPEM keep the serving pair's encoding for tls.X509KeyPair.
	certPEM, keyPEM []byte
}

// Policy says how long certificates live and what the serving certificate names.
type Policy struct {
	CAValidity   time.Duration
	CertValidity time.Duration
	DNSNames     []string
	IPs          []net.IP
}

// backdate is how far NotBefore precedes issuance, to tolerate clock skew
// between replicas and the API server.
const backdate = time.Minute

// renewAt is when a certificate enters its last third, the point at which it is
// replaced. The lifetime counts from issuance, not from the back-dated NotBefore:
// otherwise a certificate shorter than three minutes would be due at once.
func renewAt(c *x509.Certificate) time.Time {
	life := c.NotAfter.Sub(c.NotBefore.Add(backdate))
	return c.NotAfter.Add(-life / 3)
}

// Plan describes what Reconcile must change in a bundle.
type Plan struct {
	NewCA, NewCert bool
	// PrunedCAs counts expired CAs dropped from the bundle.
	PrunedCAs int
	Reason    string
}

// Changed reports whether the bundle must be rewritten.
func (p Plan) Changed() bool { return p.NewCA || p.NewCert || p.PrunedCAs > 0 }

// Decide returns what must change in b at time now. A nil bundle needs everything.
func Decide(b *Bundle, pol Policy, now time.Time) Plan {
	if b == nil || len(b.CAs) == 0 {
		return Plan{NewCA: true, NewCert: true, Reason: "no certificates"}
	}
	var p Plan
	if !now.Before(renewAt(b.CAs[0])) {
		p.NewCA, p.Reason = true, "CA enters its last third of validity"
	}
	for _, ca := range b.CAs {
		if !now.Before(ca.NotAfter) {
			p.PrunedCAs++
		}
	}
	switch {
	case p.NewCA && len(b.CAs) == p.PrunedCAs:
		// No valid CA left: the serving certificate cannot be trusted either.
		p.NewCert, p.Reason = true, "CA expired"
	case !now.Before(renewAt(b.Cert)):
		p.NewCert, p.Reason = true, "serving certificate enters its last third of validity"
	case !signedByAny(b.Cert, b.CAs, now):
		p.NewCert, p.Reason = true, "serving certificate not signed by a trusted CA"
	case !sameNames(b.Cert, pol):
		p.NewCert, p.Reason = true, "serving certificate names changed"
	}
	return p
}

// Apply carries out a plan, returning a new bundle; b is not modified.
func Apply(b *Bundle, p Plan, pol Policy, now time.Time) (*Bundle, error) {
	out := &Bundle{}
	if b != nil {
		*out = *b
		out.CAs = slices.Clone(b.CAs)
	}
	if p.NewCA {
		ca, key, err := newCA(pol.CAValidity, now)
		if err != nil {
			return nil, err
		}
		out.CAs = append([]*x509.Certificate{ca}, out.CAs...)
		out.CAKey = key
	}
	out.CAs = slices.DeleteFunc(out.CAs, func(c *x509.Certificate) bool { return !now.Before(c.NotAfter) })
	if p.NewCert {
		if len(out.CAs) == 0 || out.CAKey == nil {
			return nil, errors.New("no CA to sign the serving certificate")
		}
		if err := out.issue(pol, now); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// NewBundle returns a new CA and a serving certificate it signed.
func NewBundle(pol Policy, now time.Time) (*Bundle, error) {
	return Apply(nil, Decide(nil, pol, now), pol, now)
}

func newCA(validity time.Duration, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: fmt.Sprintf("podiam-webhook-ca@%d", now.Unix())},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("creating CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing CA certificate: %w", err)
	}
	return cert, key, nil
}

func (b *Bundle) issue(pol Policy, now time.Time) error {
	cn := "podiam-webhook"
	if len(pol.DNSNames) > 0 {
		cn = pol.DNSNames[0]
	}
	l, err := b.sign("serving", &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		DNSNames:    pol.DNSNames,
		IPAddresses: pol.IPs,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, pol.CertValidity, now)
	if err != nil {
		return err
	}
	b.Cert, b.Key, b.certPEM, b.keyPEM = l.cert, l.key, l.certPEM, l.keyPEM
	return nil
}

// leaf is a certificate signed by a bundle's CA, with its new key.
type leaf struct {
	cert            *x509.Certificate
	key             crypto.Signer
	certPEM, keyPEM []byte
}

// sign issues tmpl (its names and usages) for a new key, signed by the current
// CA: it sets the serial number and the validity, from now back-dated to
// validity ahead but never past the CA's own expiry. what names the
// certificate in errors.
func (b *Bundle) sign(what string, tmpl *x509.Certificate, validity time.Duration, now time.Time) (leaf, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return leaf{}, fmt.Errorf("generating %s key: %w", what, err)
	}
	tmpl.SerialNumber = serial()
	tmpl.NotBefore = now.Add(-backdate)
	tmpl.NotAfter = now.Add(validity)
	if ca := b.CAs[0]; tmpl.NotAfter.After(ca.NotAfter) {
		tmpl.NotAfter = ca.NotAfter // a certificate must not outlive its issuer
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, b.CAs[0], key.Public(), b.CAKey)
	if err != nil {
		return leaf{}, fmt.Errorf("creating %s certificate: %w", what, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return leaf{}, fmt.Errorf("parsing %s certificate: %w", what, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return leaf{}, fmt.Errorf("encoding %s key: %w", what, err)
	}
	return leaf{
		cert:    cert,
		key:     key,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic("certs: reading random serial: " + err.Error()) // crypto/rand does not fail on Linux
	}
	return n
}

func signedByAny(cert *x509.Certificate, cas []*x509.Certificate, now time.Time) bool {
	pool := x509.NewCertPool()
	for _, ca := range cas {
		pool.AddCert(ca)
	}
	_, err := cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	return err == nil
}

func sameNames(cert *x509.Certificate, pol Policy) bool {
	if !slices.Equal(cert.DNSNames, pol.DNSNames) || len(cert.IPAddresses) != len(pol.IPs) {
		return false
	}
	for i, ip := range cert.IPAddresses {
		if !ip.Equal(pol.IPs[i]) {
			return false
		}
	}
	return true
}

// CABundle returns the PEM of the trusted CAs, for the webhook's caBundle.
func (b *Bundle) CABundle() []byte {
	var buf bytes.Buffer
	for _, ca := range b.CAs {
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})
	}
	return buf.Bytes()
}

// TLSCertificate returns the serving pair for a TLS server.
func (b *Bundle) TLSCertificate() (*tls.Certificate, error) {
	c, err := tls.X509KeyPair(b.certPEM, b.keyPEM)
	if err != nil {
		return nil, fmt.Errorf("loading serving key pair: %w", err)
	}
	return &c, nil
}

// Encode returns the Secret data for b.
func (b *Bundle) Encode() (map[string][]byte, error) {
	caKey, err := x509.MarshalPKCS8PrivateKey(b.CAKey)
	if err != nil {
		return nil, fmt.Errorf("encoding CA key: %w", err)
	}
	return map[string][]byte{
		KeyCACert:  b.CABundle(),
		KeyCAKey:   pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: caKey}),
		KeyTLSCert: b.certPEM,
		KeyTLSKey:  b.keyPEM,
	}, nil
}

// Decode parses Secret data. Anything inconsistent (missing keys, bad PEM, a key
// that does not match its certificate) is an error: the caller replaces the
// Secret rather than serving from half of it.
func Decode(data map[string][]byte) (*Bundle, error) {
	var b Bundle
	var err error
	if b.CAs, err = parseCerts(data[KeyCACert]); err != nil {
		return nil, fmt.Errorf("%s: %w", KeyCACert, err)
	}
	if b.CAKey, err = parseKey(data[KeyCAKey]); err != nil {
		return nil, fmt.Errorf("%s: %w", KeyCAKey, err)
	}
	if !publicKeysEqual(b.CAs[0].PublicKey, b.CAKey.Public()) {
		return nil, fmt.Errorf("%s does not match the first certificate of %s", KeyCAKey, KeyCACert)
	}
	certs, err := parseCerts(data[KeyTLSCert])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", KeyTLSCert, err)
	}
	b.Cert = certs[0]
	if b.Key, err = parseKey(data[KeyTLSKey]); err != nil {
		return nil, fmt.Errorf("%s: %w", KeyTLSKey, err)
	}
	if !publicKeysEqual(b.Cert.PublicKey, b.Key.Public()) {
		return nil, fmt.Errorf("%s does not match %s", KeyTLSKey, KeyTLSCert)
	}
	b.certPEM, b.keyPEM = data[KeyTLSCert], data[KeyTLSKey]
	return &b, nil
}

func parseCerts(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("unexpected PEM block %q", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no certificate")
	}
	return certs, nil
}

func parseKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM key")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("key of type %T cannot sign", k)
	}
	return s, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}
