package oidc

import (
	"bytes"
	"crypto"
	"crypto/dsa" //nolint:staticcheck // only to name DSA keys in an error
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"
)

// MinRSABits is the smallest RSA modulus LoadKeys and NewJWKS accept: AWS
// STS and current Kubernetes guidance both need 2048 bits or more.
const MinRSABits = 2048

// maxKeyFileBytes bounds how much of a key file is read: a key file, even
// with a certificate chain in it, is a few kilobytes.
const maxKeyFileBytes = 1 << 20

// PEM block types LoadKeys understands.
const (
	blockPublicKey    = "PUBLIC KEY"            // PKIX SubjectPublicKeyInfo
	blockRSAPublicKey = "RSA PUBLIC KEY"        // PKCS#1
	blockRSAPrivate   = "RSA PRIVATE KEY"       // PKCS#1
	blockPrivateKey   = "PRIVATE KEY"           // PKCS#8
	blockECPrivate    = "EC PRIVATE KEY"        // SEC 1
	blockCertificate  = "CERTIFICATE"           // X.509
	blockECParameters = "EC PARAMETERS"         // written by `openssl ecparam -genkey`; no key in it
	blockEncrypted    = "ENCRYPTED PRIVATE KEY" // PKCS#8, encrypted
)

// oidDSA is the algorithm OID of DSA keys, which Go's PKCS#8 parser reports
// only by number.
const oidDSA = "1.2.840.10040.4.1"

// LoadKeys reads PEM files and returns the public keys in them, in file and
// block order: RSA keys of at least 2048 bits and ECDSA keys on P-256, P-384
// or P-521, from PUBLIC KEY, RSA PUBLIC KEY, RSA PRIVATE KEY, PRIVATE KEY, EC
// PRIVATE KEY and CERTIFICATE blocks (EC PARAMETERS blocks are skipped).
// Private keys are reduced to their public half. A file may hold several
// blocks; the same key may appear more than once (NewJWKS drops duplicates).
//
// The first problem found is the error, naming the file and, where it is
// about one block, its 1-based index and type: an empty file, a file with no
// PEM block, an encrypted key, a block type or key type kube-apiserver cannot
// sign with. Errors never contain key material.
func LoadKeys(files ...string) ([]crypto.PublicKey, error) {
	if len(files) == 0 {
		return nil, errors.New("no key file given")
	}
	var keys []crypto.PublicKey
	for _, name := range files {
		data, err := readKeyFile(name)
		if err != nil {
			return nil, err
		}
		k, err := parseKeys(name, data)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k...)
	}
	return keys, nil
}

// readKeyFile reads at most maxKeyFileBytes of name.
func readKeyFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("reading key file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading key file %s: %w", name, err)
	}
	if len(data) > maxKeyFileBytes {
		return nil, fmt.Errorf("key file %s: larger than %d bytes; not a key file", name, maxKeyFileBytes)
	}
	return data, nil
}

// parseKeys returns the public keys of the PEM data read from file name (used
// in errors only).
func parseKeys(name string, data []byte) ([]crypto.PublicKey, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("key file %s: file is empty", name)
	}
	var keys []crypto.PublicKey
	rest := data
	index := 0
	for {
		block, next := pem.Decode(rest)
		if block == nil {
			break
		}
		index++
		// pem.Decode skips a block it cannot read (bad base64, no END line)
		// and returns the next one: a second BEGIN in what it consumed is
		// such a block; name it rather than drop its key.
		if bytes.Count(rest[:len(rest)-len(next)], []byte("-----BEGIN")) > 1 {
			return nil, fmt.Errorf("key file %s: block %d is not valid PEM (bad base64 or missing END line)", name, index)
		}
		rest = next
		key, err := blockKey(block)
		if err != nil {
			return nil, fmt.Errorf("key file %s: block %d (%s): %w", name, index, quoteType(block.Type), err)
		}
		if key != nil {
			keys = append(keys, key)
		}
	}
	// pem.Decode stops quietly at a block it cannot read (bad base64, no END
	// line): say so rather than drop the key.
	if bytes.Contains(rest, []byte("-----BEGIN")) {
		return nil, fmt.Errorf("key file %s: block %d is not valid PEM (bad base64 or missing END line)", name, index+1)
	}
	switch {
	case index == 0:
		hint := ""
		if !utf8.Valid(data) || bytes.IndexByte(data, 0) >= 0 {
			hint = "; a binary (DER) key can be converted with `openssl pkey -inform DER -in FILE` (add -pubin for a public key)"
		}
		return nil, fmt.Errorf("key file %s: not PEM (no -----BEGIN line)%s", name, hint)
	case len(keys) == 0:
		return nil, fmt.Errorf("key file %s: no key in its %d PEM block(s)", name, index)
	}
	return keys, nil
}

// quoteType quotes a PEM block type for an error, cut short: the type is
// input too, and errors stay one readable line.
func quoteType(t string) string {
	const max = 40
	if len(t) > max {
		t = t[:max] + "..."
	}
	return fmt.Sprintf("%q", t)
}

// blockKey returns the public key of one PEM block, nil for a block that
// holds no key and is skipped.
func blockKey(block *pem.Block) (crypto.PublicKey, error) {
	if strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED") || block.Type == blockEncrypted {
		return nil, errors.New("the key is encrypted; kube-apiserver reads unencrypted keys only (decrypt it with `openssl pkey -in FILE -out PLAIN`, or give the public key)")
	}
	var (
		parsed any
		err    error
	)
	switch block.Type {
	case blockECParameters:
		return nil, nil
	case blockPublicKey:
		parsed, err = x509.ParsePKIXPublicKey(block.Bytes)
	case blockRSAPublicKey:
		parsed, err = x509.ParsePKCS1PublicKey(block.Bytes)
		if err != nil {
			// Some tools label a PKIX key "RSA PUBLIC KEY".
			if pkix, pkixErr := x509.ParsePKIXPublicKey(block.Bytes); pkixErr == nil {
				parsed, err = pkix, nil
			}
		}
	case blockRSAPrivate:
		parsed, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case blockPrivateKey:
		parsed, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case blockECPrivate:
		parsed, err = x509.ParseECPrivateKey(block.Bytes)
	case blockCertificate:
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			parsed = cert.PublicKey
		}
	default:
		return nil, fmt.Errorf("unsupported PEM block type; want one of %q, %q, %q, %q, %q, %q",
			blockPublicKey, blockRSAPublicKey, blockRSAPrivate, blockPrivateKey, blockECPrivate, blockCertificate)
	}
	if err != nil {
		// Name the key types Go's x509 only knows as OIDs or "unknown".
		switch msg := err.Error(); {
		case strings.Contains(msg, oidDSA):
			return nil, checkKey(&dsa.PublicKey{})
		case strings.Contains(msg, "unknown elliptic curve"):
			return nil, errors.New("ECDSA key on a curve other than P-256, P-384 or P-521: kube-apiserver cannot sign with it")
		}
		return nil, fmt.Errorf("cannot parse: %w", err)
	}
	if private, ok := parsed.(crypto.Signer); ok {
		parsed = private.Public()
	}
	if err := checkKey(parsed); err != nil {
		return nil, err
	}
	return parsed, nil
}

// checkKey returns nil if kube-apiserver can sign service-account tokens
// with pub and AWS STS can verify them: RSA of MinRSABits or more, ECDSA on
// P-256, P-384 or P-521.
func checkKey(pub any) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k == nil || k.N == nil {
			return errors.New("empty RSA key")
		}
		if bits := k.N.BitLen(); bits < MinRSABits {
			return fmt.Errorf("RSA key of %d bits; at least %d are needed", bits, MinRSABits)
		}
		return nil
	case *ecdsa.PublicKey:
		if k == nil || k.Curve == nil {
			return errors.New("empty ECDSA key")
		}
		_, _, err := curveParams(k.Curve)
		return err
	case ed25519.PublicKey:
		return errors.New("Ed25519 key: kube-apiserver signs service-account tokens with RSA or ECDSA (P-256, P-384, P-521) keys only")
	case *dsa.PublicKey:
		return errors.New("DSA key: kube-apiserver signs service-account tokens with RSA or ECDSA (P-256, P-384, P-521) keys only")
	case *ecdh.PublicKey:
		return errors.New("X25519/ECDH key: not a signing key; use RSA or ECDSA (P-256, P-384, P-521)")
	case nil:
		return errors.New("no key")
	default:
		return fmt.Errorf("unsupported key type %T: use RSA or ECDSA (P-256, P-384, P-521)", pub)
	}
}

// curveParams returns the JWK crv and the JWS alg of a curve kube-apiserver
// signs with.
func curveParams(c elliptic.Curve) (crv, alg string, err error) {
	switch c {
	case elliptic.P256():
		return "P-256", "ES256", nil
	case elliptic.P384():
		return "P-384", "ES384", nil
	case elliptic.P521():
		return "P-521", "ES512", nil
	}
	name := "unknown"
	if p := c.Params(); p != nil {
		name = p.Name
	}
	return "", "", fmt.Errorf("ECDSA key on curve %s: kube-apiserver signs with P-256, P-384 or P-521 only", name)
}

// KeyID returns the "kid" kube-apiserver gives pub: the unpadded base64url
// SHA-256 of its DER SubjectPublicKeyInfo (x509.MarshalPKIXPublicKey). Tokens
// signed with the key carry it in their header.
func KeyID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("encoding the public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:]), nil
}
