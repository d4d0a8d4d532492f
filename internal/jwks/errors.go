// Package jwks verifies JSON Web Tokens signed by an OpenID Connect issuer,
// such as Kubernetes service-account tokens, the way AWS STS does: it parses
// the compact JWS form without trusting it (Parse), fetches and caches the
// issuer's keys (KeySet over an HTTPSource or a KubeSource), refetches them,
// rate-limited, when a token names a key it does not know, and checks the
// signature with RS256, ES256, ES384 or ES512 only (Verify). Time claims are
// checked apart (Claims.CheckTime) because AWS checks the audience first.
//
// Parse decodes the claims a verifier reads (iss, sub, aud, exp, nbf, iat,
// kubernetes.io) into Claims' fields; any other claim is decoded only when
// asked for, by Claims.Claim.
//
// Errors map to AWS STS's answers: ErrFetch is the issuer being unreachable
// (IDPCommunicationError, which SDKs retry); ErrMalformed, ErrAlgorithm,
// ErrUnknownKey, ErrSignature, ErrNoExpiry, ErrNotYetValid and
// ErrIssuedInFuture are an invalid token (InvalidIdentityToken); ErrExpired
// is an expired one (ExpiredTokenException). A token without exp is
// ErrNoExpiry, not ErrExpired: it has no expiration date to report. A kid
// the cached keys lack, when the refetch is rate-limited, is ErrUnknownKey
// even if the last fetch failed: only a fetch failing for this very call,
// or keys never fetched, is ErrFetch.
package jwks

import "errors"

// Errors returned (wrapped, with details) by this package. Callers map them
// with errors.Is; the details never contain a whole token or key material.
var (
	// ErrMalformed: the token is not a JWS compact serialization with a JSON
	// header and JSON claims, or is larger than MaxTokenSize.
	ErrMalformed = errors.New("malformed token")
	// ErrAlgorithm: the token's alg is not RS256, ES256, ES384 or ES512
	// ("none", HS*, PS* and anything else), or does not match the type (or
	// curve) of the key the token names.
	ErrAlgorithm = errors.New("signing algorithm refused")
	// ErrUnknownKey: no key of the issuer matches the token's kid, even after
	// refetching the issuer's keys, or the cached keys lack it and the
	// refetch was rate-limited (whatever the last fetch's outcome).
	ErrUnknownKey = errors.New("no matching verification key")
	// ErrSignature: a key matches but the signature does not verify.
	ErrSignature = errors.New("signature does not verify")
	// ErrFetch: the issuer's keys could not be fetched (host unreachable,
	// TLS failure, bad status, oversized or unparsable documents, discovery
	// naming another issuer) and no cached key matches the token.
	ErrFetch = errors.New("fetching the issuer's keys failed")

	// ErrNoExpiry: the token has no exp claim. It does not wrap ErrExpired:
	// such a token is invalid, not expired.
	ErrNoExpiry = errors.New("token has no expiration time (exp)")
	// ErrExpired: exp is not after now (minus the leeway).
	ErrExpired = errors.New("token expired")
	// ErrNotYetValid: nbf is after now (plus the leeway).
	ErrNotYetValid = errors.New("token not yet valid")
	// ErrIssuedInFuture: iat is after now (plus the leeway).
	ErrIssuedInFuture = errors.New("token issued in the future")
)
