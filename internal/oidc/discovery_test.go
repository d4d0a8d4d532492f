package oidc

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// guideDiscovery is the discovery.json of the self-hosted guides (EKS
// Anywhere, amazon-eks-pod-identity-webhook's hack/self-hosted), with
// $ISSUER_HOSTPATH set to oidc.example.com/c1.
const guideDiscovery = `{
    "issuer": "https://oidc.example.com/c1",
    "jwks_uri": "https://oidc.example.com/c1/keys.json",
    "authorization_endpoint": "urn:kubernetes:programmatic_authorization",
    "response_types_supported": [
        "id_token"
    ],
    "subject_types_supported": [
        "public"
    ],
    "id_token_signing_alg_values_supported": [
        "RS256"
    ],
    "claims_supported": [
        "sub",
        "iss"
    ]
}`

func TestNewDiscovery(t *testing.T) {
	var guide bytes.Buffer
	if err := json.Compact(&guide, []byte(guideDiscovery)); err != nil {
		t.Fatal(err)
	}
	mixed, err := NewJWKS(loadTestKeys(t, "rsa.pub", "ec-p384.key", "ec-p256.pub", "rsa-pkcs1.key"), true)
	if err != nil {
		t.Fatal(err)
	}
	ecOnly, err := NewJWKS(loadTestKeys(t, "ec-p256.pub"), false)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, issuer, jwksURI string
		jwks                  *JWKS
		style                 Style
		want                  string
	}{
		{
			// kube-apiserver's openIDMetadata, json.Marshal'ed.
			name: "apiserver default", issuer: "https://kubernetes.default.svc",
			want: `{"issuer":"https://kubernetes.default.svc","jwks_uri":"https://kubernetes.default.svc/openid/v1/jwks","response_types_supported":["id_token"],"subject_types_supported":["public"],"id_token_signing_alg_values_supported":["RS256"]}`,
		},
		{
			name: "apiserver with keys", issuer: "https://oidc.example.com/c1", jwksURI: "https://127.0.0.1:6443/openid/v1/jwks", jwks: mixed, style: StyleAPIServer,
			want: `{"issuer":"https://oidc.example.com/c1","jwks_uri":"https://127.0.0.1:6443/openid/v1/jwks","response_types_supported":["id_token"],"subject_types_supported":["public"],"id_token_signing_alg_values_supported":["ES256","ES384","RS256"]}`,
		},
		{
			name: "ecdsa only", issuer: "https://oidc.example.com", jwks: ecOnly,
			want: `{"issuer":"https://oidc.example.com","jwks_uri":"https://oidc.example.com/openid/v1/jwks","response_types_supported":["id_token"],"subject_types_supported":["public"],"id_token_signing_alg_values_supported":["ES256"]}`,
		},
		{
			name: "self-hosted equals the guide", issuer: "https://oidc.example.com/c1", jwksURI: "https://oidc.example.com/c1/keys.json", style: StyleSelfHosted,
			want: guide.String(),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := NewDiscovery(tt.issuer, tt.jwksURI, tt.jwks, tt.style)
			if err != nil {
				t.Fatal(err)
			}
			got, err := d.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestNewDiscoveryRejects(t *testing.T) {
	tests := []struct {
		name, issuer, jwksURI string
		jwks                  *JWKS
		style                 Style
		want                  string
	}{
		{name: "http issuer", issuer: "http://x.example", want: "https://"},
		{name: "http jwks_uri", issuer: "https://x.example", jwksURI: "http://x.example/keys.json", want: "jwks_uri"},
		{name: "jwks_uri without host", issuer: "https://x.example", jwksURI: "https:///keys.json", want: "jwks_uri"},
		{name: "unknown style", issuer: "https://x.example", style: "eks", want: `unknown discovery style "eks"`},
		{name: "no algorithms", issuer: "https://x.example", jwks: &JWKS{Keys: []JWK{{Kty: "RSA"}}}, want: "no key with an"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewDiscovery(tt.issuer, tt.jwksURI, tt.jwks, tt.style)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}
