package sts

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssts "github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/podiam/podiam/internal/jwks"
	"github.com/podiam/podiam/test/testutil"
)

// TestAssumeRoleWithWebIdentity exchanges a ServiceAccount token for a session of
// the role its trust policy names, through the AWS SDK.
func TestAssumeRoleWithWebIdentity(t *testing.T) {
	env := newTestEnv(t)
	before := time.Now().Truncate(time.Second)
	out, err := env.webIdentity(t.Context(), roleARN("web"), "s1", env.token(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	wantARN := "arn:aws:sts::" + testAccount + ":assumed-role/web/s1"
	if got := aws.ToString(out.AssumedRoleUser.Arn); got != wantARN {
		t.Errorf("Arn = %q, want %q", got, wantARN)
	}
	if got := aws.ToString(out.AssumedRoleUser.AssumedRoleId); !strings.HasPrefix(got, "AROA") || !strings.HasSuffix(got, ":s1") {
		t.Errorf("AssumedRoleId = %q, want AROA…:s1", got)
	}
	if got := aws.ToString(out.Credentials.AccessKeyId); !strings.HasPrefix(got, "ASIA") || len(got) != 20 {
		t.Errorf("AccessKeyId = %q, want ASIA + 16 characters", got)
	}
	if aws.ToString(out.Credentials.SecretAccessKey) == "" || aws.ToString(out.Credentials.SessionToken) == "" {
		t.Error("no secret or session token")
	}
	if exp := aws.ToTime(out.Credentials.Expiration); exp.Before(before.Add(time.Hour)) || exp.After(time.Now().Add(time.Hour)) {
		t.Errorf("Expiration = %v, want an hour from now", exp)
	}
	if got, want := aws.ToString(out.SubjectFromWebIdentityToken), "system:serviceaccount:apps:web"; got != want {
		t.Errorf("SubjectFromWebIdentityToken = %q, want %q", got, want)
	}
	if got := aws.ToString(out.Audience); got != testAudience {
		t.Errorf("Audience = %q, want %q", got, testAudience)
	}
	wantProvider := "arn:aws:iam::" + testAccount + ":oidc-provider/" + env.iss.hostPath()
	if got := aws.ToString(out.Provider); got != wantProvider {
		t.Errorf("Provider = %q, want %q", got, wantProvider)
	}

	// DurationSeconds up to the role's maximum.
	out, err = env.webIdentity(t.Context(), roleARN("long"), "s2", env.token(t), 7200)
	if err != nil {
		t.Fatal(err)
	}
	if exp := aws.ToTime(out.Credentials.Expiration); exp.Before(before.Add(2 * time.Hour)) {
		t.Errorf("Expiration = %v, want two hours from now", exp)
	}
}

// TestAssumeRoleWithWebIdentityTokenTags checks the session tags and source
// identity a token carries: they need sts:TagSession and sts:SetSourceIdentity in
// the trust policy, and end up in the session.
func TestAssumeRoleWithWebIdentityTokenTags(t *testing.T) {
	env := newTestEnv(t)
	key, _ := testKeys(t)
	c := env.claims()
	c["https://aws.amazon.com/source_identity"] = "alice"
	c["https://aws.amazon.com/tags"] = map[string]any{
		"principal_tags":      map[string]any{"team": []string{"payments"}, "env": []string{"ci"}},
		"transitive_tag_keys": []string{"team"},
	}
	token := signRS256(t, key, keyID(t, &key.PublicKey), c)
	_, err := env.webIdentity(t.Context(), roleARN("web"), "s1", token, 0)
	wantAPIError(t, err, "AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity")
	if logs := env.logs.String(); !strings.Contains(logs, "sts:TagSession") {
		t.Errorf("denial log does not name sts:TagSession:\n%s", logs)
	}
	out, err := env.webIdentity(t.Context(), roleARN("tagged"), "s1", token, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := aws.ToString(out.SourceIdentity); got != "alice" {
		t.Errorf("SourceIdentity = %q, want alice", got)
	}
	sess, _, err := env.sealer.Lookup(*out.Credentials.AccessKeyId, *out.Credentials.SessionToken)
	if err != nil {
		t.Fatal(err)
	}
	if want := []Tag{{Key: "env", Value: "ci"}, {Key: "team", Value: "payments"}}; !slices.Equal(sess.Tags, want) ||
		!slices.Equal(sess.TransitiveTagKeys, []string{"team"}) || sess.SourceIdentity != "alice" {
		t.Errorf("session = %+v, want tags %v, transitive [team], source identity alice", sess, want)
	}
}

// withBody makes the SDK send body instead of the request it serialized, for
// what the SDK itself never sends (a malformed form, an unknown action).
func withBody(body string) func(*awssts.Options) {
	return func(o *awssts.Options) {
		o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
			return stack.Finalize.Add(middleware.FinalizeMiddlewareFunc("replaceBody",
				func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
					req := in.Request.(*smithyhttp.Request)
					req, err := req.SetStream(strings.NewReader(body))
					if err != nil {
						return middleware.FinalizeOutput{}, middleware.Metadata{}, err
					}
					req.ContentLength = int64(len(body))
					in.Request = req
					return next.HandleFinalize(ctx, in)
				}), middleware.After)
		})
	}
}

// TestAssumeRoleWithWebIdentityBadInput sends each bad input of SPEC §5 through
// the AWS SDK and checks AWS's code and message, and that the log says why.
func TestAssumeRoleWithWebIdentityBadInput(t *testing.T) {
	clusterKey, otherKey := testKeys(t)
	clusterKID, otherKID := keyID(t, &clusterKey.PublicKey), keyID(t, &otherKey.PublicKey)
	pubPEM := func() []byte {
		der, err := x509.MarshalPKIXPublicKey(&clusterKey.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}()
	// now is the server's clock, fixed so that messages quoting it are exact.
	now := time.Now().Truncate(time.Second)
	with := func(env *testEnv, change func(map[string]any)) map[string]any {
		c := env.claims()
		change(c)
		return c
	}
	const noKey = "Couldn't retrieve verification key from your identity provider,  please reference AssumeRoleWithWebIdentity documentation for requirements"
	const notJWT = "The ID Token provided is not a valid JWT. (You may see this error if you sent an Access Token)"
	const badTags = "Unable to validate tags"
	manyTags := func(n int) map[string]any {
		m := map[string]any{}
		for i := range n {
			m["k"+strconv.Itoa(i)] = []string{"v"}
		}
		return m
	}
	tests := []struct {
		name          string
		role, session string
		duration      int32
		token         func(env *testEnv) string
		before        func(env *testEnv) // breaks the environment
		opt           func(*awssts.Options)
		wantCode      string
		wantMessage   string
		wantStatus    int
		wantLog       string // in the denial's log line
	}{{
		name: "unknown issuer",
		token: func(env *testEnv) string {
			return signRS256(t, clusterKey, clusterKID, with(env, func(c map[string]any) { c["iss"] = "https://oidc.unknown.example.com/x" }))
		},
		wantCode: "InvalidIdentityToken", wantMessage: "No OpenIDConnect provider found in your account for https://oidc.unknown.example.com/x",
		wantLog: "no OIDC provider",
	}, {
		name:     "issuer registered in another account than the role's",
		role:     "arn:aws:iam::" + otherAccount + ":role/web",
		wantCode: "InvalidIdentityToken", wantMessage: "No OpenIDConnect provider found in your account for " + "ISSUER",
		wantLog: "registered in account " + testAccount,
	}, {
		name:     "unknown kid",
		token:    func(env *testEnv) string { return signRS256(t, clusterKey, "no-such-kid", env.claims()) },
		wantCode: "InvalidIdentityToken", wantMessage: noKey, wantLog: "no-such-kid",
	}, {
		name:     "bad signature",
		token:    func(env *testEnv) string { return signRS256(t, otherKey, clusterKID, env.claims()) },
		wantCode: "InvalidIdentityToken", wantMessage: noKey, wantLog: "signature",
	}, {
		name:     "signed by another cluster's key",
		token:    func(env *testEnv) string { return signRS256(t, otherKey, otherKID, env.claims()) },
		wantCode: "InvalidIdentityToken", wantMessage: noKey, wantLog: otherKID,
	}, {
		name:     "alg none",
		token:    func(env *testEnv) string { return unsigned(t, clusterKID, env.claims()) },
		wantCode: "InvalidIdentityToken", wantMessage: notJWT, wantLog: `"alg":"none"`,
	}, {
		name:     "HS256 with the public key as secret",
		token:    func(env *testEnv) string { return signHS256(t, pubPEM, clusterKID, env.claims()) },
		wantCode: "InvalidIdentityToken", wantMessage: notJWT, wantLog: `"alg":"HS256"`,
	}, {
		name:     "not a JWT",
		token:    func(*testEnv) string { return "not-a-token" },
		wantCode: "InvalidIdentityToken", wantMessage: notJWT, wantLog: "token",
	}, {
		name: "wrong audience",
		token: func(env *testEnv) string {
			return signRS256(t, clusterKey, clusterKID, with(env, func(c map[string]any) { c["aud"] = []string{"vault"} }))
		},
		wantCode: "InvalidIdentityToken", wantMessage: "Incorrect token audience", wantLog: "vault",
	}, {
		name: "expired",
		token: func(env *testEnv) string {
			return signRS256(t, clusterKey, clusterKID, with(env, func(c map[string]any) {
				c["iat"], c["nbf"], c["exp"] = now.Add(-2*time.Hour).Unix(), now.Add(-2*time.Hour).Unix(), now.Add(-time.Hour).Unix()
			}))
		},
		wantCode: "ExpiredTokenException",
		wantMessage: "Token expired: current date/time " + strconv.FormatInt(now.Unix(), 10) +
			" must be before the expiration date/time " + strconv.FormatInt(now.Add(-time.Hour).Unix(), 10),
		wantLog: "expired",
	}, {
		name: "no exp",
		token: func(env *testEnv) string {
			return signRS256(t, clusterKey, clusterKID, with(env, func(c map[string]any) { delete(c, "exp") }))
		},
		wantCode: "InvalidIdentityToken", wantMessage: notJWT, wantLog: "without exp",
	}, {
		name: "not yet valid",
		token: func(env *testEnv) string {
			return signRS256(t, clusterKey, clusterKID, with(env, func(c map[string]any) { c["nbf"] = now.Add(time.Hour).Unix() }))
		},
		wantCode: "InvalidIdentityToken", wantMessage: "Token is not yet valid", wantLog: "not yet valid",
	}, {
		name: "another ServiceAccount than the trust policy names",
		token: func(env *testEnv) string {
			return signRS256(t, clusterKey, clusterKID, with(env, func(c map[string]any) { c["sub"] = "system:serviceaccount:apps:other" }))
		},
		wantCode: "AccessDenied", wantMessage: "Not authorized to perform sts:AssumeRoleWithWebIdentity", wantStatus: http.StatusForbidden,
		wantLog: "system:serviceaccount:apps:other",
	}, {
		name: "tags claim: a list of two values", role: roleARN("tagged"),
		token: func(env *testEnv) string {
			return signRS256(t, clusterKey, clusterKID, with(env, func(c map[string]any) {
				c[tagsClaim] = map[string]any{"principal_tags": map[string]any{"team": []string{"a", "b"}}}
			}))
		},
		wantCode: "ValidationError", wantMessage: badTags, wantLog: `\"team\" is not a string or a list of one string`,
	}, {
		name: "tags claim: 51 tags", role: roleARN("tagged"),
		token: func(env *testEnv) string {
			return signRS256(t, clusterKey, clusterKID, with(env, func(c map[string]any) { c[tagsClaim] = map[string]any{"principal_tags": manyTags(51)} }))
		},
		wantCode: "ValidationError", wantMessage: badTags, wantLog: "51 principal tags",
	}, {
		name: "tags claim: a key with a star", role: roleARN("tagged"),
		token: func(env *testEnv) string {
			return signRS256(t, clusterKey, clusterKID, with(env, func(c map[string]any) { c[tagsClaim] = map[string]any{"principal_tags": map[string]any{"a*b": "x"}} }))
		},
		wantCode: "ValidationError", wantMessage: badTags, wantLog: "tag key",
	}, {
		name: "tags claim: a value of 257 characters", role: roleARN("tagged"),
		token: func(env *testEnv) string {
			return signRS256(t, clusterKey, clusterKID, with(env, func(c map[string]any) {
				c[tagsClaim] = map[string]any{"principal_tags": map[string]any{"k": strings.Repeat("v", 257)}}
			}))
		},
		wantCode: "ValidationError", wantMessage: badTags, wantLog: "0..256",
	}, {
		name: "tags claim: a transitive key naming no tag", role: roleARN("tagged"),
		token: func(env *testEnv) string {
			return signRS256(t, clusterKey, clusterKID, with(env, func(c map[string]any) {
				c[tagsClaim] = map[string]any{"principal_tags": map[string]any{"k": "v"}, "transitive_tag_keys": []string{"other"}}
			}))
		},
		wantCode: "ValidationError", wantMessage: badTags, wantLog: "names no principal tag",
	}, {
		name: "tags claim: not an object", role: roleARN("tagged"),
		token: func(env *testEnv) string {
			return signRS256(t, clusterKey, clusterKID, with(env, func(c map[string]any) { c[tagsClaim] = "team=payments" }))
		},
		wantCode: "ValidationError", wantMessage: badTags, wantLog: "not an object",
	}, {
		name: "source identity with a space", role: roleARN("tagged"),
		token: func(env *testEnv) string {
			return signRS256(t, clusterKey, clusterKID, with(env, func(c map[string]any) { c[sourceIdentityClaim] = "al ice" }))
		},
		wantCode: "ValidationError", wantMessage: `1 validation error detected: Value 'al ice' at 'sourceIdentity' failed to satisfy constraint: Member must satisfy regular expression pattern: [\w+=,.@-]*`, wantLog: sourceIdentityClaim,
	}, {
		name: "source identity of one character", role: roleARN("tagged"),
		token: func(env *testEnv) string {
			return signRS256(t, clusterKey, clusterKID, with(env, func(c map[string]any) { c[sourceIdentityClaim] = "a" }))
		},
		wantCode: "ValidationError", wantMessage: "1 validation error detected: Value 'a' at 'sourceIdentity' failed to satisfy constraint: Member must have length greater than or equal to 2", wantLog: sourceIdentityClaim,
	}, {
		name: "role not in the config", role: roleARN("missing"),
		wantCode: "AccessDenied", wantMessage: "Not authorized to perform sts:AssumeRoleWithWebIdentity", wantStatus: http.StatusForbidden,
		wantLog: "no role",
	}, {
		name: "duration over the role's maximum", duration: 7200,
		wantCode: "ValidationError", wantMessage: "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
		wantLog: "maxSessionDuration 3600",
	}, {
		name: "duration under 900", duration: 600,
		wantCode:    "ValidationError",
		wantMessage: "1 validation error detected: Value '600' at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to 900",
		wantLog:     "parameter validation",
	}, {
		name: "session name with a space", session: "my session",
		wantCode:    "ValidationError",
		wantMessage: `1 validation error detected: Value 'my session' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\w+=,.@-]*`,
		wantLog:     "parameter validation",
	}, {
		name:        "a 1 MiB token",
		token:       func(*testEnv) string { return strings.Repeat("a", 1<<20) },
		wantCode:    "ValidationError",
		wantMessage: "1 validation error detected: Value at 'webIdentityToken' failed to satisfy constraint: Member must have length less than or equal to 20000",
		wantLog:     "WebIdentityToken",
	}, {
		name:        "a 30,000-character token",
		token:       func(*testEnv) string { return strings.Repeat("a", 30000) },
		wantCode:    "ValidationError",
		wantMessage: "1 validation error detected: Value at 'webIdentityToken' failed to satisfy constraint: Member must have length less than or equal to 20000",
		wantLog:     "parameter validation",
	}, {
		name:     "issuer host down",
		before:   func(env *testEnv) { env.iss.srv.Close() },
		wantCode: "IDPCommunicationError", wantMessage: noKey, wantLog: "fetch",
	}, {
		name: "issuer serves garbage",
		before: func(env *testEnv) {
			env.iss.mu.Lock()
			env.iss.garbage = true
			env.iss.mu.Unlock()
		},
		wantCode: "IDPCommunicationError", wantMessage: noKey, wantLog: "fetch",
	}, {
		name:     "malformed form body",
		opt:      withBody("Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=%zz"),
		wantCode: "MalformedQueryString", wantMessage: "The query string is malformed.", wantLog: "invalid URL escape",
	}, {
		name:     "unknown action",
		opt:      withBody("Action=AssumeRoleWithSAML&Version=2011-06-15"),
		wantCode: "InvalidAction", wantMessage: "Could not find operation AssumeRoleWithSAML for version 2011-06-15",
		wantLog: "AssumeRoleWithSAML",
	}, {
		name:     "no version",
		opt:      withBody("Action=AssumeRoleWithWebIdentity"),
		wantCode: "InvalidAction", wantMessage: "Could not find operation AssumeRoleWithWebIdentity for version NO_VERSION_SPECIFIED",
		wantLog: "version",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newTestEnv(t, func(o *Options) { o.Now = func() time.Time { return now } })
			if tt.before != nil {
				tt.before(env)
			}
			role, session, token := roleARN("web"), "s1", ""
			if tt.role != "" {
				role = tt.role
			}
			if tt.session != "" {
				session = tt.session
			}
			if tt.token != nil {
				token = tt.token(env)
			} else {
				token = env.token(t)
			}
			in := &awssts.AssumeRoleWithWebIdentityInput{RoleArn: aws.String(role), RoleSessionName: aws.String(session),
				WebIdentityToken: aws.String(token)}
			if tt.duration != 0 {
				in.DurationSeconds = aws.Int32(tt.duration)
			}
			var opts []func(*awssts.Options)
			if tt.opt != nil {
				opts = append(opts, tt.opt)
			}
			_, err := env.client(nil).AssumeRoleWithWebIdentity(t.Context(), in, opts...)
			wantAPIError(t, err, tt.wantCode, strings.ReplaceAll(tt.wantMessage, "ISSUER", env.iss.URL))
			wantStatus := tt.wantStatus
			if wantStatus == 0 {
				wantStatus = http.StatusBadRequest
			}
			if httpStatus(err) != wantStatus {
				t.Errorf("HTTP status of %v, want %d", err, wantStatus)
			}
			logs := env.logs.String()
			if !strings.Contains(logs, `"msg":"denied"`) || !strings.Contains(logs, tt.wantLog) {
				t.Errorf("log lacks the denial with %q:\n%s", tt.wantLog, logs)
			}
			if len(token) > 100 && strings.Contains(logs, token[len(token)-40:]) {
				t.Errorf("log holds the token:\n%s", logs)
			}
		})
	}
}

// TestAssumeRoleWithWebIdentityDenialExplained checks that the log of a trust
// policy denial says which condition failed, with the values expected and
// received.
func TestAssumeRoleWithWebIdentityDenialExplained(t *testing.T) {
	env := newTestEnv(t)
	key, _ := testKeys(t)
	c := env.claims()
	c["sub"] = "system:serviceaccount:apps:intruder"
	_, err := env.webIdentity(t.Context(), roleARN("web"), "s1", signRS256(t, key, keyID(t, &key.PublicKey), c), 0)
	wantAPIError(t, err, "AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity")
	logs := env.logs.String()
	for _, want := range []string{env.iss.hostPath() + ":sub", "system:serviceaccount:apps:web", "system:serviceaccount:apps:intruder"} {
		if !strings.Contains(logs, want) {
			t.Errorf("denial log lacks %q:\n%s", want, logs)
		}
	}
}

// TestKeySetsReused checks that a reloaded config keeps the key sets of its
// unchanged providers (no refetch) and that each provider has its own.
func TestKeySetsReused(t *testing.T) {
	env := newTestEnv(t)
	first := env.srv.keySets.forConfig(env.cfg)
	p := env.cfg.Accounts[0].OIDCProviders[0]
	ks1, err := first.get(p)
	if err != nil || ks1 == nil {
		t.Fatalf("no key set for %s: %v", p.URL, err)
	}
	reloaded, err := Load(env.cfg.Path())
	if err != nil {
		t.Fatal(err)
	}
	ks2, err := env.srv.keySets.forConfig(reloaded).get(reloaded.Accounts[0].OIDCProviders[0])
	if err != nil || ks2 != ks1 {
		t.Fatalf("reloaded config got another key set (%p, %p, %v)", ks1, ks2, err)
	}
}

// httpStatus is the HTTP status of the SDK's error, 0 when it has none.
func httpStatus(err error) int {
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// BenchmarkAssumeRoleWithWebIdentity measures the whole call through ServeHTTP
// with a warm key cache: RS256 with a 2048-bit key, as kube-apiserver signs.
func BenchmarkAssumeRoleWithWebIdentity(b *testing.B) {
	env := newTestEnv(b, func(o *Options) {
		o.Logger = discardLogger()
	})
	body := "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=" + roleARN("web") +
		"&RoleSessionName=bench&WebIdentityToken=" + env.token(b)
	// Warm the key cache.
	rec := httptest.NewRecorder()
	env.srv.ServeHTTP(rec, newFormRequest(body))
	if rec.Code != http.StatusOK {
		b.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	b.ReportAllocs()
	start := testutil.ProcessCPUTime()
	for b.Loop() {
		w := &discardWriter{h: http.Header{}}
		env.srv.ServeHTTP(w, newFormRequest(body))
		if w.code != http.StatusOK {
			b.Fatalf("status %d", w.code)
		}
	}
	b.ReportMetric(float64(testutil.ProcessCPUTime()-start)/float64(b.N), "cpu-ns/op")
}

// BenchmarkRSAVerify is the RS256 verification alone, the part of
// BenchmarkAssumeRoleWithWebIdentity that is not the STS's: the difference is
// what the STS adds.
func BenchmarkRSAVerify(b *testing.B) {
	key, _ := testKeys(b)
	sum := sha256.Sum256([]byte("header.claims"))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		b.Fatal(err)
	}
	start := testutil.ProcessCPUTime()
	for b.Loop() {
		if err := rsa.VerifyPKCS1v15(&key.PublicKey, crypto.SHA256, sum[:], sig); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(testutil.ProcessCPUTime()-start)/float64(b.N), "cpu-ns/op")
}

// BenchmarkAssumeRoleWithWebIdentityHTTP is the same call over HTTP on loopback
// with keep-alive connections, client and server in this process.
func BenchmarkAssumeRoleWithWebIdentityHTTP(b *testing.B) {
	env := newTestEnv(b, func(o *Options) { o.Logger = discardLogger() })
	body := "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=" + roleARN("web") +
		"&RoleSessionName=bench&WebIdentityToken=" + env.token(b)
	client := env.ts.Client()
	b.ReportAllocs()
	start := testutil.ProcessCPUTime()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Post(env.ts.URL, "application/x-www-form-urlencoded", strings.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(testutil.ProcessCPUTime()-start)/float64(b.N), "cpu-ns/op")
}

// fetchFunc is a jwks.Source from a function.
type fetchFunc func(context.Context) ([]byte, error)

func (f fetchFunc) Fetch(ctx context.Context) ([]byte, error) { return f(ctx) }

// TestKeySetsFollowKubeconfigContent checks that a provider whose kubeconfig was
// rewritten in place (same path, another cluster) gets a new key source on the
// next config, and that an unchanged kubeconfig keeps its key set.
func TestKeySetsFollowKubeconfigContent(t *testing.T) {
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	path := filepath.Join(dir, "sts.yaml")
	write := func(p, content string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(path, `accounts:
- id: "`+testAccount+`"
  oidcProviders:
  - url: https://kubernetes.default.svc
    clientIDs: [sts.amazonaws.com]
    kubeconfig: kubeconfig
`)
	var created int
	sets := newKeySets(func(*OIDCProvider) (jwks.Source, error) {
		created++
		return fetchFunc(func(context.Context) ([]byte, error) { return nil, errors.New("unused") }), nil
	}, jwks.Options{}, discardLogger())
	keySet := func() *jwks.KeySet {
		t.Helper()
		cfg, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		ks, err := sets.forConfig(cfg).get(cfg.Accounts[0].OIDCProviders[0])
		if err != nil {
			t.Fatal(err)
		}
		return ks
	}
	tests := []struct {
		name        string
		kubeconfig  string
		wantCreated int
	}{
		{name: "first config", kubeconfig: "server: https://127.0.0.1:6443", wantCreated: 1},
		{name: "same kubeconfig", kubeconfig: "server: https://127.0.0.1:6443", wantCreated: 1},
		{name: "cluster recreated", kubeconfig: "server: https://127.0.0.1:7443", wantCreated: 2},
	}
	var prev *jwks.KeySet
	for _, tt := range tests {
		write(kubeconfig, tt.kubeconfig)
		ks := keySet()
		if created != tt.wantCreated {
			t.Errorf("%s: %d key sources created, want %d", tt.name, created, tt.wantCreated)
		}
		if reused := ks == prev; reused != (prev != nil && tt.wantCreated == 1) {
			t.Errorf("%s: key set reused = %v", tt.name, reused)
		}
		prev = ks
	}
}
