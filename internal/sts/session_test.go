package sts

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// issueTime is a fixed clock for sessions.
var issueTime = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func newTestSealer(t testing.TB) (*Sealer, StateKey) {
	t.Helper()
	key, err := GenerateStateKey()
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	return s, key
}

// testSession is a session as AssumeRole would issue it, with tags.
func testSession() *Session {
	return &Session{
		AccountID:         "111122223333",
		RoleARN:           "arn:aws:iam::111122223333:role/team/app",
		RoleID:            RoleID("111122223333", "/team/", "app"),
		SessionName:       "build-42",
		IssuedAt:          issueTime,
		Expiration:        issueTime.Add(time.Hour),
		SourceIdentity:    "alice",
		Chained:           true,
		Tags:              []Tag{{"kubernetes-namespace", "default"}, {"kubernetes-service-account", "app"}, {"team", "payments"}},
		TransitiveTagKeys: []string{"kubernetes-namespace", "kubernetes-service-account"},
	}
}

func TestIssueLookupRoundTrip(t *testing.T) {
	s, _ := newTestSealer(t)
	sess := testSession()
	creds, err := s.Issue(sess)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^ASIA[A-Z2-7]{16}$`).MatchString(creds.AccessKeyID) || sess.AccessKeyID != creds.AccessKeyID {
		t.Errorf("access key id %q (session's %q)", creds.AccessKeyID, sess.AccessKeyID)
	}
	if len(creds.SecretAccessKey) != 40 {
		t.Errorf("secret has %d characters, want 40 like AWS's", len(creds.SecretAccessKey))
	}
	// No character that needs escaping in a header or a query string.
	if !regexp.MustCompile(`^[A-Za-z0-9_-]+$`).MatchString(creds.SessionToken) {
		t.Errorf("session token has characters outside base64url")
	}
	if len(creds.SessionToken) >= 2048 {
		t.Errorf("session token of %d bytes for a typical session, want < 2 KiB", len(creds.SessionToken))
	}
	t.Logf("session token: %d bytes", len(creds.SessionToken))

	got, secret, err := s.LookupAt(creds.AccessKeyID, creds.SessionToken, issueTime.Add(59*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if secret != creds.SecretAccessKey {
		t.Error("Lookup's secret differs from the issued one")
	}
	// Times come back at second precision, in UTC.
	if got.IssuedAt.Equal(sess.IssuedAt) && got.Expiration.Equal(sess.Expiration) {
		got.IssuedAt, got.Expiration = sess.IssuedAt, sess.Expiration
	}
	if fmt.Sprintf("%#v", *got) != fmt.Sprintf("%#v", *sess) {
		t.Errorf("Lookup = %#v\nwant     %#v", *got, *sess)
	}
	if got.AssumedRoleARN() != "arn:aws:sts::111122223333:assumed-role/app/build-42" || got.AssumedRoleID() != sess.RoleID+":build-42" {
		t.Errorf("assumed role %s, id %s", got.AssumedRoleARN(), got.AssumedRoleID())
	}

	// Two issues of the same session get distinct keys and tokens.
	again := testSession()
	creds2, err := s.Issue(again)
	if err != nil {
		t.Fatal(err)
	}
	if creds2.AccessKeyID == creds.AccessKeyID || creds2.SessionToken == creds.SessionToken || creds2.SecretAccessKey == creds.SecretAccessKey {
		t.Error("two sessions share a key id, token or secret")
	}
}

func TestLookupRejects(t *testing.T) {
	s, _ := newTestSealer(t)
	other, _ := newTestSealer(t)
	creds, err := s.Issue(testSession())
	if err != nil {
		t.Fatal(err)
	}
	otherCreds, err := other.Issue(testSession())
	if err != nil {
		t.Fatal(err)
	}
	creds2, err := s.Issue(testSession())
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.RawURLEncoding.DecodeString(creds.SessionToken)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) string {
		b := append([]byte(nil), raw...)
		b[i] ^= 1
		return base64.RawURLEncoding.EncodeToString(b)
	}
	tests := []struct {
		name, keyID, token string
		at                 time.Time
		want               error
	}{
		{"no token", creds.AccessKeyID, "", issueTime, ErrInvalidSessionToken},
		{"not base64url", creds.AccessKeyID, creds.SessionToken[:20] + "+/=", issueTime, ErrInvalidSessionToken},
		{"truncated", creds.AccessKeyID, creds.SessionToken[:len(creds.SessionToken)-4], issueTime, ErrInvalidSessionToken},
		{"short", creds.AccessKeyID, "AQ", issueTime, ErrInvalidSessionToken},
		{"version byte changed", creds.AccessKeyID, flip(0), issueTime, ErrInvalidSessionToken},
		{"nonce changed", creds.AccessKeyID, flip(3), issueTime, ErrInvalidSessionToken},
		{"ciphertext changed", creds.AccessKeyID, flip(len(raw) / 2), issueTime, ErrInvalidSessionToken},
		{"tag changed", creds.AccessKeyID, flip(len(raw) - 1), issueTime, ErrInvalidSessionToken},
		{"another state key", otherCreds.AccessKeyID, otherCreds.SessionToken, issueTime, ErrInvalidSessionToken},
		{"too long", creds.AccessKeyID, strings.Repeat("A", MaxSessionTokenLen+1), issueTime, ErrInvalidSessionToken},
		{"key id of another session", creds2.AccessKeyID, creds.SessionToken, issueTime, ErrAccessKeyMismatch},
		{"user key id", "AKIAEXAMPLEEXAMPLE01", creds.SessionToken, issueTime, ErrAccessKeyMismatch},
		{"at expiry", creds.AccessKeyID, creds.SessionToken, issueTime.Add(time.Hour), ErrSessionExpired},
		{"after expiry", creds.AccessKeyID, creds.SessionToken, issueTime.Add(2 * time.Hour), ErrSessionExpired},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sess, secret, err := s.LookupAt(tc.keyID, tc.token, tc.at)
			if !errors.Is(err, tc.want) {
				t.Fatalf("LookupAt = %v, want %v", err, tc.want)
			}
			if sess != nil || secret != "" {
				t.Error("a rejected lookup returned a session or secret")
			}
			// The three kinds are distinct, and no error quotes the token.
			for _, e := range []error{ErrInvalidSessionToken, ErrAccessKeyMismatch, ErrSessionExpired} {
				if e != tc.want && errors.Is(err, e) {
					t.Errorf("error %v also is %v", err, e)
				}
			}
			if len(tc.token) > 16 && strings.Contains(err.Error(), tc.token[:16]) {
				t.Errorf("error %q quotes the token", err)
			}
		})
	}
}

// A restarted STS or a second replica reading the same key file accepts the sessions
// of the first.
func TestSealersWithSameKeyFileAgree(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.key")
	key, err := GenerateStateKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteStateKeyFile(path, key); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, %v; want 0600", st.Mode(), err)
	}
	if err := WriteStateKeyFile(path, key); err == nil {
		t.Error("WriteStateKeyFile replaced an existing key file")
	}
	var sealers []*Sealer
	for range 2 {
		k, err := LoadStateKeyFile(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		s, err := NewSealer(k)
		if err != nil {
			t.Fatal(err)
		}
		sealers = append(sealers, s)
	}
	creds, err := sealers[0].Issue(testSession())
	if err != nil {
		t.Fatal(err)
	}
	sess, secret, err := sealers[1].LookupAt(creds.AccessKeyID, creds.SessionToken, issueTime)
	if err != nil {
		t.Fatal(err)
	}
	if secret != creds.SecretAccessKey || sess.RoleARN != testSession().RoleARN {
		t.Errorf("the second sealer derives secret match %v, role %s", secret == creds.SecretAccessKey, sess.RoleARN)
	}
}

func TestParseStateKey(t *testing.T) {
	key, err := GenerateStateKey()
	if err != nil {
		t.Fatal(err)
	}
	raw := key.b[:]
	tests := []struct {
		name    string
		data    []byte
		wantErr string
	}{
		{"raw bytes", raw, "want the base64 or hex encoding"},
		{"a 32-character passphrase", []byte("correct horse battery staple 42!"), "passphrase"},
		{"a 32-character hex string", []byte(hex.EncodeToString(raw[:16])), "passphrase"},
		{"base64 with newline", []byte(base64.StdEncoding.EncodeToString(raw) + "\n"), ""},
		{"base64url unpadded", []byte(base64.RawURLEncoding.EncodeToString(raw)), ""},
		{"hex", []byte(" " + hex.EncodeToString(raw) + "\n"), ""},
		{"empty", nil, "want the base64 or hex encoding of 32 bytes"},
		{"short", raw[:31], "want the base64 or hex encoding of 32 bytes"},
		{"base64 of 31 bytes", []byte(base64.StdEncoding.EncodeToString(raw[:31])), "want the base64 or hex encoding of 32 bytes"},
		{"all zero", []byte(base64.StdEncoding.EncodeToString(make([]byte, 32))), "all zero"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseStateKey(tc.data)
			switch {
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseStateKey = %v, want an error containing %q", err, tc.wantErr)
				}
			case err != nil:
				t.Fatal(err)
			case got != key:
				t.Error("ParseStateKey returned another key")
			}
		})
	}
	// The caller creates a key file when there is none: it needs to tell that case.
	if _, err := LoadStateKeyFile(filepath.Join(t.TempDir(), "missing"), nil); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadStateKeyFile of a missing file = %v, want fs.ErrNotExist", err)
	}
}

// TestLoadStateKeyFileWarnsWhenExposed checks that a key file its group or
// others may read is used with a warning, and that a private one is not.
func TestLoadStateKeyFileWarnsWhenExposed(t *testing.T) {
	key, err := GenerateStateKey()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		mode     os.FileMode
		wantWarn bool
	}{{0o600, false}, {0o400, false}, {0o640, true}, {0o604, true}}
	for _, tt := range tests {
		t.Run(tt.mode.String(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.key")
			if err := WriteStateKeyFile(path, key); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tt.mode); err != nil {
				t.Fatal(err)
			}
			var logs strings.Builder
			got, err := LoadStateKeyFile(path, slog.New(slog.NewTextHandler(&logs, nil)))
			if err != nil || got != key {
				t.Fatalf("LoadStateKeyFile = %v, same key %v", err, got == key)
			}
			if warned := strings.Contains(logs.String(), "readable by others"); warned != tt.wantWarn {
				t.Errorf("warned = %v, want %v:\n%s", warned, tt.wantWarn, logs.String())
			}
		})
	}
}

// Keys, secrets and tokens never reach logs through their String or LogValue.
func TestRedaction(t *testing.T) {
	s, key := newTestSealer(t)
	sess := testSession()
	creds, err := s.Issue(sess)
	if err != nil {
		t.Fatal(err)
	}
	var buf strings.Builder
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	log.Info("x", "session", sess, "creds", creds, "key", key)
	texts := []string{buf.String(), fmt.Sprint(key), fmt.Sprintf("%v %+v %#v", key, key, key), creds.String(), sess.String()}
	for _, text := range texts {
		for _, secret := range []string{creds.SecretAccessKey, creds.SessionToken[:20], base64.StdEncoding.EncodeToString(key.b[:])[:20], hex.EncodeToString(key.b[:])[:20]} {
			if strings.Contains(text, secret) {
				t.Errorf("%q shows a secret", text)
			}
		}
	}
	if !strings.Contains(buf.String(), creds.AccessKeyID) || !strings.Contains(buf.String(), "arn:aws:sts::111122223333:assumed-role/app/build-42") {
		t.Errorf("log %s lacks the key id or ARN", buf.String())
	}
}

// The most session tags AWS allows still make a token Lookup accepts; a session too
// large for a token is refused when issued rather than when used.
func TestTokenSizeLimits(t *testing.T) {
	s, _ := newTestSealer(t)
	sess := testSession()
	sess.Tags, sess.TransitiveTagKeys = nil, nil
	for i := range 50 {
		key := fmt.Sprintf("%03d", i) + strings.Repeat("k", 125)
		sess.Tags = append(sess.Tags, Tag{Key: key, Value: strings.Repeat("v", 256)})
		sess.TransitiveTagKeys = append(sess.TransitiveTagKeys, key)
	}
	creds, err := s.Issue(sess)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("token with 50 maximal tags: %d bytes", len(creds.SessionToken))
	if _, _, err := s.LookupAt(creds.AccessKeyID, creds.SessionToken, issueTime); err != nil {
		t.Fatal(err)
	}
	sess = testSession()
	sess.Tags = []Tag{{Key: "big", Value: strings.Repeat("v", MaxSessionTokenLen)}}
	if _, err := s.Issue(sess); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Errorf("Issue of an oversized session = %v, want a size error", err)
	}
}

func TestIssueRejectsBadTimes(t *testing.T) {
	s, _ := newTestSealer(t)
	sess := testSession()
	sess.Expiration = sess.IssuedAt
	if _, err := s.Issue(sess); err == nil {
		t.Error("Issue accepted a session that expires when issued")
	}
}

// FuzzLookup feeds arbitrary tokens to the unseal path: it must never panic and never
// accept a token it did not issue. Seeds are in testdata/fuzz/FuzzLookup.
func FuzzLookup(f *testing.F) {
	key, err := ParseStateKey([]byte(base64.StdEncoding.EncodeToString([]byte("fuzz-state-key-0123456789abcdef!"))))
	if err != nil {
		f.Fatal(err)
	}
	s, err := NewSealer(key)
	if err != nil {
		f.Fatal(err)
	}
	sess := testSession()
	sess.AccessKeyID = "ASIAFUZZFUZZFUZZFUZZ"
	creds, err := s.Issue(sess)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sess.AccessKeyID, creds.SessionToken)
	f.Fuzz(func(t *testing.T, keyID, token string) {
		got, secret, err := s.LookupAt(keyID, token, issueTime)
		if err != nil {
			if got != nil || secret != "" {
				t.Fatal("error with a session or secret")
			}
			return
		}
		// Only tokens sealed with this key open, and the fuzz key never sealed anything
		// but this session.
		if keyID != sess.AccessKeyID || got.RoleARN != sess.RoleARN || secret != creds.SecretAccessKey {
			t.Fatalf("accepted a token the sealer did not issue: key id %q, session %v", keyID, got)
		}
	})
}

// FuzzDecodeSession feeds arbitrary plaintexts to the session decoder, which only
// sealed tokens reach: it must not panic whatever the bytes.
func FuzzDecodeSession(f *testing.F) {
	s, _ := newTestSealer(f)
	sess := testSession()
	if _, err := s.Issue(sess); err != nil {
		f.Fatal(err)
	}
	plain, err := sessionJSON(sess)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(plain)
	f.Fuzz(func(t *testing.T, plain []byte) {
		raw := s.seal(plain)
		got, err := s.unseal(raw)
		if err == nil && (got.AccessKeyID == "" || got.Expiration.IsZero()) {
			t.Fatal("decoded a session without key id or expiration")
		}
	})
}
