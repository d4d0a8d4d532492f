package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podiam/podiam/internal/oidc"
)

func TestOIDCDiscoveryCommand(t *testing.T) {
	rsaPub, _ := newOIDCKeyPair(t, oidc.KeyTypeRSA)
	ecPub, _ := newOIDCKeyPair(t, oidc.KeyTypeECDSA)
	jwksFile := filepath.Join(t.TempDir(), "keys.json")
	if err := os.WriteFile(jwksFile, []byte(libraryJWKS(t, true, ecPub, rsaPub)), 0o600); err != nil {
		t.Fatal(err)
	}
	const iss = "https://oidc.example.com/c1"
	const tail = `"response_types_supported":["id_token"],"subject_types_supported":["public"],"id_token_signing_alg_values_supported":`
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"defaults: RS256", []string{"--issuer", iss},
			`{"issuer":"` + iss + `","jwks_uri":"` + iss + `/openid/v1/jwks",` + tail + `["RS256"]}`},
		{"algorithms from keys", []string{"--issuer", iss, "--key", ecPub},
			`{"issuer":"` + iss + `","jwks_uri":"` + iss + `/openid/v1/jwks",` + tail + `["ES256"]}`},
		{"algorithms from a JWKS", []string{"--issuer", iss, "--jwks", jwksFile, "--jwks-uri", iss + "/keys.json"},
			`{"issuer":"` + iss + `","jwks_uri":"` + iss + `/keys.json",` + tail + `["ES256","RS256"]}`},
		{"self-hosted", []string{"--issuer", iss, "--jwks-uri", iss + "/keys.json", "--style", "self-hosted"},
			`{"issuer":"` + iss + `","jwks_uri":"` + iss + `/keys.json","authorization_endpoint":"urn:kubernetes:programmatic_authorization",` + tail + `["RS256"],"claims_supported":["sub","iss"]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := runOIDCCommand(t, append([]string{"oidc", "discovery"}, tt.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			if out != tt.want+"\n" {
				t.Errorf("got  %s\nwant %s", out, tt.want)
			}
		})
	}
}

func TestOIDCDiscoveryCommandRefuses(t *testing.T) {
	rsaPub, _ := newOIDCKeyPair(t, oidc.KeyTypeRSA)
	notJWKS := filepath.Join(t.TempDir(), "keys.json")
	if err := os.WriteFile(notJWKS, []byte(`{"keys":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want string
	}{
		{nil, `"issuer" not set`},
		{[]string{"--issuer", "http://oidc.example.com"}, "must start with https://"},
		{[]string{"--issuer", "https://oidc.example.com/"}, `ends with "/"`},
		{[]string{"--issuer", "https://oidc.example.com", "--style", "eks"}, `unknown discovery style "eks"`},
		{[]string{"--issuer", "https://oidc.example.com", "--jwks", notJWKS, "--key", rsaPub}, "use one"},
		{[]string{"--issuer", "https://oidc.example.com", "--jwks", notJWKS}, notJWKS + ": JWKS has no keys"},
		{[]string{"--issuer", "https://oidc.example.com", "--jwks-uri", "http://x/keys.json"}, "jwks_uri"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			out, err := runOIDCCommand(t, append([]string{"oidc", "discovery"}, tt.args...)...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want one containing %q", err, tt.want)
			}
			if out != "" {
				t.Errorf("printed %q on failure", out)
			}
		})
	}
}
