package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podiam/podiam/internal/oidc"
)

// runOIDCCommand runs the root command with args and returns stdout and the error.
func runOIDCCommand(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRootCommand()
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestOIDCKeygenCommand(t *testing.T) {
	tests := []struct {
		args    []string
		wantAlg string
	}{
		{nil, "RS256"},
		{[]string{"--type", "rsa"}, "RS256"},
		{[]string{"--type", "ecdsa"}, "ES256"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			dir := t.TempDir()
			out, err := runOIDCCommand(t, append([]string{"oidc", "keygen", "--out", dir}, tt.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			key, pub := filepath.Join(dir, "sa.key"), filepath.Join(dir, "sa.pub")
			for _, want := range []string{"--service-account-signing-key-file=" + key, "--service-account-key-file=" + pub} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			keys, err := oidc.LoadKeys(pub)
			if err != nil {
				t.Fatal(err)
			}
			set, err := oidc.NewJWKS(keys, false)
			if err != nil {
				t.Fatal(err)
			}
			if got := set.Keys[0].Alg; got != tt.wantAlg {
				t.Errorf("alg %s, want %s", got, tt.wantAlg)
			}
			if !strings.Contains(out, "kid "+set.Keys[0].Kid) {
				t.Errorf("output does not give the kid %s:\n%s", set.Keys[0].Kid, out)
			}
		})
	}
}

func TestOIDCKeygenCommandRefuses(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "sa.key")
	if err := os.WriteFile(existing, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--out", dir}, existing + " already exists"},
		{[]string{"--out", t.TempDir(), "--type", "dsa"}, `unknown key type "dsa"`},
		{nil, `"out" not set`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, err := runOIDCCommand(t, append([]string{"oidc", "keygen"}, tt.args...)...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want one containing %q", err, tt.want)
			}
		})
	}
	if b, _ := os.ReadFile(existing); string(b) != "old" {
		t.Error("existing key overwritten")
	}
}
