package main

import (
	"bufio"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/podiam/podiam/internal/eksauth"
)

func TestReadResponse(t *testing.T) {
	tests := []struct {
		name       string
		raw        string
		wantStatus int
		wantBody   string
		wantKeep   bool
		wantErr    bool
	}{
		{"keep-alive", "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}", 200, "{}", true, false},
		{"close", "HTTP/1.1 403 Forbidden\r\nconnection: close\r\ncontent-length: 3\r\n\r\nno\n", 403, "no\n", false, false},
		{"empty body", "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", 204, "", true, false},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", 200, "", false, true},
		{"no length", "HTTP/1.1 200 OK\r\n\r\n{}", 200, "", false, true},
		{"short body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}", 200, "", false, true},
		{"not HTTP", "SSH-2.0-OpenSSH\r\n", 0, "", false, true},
		{"bad header", "HTTP/1.1 200 OK\r\nno colon\r\n\r\n", 200, "", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body, keep, err := readResponse(bufio.NewReader(strings.NewReader(tt.raw)), nil)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error %v, want error %v", err, tt.wantErr)
			}
			if status != tt.wantStatus {
				t.Errorf("status %d, want %d", status, tt.wantStatus)
			}
			if err == nil && (string(body) != tt.wantBody || keep != tt.wantKeep) {
				t.Errorf("body %q keep %v, want %q %v", body, keep, tt.wantBody, tt.wantKeep)
			}
		})
	}
}

// jwt is an unsigned JWT with payload as its claims.
func jwt(payload string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256"}`)) + "." + enc([]byte(payload)) + "." + enc([]byte("sig"))
}

func TestStandIn(t *testing.T) {
	podToken := jwt(`{"kubernetes.io":{"namespace":"apps","serviceaccount":{"name":"app-001"},"pod":{"name":"pod-0001","uid":"u1"}}}`)
	signed := func(r *http.Request) {
		r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKIA/20261127/us-east-1/eks-auth/aws4_request, SignedHeaders=host, Signature=00")
		r.Header.Set("X-Amz-Date", "20261127T000000Z")
	}
	tests := []struct {
		name     string
		cluster  string
		token    string
		sign     func(*http.Request)
		wantCode string // "" for success
	}{
		{"signed", clusterName, podToken, signed, ""},
		{"unsigned", clusterName, podToken, func(*http.Request) {}, "MissingAuthenticationTokenException"},
		{"other cluster", "other", podToken, signed, eksauth.CodeResourceNotFound},
		{"no pod claim", clusterName, jwt(`{"sub":"x"}`), signed, eksauth.CodeInvalidToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &eksAuthStandIn{clusterName: clusterName}
			req := httptest.NewRequest(http.MethodPost, eksauth.Path(tt.cluster), strings.NewReader(`{"token":"`+tt.token+`"}`))
			req.Header.Set("Content-Type", "application/json")
			tt.sign(req)
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, req)
			if got := s.calls.Load(); got != 1 {
				t.Errorf("calls counted %d, want 1", got)
			}
			if tt.wantCode != "" {
				if got := rec.Header().Get("X-Amzn-Errortype"); got != tt.wantCode || s.refused.Load() != 1 {
					t.Errorf("error type %q (refused %d), want %q", got, s.refused.Load(), tt.wantCode)
				}
				return
			}
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			for _, want := range []string{`"associationId":"a-apps-app-001"`, `"serviceAccount":"app-001"`, `assumed-role/app-001/eks-bench-pod-0001`, `"accessKeyId"`} {
				if !strings.Contains(rec.Body.String(), want) {
					t.Errorf("answer lacks %s: %s", want, rec.Body)
				}
			}
		})
	}
}

func TestBuildRequest(t *testing.T) {
	req := buildRequest("127.0.0.1:8080", "tok")
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(string(req))))
	if err != nil {
		t.Fatal(err)
	}
	if r.Method != http.MethodGet || r.URL.Path != credentialsPath || r.Host != "127.0.0.1:8080" || r.Header.Get("Authorization") != "tok" {
		t.Errorf("request %s %s Host %s Authorization %q", r.Method, r.URL, r.Host, r.Header.Get("Authorization"))
	}
}
