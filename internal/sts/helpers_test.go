package sts

import (
	"context"
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
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
	awssts "github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/podiam/podiam/internal/policy"
	"github.com/podiam/podiam/test/testutil"
)

// Keys shared by the tests: generating RSA keys is slow.
var (
	keysOnce             sync.Once
	clusterKey, otherKey *rsa.PrivateKey
)

// testKeys returns the issuer's signing key and the key of another cluster.
func testKeys(t testing.TB) (*rsa.PrivateKey, *rsa.PrivateKey) {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		if clusterKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if otherKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return clusterKey, otherKey
}

// keyID is the kid kube-apiserver gives pub.
func keyID(t testing.TB, pub crypto.PublicKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// jwksOf is a JWKS document publishing the RS256 keys.
func jwksOf(t testing.TB, keys ...*rsa.PublicKey) []byte {
	t.Helper()
	var doc struct {
		Keys []map[string]string `json:"keys"`
	}
	for _, k := range keys {
		doc.Keys = append(doc.Keys, map[string]string{"use": "sig", "kty": "RSA", "kid": keyID(t, k), "alg": "RS256",
			"n": base64.RawURLEncoding.EncodeToString(k.N.Bytes()),
			"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(k.E)).Bytes())})
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testIssuer is an OIDC issuer over HTTPS: discovery document and JWKS.
type testIssuer struct {
	srv    *httptest.Server
	URL    string
	CAFile string

	mu      sync.Mutex
	jwks    []byte
	garbage bool
}

func newTestIssuer(t testing.TB, keys ...*rsa.PublicKey) *testIssuer {
	t.Helper()
	iss := &testIssuer{jwks: jwksOf(t, keys...)}
	iss.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		iss.mu.Lock()
		defer iss.mu.Unlock()
		if iss.garbage {
			_, _ = w.Write([]byte("<html>not a document</html>"))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			_ = json.NewEncoder(w).Encode(map[string]any{"issuer": iss.URL, "jwks_uri": iss.URL + "/openid/v1/jwks",
				"response_types_supported": []string{"id_token"}, "subject_types_supported": []string{"public"},
				"id_token_signing_alg_values_supported": []string{"RS256"}})
		case "/openid/v1/jwks":
			_, _ = w.Write(iss.jwks)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(iss.srv.Close)
	iss.URL = iss.srv.URL
	iss.CAFile = filepath.Join(t.TempDir(), "ca.pem")
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: iss.srv.Certificate().Raw})
	if err := os.WriteFile(iss.CAFile, ca, 0o600); err != nil {
		t.Fatal(err)
	}
	return iss
}

// hostPath is the issuer without https://, the prefix of its condition keys.
func (iss *testIssuer) hostPath() string { return strings.TrimPrefix(iss.URL, "https://") }

// Names of the test config.
const (
	testAccount   = "111122223333"
	otherAccount  = "444455556666"
	testAudience  = "sts.amazonaws.com"
	testNamespace = "apps"
	testSA        = "web"
	userKeyID     = "AKIAEXAMPLEEXAMPLE01"
	userSecret    = "c2VjcmV0LW9mLXRoZS1jaS11c2VyLWZvci10ZXN0cw"
	otherKeyID    = "AKIAEXAMPLEEXAMPLE02"
	otherSecret   = "c2VjcmV0LW9mLWFub3RoZXItdXNlci1mb3ItdGVzdA"
)

func roleARN(name string) string { return "arn:aws:iam::" + testAccount + ":role/" + name }

// testConfig is the YAML config of the tests: the issuer's provider, roles for
// web identity (web, long: 2 hours; tagged also allows session tags and a source
// identity), for the user ci (deploy; notags: no
// sts:TagSession; external: needs an ExternalId), for role sessions of web
// (chain), pathed (path /team/, for ci) and afterpath (for sessions of
// pathed, by aws:PrincipalArn), and the users ci and other (trusted by no role).
func testConfig(t testing.TB, iss *testIssuer) string {
	t.Helper()
	trust, err := policy.Trust(policy.TrustOptions{Account: testAccount, Issuer: iss.URL,
		ServiceAccounts: []policy.ServiceAccount{{Namespace: testNamespace, Name: testSA}}})
	if err != nil {
		t.Fatal(err)
	}
	// The other account trusts the issuer without registering it as a provider.
	otherTrust, err := policy.Trust(policy.TrustOptions{Account: otherAccount, Issuer: iss.URL,
		ServiceAccounts: []policy.ServiceAccount{{Namespace: testNamespace, Name: testSA}}})
	if err != nil {
		t.Fatal(err)
	}
	userPolicy := func(principal string, actions []string, cond string) string {
		a, _ := json.Marshal(actions)
		s := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"` + principal + `"},"Action":` + string(a)
		if cond != "" {
			s += `,"Condition":` + cond
		}
		b, _ := json.Marshal(s + `}]}`)
		return string(b)
	}
	ci := "arn:aws:iam::" + testAccount + ":user/ci"
	federated, _ := json.Marshal(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow",` +
		`"Principal":{"Federated":"arn:aws:iam::` + testAccount + `:oidc-provider/` + iss.hostPath() + `"},` +
		`"Action":["sts:AssumeRoleWithWebIdentity","sts:TagSession","sts:SetSourceIdentity"],` +
		`"Condition":{"StringEquals":{"` + iss.hostPath() + `:sub":"system:serviceaccount:apps:web"}}}]}`)
	federatedPolicy := string(federated)
	cfg := `accounts:
- id: "` + testAccount + `"
  oidcProviders:
  - url: ` + iss.URL + `
    clientIDs: [` + testAudience + `]
    caFile: ` + iss.CAFile + `
  roles:
  - name: web
    trustPolicy: ` + string(mustJSONString(t, string(trust))) + `
  - name: long
    maxSessionDuration: 7200
    trustPolicy: ` + string(mustJSONString(t, string(trust))) + `
  - name: tagged
    trustPolicy: ` + federatedPolicy + `
  - name: deploy
    maxSessionDuration: 7200
    trustPolicy: ` + userPolicy(ci, []string{"sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"}, "") + `
  - name: notags
    trustPolicy: ` + userPolicy(ci, []string{"sts:AssumeRole"}, "") + `
  - name: external
    trustPolicy: ` + userPolicy(ci, []string{"sts:AssumeRole"}, `{"StringEquals":{"sts:ExternalId":"team-42"}}`) + `
  - name: chain
    maxSessionDuration: 7200
    trustPolicy: ` + userPolicy(roleARN("deploy"), []string{"sts:AssumeRole", "sts:TagSession"}, "") + `
  - name: pathed
    path: /team/
    trustPolicy: ` + userPolicy(ci, []string{"sts:AssumeRole"}, "") + `
  - name: afterpath
    trustPolicy: ` + userPolicy("*", []string{"sts:AssumeRole"},
		`{"ArnEquals":{"aws:PrincipalArn":"arn:aws:iam::`+testAccount+`:role/team/pathed"}}`) + `
  users:
  - name: ci
    accessKeyId: ` + userKeyID + `
    secretAccessKey: ` + userSecret + `
  - name: other
    accessKeyId: ` + otherKeyID + `
    secretAccessKey: ` + otherSecret + `
- id: "` + otherAccount + `"
  roles:
  - name: web
    trustPolicy: ` + string(mustJSONString(t, string(otherTrust))) + `
`
	path := filepath.Join(t.TempDir(), "sts.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func mustJSONString(t testing.TB, s string) []byte {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testEnv is an STS over HTTP on 127.0.0.1 with the test config.
type testEnv struct {
	key    StateKey
	iss    *testIssuer
	cfg    *Config
	sealer *Sealer
	srv    *Server
	ts     *httptest.Server
	logs   *testutil.SyncBuffer
}

func newTestEnv(t testing.TB, opts ...func(*Options)) *testEnv {
	t.Helper()
	pub, _ := testKeys(t)
	iss := newTestIssuer(t, &pub.PublicKey)
	cfg, err := Load(testConfig(t, iss))
	if err != nil {
		t.Fatalf("loading the test config: %v", err)
	}
	key, err := GenerateStateKey()
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	env := &testEnv{key: key, iss: iss, cfg: cfg, sealer: sealer, logs: &testutil.SyncBuffer{}}
	o := Options{Config: func() *Config { return env.cfg }, Sealer: sealer,
		Logger: slog.New(slog.NewJSONHandler(env.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	for _, f := range opts {
		f(&o)
	}
	if env.srv, err = NewServer(o); err != nil {
		t.Fatal(err)
	}
	env.ts = httptest.NewServer(env.srv)
	t.Cleanup(env.ts.Close)
	return env
}

// client is the AWS SDK's STS client for the test STS, signing with creds (nil
// for none: AssumeRoleWithWebIdentity is unsigned).
func (env *testEnv) client(creds aws.CredentialsProvider, optFns ...func(*awssts.Options)) *awssts.Client {
	o := awssts.Options{
		Region:           "us-east-1",
		BaseEndpoint:     aws.String(env.ts.URL),
		Credentials:      creds,
		RetryMaxAttempts: 1, // IDPCommunicationError is retryable: see the first answer
	}
	return awssts.New(o, optFns...)
}

// userClient signs as the user ci.
func (env *testEnv) userClient() *awssts.Client {
	return env.client(credentials.NewStaticCredentialsProvider(userKeyID, userSecret, ""))
}

// claims are a token's claims for the test issuer, valid for an hour, of the
// ServiceAccount the web role trusts.
func (env *testEnv) claims() map[string]any {
	now := time.Now()
	return map[string]any{
		"iss": env.iss.URL, "sub": policy.SubjectPrefix + testNamespace + ":" + testSA, "aud": []string{testAudience},
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"kubernetes.io": map[string]any{"namespace": testNamespace, "serviceaccount": map[string]any{"name": testSA, "uid": "u-1"}},
	}
}

// signRS256 is a JWS compact token of claims signed by key, with kid.
func signRS256(t testing.TB, key *rsa.PrivateKey, kid string, claims map[string]any) string {
	t.Helper()
	input := jwtInput(t, map[string]any{"alg": "RS256", "kid": kid, "typ": "JWT"}, claims)
	sum := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// signHS256 is a token "signed" with HMAC-SHA256 keyed by secret.
func signHS256(t testing.TB, secret []byte, kid string, claims map[string]any) string {
	t.Helper()
	input := jwtInput(t, map[string]any{"alg": "HS256", "kid": kid, "typ": "JWT"}, claims)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(input))
	return input + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// unsigned is an alg "none" token.
func unsigned(t testing.TB, kid string, claims map[string]any) string {
	return jwtInput(t, map[string]any{"alg": "none", "kid": kid, "typ": "JWT"}, claims) + "."
}

func jwtInput(t testing.TB, header, claims map[string]any) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	c, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
}

// token is a valid token of the ServiceAccount the web role trusts.
func (env *testEnv) token(t testing.TB) string {
	key, _ := testKeys(t)
	return signRS256(t, key, keyID(t, &key.PublicKey), env.claims())
}

// webIdentity calls AssumeRoleWithWebIdentity through the SDK.
func (env *testEnv) webIdentity(ctx context.Context, role, session, token string, duration int32) (*awssts.AssumeRoleWithWebIdentityOutput, error) {
	in := &awssts.AssumeRoleWithWebIdentityInput{RoleArn: aws.String(role), RoleSessionName: aws.String(session),
		WebIdentityToken: aws.String(token)}
	if duration != 0 {
		in.DurationSeconds = aws.Int32(duration)
	}
	return env.client(nil).AssumeRoleWithWebIdentity(ctx, in)
}

// wantAPIError checks that err is the SDK's API error with code and message.
func wantAPIError(t testing.TB, err error, code, message string) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("error = %v, want API error %s: %s", err, code, message)
	}
	if ae.ErrorCode() != code || ae.ErrorMessage() != message {
		t.Fatalf("API error = %s: %q\nwant %s: %q", ae.ErrorCode(), ae.ErrorMessage(), code, message)
	}
}

// discardLogger logs nothing: benchmarks measure the handler, not the log.
func discardLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}))
}

// newFormRequest is a POST of the form body to the STS, as the SDK sends it.
func newFormRequest(body string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "http://127.0.0.1/", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	return r
}

// discardWriter is an http.ResponseWriter that keeps the status only.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }
