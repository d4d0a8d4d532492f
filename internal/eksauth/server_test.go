package eksauth

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// testToken has the shape of a JWT; its content does not matter here.
const testToken = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"

func TestDecodeRequest(t *testing.T) {
	okPath := "/clusters/prod-1/assume-role-for-pod-identity"
	okBody := `{"token":"` + testToken + `"}`
	tests := []struct {
		name        string
		method      string
		path        string
		contentType string
		body        string
		wantCode    string
		wantStatus  int
	}{
		{name: "valid", path: okPath, body: okBody},
		{name: "content type with charset", path: okPath, contentType: "application/json; charset=utf-8", body: okBody},
		{name: "unknown fields ignored", path: okPath, body: `{"token":"` + testToken + `","extra":1}`},
		{name: "wrong path", path: "/clusters/prod-1/describe", body: okBody, wantCode: CodeResourceNotFound, wantStatus: 404},
		{name: "root path", path: "/", body: okBody, wantCode: CodeResourceNotFound, wantStatus: 404},
		{name: "empty cluster", path: "/clusters//assume-role-for-pod-identity", body: okBody, wantCode: CodeInvalidParameter, wantStatus: 400},
		{name: "nested path", path: "/clusters/a/b/assume-role-for-pod-identity", body: okBody, wantCode: CodeResourceNotFound, wantStatus: 404},
		{name: "escaped slash in cluster", path: "/clusters/a%2Fb/assume-role-for-pod-identity", body: okBody, wantCode: CodeInvalidParameter, wantStatus: 400},
		{name: "cluster starts with dash", path: "/clusters/-prod/assume-role-for-pod-identity", body: okBody, wantCode: CodeInvalidParameter, wantStatus: 400},
		{name: "cluster with dot", path: "/clusters/prod.1/assume-role-for-pod-identity", body: okBody, wantCode: CodeInvalidParameter, wantStatus: 400},
		{name: "cluster of 100", path: Path("a" + strings.Repeat("b", 99)), body: okBody},
		{name: "cluster of 101", path: Path("a" + strings.Repeat("b", 100)), body: okBody, wantCode: CodeInvalidParameter, wantStatus: 400},
		{name: "GET", method: http.MethodGet, path: okPath, body: okBody, wantCode: CodeInvalidRequest, wantStatus: 405},
		{name: "form content type", path: okPath, contentType: "application/x-www-form-urlencoded", body: okBody, wantCode: CodeInvalidRequest, wantStatus: 415},
		{name: "no content type", path: okPath, contentType: "-", body: okBody, wantCode: CodeInvalidRequest, wantStatus: 415},
		{name: "bad JSON", path: okPath, body: `{"token":`, wantCode: CodeInvalidRequest, wantStatus: 400},
		{name: "JSON array", path: okPath, body: `["x"]`, wantCode: CodeInvalidRequest, wantStatus: 400},
		{name: "trailing data", path: okPath, body: okBody + `{}`, wantCode: CodeInvalidRequest, wantStatus: 400},
		{name: "empty body", path: okPath, body: ``, wantCode: CodeInvalidRequest, wantStatus: 400},
		{name: "missing token", path: okPath, body: `{}`, wantCode: CodeInvalidParameter, wantStatus: 400},
		{name: "empty token", path: okPath, body: `{"token":""}`, wantCode: CodeInvalidParameter, wantStatus: 400},
		{name: "token not a string", path: okPath, body: `{"token":5}`, wantCode: CodeInvalidRequest, wantStatus: 400},
		{name: "token not a JWT", path: okPath, body: `{"token":"not-a-jwt"}`, wantCode: CodeInvalidToken, wantStatus: 400},
		{name: "token with newline", path: okPath, body: `{"token":"a.b.c\n"}`, wantCode: CodeInvalidToken, wantStatus: 400},
		{name: "oversized body", path: okPath, body: `{"token":"` + strings.Repeat("a", MaxRequestBody) + `"}`, wantCode: CodeInvalidRequest, wantStatus: 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			r := httptest.NewRequest(method, tt.path, strings.NewReader(tt.body))
			switch tt.contentType {
			case "":
				r.Header.Set("Content-Type", "application/json")
			case "-":
			default:
				r.Header.Set("Content-Type", tt.contentType)
			}
			cluster, in, err := DecodeRequest(r)
			if tt.wantCode == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				if !ValidClusterName(cluster) || in == nil || in.Token == "" {
					t.Fatalf("got cluster %q input %+v", cluster, in)
				}
				return
			}
			if err == nil {
				t.Fatalf("want %s, got cluster %q", tt.wantCode, cluster)
			}
			if err.Code != tt.wantCode || err.HTTPStatus() != tt.wantStatus {
				t.Errorf("got %s %d, want %s %d", err.Code, err.HTTPStatus(), tt.wantCode, tt.wantStatus)
			}
			if strings.Contains(err.Message, "a.b.c") || strings.Contains(err.Message, testToken) {
				t.Errorf("error message echoes the token: %q", err.Message)
			}
		})
	}
}

func TestDecodeRequestValues(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, Path("prod_1"), strings.NewReader(`{"token":"`+testToken+`"}`))
	r.Header.Set("Content-Type", "application/json")
	cluster, in, err := DecodeRequest(r)
	if err != nil || cluster != "prod_1" || in.Token != testToken {
		t.Fatalf("got %q %+v %v", cluster, in, err)
	}
}

func TestWriteErrorGolden(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteError(rec, NewError(CodeResourceNotFound, "no association for %s/%s", "payments", "api"))
	if rec.Code != 404 {
		t.Errorf("status = %d, want 404", rec.Code)
	}
	if got := rec.Header().Get("X-Amzn-Errortype"); got != CodeResourceNotFound {
		t.Errorf("X-Amzn-Errortype = %q", got)
	}
	if got := rec.Header().Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q", got)
	}
	checkGolden(t, "error.golden.json", rec.Body.Bytes())
}

func TestWriteResponseHeaders(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteResponse(rec, testOutput())
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/json" {
		t.Errorf("got %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	checkGolden(t, "response.golden.json", rec.Body.Bytes())
}

// FuzzDecodeRequest: any path, content type and body give either a valid
// request or an error with a known code; never a panic.
func FuzzDecodeRequest(f *testing.F) {
	f.Add("/clusters/prod/assume-role-for-pod-identity", "application/json", []byte(`{"token":"a.b.c"}`))
	f.Add("/clusters/a%2F/assume-role-for-pod-identity", "application/json; charset=x", []byte(`{"token":null}`))
	f.Add("/clusters/x", "text/plain", []byte(`[`))
	f.Fuzz(func(t *testing.T, path, contentType string, body []byte) {
		r, rerr := http.NewRequest(http.MethodPost, "http://127.0.0.1"+path, strings.NewReader(string(body)))
		if rerr != nil {
			return // not a URL a server could receive
		}
		r.Header.Set("Content-Type", contentType)
		cluster, in, err := DecodeRequest(r)
		if err != nil {
			if _, known := codeStatus[err.Code]; !known {
				t.Fatalf("unknown code %q", err.Code)
			}
			return
		}
		if !ValidClusterName(cluster) || !tokenRE.MatchString(in.Token) {
			t.Fatalf("accepted cluster %q token %q", cluster, in.Token)
		}
	})
}
