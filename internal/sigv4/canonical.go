package sigv4

import (
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// canonicalRequest appends the SigV4 canonical request to buf:
//
//	METHOD \n URI \n QUERY \n HEADERS \n SIGNEDHEADERS \n PAYLOADHASH
//
// query is the parsed query string; presigned requests leave X-Amz-Signature
// out of it. It follows what aws-sdk-go-v2's signer builds for services
// other than S3.
func canonicalRequest(buf []byte, r *http.Request, query url.Values, s *signature, payloadHash string) []byte {
	buf = append(buf, r.Method...)
	buf = append(buf, '\n')
	buf = appendCanonicalURI(buf, r.URL)
	buf = append(buf, '\n')
	buf = appendCanonicalQuery(buf, query, s.presigned)
	buf = append(buf, '\n')
	for _, name := range s.signedHeaders {
		buf = append(buf, name...)
		buf = append(buf, ':')
		buf = appendCanonicalHeaderValue(buf, r, name)
		buf = append(buf, '\n')
	}
	buf = append(buf, '\n')
	buf = append(buf, s.signedHeadersList...)
	buf = append(buf, '\n')
	buf = append(buf, payloadHash...)
	return buf
}

// appendCanonicalURI writes the path as the client sent it, escaped once more
// in AWS's style: SigV4 for every service but S3 escapes the already-escaped
// path again, which is what the SDK does.
func appendCanonicalURI(buf []byte, u *url.URL) []byte {
	path := u.EscapedPath()
	if path == "" {
		return append(buf, '/')
	}
	for i := 0; i < len(path); i++ {
		c := path[i]
		if c == '/' || isUnreserved(c) {
			buf = append(buf, c)
			continue
		}
		buf = appendPercent(buf, c)
	}
	return buf
}

// appendCanonicalQuery writes the query parameters URI-encoded per RFC 3986
// (space as %20), sorted by encoded name then encoded value.
func appendCanonicalQuery(buf []byte, query url.Values, presigned bool) []byte {
	if len(query) == 0 {
		return buf
	}
	type param struct{ key, value string }
	params := make([]param, 0, len(query))
	for key, values := range query {
		if presigned && key == querySignature {
			continue
		}
		encodedKey := uriEncode(key)
		for _, value := range values {
			params = append(params, param{encodedKey, uriEncode(value)})
		}
	}
	slices.SortFunc(params, func(a, b param) int {
		if c := strings.Compare(a.key, b.key); c != 0 {
			return c
		}
		return strings.Compare(a.value, b.value)
	})
	for i, p := range params {
		if i > 0 {
			buf = append(buf, '&')
		}
		buf = append(buf, p.key...)
		buf = append(buf, '=')
		buf = append(buf, p.value...)
	}
	return buf
}

// wellKnownHeaders maps lower-case names the SDKs sign to their canonical
// MIME form, sparing an allocation per header on the hot path.
var wellKnownHeaders = map[string]string{
	"accept-encoding":       "Accept-Encoding",
	"amz-sdk-invocation-id": "Amz-Sdk-Invocation-Id",
	"amz-sdk-request":       "Amz-Sdk-Request",
	"content-length":        "Content-Length",
	"content-type":          "Content-Type",
	"x-amz-content-sha256":  "X-Amz-Content-Sha256",
	"x-amz-date":            "X-Amz-Date",
	"x-amz-security-token":  "X-Amz-Security-Token",
	"x-amz-user-agent":      "X-Amz-User-Agent",
}

// appendCanonicalHeaderValue writes the values of one signed header: each
// value trimmed with inner runs of spaces collapsed, several values (repeated
// header lines) joined with commas, as the SDK signs them. net/http moves
// Host and (sometimes) Content-Length out of r.Header, so those come from
// the request fields.
func appendCanonicalHeaderValue(buf []byte, r *http.Request, name string) []byte {
	if name == "host" {
		host := r.Host
		if host == "" {
			host = r.URL.Host
		}
		return appendTrimmed(buf, host)
	}
	key, ok := wellKnownHeaders[name]
	if !ok {
		key = textproto.CanonicalMIMEHeaderKey(name)
	}
	values := r.Header[key]
	if len(values) == 0 && name == "content-length" && r.ContentLength >= 0 {
		return strconv.AppendInt(buf, r.ContentLength, 10)
	}
	for i, v := range values {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = appendTrimmed(buf, v)
	}
	return buf
}

// appendTrimmed writes v without leading and trailing white space and with
// every run of spaces collapsed to one (the SDK's StripExcessSpaces followed by
// TrimSpace).
func appendTrimmed(buf []byte, v string) []byte {
	v = strings.TrimSpace(v)
	space := false
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == ' ' {
			if !space {
				buf = append(buf, c)
			}
			space = true
			continue
		}
		space = false
		buf = append(buf, c)
	}
	return buf
}

// uriEncode escapes s per RFC 3986 as SigV4 wants: everything but the
// unreserved characters, with uppercase hex digits.
func uriEncode(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if !isUnreserved(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	buf := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isUnreserved(c) {
			buf = append(buf, c)
		} else {
			buf = appendPercent(buf, c)
		}
	}
	return string(buf)
}

func isUnreserved(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

func appendPercent(buf []byte, c byte) []byte {
	const hex = "0123456789ABCDEF"
	return append(buf, '%', hex[c>>4], hex[c&15])
}
