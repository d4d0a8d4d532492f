package testcluster

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
)

// TokenHeader is the JOSE header of a ServiceAccount token.
type TokenHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
}

// TokenClaims are the claims of a ServiceAccount token.
type TokenClaims struct {
	Iss        string   `json:"iss"`
	Sub        string   `json:"sub"`
	Aud        []string `json:"aud"`
	Exp        int64    `json:"exp"`
	Iat        int64    `json:"iat"`
	Nbf        int64    `json:"nbf"`
	Kubernetes struct {
		Namespace      string `json:"namespace"`
		ServiceAccount struct {
			Name string `json:"name"`
			UID  string `json:"uid"`
		} `json:"serviceaccount"`
		// Pod is set for tokens bound to a pod.
		Pod *struct {
			Name string `json:"name"`
			UID  string `json:"uid"`
		} `json:"pod"`
	} `json:"kubernetes.io"`
}

// VerifyToken checks a ServiceAccount token's RS256 signature with the
// cluster's signing key and returns its header and claims. It checks nothing
// else (issuer, audience, expiry): callers assert on the claims.
func (c *Cluster) VerifyToken(token string) (TokenHeader, TokenClaims, error) {
	return VerifyRS256(token, c.ServiceAccountPublicKey())
}

// VerifyRS256 checks a compact JWS signed with RS256 by key and decodes it.
func VerifyRS256(token string, key *rsa.PublicKey) (TokenHeader, TokenClaims, error) {
	var h TokenHeader
	var cl TokenClaims
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return h, cl, fmt.Errorf("token has %d parts, want 3", len(parts))
	}
	if err := decodeSegment(parts[0], &h); err != nil {
		return h, cl, fmt.Errorf("header: %w", err)
	}
	if h.Alg != "RS256" {
		return h, cl, fmt.Errorf("alg %q, want RS256", h.Alg)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return h, cl, fmt.Errorf("signature: %w", err)
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(key, crypto.SHA256, digest[:], sig); err != nil {
		return h, cl, fmt.Errorf("signature: %w", err)
	}
	if err := decodeSegment(parts[1], &cl); err != nil {
		return h, cl, fmt.Errorf("claims: %w", err)
	}
	return h, cl, nil
}

func decodeSegment(seg string, v any) error {
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, v)
}
