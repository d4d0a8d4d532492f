package oidc

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Style selects the field set of a discovery document.
type Style string

const (
	// StyleAPIServer is the document kube-apiserver serves at
	// /.well-known/openid-configuration, byte for byte.
	StyleAPIServer Style = "apiserver"
	// StyleSelfHosted adds the authorization_endpoint and claims_supported
	// of the self-hosted guides (amazon-eks-pod-identity-webhook, EKS
	// Anywhere). AWS accepts both styles.
	StyleSelfHosted Style = "self-hosted"
)

// Values of the self-hosted style's extra fields.
const (
	selfHostedAuthorizationEndpoint = "urn:kubernetes:programmatic_authorization"
)

// DefaultJWKSURI returns <issuer>/openid/v1/jwks, where kube-apiserver
// serves the JWKS under its issuer.
func DefaultJWKSURI(issuer string) string {
	return strings.TrimSuffix(issuer, "/") + "/" + JWKSPath
}

// NewDiscovery returns the discovery document of issuer. jwksURI is where
// the JWKS is served, DefaultJWKSURI(issuer) when empty. The signing
// algorithms are those of jwks (sorted, as kube-apiserver lists them); a nil
// jwks means RS256 only, the algorithm of kube-apiserver's RSA keys, which is
// what clusters use unless they were given ECDSA keys.
func NewDiscovery(issuer, jwksURI string, jwks *JWKS, style Style) (*Discovery, error) {
	if err := ValidateIssuer(issuer); err != nil {
		return nil, err
	}
	if jwksURI == "" {
		jwksURI = DefaultJWKSURI(issuer)
	}
	if err := validateJWKSURI(jwksURI); err != nil {
		return nil, err
	}
	algs := []string{algRS256}
	if jwks != nil {
		if algs = jwks.Algorithms(); len(algs) == 0 {
			return nil, errors.New("the JWKS has no key with an \"alg\"; the discovery document needs at least one signing algorithm")
		}
	}
	d := &Discovery{
		Issuer:                           issuer,
		JWKSURI:                          jwksURI,
		ResponseTypesSupported:           []string{"id_token"},
		SubjectTypesSupported:            []string{"public"},
		IDTokenSigningAlgValuesSupported: algs,
	}
	switch style {
	case StyleAPIServer, "":
	case StyleSelfHosted:
		d.AuthorizationEndpoint = selfHostedAuthorizationEndpoint
		d.ClaimsSupported = []string{"sub", "iss"}
	default:
		return nil, fmt.Errorf("unknown discovery style %q; want %q or %q", style, StyleAPIServer, StyleSelfHosted)
	}
	return d, nil
}

// validateJWKSURI checks what kube-apiserver checks of
// --service-account-jwks-uri (https), plus a host, which AWS needs to fetch
// it.
func validateJWKSURI(uri string) error {
	u, err := url.Parse(uri)
	if err != nil {
		return fmt.Errorf("jwks_uri %q is not a URL: %w", uri, err)
	}
	if u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("jwks_uri %q must be an https:// URL with a host", uri)
	}
	if u.User != nil {
		return fmt.Errorf("jwks_uri %q contains user info; remove it", uri)
	}
	return nil
}

// Marshal returns the document as kube-apiserver serves it: compact JSON,
// members in its order, no trailing newline.
func (d *Discovery) Marshal() ([]byte, error) {
	if d == nil {
		return nil, errors.New("nil discovery document")
	}
	b, err := json.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("encoding the discovery document: %w", err)
	}
	return b, nil
}
