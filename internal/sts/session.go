package sts

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/go-json-experiment/json"
)

// Errors of [Sealer.Lookup]. The STS answers each with AWS's code:
//   - ErrInvalidSessionToken and ErrAccessKeyMismatch: InvalidClientTokenId,
//     "The security token included in the request is invalid.";
//   - ErrSessionExpired: ExpiredToken, "The security token included in the request is expired".
var (
	// ErrInvalidSessionToken: the session token is missing, malformed, or was not
	// sealed with this state key (tampered, or issued by another STS).
	ErrInvalidSessionToken = errors.New("session token does not unseal with the state key")
	// ErrAccessKeyMismatch: the token is genuine but was issued with another access key id.
	ErrAccessKeyMismatch = errors.New("access key id does not match the session token")
	// ErrSessionExpired: the token is genuine but its session has expired.
	ErrSessionExpired = errors.New("session expired")
)

// Tag is a session tag.
type Tag struct {
	Key   string `json:"k"`
	Value string `json:"v"`
}

// Session is what the STS knows about temporary credentials it issued. It is sealed
// into the session token, so any replica holding the same state key can read it back.
// It holds no secret. The one-letter JSON names keep tokens short.
type Session struct {
	// AccessKeyID is the credentials' key id (ASIA…).
	AccessKeyID string `json:"a"`
	// AccountID is the account of the role.
	AccountID string `json:"c"`
	// RoleARN is the assumed role (arn:aws:iam::<acct>:role<path><name>).
	RoleARN string `json:"r"`
	// RoleID is the role's unique id (AROA…).
	RoleID string `json:"i"`
	// SessionName is the RoleSessionName of the request.
	SessionName string `json:"n"`
	// IssuedAt and Expiration bound the session's validity; they are sealed in Unix
	// seconds, the precision of AWS's credentials.
	IssuedAt   time.Time `json:"-"`
	Expiration time.Time `json:"-"`
	// SourceIdentity is AWS's source identity, carried unchanged into chained sessions.
	SourceIdentity string `json:"s,omitempty"`
	// Chained is true when the session was obtained with the credentials of another
	// role session (role chaining): such sessions, and those chained from them, last at
	// most RoleChainingMaxDuration.
	Chained bool `json:"h,omitempty"`
	// Tags are the session tags, including the transitive ones inherited by chaining.
	Tags []Tag `json:"g,omitempty"`
	// TransitiveTagKeys are the keys of Tags that pass on to chained sessions.
	TransitiveTagKeys []string `json:"x,omitempty"`
}

// RoleName returns the last segment of RoleARN: the role's name.
func (s *Session) RoleName() string {
	return s.RoleARN[strings.LastIndexByte(s.RoleARN, '/')+1:]
}

// AssumedRoleARN returns arn:aws:sts::<acct>:assumed-role/<role name>/<session name>.
func (s *Session) AssumedRoleARN() string {
	return "arn:aws:sts::" + s.AccountID + ":assumed-role/" + s.RoleName() + "/" + s.SessionName
}

// AssumedRoleID returns <role id>:<session name>, the AssumedRoleId and caller UserId.
func (s *Session) AssumedRoleID() string { return s.RoleID + ":" + s.SessionName }

// String describes the session for logs (it holds no secret).
func (s *Session) String() string {
	return s.AssumedRoleARN() + " (" + s.AccessKeyID + ", expires " + s.Expiration.UTC().Format(time.RFC3339) + ")"
}

// LogValue describes the session for slog.
func (s *Session) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("arn", s.AssumedRoleARN()),
		slog.String("accessKeyId", s.AccessKeyID),
		slog.Time("expiration", s.Expiration),
		slog.Bool("chained", s.Chained),
	)
}

// Credentials are temporary credentials as the STS returns them.
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	Expiration      time.Time
}

// String describes the credentials without their secret or token.
func (c *Credentials) String() string {
	return c.AccessKeyID + " (secret and token redacted, expires " + c.Expiration.UTC().Format(time.RFC3339) + ")"
}

// LogValue describes the credentials for slog without their secret or token.
func (c *Credentials) LogValue() slog.Value {
	return slog.GroupValue(slog.String("accessKeyId", c.AccessKeyID), slog.Time("expiration", c.Expiration))
}

// StateKeySize is the size of a state key in bytes.
const StateKeySize = 32

// StateKey is the secret that seals session tokens and derives session secrets.
// Replicas and restarts given the same key accept each other's sessions. It prints as
// "[redacted]".
type StateKey struct{ b [StateKeySize]byte }

// String hides the key.
func (StateKey) String() string { return "[redacted]" }

// GoString hides the key from %#v.
func (StateKey) GoString() string { return "sts.StateKey{[redacted]}" }

// GenerateStateKey returns a new random state key.
func GenerateStateKey() (StateKey, error) {
	var k StateKey
	if _, err := rand.Read(k.b[:]); err != nil {
		return StateKey{}, fmt.Errorf("generating state key: %w", err)
	}
	return k, nil
}

// ParseStateKey reads a state key from the content of a key file: the base64
// (standard or URL alphabet, padded or not) or hex encoding of 32 bytes, surrounding
// white space ignored. Raw bytes are refused: a 32-character passphrase would pass
// for a key with far less than 256 bits of entropy, and a binary file is too easily
// damaged by an editor or a copy through a terminal.
func ParseStateKey(data []byte) (StateKey, error) {
	text := bytes.TrimSpace(data)
	var raw []byte
	var err error
	switch {
	case len(text) == hex.EncodedLen(StateKeySize):
		raw, err = hex.DecodeString(string(text))
	default:
		raw, err = base64.StdEncoding.DecodeString(string(text))
		if err != nil {
			raw, err = base64.RawURLEncoding.DecodeString(strings.TrimRight(string(text), "="))
		}
	}
	if err != nil || len(raw) != StateKeySize {
		if len(data) == StateKeySize && isPrintable(data) {
			return StateKey{}, fmt.Errorf("the file holds %d printable characters, a passphrase rather than a key; "+
				"want the base64 or hex encoding of %d random bytes (openssl rand -base64 %d)", StateKeySize, StateKeySize, StateKeySize)
		}
		return StateKey{}, fmt.Errorf("want the base64 or hex encoding of %d bytes (openssl rand -base64 %d); got %d bytes that are neither",
			StateKeySize, StateKeySize, len(data))
	}
	var k StateKey
	copy(k.b[:], raw)
	if k == (StateKey{}) {
		return StateKey{}, errors.New("the key is all zero bytes; generate a random one")
	}
	return k, nil
}

// isPrintable tells whether b is all printable ASCII.
func isPrintable(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// LoadStateKeyFile reads a state key file (see [ParseStateKey]). A file that
// its group or others may read is used, with a warning to log: the key opens
// every session it sealed.
func LoadStateKeyFile(path string, log *slog.Logger) (StateKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return StateKey{}, fmt.Errorf("reading state key: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return StateKey{}, fmt.Errorf("reading state key %s: %w", path, err)
	}
	k, err := ParseStateKey(data)
	if err != nil {
		return StateKey{}, fmt.Errorf("state key file %s: %w", path, err)
	}
	if st, err := f.Stat(); err == nil && st.Mode().Perm()&0o077 != 0 && log != nil {
		log.Warn("the state key file is readable by others than its owner; chmod 600 it",
			"file", path, "mode", st.Mode().Perm().String())
	}
	return k, nil
}

// WriteStateKeyFile writes k base64-encoded to a new file at path, readable by its
// owner only. It refuses to replace an existing file: a new key would invalidate every
// session issued with the old one.
func WriteStateKeyFile(path string, k StateKey) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("writing state key: %w", err)
	}
	_, err = f.WriteString(base64.StdEncoding.EncodeToString(k.b[:]) + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing state key %s: %w", path, err)
	}
	return nil
}

// HKDF info strings: one key per purpose, so a token key can never serve as a secret
// key. The version lets a later format use other keys.
const (
	tokenKeyInfo  = "podiam sts session token v1"
	secretKeyInfo = "podiam sts session secret v1"
)

// tokenVersion is the first byte of a sealed token, also authenticated as data.
const tokenVersion byte = 1

// MaxSessionTokenLen caps the session tokens Issue writes and Lookup reads. A token
// with the most session tags AWS allows (50 tags of 128-character keys and
// 256-character values, all transitive) is about 36 KiB; a typical one is 0.5 KiB.
const MaxSessionTokenLen = 64 << 10

// secretLen is the length in bytes of a derived secret: 30 bytes are 40 base64
// characters, the length of AWS's secret access keys.
const secretLen = 30

// tokenEncoding needs no escaping in headers or query strings.
var tokenEncoding = base64.RawURLEncoding

// Sealer issues session credentials and verifies the ones presented with requests,
// with nothing but the state key: the session token is the session sealed with
// AES-256-GCM, and the secret access key is an HMAC of the access key id. A Sealer is
// safe for concurrent use.
type Sealer struct {
	aead      cipher.AEAD
	secretKey []byte
}

// NewSealer returns a Sealer for the state key.
func NewSealer(key StateKey) (*Sealer, error) {
	tokenKey, err := hkdf.Key(sha256.New, key.b[:], nil, tokenKeyInfo, 32)
	if err != nil {
		return nil, fmt.Errorf("deriving token key: %w", err)
	}
	secretKey, err := hkdf.Key(sha256.New, key.b[:], nil, secretKeyInfo, 32)
	if err != nil {
		return nil, fmt.Errorf("deriving secret key: %w", err)
	}
	block, err := aes.NewCipher(tokenKey)
	if err != nil {
		return nil, fmt.Errorf("token cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("token cipher: %w", err)
	}
	return &Sealer{aead: aead, secretKey: secretKey}, nil
}

// Issue returns credentials for sess. It draws a new access key id when
// sess.AccessKeyID is empty (and stores it in sess). The caller sets the other fields,
// IssuedAt and Expiration included.
func (s *Sealer) Issue(sess *Session) (*Credentials, error) {
	if sess.Expiration.IsZero() || !sess.Expiration.After(sess.IssuedAt) {
		return nil, fmt.Errorf("issuing session %s: expiration must be after issue time", sess.SessionName)
	}
	if sess.AccessKeyID == "" {
		id, err := NewAccessKeyID()
		if err != nil {
			return nil, err
		}
		sess.AccessKeyID = id
	}
	plain, err := sessionJSON(sess)
	if err != nil {
		return nil, err
	}
	token := s.seal(plain)
	if len(token) > MaxSessionTokenLen {
		// Lookup would refuse it; the server limits tags well before this.
		return nil, fmt.Errorf("issuing session %s: session token of %d bytes is longer than %d", sess.SessionName, len(token), MaxSessionTokenLen)
	}
	return &Credentials{
		AccessKeyID:     sess.AccessKeyID,
		SecretAccessKey: s.secret(sess.AccessKeyID),
		SessionToken:    token,
		Expiration:      sess.Expiration,
	}, nil
}

// sealedSession is the sealed form of a Session: the times in Unix seconds, which is
// all the precision AWS's credentials carry, to keep tokens short.
type sealedSession struct {
	*Session
	IssuedAt   int64 `json:"t"`
	Expiration int64 `json:"e"`
}

// sessionJSON encodes a session for sealing.
func sessionJSON(sess *Session) ([]byte, error) {
	plain, err := json.Marshal(sealedSession{Session: sess, IssuedAt: sess.IssuedAt.Unix(), Expiration: sess.Expiration.Unix()})
	if err != nil {
		return nil, fmt.Errorf("encoding session: %w", err)
	}
	return plain, nil
}

// seal encrypts plain into a token: version, random nonce, AES-GCM ciphertext with
// the version as authenticated data, in base64url.
func (s *Sealer) seal(plain []byte) string {
	nonceSize := s.aead.NonceSize()
	buf := make([]byte, 1+nonceSize, 1+nonceSize+len(plain)+s.aead.Overhead())
	buf[0] = tokenVersion
	// crypto/rand.Read never fails (it aborts the program if the system has no randomness).
	_, _ = rand.Read(buf[1:])
	return tokenEncoding.EncodeToString(s.aead.Seal(buf, buf[1:], plain, buf[:1]))
}

// secret derives the secret access key of a session's access key id.
func (s *Sealer) secret(accessKeyID string) string {
	m := hmac.New(sha256.New, s.secretKey)
	m.Write([]byte(accessKeyID))
	return base64.StdEncoding.EncodeToString(m.Sum(nil)[:secretLen])
}

// Lookup returns the session sealed in sessionToken and its secret access key, now.
// See [Sealer.LookupAt].
func (s *Sealer) Lookup(accessKeyID, sessionToken string) (*Session, string, error) {
	return s.LookupAt(accessKeyID, sessionToken, time.Now())
}

// LookupAt returns the session sealed in sessionToken and its secret access key, for
// verifying a request's SigV4 signature. Errors wrap ErrInvalidSessionToken,
// ErrAccessKeyMismatch or ErrSessionExpired (at now); they never contain the token.
func (s *Sealer) LookupAt(accessKeyID, sessionToken string, now time.Time) (*Session, string, error) {
	sess, err := s.unseal(sessionToken)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %s", ErrInvalidSessionToken, err)
	}
	if sess.AccessKeyID != accessKeyID {
		return nil, "", fmt.Errorf("%w: the token belongs to %s, the request is signed with %s", ErrAccessKeyMismatch, sess.AccessKeyID, accessKeyID)
	}
	if !now.Before(sess.Expiration) {
		return nil, "", fmt.Errorf("%w: %s expired at %s", ErrSessionExpired, sess.AssumedRoleARN(), sess.Expiration.UTC().Format(time.RFC3339))
	}
	return sess, s.secret(accessKeyID), nil
}

// unseal decrypts and decodes a session token. Its errors say what is wrong without
// quoting the token.
func (s *Sealer) unseal(token string) (*Session, error) {
	nonceSize := s.aead.NonceSize()
	switch {
	case token == "":
		return nil, errors.New("no session token")
	case len(token) > MaxSessionTokenLen:
		return nil, fmt.Errorf("session token of %d bytes is longer than %d", len(token), MaxSessionTokenLen)
	}
	raw, err := tokenEncoding.DecodeString(token)
	if err != nil {
		return nil, errors.New("session token is not base64url")
	}
	if len(raw) < 1+nonceSize+s.aead.Overhead() || raw[0] != tokenVersion {
		return nil, errors.New("session token has an unknown format")
	}
	plain, err := s.aead.Open(nil, raw[1:1+nonceSize], raw[1+nonceSize:], raw[:1])
	if err != nil {
		return nil, errors.New("session token was not sealed with this state key, or was altered")
	}
	var sess Session
	sealed := sealedSession{Session: &sess}
	if err := json.Unmarshal(plain, &sealed, json.RejectUnknownMembers(true)); err != nil {
		// Only a sealed token gets here: a bug or another version, not an attack.
		return nil, fmt.Errorf("decoding sealed session: %w", err)
	}
	if sealed.Expiration != 0 {
		sess.IssuedAt, sess.Expiration = time.Unix(sealed.IssuedAt, 0).UTC(), time.Unix(sealed.Expiration, 0).UTC()
	}
	if sess.AccessKeyID == "" || sess.Expiration.IsZero() {
		return nil, errors.New("sealed session lacks its access key id or expiration")
	}
	return &sess, nil
}
