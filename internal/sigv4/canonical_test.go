package sigv4

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/smithy-go/logging"
)

// sdkCanonicalRequest signs req with the SDK and returns the canonical
// request the SDK logged, the reference the verifier must rebuild.
func sdkCanonicalRequest(t *testing.T, req *http.Request, body string) string {
	t.Helper()
	var logged string
	logger := logging.LoggerFunc(func(_ logging.Classification, format string, v ...any) {
		logged = fmt.Sprintf(format, v...)
	})
	err := v4.NewSigner().SignHTTP(context.Background(), userCreds, req, payloadSHA256(body), "sts", testRegion, signTime,
		func(o *v4.SignerOptions) { o.Logger, o.LogSigning = logger, true })
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	const start, end = "---[ CANONICAL STRING  ]-----------------------------\n", "\n---[ STRING TO SIGN ]"
	i, j := strings.Index(logged, start), strings.Index(logged, end)
	if i < 0 || j < i {
		t.Fatalf("no canonical string in the SDK's log: %q", logged)
	}
	return logged[i+len(start) : j]
}

// verifierCanonicalRequest is the canonical request the verifier builds for a
// received request.
func verifierCanonicalRequest(t *testing.T, r *http.Request, body []byte) string {
	t.Helper()
	s, perr := parseAuthorizationHeader(r.Header.Get("Authorization"), r.Header)
	if perr != nil {
		t.Fatalf("parse: %v", perr)
	}
	query, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		t.Fatalf("query: %v", err)
	}
	hash, herr := payloadHash(r, body)
	if herr != nil {
		t.Fatalf("payload hash: %v", herr)
	}
	return string(canonicalRequest(nil, r, query, s, hash))
}

func TestCanonicalRequestMatchesSDK(t *testing.T) {
	tests := []struct {
		name    string
		method  string
		target  string
		body    string
		headers [][2]string
		want    string // the expected canonical request; "" to compare with the SDK only
	}{
		{name: "GetCallerIdentity POST", method: http.MethodPost, target: "https://sts.amazonaws.com/", body: gciBody,
			want: "POST\n/\n\ncontent-length:43\ncontent-type:application/x-www-form-urlencoded; charset=utf-8\nhost:sts.amazonaws.com\nx-amz-date:20260101T120000Z\n\n" +
				"content-length;content-type;host;x-amz-date\n" + payloadSHA256(gciBody)},
		{name: "query sorted by key then value, space as %20", method: http.MethodGet, target: "https://sts.amazonaws.com/?b=2&a=z&a=y&c=x%20y+z&d=%7E%2A",
			want: "GET\n/\na=y&a=z&b=2&c=x%20y%20z&d=~%2A\nhost:sts.amazonaws.com\nx-amz-date:20260101T120000Z\n\nhost;x-amz-date\n" + payloadSHA256("")},
		{name: "path escaped twice", method: http.MethodGet, target: "https://sts.amazonaws.com/a%20b/%C3%A9/c",
			want: "GET\n/a%2520b/%25C3%25A9/c\n\nhost:sts.amazonaws.com\nx-amz-date:20260101T120000Z\n\nhost;x-amz-date\n" + payloadSHA256("")},
		{name: "repeated header trimmed and joined", method: http.MethodGet, target: "https://sts.amazonaws.com/",
			headers: [][2]string{{"X-Podiam-A", "  one   two  "}, {"X-Podiam-A", "three"}},
			want:    "GET\n/\n\nhost:sts.amazonaws.com\nx-amz-date:20260101T120000Z\nx-podiam-a:one two,three\n\nhost;x-amz-date;x-podiam-a\n" + payloadSHA256("")},
		{name: "session token and explicit port", method: http.MethodPost, target: "http://127.0.0.1:8080/", body: gciBody,
			headers: [][2]string{{"X-Amz-Security-Token", "tok"}, {"Amz-Sdk-Invocation-Id", "id"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := newClientRequest(t, tc.method, tc.target, tc.body)
			for _, h := range tc.headers {
				req.Header.Add(h[0], h[1])
			}
			sdk := sdkCanonicalRequest(t, req, tc.body)
			if tc.want != "" && sdk != tc.want {
				t.Fatalf("SDK canonical request changed:\n%q\nwant\n%q", sdk, tc.want)
			}
			r, body := toServer(t, req)
			if got := verifierCanonicalRequest(t, r, body); got != sdk {
				t.Fatalf("canonical request\n%q\nSDK built\n%q", got, sdk)
			}
		})
	}
}

func TestURIEncode(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"AZaz09-._~", "AZaz09-._~"},
		{"a b+c/d=e&f", "a%20b%2Bc%2Fd%3De%26f"},
		{"é€", "%C3%A9%E2%82%AC"},
		{"\x00\xff", "%00%FF"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			if got := uriEncode(tc.in); got != tc.want {
				t.Fatalf("uriEncode(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestAppendTrimmed(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"plain", "plain"},
		{"  a   b  ", "a b"},
		{"\ta \t b\t", "a \t b"},
		{"a  ,  b", "a , b"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			if got := string(appendTrimmed(nil, tc.in)); got != tc.want {
				t.Fatalf("appendTrimmed(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// printable reports whether v can travel in an HTTP header unchanged
// (net/http rewrites CR and LF, and refuses other control bytes).
func printable(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// FuzzSignVerifyRoundTrip signs requests with arbitrary paths, query
// parameters, header values and bodies using the SDK's signer; whatever
// crosses the wire intact must verify, so the verifier canonicalizes exactly
// as the SDK does.
func FuzzSignVerifyRoundTrip(f *testing.F) {
	f.Add("/", "Action", "GetCallerIdentity", "value", gciBody)
	f.Add("/a b/é", "k y", "a+b/c=d&e", "  one   two  ", "")
	f.Add("//x/../y", "~", "%zz", "\tx\t", "Action=AssumeRole&Tags.member.1.Value=a%2Bb")
	f.Fuzz(func(t *testing.T, path, key, value, header, body string) {
		if !printable(header) || strings.TrimSpace(header) == "" {
			t.Skip()
		}
		req, err := http.NewRequest(http.MethodPost, "https://sts.amazonaws.com/", strings.NewReader(body))
		if err != nil {
			t.Skip()
		}
		req.URL.Path = "/" + strings.TrimPrefix(path, "/")
		req.URL.RawQuery = url.Values{key: {value}}.Encode()
		req.Header.Set("X-Podiam-Fuzz", header)
		signHeader(t, req, body, userCreds, testRegion, "sts", signTime)
		r, got := toServer(t, req)
		if _, err := Verify(r, got, signTime, testLookup); err != nil {
			t.Fatalf("SDK-signed request did not verify: %v\nreceived %s %s\ncanonical %q", err, r.Method, r.URL.RequestURI(), verifierCanonicalRequest(t, r, got))
		}
	})
}
