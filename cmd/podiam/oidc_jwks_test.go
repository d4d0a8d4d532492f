package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podiam/podiam/internal/oidc"
)

// newOIDCKeyPair writes a new key pair of type typ into a temporary directory
// and returns its public and private key files.
func newOIDCKeyPair(t *testing.T, typ oidc.KeyType) (pub, priv string) {
	t.Helper()
	g, err := oidc.GenerateKeyPair(t.TempDir(), typ)
	if err != nil {
		t.Fatal(err)
	}
	return g.PublicFile, g.PrivateFile
}

// libraryJWKS is the document the library makes for files, plus the newline.
func libraryJWKS(t *testing.T, legacy bool, files ...string) string {
	t.Helper()
	keys, err := oidc.LoadKeys(files...)
	if err != nil {
		t.Fatal(err)
	}
	set, err := oidc.NewJWKS(keys, legacy)
	if err != nil {
		t.Fatal(err)
	}
	b, err := set.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return string(b) + "\n"
}

func TestOIDCJWKSCommand(t *testing.T) {
	rsaPub, rsaKey := newOIDCKeyPair(t, oidc.KeyTypeRSA)
	ecPub, _ := newOIDCKeyPair(t, oidc.KeyTypeECDSA)
	tests := []struct {
		name   string
		args   []string
		legacy bool
		files  []string
		kids   int // keys in the output
	}{
		{"one key", []string{"--key", rsaPub}, false, []string{rsaPub}, 1},
		{"private and public are one key", []string{"--key", rsaKey, "--key", rsaPub}, false, []string{rsaPub}, 1},
		{"order does not matter", []string{"--key", ecPub, "--key", rsaPub}, false, []string{rsaPub, ecPub}, 2},
		{"legacy", []string{"--key", ecPub, "--key", rsaPub, "--legacy-empty-kid"}, true, []string{rsaPub, ecPub}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := runOIDCCommand(t, append([]string{"oidc", "jwks"}, tt.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			if want := libraryJWKS(t, tt.legacy, tt.files...); out != want {
				t.Errorf("got  %s\nwant %s", out, want)
			}
			set, err := oidc.ParseJWKS([]byte(out))
			if err != nil {
				t.Fatal(err)
			}
			if len(set.Keys) != tt.kids {
				t.Errorf("%d keys, want %d", len(set.Keys), tt.kids)
			}
			if strings.Contains(out, `"d"`) {
				t.Errorf("private member in output: %s", out)
			}
		})
	}
}

func TestOIDCJWKSCommandRefuses(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want string
	}{
		{nil, "no --key given"},
		{[]string{"--key", empty}, empty + ": file is empty"},
		{[]string{"--key", filepath.Join(dir, "missing.pem")}, "missing.pem"},
		{[]string{"extra"}, "unknown command"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			out, err := runOIDCCommand(t, append([]string{"oidc", "jwks"}, tt.args...)...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want one containing %q", err, tt.want)
			}
			if out != "" {
				t.Errorf("printed %q on failure", out)
			}
		})
	}
}
