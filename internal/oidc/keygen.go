package oidc

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// KeyType is the algorithm of a key pair made by GenerateKeyPair.
type KeyType string

const (
	// KeyTypeRSA is an RSA 2048 key (RS256 tokens): kube-apiserver's and
	// kubeadm's default, which every AWS guide assumes.
	KeyTypeRSA KeyType = "rsa"
	// KeyTypeECDSA is an ECDSA P-256 key (ES256 tokens).
	KeyTypeECDSA KeyType = "ecdsa"
)

// File names GenerateKeyPair writes, those kubeadm uses in /etc/kubernetes/pki.
const (
	PrivateKeyFile = "sa.key"
	PublicKeyFile  = "sa.pub"
)

// GeneratedKey describes a key pair written by GenerateKeyPair.
type GeneratedKey struct {
	// PrivateFile is the signing key, for kube-apiserver's
	// --service-account-signing-key-file (mode 0600; PKCS#1 "RSA PRIVATE
	// KEY" or SEC 1 "EC PRIVATE KEY", as kubeadm writes them).
	PrivateFile string
	// PublicFile is the public key ("PUBLIC KEY", PKIX), for
	// --service-account-key-file and `podiam oidc jwks --key`.
	PublicFile string
	// KeyID is the kid of tokens signed with the key.
	KeyID string
	// Public is the public key.
	Public crypto.PublicKey
}

// GenerateKeyPair creates a new service-account signing key of type t and
// writes it to dir/sa.key (mode 0600) and its public half to dir/sa.pub
// (mode 0644), creating dir (mode 0700) if needed. It never overwrites: if
// either file exists it writes nothing and the error names the file. If
// writing fails half-way, the file it created is removed.
func GenerateKeyPair(dir string, t KeyType) (*GeneratedKey, error) {
	if dir == "" {
		return nil, errors.New("no output directory given")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("output directory: %w", err)
	}
	g := &GeneratedKey{PrivateFile: filepath.Join(dir, PrivateKeyFile), PublicFile: filepath.Join(dir, PublicKeyFile)}
	for _, f := range []string{g.PrivateFile, g.PublicFile} {
		if _, err := os.Lstat(f); err == nil {
			return nil, fmt.Errorf("%s already exists; podiam never overwrites a key (move it away or choose another --out)", f)
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("checking %s: %w", f, err)
		}
	}

	var private crypto.Signer
	var privateBlock *pem.Block
	switch t {
	case KeyTypeRSA, "":
		k, err := rsa.GenerateKey(rand.Reader, MinRSABits)
		if err != nil {
			return nil, fmt.Errorf("generating an RSA key: %w", err)
		}
		private, privateBlock = k, &pem.Block{Type: blockRSAPrivate, Bytes: x509.MarshalPKCS1PrivateKey(k)}
	case KeyTypeECDSA:
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generating an ECDSA key: %w", err)
		}
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			return nil, fmt.Errorf("encoding the ECDSA key: %w", err)
		}
		private, privateBlock = k, &pem.Block{Type: blockECPrivate, Bytes: der}
	default:
		return nil, fmt.Errorf("unknown key type %q; want %q or %q", t, KeyTypeRSA, KeyTypeECDSA)
	}
	g.Public = private.Public()
	pubDER, err := x509.MarshalPKIXPublicKey(g.Public)
	if err != nil {
		return nil, fmt.Errorf("encoding the public key: %w", err)
	}
	if g.KeyID, err = KeyID(g.Public); err != nil {
		return nil, err
	}

	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	if err := writeNew(g.PrivateFile, pem.EncodeToMemory(privateBlock), 0o600); err != nil {
		return nil, err
	}
	if err := writeNew(g.PublicFile, pem.EncodeToMemory(&pem.Block{Type: blockPublicKey, Bytes: pubDER}), 0o644); err != nil {
		_ = os.Remove(g.PrivateFile)
		return nil, err
	}
	return g, nil
}

// writeNew creates name with mode perm (O_EXCL: an existing file, even one
// created since the caller checked, is never replaced) and writes data.
func writeNew(name string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s already exists; podiam never overwrites a key", name)
		}
		return fmt.Errorf("creating %s: %w", name, err)
	}
	// The umask may have narrowed perm; the private key must be 0600
	// whatever it is, the public key readable as asked.
	if err := f.Chmod(perm); err != nil {
		f.Close()
		_ = os.Remove(name)
		return fmt.Errorf("setting the mode of %s: %w", name, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		_ = os.Remove(name)
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(name)
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return nil
}
