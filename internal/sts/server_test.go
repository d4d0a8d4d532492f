package sts

import (
	"bytes"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// errorDoc is the error document as a client reads it.
type errorDoc struct {
	XMLName xml.Name `xml:"https://sts.amazonaws.com/doc/2011-06-15/ ErrorResponse"`
	Type    string   `xml:"Error>Type"`
	Code    string   `xml:"Error>Code"`
	Message string   `xml:"Error>Message"`
	ID      string   `xml:"RequestId"`
}

var uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// TestServeProtocol checks the query protocol around the actions: methods, the
// query form, Action and Version, size caps, request ids.
func TestServeProtocol(t *testing.T) {
	env := newTestEnv(t)
	tests := []struct {
		name        string
		method      string
		query, body string
		wantStatus  int
		wantCode    string
		wantMessage string
	}{{
		name: "GET with the query", method: http.MethodGet, query: "Action=GetCallerIdentity&Version=2011-06-15",
		wantStatus: 403, wantCode: "MissingAuthenticationToken", wantMessage: "Request is missing Authentication Token",
	}, {
		name: "PUT", method: http.MethodPut, body: "Action=GetCallerIdentity&Version=2011-06-15",
		wantStatus: 405, wantCode: "MethodNotAllowed", wantMessage: "The requested method is not allowed for this resource.",
	}, {
		name: "no Action", method: http.MethodPost, body: "Version=2011-06-15",
		wantStatus: 400, wantCode: "MissingAction", wantMessage: "Missing Action",
	}, {
		name: "another Version", method: http.MethodPost, body: "Action=GetCallerIdentity&Version=2010-01-01",
		wantStatus: 400, wantCode: "InvalidAction", wantMessage: "Could not find operation GetCallerIdentity for version 2010-01-01",
	}, {
		name: "semicolon separator", method: http.MethodPost, body: "Action=GetCallerIdentity;Version=2011-06-15",
		wantStatus: 400, wantCode: "MalformedQueryString", wantMessage: "The query string is malformed.",
	}, {
		name: "missing parameters", method: http.MethodPost, body: "Action=AssumeRoleWithWebIdentity&Version=2011-06-15",
		wantStatus: 400, wantCode: "ValidationError",
		wantMessage: "3 validation errors detected: Value null at 'roleArn' failed to satisfy constraint: Member must not be null; " +
			"Value null at 'roleSessionName' failed to satisfy constraint: Member must not be null; " +
			"Value null at 'webIdentityToken' failed to satisfy constraint: Member must not be null",
	}, {
		name: "over the body cap, in an unlimited parameter", method: http.MethodPost,
		body:       "Action=AssumeRole&Version=2011-06-15&Tags.member.1.Key=" + strings.Repeat("k", DefaultMaxBodyBytes),
		wantStatus: 413, wantCode: "RequestEntityTooLarge", wantMessage: "Request entity too large",
	}, {
		name: "over the body cap, in the policy", method: http.MethodPost,
		body:       "Action=AssumeRole&Version=2011-06-15&Policy=" + strings.Repeat("p", 2*DefaultMaxBodyBytes),
		wantStatus: 400, wantCode: "ValidationError",
		wantMessage: "1 validation error detected: Value at 'policy' failed to satisfy constraint: Member must have length less than or equal to 2048",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), tt.method, env.ts.URL+"/?"+tt.query, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := env.ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			var doc errorDoc
			if err := xml.Unmarshal(body, &doc); err != nil {
				t.Fatalf("status %d, not an error document: %v\n%s", resp.StatusCode, err, body)
			}
			if resp.StatusCode != tt.wantStatus || doc.Code != tt.wantCode || doc.Message != tt.wantMessage || doc.Type != "Sender" {
				t.Errorf("got %d %s %s: %q\nwant %d Sender %s: %q", resp.StatusCode, doc.Type, doc.Code, doc.Message, tt.wantStatus, tt.wantCode, tt.wantMessage)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "text/xml" {
				t.Errorf("Content-Type = %q", ct)
			}
			if id := resp.Header.Get("x-amzn-RequestId"); !uuidV4.MatchString(id) || id != doc.ID {
				t.Errorf("request id header %q, in the document %q: want the same UUID v4", id, doc.ID)
			}
		})
	}
}

// TestRequestIDsDiffer checks that every answer has its own request id.
func TestRequestIDsDiffer(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := newRequestID()
		if !uuidV4.MatchString(id) || seen[id] {
			t.Fatalf("request id %q: not a UUID v4, or repeated", id)
		}
		seen[id] = true
	}
}

// FuzzServeHTTP sends arbitrary form bodies: the server never panics and always
// answers a well-formed document, an error one unless the body is a valid call.
func FuzzServeHTTP(f *testing.F) {
	for _, seed := range []string{
		"Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=arn:aws:iam::111122223333:role/web&RoleSessionName=s&WebIdentityToken=a.b.c",
		"Action=AssumeRole&Version=2011-06-15&Tags.member.1.Key=k&Tags.member.1.Value=v&TransitiveTagKeys.member.1=k",
		"Action=GetCallerIdentity&Version=2011-06-15",
		"Action=%zz", "&&&==;", "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&DurationSeconds=-1&Policy=%00",
	} {
		f.Add(seed)
	}
	env := newTestEnv(f, func(o *Options) { o.Logger = discardLogger(); o.MaxBodyBytes = 4096 })
	f.Fuzz(func(t *testing.T, body string) {
		rec := httptest.NewRecorder()
		env.srv.ServeHTTP(rec, newFormRequest(body))
		if rec.Code == http.StatusOK {
			return
		}
		var doc errorDoc
		if err := xml.NewDecoder(bytes.NewReader(rec.Body.Bytes())).Decode(&doc); err != nil || doc.Code == "" {
			t.Fatalf("status %d, body not an error document (%v):\n%s", rec.Code, err, rec.Body)
		}
		if rec.Code >= 500 {
			t.Fatalf("server error for %q: %s", body, rec.Body)
		}
	})
}

// TestAppendForm checks the form decoding against url.ParseQuery's.
func TestAppendForm(t *testing.T) {
	for _, s := range []string{"", "a=1&b=2", "a=1&a=2", "a+b=c+d", "a=%41%2b", "&&a=&=b&c", "a=%zz", "a=1;b=2", "a=%4", "k%3D=v%26"} {
		want, wantErr := url.ParseQuery(s)
		got, err := appendForm(nil, s)
		if (err != nil) != (wantErr != nil) {
			t.Errorf("%q: error %v, want %v", s, err, wantErr)
			continue
		}
		if err != nil {
			continue
		}
		asValues := url.Values{}
		for _, p := range got {
			asValues[p.key] = append(asValues[p.key], p.value)
		}
		if asValues.Encode() != want.Encode() {
			t.Errorf("%q: %v, want %v", s, asValues, want)
		}
	}
}

// FuzzAppendForm checks the form decoding against url.ParseQuery's for any input.
func FuzzAppendForm(f *testing.F) {
	f.Add("Action=GetCallerIdentity&Version=2011-06-15&x=%41+b;c")
	f.Fuzz(func(t *testing.T, s string) {
		want, wantErr := url.ParseQuery(s)
		got, err := appendForm(nil, s)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("%q: error %v, want %v", s, err, wantErr)
		}
		if err != nil {
			return
		}
		asValues := url.Values{}
		for _, p := range got {
			asValues[p.key] = append(asValues[p.key], p.value)
		}
		if asValues.Encode() != want.Encode() {
			t.Fatalf("%q: %v, want %v", s, asValues, want)
		}
	})
}

// TestParseMergesQueryAndBody checks that a POST's query and body both count.
func TestParseMergesQueryAndBody(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "/?Version=2011-06-15", strings.NewReader("Action=GetCallerIdentity"))
	c := &call{r: r, body: []byte("Action=GetCallerIdentity")}
	if err := c.parse(); err != nil {
		t.Fatal(err)
	}
	if v, _ := c.param("Version"); c.action != actionCallerIdentity || v != APIVersion {
		t.Fatalf("action %q, params %v", c.action, c.params)
	}
}

// TestPanicAnswered checks that a panic while serving (a bug) is answered with
// InternalFailure and logged, not a dropped connection.
func TestPanicAnswered(t *testing.T) {
	env := newTestEnv(t)
	env.srv.config = func() *Config { panic("config lookup failed") }
	resp, err := env.ts.Client().Post(env.ts.URL, "application/x-www-form-urlencoded",
		strings.NewReader("Action=GetCallerIdentity&Version=2011-06-15"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var doc errorDoc
	if err := xml.Unmarshal(body, &doc); err != nil || resp.StatusCode != 500 || doc.Code != "InternalFailure" || doc.Type != "Receiver" {
		t.Fatalf("status %d, %+v (%v)", resp.StatusCode, doc, err)
	}
	if !strings.Contains(env.logs.String(), "config lookup failed") {
		t.Errorf("panic not logged:\n%s", env.logs)
	}
}
