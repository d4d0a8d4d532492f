// Package oidc turns a cluster's service-account signing keys into the
// documents of an OpenID Connect issuer (discovery document and JWKS, exactly
// as kube-apiserver computes them), publishes them to a directory or an S3
// bucket, serves them, and computes the thumbprint IAM asks for.
package oidc

// Paths of the two documents under an issuer, as kube-apiserver serves them.
const (
	DiscoveryPath = ".well-known/openid-configuration"
	JWKSPath      = "openid/v1/jwks"
)

// Discovery is an OpenID Connect discovery document with the fields
// kube-apiserver serves, plus the two that self-hosted guides add.
type Discovery struct {
	Issuer                           string   `json:"issuer"`
	JWKSURI                          string   `json:"jwks_uri"`
	AuthorizationEndpoint            string   `json:"authorization_endpoint,omitempty"`
	ResponseTypesSupported           []string `json:"response_types_supported"`
	SubjectTypesSupported            []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported []string `json:"id_token_signing_alg_values_supported"`
	ClaimsSupported                  []string `json:"claims_supported,omitempty"`
}

// JWKS is a JSON Web Key Set of public signing keys.
type JWKS struct {
	Keys []JWK `json:"keys"`
}

// JWK is one public key in the member order kube-apiserver writes. Kid has no
// omitempty: a legacy key with "kid": "" must keep it, or AWS STS cannot
// verify tokens that carry no kid.
type JWK struct {
	Use string `json:"use"`
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Crv string `json:"crv,omitempty"`
	Alg string `json:"alg"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
}
