package testcluster

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
)

// saKeys is the service-account token signing key and where it is written
// for kube-apiserver's --service-account-signing-key-file and
// --service-account-key-file.
type saKeys struct {
	key                 *rsa.PrivateKey
	keyFile, publicFile string
}

// newSAKeys generates an RSA 2048 key and writes both halves into dir.
// envtest generates an ECDSA key (ES256 tokens) and does not expose it; the
// tests verify tokens signed the way kube-apiserver signs by default on real
// clusters, RS256, and publish the key as the issuer would.
func newSAKeys(dir string) (*saKeys, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generating the service-account key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("encoding the service-account public key: %w", err)
	}
	k := &saKeys{key: key, keyFile: filepath.Join(dir, "sa.key"), publicFile: filepath.Join(dir, "sa.pub")}
	files := map[string][]byte{
		k.keyFile:    pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}),
		k.publicFile: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}),
	}
	for name, data := range files {
		if err := os.WriteFile(name, data, 0o600); err != nil {
			return nil, fmt.Errorf("writing %s: %w", name, err)
		}
	}
	return k, nil
}

// KeyID returns the "kid" that kube-apiserver puts in the header of tokens
// signed with pub: the unpadded base64url SHA-256 of its PKIX DER encoding.
func KeyID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("encoding the public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:]), nil
}

// jwks renders pub as a JSON Web Key Set with one RS256 signing key, in the
// form kube-apiserver serves at /openid/v1/jwks.
func jwks(pub *rsa.PublicKey) ([]byte, error) {
	kid, err := KeyID(pub)
	if err != nil {
		return nil, err
	}
	type jwk struct {
		Use string `json:"use"`
		Kty string `json:"kty"`
		Kid string `json:"kid"`
		Alg string `json:"alg"`
		N   string `json:"n"`
		E   string `json:"e"`
	}
	e := big.NewInt(int64(pub.E)).Bytes()
	return json.Marshal(struct {
		Keys []jwk `json:"keys"`
	}{Keys: []jwk{{
		Use: "sig",
		Kty: "RSA",
		Kid: kid,
		Alg: "RS256",
		N:   base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		E:   base64.RawURLEncoding.EncodeToString(e),
	}}})
}
