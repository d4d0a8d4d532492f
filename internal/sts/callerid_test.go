package sts

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	awssts "github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/podiam/podiam/test/testutil"
)

// staticToken is a web identity token source for the SDK's provider.
type staticToken string

func (s staticToken) GetIdentityToken() ([]byte, error) { return []byte(s), nil }

// TestGetCallerIdentity checks who the STS says signed: a user of the config, and
// a role session obtained by the SDK's web identity credential provider.
func TestGetCallerIdentity(t *testing.T) {
	env := newTestEnv(t)
	out, err := env.userClient().GetCallerIdentity(t.Context(), &awssts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := aws.ToString(out.Arn), "arn:aws:iam::"+testAccount+":user/ci"; got != want {
		t.Errorf("Arn = %q, want %q", got, want)
	}
	if got := aws.ToString(out.UserId); got != UserID(testAccount, "ci") || !strings.HasPrefix(got, "AIDA") {
		t.Errorf("UserId = %q, want %q", got, UserID(testAccount, "ci"))
	}
	if got := aws.ToString(out.Account); got != testAccount {
		t.Errorf("Account = %q, want %q", got, testAccount)
	}

	// The SDK's own web identity provider, as an IRSA pod uses it.
	provider := stscreds.NewWebIdentityRoleProvider(env.client(nil), roleARN("web"), staticToken(env.token(t)),
		func(o *stscreds.WebIdentityRoleOptions) { o.RoleSessionName = "pod-1" })
	out, err = env.client(aws.NewCredentialsCache(provider)).GetCallerIdentity(t.Context(), &awssts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := aws.ToString(out.Arn), "arn:aws:sts::"+testAccount+":assumed-role/web/pod-1"; got != want {
		t.Errorf("Arn = %q, want %q", got, want)
	}
	if got, want := aws.ToString(out.UserId), RoleID(testAccount, "/", "web")+":pod-1"; got != want {
		t.Errorf("UserId = %q, want %q", got, want)
	}
}

// TestSessionsAcrossReplicas checks that a second STS with the same state key
// (a replica, or the same one restarted) accepts the sessions of the first.
func TestSessionsAcrossReplicas(t *testing.T) {
	env := newTestEnv(t)
	out, err := env.webIdentity(t.Context(), roleARN("web"), "s1", env.token(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := NewSealer(env.key)
	if err != nil {
		t.Fatal(err)
	}
	replica, err := NewServer(Options{Config: func() *Config { return env.cfg }, Sealer: sealer, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(replica)
	defer ts.Close()
	c := out.Credentials
	client := awssts.New(awssts.Options{Region: "us-east-1", BaseEndpoint: aws.String(ts.URL),
		Credentials: credentials.NewStaticCredentialsProvider(*c.AccessKeyId, *c.SecretAccessKey, *c.SessionToken)})
	id, err := client.GetCallerIdentity(t.Context(), &awssts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := aws.ToString(id.Arn), "arn:aws:sts::"+testAccount+":assumed-role/web/s1"; got != want {
		t.Errorf("Arn = %q, want %q", got, want)
	}
}

// TestGetCallerIdentityPresigned checks the presigned query form (what EKS-style
// authenticators send): a GET of the URL the SDK presigned.
func TestGetCallerIdentityPresigned(t *testing.T) {
	env := newTestEnv(t)
	req, err := awssts.NewPresignClient(env.userClient()).PresignGetCallerIdentity(t.Context(), &awssts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatal(err)
	}
	hreq, err := http.NewRequestWithContext(t.Context(), req.Method, req.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	hreq.Header = req.SignedHeader.Clone()
	resp, err := env.ts.Client().Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("<Arn>arn:aws:iam::"+testAccount+":user/ci</Arn>")) {
		t.Fatalf("status %d:\n%s", resp.StatusCode, body)
	}
}

// TestGetCallerIdentityBadCredentials checks AWS's answers to credentials the STS
// does not accept, through the SDK.
func TestGetCallerIdentityBadCredentials(t *testing.T) {
	expiredSession := func(env *testEnv) aws.CredentialsProvider {
		now := time.Now()
		creds, err := env.sealer.Issue(&Session{AccountID: testAccount, RoleARN: roleARN("web"), RoleID: RoleID(testAccount, "/", "web"),
			SessionName: "old", IssuedAt: now.Add(-2 * time.Hour), Expiration: now.Add(-time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		return credentials.NewStaticCredentialsProvider(creds.AccessKeyID, creds.SecretAccessKey, creds.SessionToken)
	}
	tamperedSession := func(env *testEnv) aws.CredentialsProvider {
		out, err := env.webIdentity(t.Context(), roleARN("web"), "s1", env.token(t), 0)
		if err != nil {
			t.Fatal(err)
		}
		c := out.Credentials
		tok := []byte(*c.SessionToken)
		tok[len(tok)/2] ^= 1
		return credentials.NewStaticCredentialsProvider(*c.AccessKeyId, *c.SecretAccessKey, string(tok))
	}
	tests := []struct {
		name        string
		creds       func(env *testEnv) aws.CredentialsProvider
		wantCode    string
		wantMessage string
		wantStatus  int
	}{{
		name: "unknown access key",
		creds: func(*testEnv) aws.CredentialsProvider {
			return credentials.NewStaticCredentialsProvider("AKIANOTKNOWN00000000", "x", "")
		},
		wantCode: "InvalidClientTokenId", wantMessage: "The security token included in the request is invalid.", wantStatus: 403,
	}, {
		name: "wrong secret",
		creds: func(*testEnv) aws.CredentialsProvider {
			return credentials.NewStaticCredentialsProvider(userKeyID, "wrong", "")
		},
		wantCode: "SignatureDoesNotMatch",
		wantMessage: "The request signature we calculated does not match the signature you provided. " +
			"Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
		wantStatus: 403,
	}, {
		name:     "expired session",
		creds:    expiredSession,
		wantCode: "ExpiredToken", wantMessage: "The security token included in the request is expired", wantStatus: 403,
	}, {
		name:     "tampered session token",
		creds:    tamperedSession,
		wantCode: "InvalidClientTokenId", wantMessage: "The security token included in the request is invalid.", wantStatus: 403,
	}, {
		name:     "unsigned",
		creds:    func(*testEnv) aws.CredentialsProvider { return aws.AnonymousCredentials{} },
		wantCode: "MissingAuthenticationToken", wantMessage: "Request is missing Authentication Token", wantStatus: 403,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newTestEnv(t)
			_, err := env.client(tt.creds(env)).GetCallerIdentity(t.Context(), &awssts.GetCallerIdentityInput{})
			wantAPIError(t, err, tt.wantCode, tt.wantMessage)
			if got := httpStatus(err); got != tt.wantStatus {
				t.Errorf("HTTP status = %d, want %d", got, tt.wantStatus)
			}
			if logs := env.logs.String(); !strings.Contains(logs, `"msg":"denied"`) {
				t.Errorf("no denial logged:\n%s", logs)
			}
		})
	}
}

// TestGetCallerIdentityClockSkew checks that a signature from more than 15
// minutes ago is refused as AWS refuses it.
func TestGetCallerIdentityClockSkew(t *testing.T) {
	env := newTestEnv(t, func(o *Options) { o.Now = func() time.Time { return time.Now().Add(20 * time.Minute) } })
	_, err := env.userClient().GetCallerIdentity(t.Context(), &awssts.GetCallerIdentityInput{})
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "SignatureDoesNotMatch" || !strings.HasPrefix(ae.ErrorMessage(), "Signature expired: ") {
		t.Fatalf("error = %v, want SignatureDoesNotMatch: Signature expired: …", err)
	}
	// AWS answers every authentication failure with 403.
	if got := httpStatus(err); got != http.StatusForbidden {
		t.Errorf("HTTP status = %d, want 403", got)
	}
}

// TestIncompleteSignatureStatus checks that a malformed Authorization header is
// answered 400, as AWS answers IncompleteSignature (unlike the 403 of the other
// authentication failures).
func TestIncompleteSignatureStatus(t *testing.T) {
	env := newTestEnv(t)
	r := newFormRequest("Action=GetCallerIdentity&Version=2011-06-15")
	r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=garbage")
	r.Header.Set("X-Amz-Date", time.Now().UTC().Format("20060102T150405Z"))
	w := httptest.NewRecorder()
	env.srv.ServeHTTP(w, r)
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "<Code>IncompleteSignature</Code>") {
		t.Fatalf("status %d, want 400 IncompleteSignature:\n%s", w.Code, w.Body)
	}
}

// signedCallerIdentityRequest is a GetCallerIdentity request signed now by the
// user ci, ready to be replayed within the clock skew.
func signedCallerIdentityRequest(t testing.TB) (string, http.Header) {
	t.Helper()
	body := "Action=GetCallerIdentity&Version=2011-06-15"
	r := newFormRequest(body)
	r.Host = "127.0.0.1"
	sum := sha256.Sum256([]byte(body))
	err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: userKeyID, SecretAccessKey: userSecret},
		r, hex.EncodeToString(sum[:]), "sts", "us-east-1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return body, r.Header
}

// BenchmarkGetCallerIdentity measures a SigV4-signed GetCallerIdentity through
// ServeHTTP.
func BenchmarkGetCallerIdentity(b *testing.B) {
	env := newTestEnv(b, func(o *Options) { o.Logger = discardLogger() })
	body, hdr := signedCallerIdentityRequest(b)
	b.ReportAllocs()
	start := testutil.ProcessCPUTime()
	for b.Loop() {
		r := newFormRequest(body)
		r.Host = "127.0.0.1"
		r.Header = hdr
		w := &discardWriter{h: http.Header{}}
		env.srv.ServeHTTP(w, r)
		if w.code != http.StatusOK {
			b.Fatalf("status %d", w.code)
		}
	}
	b.ReportMetric(float64(testutil.ProcessCPUTime()-start)/float64(b.N), "cpu-ns/op")
}
