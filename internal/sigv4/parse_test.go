package sigv4

import (
	"net/http"
	"strings"
	"testing"
)

func TestParseAuthorizationHeader(t *testing.T) {
	const cred = "Credential=AKIDEXAMPLE/20260101/us-east-1/sts/aws4_request"
	const good = "AWS4-HMAC-SHA256 " + cred + ", SignedHeaders=host;x-amz-date, Signature=abcd"
	withDate := http.Header{"X-Amz-Date": {"20260101T120000Z"}}
	tests := []struct {
		name    string
		auth    string
		header  http.Header
		message string // "" when the header must parse
	}{
		{name: "SDK layout", auth: good, header: withDate},
		{name: "no spaces after commas", auth: "AWS4-HMAC-SHA256 " + cred + ",SignedHeaders=host,Signature=abcd", header: withDate},
		{name: "parts in another order", auth: "AWS4-HMAC-SHA256 Signature=abcd, SignedHeaders=host, " + cred, header: withDate},
		{name: "unknown part ignored", auth: good + ", Extra=1", header: withDate},
		{name: "Date header instead of X-Amz-Date", auth: good, header: http.Header{"Date": {"Thu, 01 Jan 2026 12:00:00 GMT"}}},
		{name: "algorithm only", auth: "AWS4-HMAC-SHA256", header: withDate,
			message: "Authorization header requires 'Credential' parameter. Authorization header requires 'Signature' parameter. Authorization header requires 'SignedHeaders' parameter. Authorization=AWS4-HMAC-SHA256"},
		{name: "no date", auth: "AWS4-HMAC-SHA256 " + cred + ", SignedHeaders=host", header: http.Header{},
			message: "Authorization header requires 'Signature' parameter. Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. Authorization=AWS4-HMAC-SHA256 " + cred + ", SignedHeaders=host"},
		{name: "empty signature", auth: "AWS4-HMAC-SHA256 " + cred + ", SignedHeaders=host, Signature=", header: withDate,
			message: "Authorization header requires 'Signature' parameter. Authorization=AWS4-HMAC-SHA256 " + cred + ", SignedHeaders=host, Signature="},
		{name: "other scheme", auth: "Bearer eyJhbGciOi", header: withDate, message: "Unsupported AWS 'algorithm': 'Bearer'"},
		{name: "SigV4a", auth: "AWS4-ECDSA-P256-SHA256 " + cred, header: withDate, message: "Unsupported AWS 'algorithm': 'AWS4-ECDSA-P256-SHA256'"},
		{name: "missing equal sign", auth: "AWS4-HMAC-SHA256 AKIDEXAMPLE/20260101/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=abcd", header: withDate,
			message: "'AKIDEXAMPLE/20260101/us-east-1/sts/aws4_request' not a valid key=value pair (missing equal-sign) in Authorization header: 'AWS4-HMAC-SHA256 AKIDEXAMPLE/20260101/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=abcd'."},
		{name: "repeated signature", auth: good + ", Signature=ef01", header: withDate,
			message: "Authorization header contains the 'Signature' parameter more than once. Authorization=" + good + ", Signature=ef01"},
		{name: "credential with 4 elements", auth: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/sts, SignedHeaders=host, Signature=abcd", header: withDate,
			message: "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got 'AKIDEXAMPLE/20260101/us-east-1/sts'"},
		{name: "X-Amz-Date in extended format", auth: good, header: http.Header{"X-Amz-Date": {"2026-01-01T12:00:00Z"}},
			message: "Date must be in ISO-8601 'basic format'. Got '2026-01-01T12:00:00Z'. See http://en.wikipedia.org/wiki/ISO_8601"},
		{name: "X-Amz-Date with trailing garbage", auth: good, header: http.Header{"X-Amz-Date": {"20260101T120000Zx"}},
			message: "Date must be in ISO-8601 'basic format'. Got '20260101T120000Zx'. See http://en.wikipedia.org/wiki/ISO_8601"},
		{name: "Date header not an HTTP date", auth: good, header: http.Header{"Date": {"yesterday"}},
			message: "Date must be in ISO-8601 'basic format'. Got 'yesterday'. See http://en.wikipedia.org/wiki/ISO_8601"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := parseAuthorizationHeader(tc.auth, tc.header)
			if tc.message != "" {
				if err == nil {
					t.Fatalf("parsed %+v, want IncompleteSignature", s)
				}
				wantCode(t, err, CodeIncompleteSignature, tc.message)
				return
			}
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if s.credential.accessKeyID != "AKIDEXAMPLE" || s.credential.scope != "20260101/us-east-1/sts/aws4_request" ||
				s.signature != "abcd" || s.amzDate != "20260101T120000Z" || !hasHost(s.signedHeaders) {
				t.Fatalf("parsed %+v", s)
			}
		})
	}
}

// FuzzParseAuthorization feeds arbitrary Authorization and X-Amz-Date
// values: parsing must never panic, and what it accepts must be consistent.
func FuzzParseAuthorization(f *testing.F) {
	f.Add("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/sts/aws4_request, SignedHeaders=host;x-amz-date, Signature=abcd", "20260101T120000Z")
	f.Add("AWS4-HMAC-SHA256 Credential=/////, SignedHeaders=;;, Signature==", "20260101T120000Z")
	f.Add("AWS4-HMAC-SHA256", "")
	f.Fuzz(func(t *testing.T, authorization, amzDate string) {
		s, err := parseAuthorizationHeader(authorization, http.Header{"X-Amz-Date": {amzDate}})
		if err != nil {
			if err.Code == "" || err.Message == "" {
				t.Fatalf("error without code or message: %+v", err)
			}
			return
		}
		c := s.credential
		if got := strings.Join([]string{c.date, c.region, c.service, c.terminator}, "/"); got != c.scope {
			t.Fatalf("scope %q, parts give %q", c.scope, got)
		}
		if len(s.amzDate) != len(amzDateFormat) || s.signedAt.Format(amzDateFormat) != s.amzDate {
			t.Fatalf("date %q parsed as %v", s.amzDate, s.signedAt)
		}
	})
}
