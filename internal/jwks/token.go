package jwks

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// MaxTokenSize is the largest token Parse accepts, in bytes: AWS STS's limit
// for a WebIdentityToken (20,000 characters in the STS API model). Larger
// input is refused before any decoding.
const MaxTokenSize = 20000

// Token is a parsed, not yet verified, JWS compact serialization.
type Token struct {
	// Alg, Kid and Typ are the header's members ("" when absent).
	Alg, Kid, Typ string
	// HasKid tells a token without a kid member from one with "kid": "".
	HasKid bool
	// Claims are the decoded claims. Nothing in them is trusted before
	// KeySet.Verify returned nil.
	Claims Claims

	signingInput []byte // header.payload, as received
	signature    []byte
}

// Claims are the registered claims a verifier reads and the Kubernetes
// claim, decoded by Parse; any other claim is decoded on demand by Claim.
// A parsed Claims is never modified, so it is safe for concurrent use.
type Claims struct {
	Issuer  string
	Subject string
	// Audience holds aud, given as a string or a list of strings.
	Audience []string
	// Expiry, NotBefore and IssuedAt are exp, nbf and iat (NumericDate,
	// integer or not), nil when absent.
	Expiry, NotBefore, IssuedAt *time.Time
	// Kubernetes is the "kubernetes.io" claim, nil when absent.
	Kubernetes *KubernetesClaims

	payload []byte   // the claims' JSON, as received
	members []member // every claim, in the order received

	// Storage the fields above point into: a parsed token is one object
	// rather than a dozen small ones.
	memberBuf [16]member
	audBuf    [1]string
	times     [3]time.Time
	kube      KubernetesClaims
	refs      [3]ObjectRef
}

// member locates one claim: its value is payload[start:end].
type member struct {
	name       string
	start, end int
}

// Claim returns the claim name as decoded JSON (objects are map[string]any,
// arrays []any, numbers float64, null nil) and whether the token has it. It
// decodes the claim's value on each call, from the bytes Parse validated,
// and returns a fresh value the caller may keep or modify. It reports false
// for a claim absent, or whose number does not fit a float64.
func (c *Claims) Claim(name string) (any, bool) {
	for _, m := range c.members {
		if m.name != name {
			continue
		}
		var v any
		if err := json.Unmarshal(c.payload[m.start:m.end], &v); err != nil {
			return nil, false
		}
		return v, true
	}
	return nil, false
}

// KubernetesClaims is the "kubernetes.io" claim of a service-account token.
type KubernetesClaims struct {
	Namespace      string
	ServiceAccount *ObjectRef
	Pod            *ObjectRef
	Node           *ObjectRef
}

// ObjectRef names an object the token is bound to.
type ObjectRef struct {
	Name, UID string
}

// b64 is the encoding of the three parts: base64url, unpadded, and strict so
// that a part has exactly one spelling (no trailing bits, no newlines).
var b64 = base64.RawURLEncoding.Strict()

// compactChars are the bytes of a JWS compact serialization.
var compactChars = func() (t [256]bool) {
	for _, c := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_." {
		t[c] = true
	}
	return t
}()

// Parse decodes a token without verifying it. It returns an error wrapping
// ErrMalformed for anything but a JWS compact serialization of at most
// MaxTokenSize bytes whose header and claims are JSON objects (no duplicate
// names, valid UTF-8) with members of the right types. Header members other
// than alg, kid, typ and crit are ignored: keys only ever come from the
// issuer's JWKS.
func Parse(token string) (*Token, error) {
	if len(token) > MaxTokenSize {
		return nil, fmt.Errorf("%w: %d bytes, at most %d are accepted", ErrMalformed, len(token), MaxTokenSize)
	}
	// Only the base64url alphabet and the two dots: the base64 decoder
	// would silently skip \r and \n.
	for i := 0; i < len(token); i++ {
		if !compactChars[token[i]] {
			return nil, fmt.Errorf("%w: byte %d is not a base64url character or '.'", ErrMalformed, i)
		}
	}
	h, rest, ok1 := strings.Cut(token, ".")
	p, s, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.IndexByte(s, '.') >= 0 {
		return nil, fmt.Errorf("%w: not three dot-separated parts (a JWS compact serialization)", ErrMalformed)
	}
	if h == "" || p == "" {
		return nil, fmt.Errorf("%w: empty header or claims", ErrMalformed)
	}
	// One buffer holds the token (the signing input, hashed by Verify, and
	// the base64 the parts are decoded from) and the three decoded parts.
	buf := make([]byte, len(token)+b64.DecodedLen(len(h))+b64.DecodedLen(len(p))+b64.DecodedLen(len(s)))
	src := buf[:copy(buf, token)]
	hb, rest1, err := decodePart(buf[len(src):], src[:len(h)], "header")
	if err != nil {
		return nil, err
	}
	pb, rest2, err := decodePart(rest1, src[len(h)+1:len(h)+1+len(p)], "claims")
	if err != nil {
		return nil, err
	}
	sb, _, err := decodePart(rest2, src[len(h)+1+len(p)+1:], "signature")
	if err != nil {
		return nil, err
	}
	// The strings of the header and claims are substrings of this one copy
	// (those without escapes, which is all of them in practice).
	text := string(buf[len(src) : len(src)+len(hb)+len(pb)])

	d := decoders.Get().(*decoder)
	defer d.release()
	t := &Token{signingInput: src[:len(h)+1+len(p)], signature: sb}
	d.reset(hb, text[:len(hb)])
	if err := t.readHeader(d); err != nil {
		return nil, err
	}
	d.reset(pb, text[len(hb):])
	if err := t.Claims.read(d); err != nil {
		var ce claimError
		if errors.As(err, &ce) {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		return nil, fmt.Errorf("%w: claims are not a JSON object: %v", ErrMalformed, err)
	}
	return t, nil
}

// decodePart decodes the base64url part into the front of buf and returns
// the decoded bytes and the rest of buf.
func decodePart(buf, part []byte, name string) (decoded, rest []byte, err error) {
	n, err := b64.Decode(buf, part)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s is not unpadded base64url", ErrMalformed, name)
	}
	return buf[:n:n], buf[n:], nil
}

// decoder walks the JSON of a header or claims. Decoders are pooled: a
// jsontext.Decoder keeps its state (the stack of names it checks for
// duplicates) between uses.
type decoder struct {
	dec  jsontext.Decoder
	in   bytes.Buffer
	src  []byte // the JSON being read
	text string // src as a string
}

var decoders = sync.Pool{New: func() any { return new(decoder) }}

// reset starts reading b, whose copy as a string is text.
func (d *decoder) reset(b []byte, text string) {
	// A jsontext.Decoder reads a bytes.Buffer in place, without copying.
	d.in = *bytes.NewBuffer(b)
	d.dec.Reset(&d.in)
	d.src, d.text = b, text
}

// release returns d to the pool, holding on to no token.
func (d *decoder) release() {
	d.in = bytes.Buffer{}
	d.dec.Reset(&d.in)
	d.src, d.text = nil, ""
	decoders.Put(d)
}

// offsets returns where the value v just read is in the input.
func (d *decoder) offsets(v jsontext.Value) (start, end int) {
	end = int(d.dec.InputOffset())
	return end - len(v), end
}

// str returns the JSON string v just read: a substring of the input when it
// has no escapes.
func (d *decoder) str(v jsontext.Value) (string, error) {
	start, end := d.offsets(v)
	if bytes.IndexByte(v, '\\') < 0 {
		return d.text[start+1 : end-1], nil
	}
	u, err := jsontext.AppendUnquote(nil, v)
	return string(u), err
}

// openObject reads the '{' of an object.
func (d *decoder) openObject() error {
	tok, err := d.dec.ReadToken()
	if err != nil {
		return err
	}
	if tok.Kind() != '{' {
		return fmt.Errorf("found %s, not an object", tok.Kind())
	}
	return nil
}

// nextName reads the name of the next member of an object, or its closing
// '}', returning ok false then.
func (d *decoder) nextName() (name string, ok bool, err error) {
	if d.dec.PeekKind() == '}' {
		_, err := d.dec.ReadToken()
		return "", false, err
	}
	v, err := d.dec.ReadValue()
	if err != nil {
		return "", false, err
	}
	name, err = d.str(v)
	return name, err == nil, err
}

// end checks that nothing but white space follows the object read.
func (d *decoder) end() error {
	if _, err := d.dec.ReadToken(); err != io.EOF {
		if err == nil {
			err = errors.New("data after the object")
		}
		return err
	}
	return nil
}

// claimError is a claim of the wrong type in claims that are valid JSON.
type claimError string

func (e claimError) Error() string { return string(e) }

// optString reads a string or null ("") member value.
func (d *decoder) optString(name string) (string, error) {
	v, err := d.dec.ReadValue()
	if err != nil {
		return "", err
	}
	switch v.Kind() {
	case 'n':
		return "", nil
	case '"':
		return d.str(v)
	}
	return "", claimError("claim " + name + " is not a string")
}

// readHeader reads the JOSE header members a verifier uses.
func (t *Token) readHeader(d *decoder) error {
	err := func() error {
		if err := d.openObject(); err != nil {
			return err
		}
		for {
			name, ok, err := d.nextName()
			if err != nil || !ok {
				return err
			}
			switch name {
			case "alg":
				t.Alg, err = d.optString(name)
			case "typ":
				t.Typ, err = d.optString(name)
			case "kid":
				if d.dec.PeekKind() == 'n' {
					err = d.dec.SkipValue() // null: no kid
					break
				}
				t.Kid, err = d.optString(name)
				t.HasKid = err == nil
			case "crit":
				// RFC 7515 §4.1.11: extensions named in crit must be understood; none are.
				return errCrit
			default:
				err = d.dec.SkipValue()
			}
			if err != nil {
				return err
			}
		}
	}()
	if err == nil {
		err = d.end()
	}
	switch {
	case err == errCrit:
		return fmt.Errorf("%w: header has crit extensions, none of which is supported", ErrMalformed)
	case err != nil:
		return fmt.Errorf("%w: header is not a JSON object with string alg, kid and typ: %v", ErrMalformed, err)
	}
	return nil
}

var errCrit = errors.New("crit")

// read decodes the claims object of d into c, keeping where every claim is.
func (c *Claims) read(d *decoder) error {
	if d.dec.PeekKind() == 'n' {
		if err := d.dec.SkipValue(); err != nil {
			return err // not the literal null
		}
		return claimError("claims are null, not a JSON object")
	}
	if err := d.openObject(); err != nil {
		return err
	}
	c.members = c.memberBuf[:0]
	for {
		name, ok, err := d.nextName()
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		start := int(d.dec.InputOffset())
		switch name {
		case "iss":
			c.Issuer, err = d.optString(name)
		case "sub":
			c.Subject, err = d.optString(name)
		case "aud":
			err = c.readAudience(d)
		case "exp":
			c.Expiry, err = d.numericDate(name, &c.times[0])
		case "nbf":
			c.NotBefore, err = d.numericDate(name, &c.times[1])
		case "iat":
			c.IssuedAt, err = d.numericDate(name, &c.times[2])
		case "kubernetes.io":
			err = c.readKubernetes(d)
		default:
			err = d.dec.SkipValue()
		}
		if err != nil {
			return err
		}
		end := int(d.dec.InputOffset())
		// start is right after the name: skip the ':' and white space.
		for start < end && strings.IndexByte(": \t\n\r", d.src[start]) >= 0 {
			start++
		}
		c.members = append(c.members, member{name: name, start: start, end: end})
	}
	if err := d.end(); err != nil {
		return err
	}
	c.payload = d.src
	return nil
}

// readAudience reads aud: a string, a list of strings, or null.
func (c *Claims) readAudience(d *decoder) error {
	switch d.dec.PeekKind() {
	case 'n':
		return d.dec.SkipValue()
	case '"':
		v, err := d.dec.ReadValue()
		if err != nil {
			return err
		}
		c.audBuf[0], err = d.str(v)
		c.Audience = c.audBuf[:1]
		return err
	case '[':
		if _, err := d.dec.ReadToken(); err != nil {
			return err
		}
		c.Audience = c.audBuf[:0]
		for i := 0; d.dec.PeekKind() != ']'; i++ {
			v, err := d.dec.ReadValue()
			if err != nil {
				return err
			}
			if v.Kind() != '"' {
				return claimError(fmt.Sprintf("claim aud: element %d is not a string", i))
			}
			a, err := d.str(v)
			if err != nil {
				return err
			}
			c.Audience = append(c.Audience, a)
		}
		_, err := d.dec.ReadToken()
		return err
	}
	return claimError("claim aud is neither a string nor a list of strings")
}

// readKubernetes reads the "kubernetes.io" claim: an object or null.
func (c *Claims) readKubernetes(d *decoder) error {
	switch d.dec.PeekKind() {
	case 'n':
		return d.dec.SkipValue()
	case '{':
	default:
		return claimError("claim kubernetes.io is not an object")
	}
	if err := d.openObject(); err != nil {
		return err
	}
	c.Kubernetes = &c.kube
	for {
		name, ok, err := d.nextName()
		if err != nil || !ok {
			return err
		}
		switch name {
		case "namespace":
			c.kube.Namespace, err = d.optString(name)
		case "serviceaccount":
			c.kube.ServiceAccount, err = d.objectRef(name, &c.refs[0])
		case "pod":
			c.kube.Pod, err = d.objectRef(name, &c.refs[1])
		case "node":
			c.kube.Node, err = d.objectRef(name, &c.refs[2])
		default:
			err = d.dec.SkipValue()
		}
		if ce, ok := err.(claimError); ok {
			return claimError("claim kubernetes.io: " + string(ce))
		}
		if err != nil {
			return err
		}
	}
}

// objectRef reads a {name, uid} object (or null, nil) into r.
func (d *decoder) objectRef(claim string, r *ObjectRef) (*ObjectRef, error) {
	switch d.dec.PeekKind() {
	case 'n':
		return nil, d.dec.SkipValue()
	case '{':
	default:
		return nil, claimError(claim + " is not an object")
	}
	if err := d.openObject(); err != nil {
		return nil, err
	}
	for {
		name, ok, err := d.nextName()
		if err != nil {
			return nil, err
		}
		if !ok {
			return r, nil
		}
		switch name {
		case "name":
			r.Name, err = d.optString(name)
		case "uid":
			r.UID, err = d.optString(name)
		default:
			err = d.dec.SkipValue()
		}
		if ce, ok := err.(claimError); ok {
			return nil, claimError(claim + ": " + string(ce))
		}
		if err != nil {
			return nil, err
		}
	}
}

// maxNumericDate bounds NumericDate claims to years 0001..9999 so that the
// conversion to time.Time cannot overflow.
const maxNumericDate = 253402300799

// numericDate reads a NumericDate member value (seconds since the epoch,
// integer or not) into t, returning nil for null.
func (d *decoder) numericDate(name string, t *time.Time) (*time.Time, error) {
	v, err := d.dec.ReadValue()
	if err != nil {
		return nil, err
	}
	switch v.Kind() {
	case 'n':
		return nil, nil
	case '0':
	default:
		return nil, claimError("claim " + name + " is not a number")
	}
	f, err := strconv.ParseFloat(string(v), 64)
	if err != nil || math.Abs(f) > maxNumericDate {
		return nil, claimError("claim " + name + " is out of range")
	}
	sec, frac := math.Modf(f)
	*t = time.Unix(int64(sec), int64(frac*1e9)).UTC()
	return t, nil
}

// CheckTime checks exp, nbf and iat against now with leeway in either
// direction, returning an error wrapping ErrNoExpiry, ErrExpired,
// ErrNotYetValid or ErrIssuedInFuture, checked in that order. A token
// without exp is refused (service-account tokens always carry one): it is
// not expired but invalid, and ErrNoExpiry does not wrap ErrExpired.
func (c *Claims) CheckTime(now time.Time, leeway time.Duration) error {
	if c.Expiry == nil {
		return fmt.Errorf("%w: a token without exp would never expire", ErrNoExpiry)
	}
	if !now.Add(-leeway).Before(*c.Expiry) {
		return fmt.Errorf("%w: current date/time %s must be before the expiration date/time %s",
			ErrExpired, now.UTC().Format(time.RFC3339), c.Expiry.UTC().Format(time.RFC3339))
	}
	if c.NotBefore != nil && now.Add(leeway).Before(*c.NotBefore) {
		return fmt.Errorf("%w: current date/time %s is before the not-before date/time %s",
			ErrNotYetValid, now.UTC().Format(time.RFC3339), c.NotBefore.UTC().Format(time.RFC3339))
	}
	if c.IssuedAt != nil && now.Add(leeway).Before(*c.IssuedAt) {
		return fmt.Errorf("%w: current date/time %s is before the issue date/time %s",
			ErrIssuedInFuture, now.UTC().Format(time.RFC3339), c.IssuedAt.UTC().Format(time.RFC3339))
	}
	return nil
}
