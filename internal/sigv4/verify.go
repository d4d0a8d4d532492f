// Package sigv4 verifies AWS Signature Version 4 on incoming requests, in the
// Authorization header form and in the presigned query form, as AWS STS does.
// Signing is left to aws-sdk-go-v2's aws/signer/v4.
package sigv4

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// SecretLookup returns the secret access key of accessKeyID. sessionToken is
// the X-Amz-Security-Token sent with the request ("" when absent); the lookup
// validates it. An unknown key id must be reported as ErrUnknownAccessKey();
// any error returned is passed through Verify unchanged, so the STS can
// answer ExpiredToken and the like.
type SecretLookup func(ctx context.Context, accessKeyID, sessionToken string) (secret string, err error)

// Identity is who signed a verified request.
type Identity struct {
	// AccessKeyID is the key id from the credential scope.
	AccessKeyID string
	// SessionToken is X-Amz-Security-Token ("" when absent).
	SessionToken string
	// Region and Service are from the credential scope.
	Region  string
	Service string
	// SignedAt is the request time (X-Amz-Date).
	SignedAt time.Time
}

// DefaultService is the service name the package-level Verify accepts.
const DefaultService = "sts"

// MaxSkew is how far the request time may be from now, either way. AWS STS
// applies it to presigned URLs too, whatever their X-Amz-Expires.
const MaxSkew = 15 * time.Minute

// MaxPresignExpires is the largest X-Amz-Expires accepted (7 days).
const MaxPresignExpires = 604800

// unsignedPayload is the payload hash of a request that does not sign its body.
const unsignedPayload = "UNSIGNED-PAYLOAD"

// emptyPayloadHash is the hex SHA-256 of an empty body.
const emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// Verifier verifies SigV4 for one service, caching derived signing keys. It is
// safe for concurrent use.
type Verifier struct {
	service        string
	enforceExpires bool
	keys           *keyCache
}

// Option configures a Verifier.
type Option func(*Verifier)

// WithPresignExpiry makes presigned requests fail once X-Amz-Expires seconds
// have passed since X-Amz-Date. AWS STS ignores X-Amz-Expires (a presigned
// STS URL lives for the 15-minute skew window), so this is off by default.
func WithPresignExpiry() Option {
	return func(v *Verifier) { v.enforceExpires = true }
}

// NewVerifier returns a Verifier accepting credential scopes for service.
func NewVerifier(service string, opts ...Option) *Verifier {
	v := &Verifier{service: service, keys: newKeyCache()}
	for _, opt := range opts {
		opt(v)
	}
	return v
}

var defaultVerifier = NewVerifier(DefaultService)

// Verify checks the SigV4 signature of r for service "sts" (see
// Verifier.Verify).
func Verify(r *http.Request, body []byte, now time.Time, lookup SecretLookup) (*Identity, error) {
	return defaultVerifier.Verify(r, body, now, lookup)
}

// Verify checks the SigV4 signature of r, whose body has already been read
// into body, at time now. lookup is called with r.Context() once the request
// is well formed and within the clock skew. Failures are *Error values with
// AWS's codes, or the lookup's own errors unchanged.
func (v *Verifier) Verify(r *http.Request, body []byte, now time.Time, lookup SecretLookup) (*Identity, error) {
	if lookup == nil {
		return nil, errors.New("sigv4: nil SecretLookup")
	}
	s, query, err := v.parse(r)
	if err != nil {
		return nil, err
	}
	if err := v.checkScope(s, now); err != nil {
		return nil, err
	}
	if s.credential.accessKeyID == "" {
		return nil, ErrUnknownAccessKey()
	}
	secret, lerr := lookup(r.Context(), s.credential.accessKeyID, s.sessionToken)
	if lerr != nil {
		return nil, lerr
	}
	if secret == "" {
		return nil, ErrUnknownAccessKey()
	}
	hash, err := payloadHash(r, body)
	if err != nil {
		return nil, err
	}

	k := keyCacheKey{secret: secret, date: s.credential.date, region: s.credential.region, service: s.credential.service}
	key, cached := v.keys.get(k)
	ok := signatureMatches(key, r, query, s, hash)
	// A presigned URL's signer may have used UNSIGNED-PAYLOAD without saying
	// so (as S3 presigning does); with no body there is nothing it could
	// leave unsigned, so that reading is accepted too.
	if !ok && s.presigned && hash == emptyPayloadHash && len(body) == 0 {
		ok = signatureMatches(key, r, query, s, unsignedPayload)
	}
	if !ok {
		return nil, mismatch("", "signature does not match the request signed by %s", s.credential.accessKeyID)
	}
	if !cached {
		v.keys.put(k, key)
	}
	return &Identity{
		AccessKeyID:  s.credential.accessKeyID,
		SessionToken: s.sessionToken,
		Region:       s.credential.region,
		Service:      s.credential.service,
		SignedAt:     s.signedAt,
	}, nil
}

// parse finds the request's signature in the Authorization header or in the
// query, refusing requests carrying both or neither.
func (v *Verifier) parse(r *http.Request) (*signature, url.Values, *Error) {
	if r == nil || r.URL == nil {
		return nil, nil, &Error{Code: CodeMissingAuthenticationToken, Message: MessageMissingAuthenticationToken, Reason: "no request"}
	}
	var query url.Values
	var queryErr error
	if r.URL.RawQuery != "" {
		// ParseQuery keeps the pairs it could read, enough to tell which
		// form the request uses; the error is reported once that is known.
		query, queryErr = url.ParseQuery(r.URL.RawQuery)
	}
	authorization := r.Header[headerAuthorization]
	presigned := isPresigned(query)

	var s *signature
	var err *Error
	switch {
	case len(authorization) > 0 && presigned:
		return nil, nil, incomplete(
			"Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified",
			"both an Authorization header and presigned query parameters")
	case len(authorization) > 1:
		return nil, nil, incomplete(
			"Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified",
			"%d Authorization headers", len(authorization))
	case len(authorization) == 1 && strings.TrimSpace(authorization[0]) != "":
		s, err = parseAuthorizationHeader(authorization[0], r.Header)
	case presigned:
		s, err = parsePresignedQuery(query, r.Header)
	default:
		return nil, nil, &Error{Code: CodeMissingAuthenticationToken, Message: MessageMissingAuthenticationToken, Reason: "request is not signed"}
	}
	if err != nil {
		return nil, nil, err
	}
	if queryErr != nil {
		// The signer's canonical query cannot be rebuilt from a query that
		// does not parse, so no signature can match it.
		return nil, nil, mismatch("", "query string does not parse: %v", queryErr)
	}
	return s, query, nil
}

// checkScope checks the credential scope and the request time against now.
func (v *Verifier) checkScope(s *signature, now time.Time) *Error {
	c := s.credential
	if c.terminator != scopeTerminator {
		return mismatch(
			fmt.Sprintf("Credential should be scoped with a valid terminator: '%s', not '%s'.", scopeTerminator, c.terminator),
			"credential scope terminator %q", c.terminator)
	}
	if c.service != v.service {
		return mismatch(
			fmt.Sprintf("Credential should be scoped to correct service: '%s'. ", v.service),
			"credential scope service %q, want %q", c.service, v.service)
	}
	if !validRegion(c.region) {
		return mismatch(
			fmt.Sprintf("Credential should be scoped to a valid region, not '%s'. ", c.region),
			"credential scope region %q is not a region name", c.region)
	}
	if day := s.amzDate[:8]; c.date != day {
		return mismatch(
			fmt.Sprintf("Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '%s' != '%s', from '%s'.", c.date, day, s.amzDate),
			"credential scope date %q differs from request date %q", c.date, day)
	}
	if !hasHost(s.signedHeaders) {
		return incomplete("'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.", "host is not a signed header")
	}

	now = now.UTC()
	minutes := int(MaxSkew / time.Minute)
	if earliest := now.Add(-MaxSkew); s.signedAt.Before(earliest) {
		return mismatch(
			fmt.Sprintf("Signature expired: %s is now earlier than %s (%s - %d min.)", s.amzDate, earliest.Format(amzDateFormat), now.Format(amzDateFormat), minutes),
			"request time %s is more than %v before now %s", s.amzDate, MaxSkew, now.Format(amzDateFormat))
	}
	if latest := now.Add(MaxSkew); s.signedAt.After(latest) {
		return mismatch(
			fmt.Sprintf("Signature not yet current: %s is still later than %s (%s + %d min.)", s.amzDate, latest.Format(amzDateFormat), now.Format(amzDateFormat), minutes),
			"request time %s is more than %v after now %s", s.amzDate, MaxSkew, now.Format(amzDateFormat))
	}
	if v.enforceExpires && s.presigned && s.expires >= 0 {
		if expiry := s.signedAt.Add(time.Duration(s.expires) * time.Second); now.After(expiry) {
			return mismatch(
				fmt.Sprintf("Signature expired: %s is now earlier than %s (%s - %d sec.)", s.amzDate, now.Add(-time.Duration(s.expires)*time.Second).Format(amzDateFormat), now.Format(amzDateFormat), s.expires),
				"presigned request expired at %s", expiry.Format(amzDateFormat))
		}
	}
	return nil
}

// validRegion accepts region names such as us-east-1 or a local emulator's
// own: lower-case letters, digits and dashes.
func validRegion(region string) bool {
	if region == "" || len(region) > 64 {
		return false
	}
	for i := 0; i < len(region); i++ {
		c := region[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func hasHost(signedHeaders []string) bool {
	for _, name := range signedHeaders {
		if name == "host" {
			return true
		}
	}
	return false
}

// payloadHash returns the payload hash to put in the canonical request. A
// client may state it in X-Amz-Content-Sha256; the statement must then be
// true of the body received, or the signature would not cover the body.
// UNSIGNED-PAYLOAD is accepted only for an empty body, because the form body
// of an STS request holds the action and its parameters.
func payloadHash(r *http.Request, body []byte) (string, *Error) {
	sum := sha256.Sum256(body)
	var buf [64]byte
	hex.Encode(buf[:], sum[:])
	actual := string(buf[:])
	stated := r.Header.Get(headerContentSHA256)
	switch {
	case stated == "":
		return actual, nil
	case stated == unsignedPayload:
		if len(body) > 0 {
			return "", mismatch("", "UNSIGNED-PAYLOAD with a non-empty body")
		}
		return unsignedPayload, nil
	case !strings.EqualFold(stated, actual):
		return "", mismatch("", "X-Amz-Content-Sha256 does not match the body")
	}
	return stated, nil
}

// signatureMatches computes the signature of r with the signing key and
// compares it in constant time with the one the client sent.
func signatureMatches(key *signingKey, r *http.Request, query url.Values, s *signature, payloadHash string) bool {
	want := computeSignature(key, r, query, s, payloadHash)
	return subtle.ConstantTimeCompare(want[:], []byte(s.signature)) == 1
}

// computeSignature returns the lower-case hex signature of r: the HMAC of the
// string to sign
//
//	AWS4-HMAC-SHA256 \n X-Amz-Date \n scope \n hex(SHA-256(canonical request))
func computeSignature(key *signingKey, r *http.Request, query url.Values, s *signature, payloadHash string) [2 * sha256.Size]byte {
	var canonicalBuf [1024]byte
	canonical := canonicalRequest(canonicalBuf[:0], r, query, s, payloadHash)
	canonicalHash := sha256.Sum256(canonical)

	var toSignBuf [256]byte
	toSign := append(toSignBuf[:0], Algorithm...)
	toSign = append(toSign, '\n')
	toSign = append(toSign, s.amzDate...)
	toSign = append(toSign, '\n')
	toSign = append(toSign, s.credential.scope...)
	toSign = append(toSign, '\n')
	toSign = hex.AppendEncode(toSign, canonicalHash[:])

	sum := key.sum(toSign)
	var out [2 * sha256.Size]byte
	hex.Encode(out[:], sum[:])
	return out
}
