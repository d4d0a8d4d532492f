package sigv4

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Algorithm is the only signing algorithm accepted.
const Algorithm = "AWS4-HMAC-SHA256"

// scopeTerminator ends every SigV4 credential scope.
const scopeTerminator = "aws4_request"

// amzDateFormat is the ISO 8601 basic format of X-Amz-Date.
const amzDateFormat = "20060102T150405Z"

// Presigned-URL query parameters.
const (
	queryAlgorithm     = "X-Amz-Algorithm"
	queryCredential    = "X-Amz-Credential"
	queryDate          = "X-Amz-Date"
	queryExpires       = "X-Amz-Expires"
	querySignedHeaders = "X-Amz-SignedHeaders"
	querySignature     = "X-Amz-Signature"
	querySecurityToken = "X-Amz-Security-Token"
)

// Request headers (canonical MIME form, as net/http stores them).
const (
	headerAuthorization = "Authorization"
	headerAmzDate       = "X-Amz-Date"
	headerDate          = "Date"
	headerSecurityToken = "X-Amz-Security-Token"
	headerContentSHA256 = "X-Amz-Content-Sha256"
)

// credentialScope is the parsed `AKID/date/region/service/aws4_request`.
type credentialScope struct {
	accessKeyID string
	date        string // YYYYMMDD
	region      string
	service     string
	terminator  string
	// scope is "date/region/service/terminator", as written into the string
	// to sign.
	scope string
}

// signature is what a request claims: who signed it, when, over which
// headers, in which form. It holds no secret.
type signature struct {
	presigned     bool
	credential    credentialScope
	signedHeaders []string // lower-case names, as listed by the client
	// signedHeadersList is the client's SignedHeaders text, written verbatim
	// into the canonical request.
	signedHeadersList string
	signature         string
	// amzDate is the request time in ISO 8601 basic format, as written into
	// the string to sign; signedAt is the same time parsed.
	amzDate  string
	signedAt time.Time
	// expires is X-Amz-Expires in seconds, or -1 when absent.
	expires      int64
	sessionToken string
}

// parseCredential splits `AKID/date/region/service/aws4_request`.
func parseCredential(credential string) (credentialScope, *Error) {
	parts := strings.Split(credential, "/")
	if len(parts) != 5 {
		return credentialScope{}, incomplete(
			fmt.Sprintf("Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '%s'", credential),
			"credential has %d slash-delimited elements, want 5", len(parts))
	}
	return credentialScope{
		accessKeyID: parts[0],
		date:        parts[1],
		region:      parts[2],
		service:     parts[3],
		terminator:  parts[4],
		scope:       credential[len(parts[0])+1:],
	}, nil
}

// parseSignedHeaders splits the `a;b;c` list into lower-case names.
func parseSignedHeaders(list string) []string {
	names := strings.Split(list, ";")
	for i, name := range names {
		names[i] = strings.ToLower(name)
	}
	return names
}

// parseAmzDate parses an ISO 8601 basic-format time.
func parseAmzDate(value string) (time.Time, *Error) {
	t, err := time.Parse(amzDateFormat, value)
	if err != nil || len(value) != len(amzDateFormat) {
		return time.Time{}, incomplete(
			fmt.Sprintf("Date must be in ISO-8601 'basic format'. Got '%s'. See http://en.wikipedia.org/wiki/ISO_8601", value),
			"X-Amz-Date %q is not in ISO 8601 basic format", value)
	}
	return t, nil
}

// parseAuthorizationHeader parses the header form:
//
//	AWS4-HMAC-SHA256 Credential=AKID/date/region/service/aws4_request, SignedHeaders=a;b, Signature=hex
//
// The request time comes from X-Amz-Date, or failing that from Date.
func parseAuthorizationHeader(authorization string, header http.Header) (*signature, *Error) {
	algorithm, rest, _ := strings.Cut(strings.TrimSpace(authorization), " ")
	if algorithm != Algorithm {
		return nil, incomplete(
			fmt.Sprintf("Unsupported AWS 'algorithm': '%s'", algorithm),
			"Authorization header algorithm %q is not %s", algorithm, Algorithm)
	}

	var credential, signedHeaders, sig string
	var haveCredential, haveSignedHeaders, haveSignature bool
	for pair := range strings.SplitSeq(rest, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		key, value, ok := strings.Cut(pair, "=")
		if !ok {
			return nil, incomplete(
				fmt.Sprintf("'%s' not a valid key=value pair (missing equal-sign) in Authorization header: '%s'.", pair, authorization),
				"Authorization header has a part without '='")
		}
		// Keys are matched exactly, as AWS does; a repeated key is refused
		// rather than resolved, so two parsers can never disagree on it.
		var dst *string
		var seen *bool
		switch key {
		case "Credential":
			dst, seen = &credential, &haveCredential
		case "SignedHeaders":
			dst, seen = &signedHeaders, &haveSignedHeaders
		case "Signature":
			dst, seen = &sig, &haveSignature
		default:
			continue
		}
		if *seen {
			return nil, incomplete(
				fmt.Sprintf("Authorization header contains the '%s' parameter more than once. Authorization=%s", key, authorization),
				"Authorization header repeats %s", key)
		}
		*dst, *seen = value, true
	}

	amzDate := header.Get(headerAmzDate)
	httpDate := header.Get(headerDate)

	// AWS lists every missing part in one message, ending with the header.
	var missing strings.Builder
	var missingNames []string
	if !haveCredential || credential == "" {
		missing.WriteString("Authorization header requires 'Credential' parameter. ")
		missingNames = append(missingNames, "Credential")
	}
	if !haveSignature || sig == "" {
		missing.WriteString("Authorization header requires 'Signature' parameter. ")
		missingNames = append(missingNames, "Signature")
	}
	if !haveSignedHeaders || signedHeaders == "" {
		missing.WriteString("Authorization header requires 'SignedHeaders' parameter. ")
		missingNames = append(missingNames, "SignedHeaders")
	}
	if amzDate == "" && httpDate == "" {
		missing.WriteString("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. ")
		missingNames = append(missingNames, "X-Amz-Date")
	}
	if missing.Len() > 0 {
		missing.WriteString("Authorization=")
		missing.WriteString(authorization)
		return nil, incomplete(missing.String(), "missing %s", strings.Join(missingNames, ", "))
	}

	scope, serr := parseCredential(credential)
	if serr != nil {
		return nil, serr
	}
	s := &signature{
		credential:        scope,
		signedHeaders:     parseSignedHeaders(signedHeaders),
		signedHeadersList: signedHeaders,
		signature:         sig,
		expires:           -1,
		sessionToken:      header.Get(headerSecurityToken),
	}
	if amzDate != "" {
		t, derr := parseAmzDate(amzDate)
		if derr != nil {
			return nil, derr
		}
		s.amzDate, s.signedAt = amzDate, t
	} else {
		t, err := http.ParseTime(httpDate)
		if err != nil {
			return nil, incomplete(
				fmt.Sprintf("Date must be in ISO-8601 'basic format'. Got '%s'. See http://en.wikipedia.org/wiki/ISO_8601", httpDate),
				"Date header %q is not an HTTP date", httpDate)
		}
		s.signedAt = t.UTC()
		s.amzDate = s.signedAt.Format(amzDateFormat)
	}
	return s, nil
}

// isPresigned reports whether the query carries presigned-URL auth.
func isPresigned(query url.Values) bool {
	return query.Has(queryAlgorithm) || query.Has(querySignature) || query.Has(queryCredential)
}

// parsePresignedQuery parses the presigned query form (X-Amz-Algorithm,
// X-Amz-Credential, X-Amz-Date, X-Amz-SignedHeaders, X-Amz-Signature, and the
// optional X-Amz-Expires and X-Amz-Security-Token).
func parsePresignedQuery(query url.Values, header http.Header) (*signature, *Error) {
	// Each auth parameter must appear exactly once: a repeated one could be
	// read differently by another parser.
	get := func(name string, required bool) (string, *Error) {
		values := query[name]
		switch {
		case len(values) > 1:
			return "", incomplete(
				fmt.Sprintf("AWS query-string parameter '%s' must appear only once. Re-examine the query-string parameters.", name),
				"query parameter %s repeated", name)
		case required && (len(values) == 0 || values[0] == ""):
			return "", incomplete(
				fmt.Sprintf("AWS query-string parameters must include '%s'. Re-examine the query-string parameters.", name),
				"query parameter %s missing", name)
		case len(values) == 0:
			return "", nil
		}
		return values[0], nil
	}
	var values [7]string
	for i, p := range []struct {
		name     string
		required bool
	}{
		{queryAlgorithm, true}, {queryCredential, true}, {queryDate, true},
		{querySignedHeaders, true}, {querySignature, true},
		{queryExpires, false}, {querySecurityToken, false},
	} {
		v, err := get(p.name, p.required)
		if err != nil {
			return nil, err
		}
		values[i] = v
	}
	algorithm, credential, amzDate, signedHeaders, sig, expires, token :=
		values[0], values[1], values[2], values[3], values[4], values[5], values[6]

	if algorithm != Algorithm {
		return nil, incomplete(
			fmt.Sprintf("X-Amz-Algorithm only supports \"%s\"", Algorithm),
			"X-Amz-Algorithm %q is not %s", algorithm, Algorithm)
	}
	scope, err := parseCredential(credential)
	if err != nil {
		return nil, err
	}
	signedAt, err := parseAmzDate(amzDate)
	if err != nil {
		return nil, err
	}
	s := &signature{
		presigned:         true,
		credential:        scope,
		signedHeaders:     parseSignedHeaders(signedHeaders),
		signedHeadersList: signedHeaders,
		signature:         sig,
		amzDate:           amzDate,
		signedAt:          signedAt,
		expires:           -1,
		sessionToken:      token,
	}
	if s.sessionToken == "" {
		s.sessionToken = header.Get(headerSecurityToken)
	}
	if expires != "" {
		n, perr := strconv.ParseInt(expires, 10, 64)
		switch {
		case perr != nil || n < 0:
			return nil, incomplete("X-Amz-Expires should be a number", "X-Amz-Expires %q is not a number", expires)
		case n > MaxPresignExpires:
			return nil, incomplete(
				fmt.Sprintf("X-Amz-Expires must be less than a week (in seconds) that is %d", MaxPresignExpires),
				"X-Amz-Expires %d exceeds %d", n, MaxPresignExpires)
		}
		s.expires = n
	}
	return s, nil
}
