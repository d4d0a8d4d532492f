package sigv4

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// Test credentials. The session token stands for one this STS issued.
const (
	testKeyID        = "AKIAEXAMPLEEXAMPLE01"
	testSecret       = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
	testSessionKeyID = "ASIAEXAMPLEEXAMPLE02"
	testSessionSec   = "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY"
	testSessionToken = "FwoGZXIvYXdzEXAMPLE+token/with=chars"
	testOtherKeyID   = "AKIAEXAMPLEEXAMPLE03"
	testOtherSecret  = "otherSecretKeyEXAMPLEotherSecretKeyEXAMP"
	testRegion       = "us-east-1"
)

// signTime is when test requests are signed; verification happens at
// signTime unless a test moves the clock.
var signTime = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

var (
	userCreds    = aws.Credentials{AccessKeyID: testKeyID, SecretAccessKey: testSecret}
	sessionCreds = aws.Credentials{AccessKeyID: testSessionKeyID, SecretAccessKey: testSessionSec, SessionToken: testSessionToken}
)

// errBadToken stands for the error the STS returns for a session token it
// cannot open; Verify must pass it through unchanged.
var errBadToken = errors.New("session token rejected")

// testLookup knows the test users and the test session, and checks the
// session token as the STS would.
func testLookup(_ context.Context, keyID, token string) (string, error) {
	switch keyID {
	case testKeyID:
		return testSecret, nil
	case testOtherKeyID:
		return testOtherSecret, nil
	case testSessionKeyID:
		if token != testSessionToken {
			return "", errBadToken
		}
		return testSessionSec, nil
	}
	return "", ErrUnknownAccessKey()
}

const gciBody = "Action=GetCallerIdentity&Version=2011-06-15"

func payloadSHA256(body string) string {
	sum := sha256.Sum256([]byte(body))
	return hex.EncodeToString(sum[:])
}

// newClientRequest builds a request as a client would before signing.
func newClientRequest(t testing.TB, method, target, body string) *http.Request {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, target, rd)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	}
	return req
}

// signHeader signs req in the Authorization header form with the SDK's signer.
func signHeader(t testing.TB, req *http.Request, body string, creds aws.Credentials, region, service string, at time.Time) {
	t.Helper()
	err := v4.NewSigner().SignHTTP(context.Background(), creds, req, payloadSHA256(body), service, region, at)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
}

// presign returns a presigned request built with the SDK's signer, as a
// server would receive it.
func presign(t testing.TB, req *http.Request, creds aws.Credentials, region, service string, at time.Time) *http.Request {
	t.Helper()
	signed, headers, err := v4.NewSigner().PresignHTTP(context.Background(), creds, req, payloadSHA256(""), service, region, at)
	if err != nil {
		t.Fatalf("presign: %v", err)
	}
	out, err := http.NewRequest(req.Method, signed, nil)
	if err != nil {
		t.Fatalf("presigned request: %v", err)
	}
	for k, v := range headers {
		if !strings.EqualFold(k, "host") {
			out.Header[k] = v
		}
	}
	server, _ := toServer(t, out)
	return server
}

// toServer writes a client request to the wire and reads it back, giving the
// request exactly as net/http hands it to a server's handler.
func toServer(t testing.TB, req *http.Request) (*http.Request, []byte) {
	t.Helper()
	var wire bytes.Buffer
	if err := req.Write(&wire); err != nil {
		t.Fatalf("write request: %v", err)
	}
	server, err := http.ReadRequest(bufio.NewReader(&wire))
	if err != nil {
		t.Fatalf("read request: %v", err)
	}
	body, err := io.ReadAll(server.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return server, body
}

// signedGCI is a GetCallerIdentity POST signed with creds, as received.
func signedGCI(t testing.TB, creds aws.Credentials) (*http.Request, []byte) {
	t.Helper()
	req := newClientRequest(t, http.MethodPost, "https://sts.us-east-1.amazonaws.com/", gciBody)
	signHeader(t, req, gciBody, creds, testRegion, "sts", signTime)
	return toServer(t, req)
}

// wantCode checks that err is an *Error with code (and, when message is not
// empty, that message).
func wantCode(t *testing.T, err error, code, message string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error = %v (%T), want *Error with code %s", err, err, code)
	}
	if e.Code != code {
		t.Fatalf("code = %s (%v), want %s", e.Code, e, code)
	}
	if message != "" && e.Message != message {
		t.Fatalf("message = %q, want %q", e.Message, message)
	}
}

// signatureHex signs a hand-built request (for forms the SDK never sends).
func signatureHex(key *signingKey, r *http.Request, query url.Values, s *signature, payloadHash string) string {
	sig := computeSignature(key, r, query, s, payloadHash)
	return string(sig[:])
}
