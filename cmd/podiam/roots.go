package main

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"sync"

	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// The image has no /etc/ssl/certs, yet podiam auth (AWS STS), the agent on
// EKS (EKS Auth) and podiam oidc publish and thumbprint (S3, an issuer's
// certificate) verify public servers. Mozilla's roots, as
// golang.org/x/crypto/x509roots/fallback ships them, are the fallback:
// crypto/x509 uses a fallback pool only when it finds no system roots (and
// GODEBUG=x509usefallbackroots=1 forces it), so a host's or a mounted bundle
// still wins.
//
// We do not import the fallback package itself: its init parses every root
// and keeps the parsed certificates (about 480 KB of live heap in every
// process). AppendCertsFromPEM keeps only the DER and parses a root again the
// first time a verification needs it (about 220 KB). Even that costs about
// 3.5 ms of CPU and 1.5 MB of allocation, so it is paid only by the commands
// that dial public TLS, from their RunE, and not in init: `podiam version`,
// the webhook and the agent with --backend=podiam never pay it.

// useFallbackRoots installs the bundle's roots as crypto/x509's fallback, at
// most once per process (SetFallbackRoots panics when called twice). A
// variable so that the commands' tests can see which of them call it.
var useFallbackRoots = sync.OnceFunc(func() {
	x509.SetFallbackRoots(fallbackRoots())
})

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
