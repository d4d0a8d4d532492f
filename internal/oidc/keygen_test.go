package oidc

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGenerateKeyPair(t *testing.T) {
	tests := []struct {
		typ      KeyType
		privType string // PEM block type of the private key
		check    func(pub any) bool
	}{
		{KeyTypeRSA, "RSA PRIVATE KEY", func(pub any) bool { k, ok := pub.(*rsa.PublicKey); return ok && k.N.BitLen() == 2048 }},
		{"", "RSA PRIVATE KEY", func(pub any) bool { _, ok := pub.(*rsa.PublicKey); return ok }},
		{KeyTypeECDSA, "EC PRIVATE KEY", func(pub any) bool { k, ok := pub.(*ecdsa.PublicKey); return ok && k.Curve == elliptic.P256() }},
	}
	for _, tt := range tests {
		t.Run(string(tt.typ), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "new", "pki") // created as needed
			g, err := GenerateKeyPair(dir, tt.typ)
			if err != nil {
				t.Fatal(err)
			}
			if g.PrivateFile != filepath.Join(dir, "sa.key") || g.PublicFile != filepath.Join(dir, "sa.pub") {
				t.Errorf("files %s, %s", g.PrivateFile, g.PublicFile)
			}
			for file, mode := range map[string]os.FileMode{g.PrivateFile: 0o600, g.PublicFile: 0o644} {
				st, err := os.Stat(file)
				if err != nil {
					t.Fatal(err)
				}
				if st.Mode().Perm() != mode {
					t.Errorf("%s: mode %v, want %v", file, st.Mode().Perm(), mode)
				}
			}
			priv, err := os.ReadFile(g.PrivateFile)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(priv), "-----BEGIN "+tt.privType+"-----\n") {
				t.Errorf("private key file starts %q, want a %s block", priv[:30], tt.privType)
			}
			// Both files load as the same key, with the kid reported.
			for _, f := range []string{g.PrivateFile, g.PublicFile} {
				keys, err := LoadKeys(f)
				if err != nil {
					t.Fatal(err)
				}
				if len(keys) != 1 || !tt.check(keys[0]) {
					t.Fatalf("%s holds %T keys %v", f, keys, keys)
				}
				if kid, _ := KeyID(keys[0]); kid != g.KeyID {
					t.Errorf("%s: kid %s, reported %s", f, kid, g.KeyID)
				}
			}
		})
	}
}

// TestGenerateKeyPairNeverOverwrites: an existing sa.key or sa.pub is named
// in the error, left as it was, and no other file is written.
func TestGenerateKeyPairNeverOverwrites(t *testing.T) {
	for _, existing := range []string{"sa.key", "sa.pub"} {
		t.Run(existing, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, existing)
			if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := GenerateKeyPair(dir, KeyTypeRSA)
			if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "already exists") {
				t.Fatalf("error = %v, want one naming %s", err, path)
			}
			if b, _ := os.ReadFile(path); string(b) != "precious" {
				t.Errorf("%s was overwritten", path)
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 1 {
				t.Errorf("directory holds %d files, want only %s", len(entries), existing)
			}
		})
	}
}

func TestGenerateKeyPairRejects(t *testing.T) {
	if _, err := GenerateKeyPair(t.TempDir(), "ed25519"); err == nil || !strings.Contains(err.Error(), `unknown key type "ed25519"`) {
		t.Errorf("error = %v", err)
	}
	if _, err := GenerateKeyPair("", KeyTypeRSA); err == nil {
		t.Error("empty directory accepted")
	}
	// A file where the directory should be.
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := GenerateKeyPair(file, KeyTypeECDSA); err == nil {
		t.Error("a file as directory accepted")
	}
}
