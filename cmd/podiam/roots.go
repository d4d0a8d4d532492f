package main

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"

	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// The image has no /etc/ssl/certs, yet podiam auth (AWS STS), the agent on
// EKS (EKS Auth) and podiam oidc (S3, an issuer's thumbprint) verify public
// servers. Mozilla's roots, as golang.org/x/crypto/x509roots/fallback ships
// them, are the fallback: crypto/x509 uses a fallback pool only when it finds
// no system roots (and GODEBUG=x509usefallbackroots=1 forces it), so a host's
// or a mounted bundle still wins.
//
// We do not import the fallback package itself: its init parses every root
// and keeps the parsed certificates (about 480 KB of live heap in every
// process). AppendCertsFromPEM keeps only the DER and parses a root again the
// first time a verification needs it (about 220 KB), which matters for the
// agent's memory on every node.
func init() {
	x509.SetFallbackRoots(fallbackRoots())
}

// fallbackRoots returns the bundle's roots as a lazily parsed pool; a root
// with a constraint (a distrust-after date) is added parsed, with it.
func fallbackRoots() *x509.CertPool {
	pool := x509.NewCertPool()
	var plain bytes.Buffer
	for root := range bundle.Roots() {
		if root.Constraint == nil {
			_ = pem.Encode(&plain, &pem.Block{Type: "CERTIFICATE", Bytes: root.Certificate}) // a bytes.Buffer does not fail
			continue
		}
		cert, err := x509.ParseCertificate(root.Certificate)
		if err != nil { // the bundle is generated and tested upstream
			panic(fmt.Sprintf("fallback root does not parse: %v", err))
		}
		pool.AddCertWithConstraint(cert, root.Constraint)
	}
	if !pool.AppendCertsFromPEM(plain.Bytes()) {
		panic("fallback roots: none parsed")
	}
	return pool
}
