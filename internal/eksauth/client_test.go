package eksauth

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/podiam/podiam/internal/sigv4"
)

// Signing credentials of the SigV4 tests.
const (
	testKeyID        = "ASIAEXAMPLEEXAMPLE09"
	testSecret       = "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY"
	testSessionToken = "FwoGZXIvYXdzEXAMPLE+node/session"
	testRegion       = "us-west-2"
)

// newLocalServer starts an httptest server on 127.0.0.1 that is closed when
// the test ends.
func newLocalServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// authCheck decides whether a decoded request's caller is let in; body is
// the raw request body (for signature checks).
type authCheck func(r *http.Request, body []byte) *Error

// testHandler serves AssumeRoleForPodIdentity with the package's own server
// helpers, answering testOutput() to callers that pass check.
func testHandler(t *testing.T, check authCheck) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("reading body: %v", err)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		cluster, in, derr := DecodeRequest(r)
		if derr != nil {
			WriteError(w, derr)
			return
		}
		if e := check(r, body); e != nil {
			WriteError(w, e)
			return
		}
		if cluster != "prod" || in.Token != testToken {
			WriteError(w, NewError(CodeInvalidToken, "unexpected cluster or token"))
			return
		}
		WriteResponse(w, testOutput())
	})
}

// sigv4Check verifies the request's SigV4 signature for service eks-auth.
func sigv4Check(verifier *sigv4.Verifier) authCheck {
	return func(r *http.Request, body []byte) *Error {
		lookup := func(_ context.Context, keyID, token string) (string, error) {
			if keyID == testKeyID && token == testSessionToken {
				return testSecret, nil
			}
			return "", sigv4.ErrUnknownAccessKey()
		}
		id, err := verifier.Verify(r, body, time.Now(), lookup)
		if err != nil {
			return NewError(CodeAccessDenied, "signature: %v", err)
		}
		if id.Region != testRegion || id.Service != SigningName {
			return NewError(CodeAccessDenied, "scope %s/%s", id.Region, id.Service)
		}
		return nil
	}
}

func TestClientSigV4(t *testing.T) {
	srv := newLocalServer(t, testHandler(t, sigv4Check(sigv4.NewVerifier(SigningName))))
	tests := []struct {
		name     string
		secret   string
		region   string
		wantCode string
	}{
		{name: "signed with the right key", secret: testSecret, region: testRegion},
		{name: "wrong secret", secret: "wrongSecretwrongSecretwrongSecretwrongSe", region: testRegion, wantCode: CodeAccessDenied},
		{name: "wrong region", secret: testSecret, region: "eu-west-1", wantCode: CodeAccessDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Client{Endpoint: srv.URL, HTTPClient: srv.Client(), Auth: &SigV4{
				Credentials: credentials.NewStaticCredentialsProvider(testKeyID, tt.secret, testSessionToken),
				Region:      tt.region,
			}}
			out, err := c.AssumeRoleForPodIdentity(context.Background(), "prod", testToken)
			checkResult(t, out, err, tt.wantCode)
		})
	}
}

// TestSigV4ServiceName proves the signature names service eks-auth: a
// verifier for another service refuses it.
func TestSigV4ServiceName(t *testing.T) {
	srv := newLocalServer(t, testHandler(t, sigv4Check(sigv4.NewVerifier("sts"))))
	c := &Client{Endpoint: srv.URL, HTTPClient: srv.Client(), Auth: &SigV4{
		Credentials: credentials.NewStaticCredentialsProvider(testKeyID, testSecret, testSessionToken),
		Region:      testRegion,
	}}
	_, err := c.AssumeRoleForPodIdentity(context.Background(), "prod", testToken)
	checkResult(t, nil, err, CodeAccessDenied)
}

func TestSigV4CredentialsError(t *testing.T) {
	c := &Client{Endpoint: "http://127.0.0.1:1", Auth: &SigV4{
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{}, errors.New("no credentials on this node")
		}),
		Region: testRegion,
	}}
	_, err := c.AssumeRoleForPodIdentity(context.Background(), "prod", testToken)
	if err == nil || !strings.Contains(err.Error(), "no credentials on this node") {
		t.Fatalf("got %v", err)
	}
}

// bearerCheck accepts only "Bearer " + the current value of *want.
func bearerCheck(mu *sync.Mutex, want *string) authCheck {
	return func(r *http.Request, _ []byte) *Error {
		mu.Lock()
		defer mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer "+*want {
			return NewError(CodeAccessDenied, "caller token refused")
		}
		return nil
	}
}

func TestClientBearerRereadsRotatedFile(t *testing.T) {
	var mu sync.Mutex
	current := "agent-token-1"
	srv := newLocalServer(t, testHandler(t, bearerCheck(&mu, &current)))
	path := filepath.Join(t.TempDir(), "token")
	c := &Client{Endpoint: srv.URL, HTTPClient: srv.Client(), Auth: &BearerTokenFile{Path: path}}

	steps := []struct {
		name     string
		file     string
		server   string
		wantCode string
		wantErr  string
	}{
		{name: "first token", file: "agent-token-1\n", server: "agent-token-1"},
		{name: "rotated by the kubelet", file: "agent-token-2", server: "agent-token-2"},
		{name: "server moved on, file did not", file: "agent-token-2", server: "agent-token-3", wantCode: CodeAccessDenied},
		{name: "line break inside", file: "agent\r\nX-Evil: 1", server: "agent", wantErr: "line break"},
		{name: "empty file", file: "", server: "", wantErr: "empty"},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if err := os.WriteFile(path, []byte(st.file), 0o600); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			current = st.server
			mu.Unlock()
			out, err := c.AssumeRoleForPodIdentity(context.Background(), "prod", testToken)
			if st.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), st.wantErr) {
					t.Fatalf("want error containing %q, got %v", st.wantErr, err)
				}
				return
			}
			checkResult(t, out, err, st.wantCode)
		})
	}
}

func TestClientBearerMissingFile(t *testing.T) {
	c := &Client{Endpoint: "http://127.0.0.1:1", Auth: &BearerTokenFile{Path: filepath.Join(t.TempDir(), "absent")}}
	if _, err := c.AssumeRoleForPodIdentity(context.Background(), "prod", testToken); err == nil {
		t.Fatal("want an error for a missing token file")
	}
}

// TestClientDecodesEveryCode sends each code in header form and in body form
// and checks the client's *Error.
func TestClientDecodesEveryCode(t *testing.T) {
	for _, tt := range allCodes {
		for _, form := range []string{"header", "body"} {
			t.Run(tt.code+"/"+form, func(t *testing.T) {
				srv := newLocalServer(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
					if form == "header" {
						WriteError(w, NewError(tt.code, "because"))
						return
					}
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(tt.status)
					_, _ = io.WriteString(w, `{"__type":"com.amazonaws.eksauth#`+tt.code+`","message":"because"}`)
				}))
				c := &Client{Endpoint: srv.URL, HTTPClient: srv.Client()}
				_, err := c.AssumeRoleForPodIdentity(context.Background(), "prod", testToken)
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("want *Error, got %v", err)
				}
				if e.Code != tt.code || e.Message != "because" || e.HTTPStatus() != tt.status || e.Retryable() != tt.retryable {
					t.Errorf("got %+v retryable=%v", e, e.Retryable())
				}
			})
		}
	}
}

func TestClientBadResponses(t *testing.T) {
	tests := []struct {
		name string
		body string
	}{
		{name: "not JSON", body: "<html>"},
		{name: "no credentials", body: `{"audience":"pods.eks.amazonaws.com"}`},
		{name: "expiration as a string", body: `{"credentials":{"accessKeyId":"A","secretAccessKey":"S","expiration":"soon"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newLocalServer(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				_, _ = io.WriteString(w, tt.body)
			}))
			c := &Client{Endpoint: srv.URL, HTTPClient: srv.Client()}
			out, err := c.AssumeRoleForPodIdentity(context.Background(), "prod", testToken)
			var e *Error
			if err == nil || errors.As(err, &e) {
				t.Fatalf("want a plain error, got %+v %v", out, err)
			}
		})
	}
}

func TestClientRefusesBadClusterName(t *testing.T) {
	c := &Client{Endpoint: "http://127.0.0.1:1"}
	for _, name := range []string{"", "../../x", "a/b", "a?b"} {
		if _, err := c.AssumeRoleForPodIdentity(context.Background(), name, testToken); err == nil {
			t.Errorf("cluster %q accepted", name)
		}
	}
}

// checkResult checks a call's outcome: testOutput() or an *Error with wantCode.
func checkResult(t *testing.T, out *Output, err error, wantCode string) {
	t.Helper()
	if wantCode == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		if *out != *testOutput() {
			t.Fatalf("got %+v, want %+v", *out, *testOutput())
		}
		return
	}
	var e *Error
	if !errors.As(err, &e) || e.Code != wantCode {
		t.Fatalf("want %s, got %v", wantCode, err)
	}
}
