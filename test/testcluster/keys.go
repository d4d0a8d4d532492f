package testcluster

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"

	"github.com/podiam/podiam/internal/oidc"
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

// jwks renders pub as the JSON Web Key Set kube-apiserver serves at
// /openid/v1/jwks for that one key.
func jwks(pub *rsa.PublicKey) ([]byte, error) {
	set, err := oidc.NewJWKS([]crypto.PublicKey{pub}, false)
	if err != nil {
		return nil, err
	}
	return set.Marshal()
}
