package jwks

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/podiam/podiam/internal/oidc"
)

// Source fetches an issuer's JSON Web Key Set document.
type Source interface {
	// Fetch returns the JWKS document. KeySet reports its errors wrapped in
	// ErrFetch.
	Fetch(ctx context.Context) ([]byte, error)
}

// DefaultMinRefetchInterval is the least time between two fetches of a
// KeySet's source.
const DefaultMinRefetchInterval = 10 * time.Second

// DefaultMaxAge is how long fetched keys are used before they are refetched.
const DefaultMaxAge = time.Hour

// Options tune a KeySet; the zero value gives the defaults.
type Options struct {
	// MinRefetchInterval is the least time between two fetches (after a
	// success or a failure); DefaultMinRefetchInterval when 0.
	MinRefetchInterval time.Duration
	// MaxAge is how long fetched keys are used before the next Verify
	// refetches them (keeping them if that fails), so that a key the issuer
	// removed stops verifying; DefaultMaxAge when 0.
	MaxAge time.Duration
	// Now returns the current time; time.Now when nil.
	Now func() time.Time
}

// key is one decoded public key of the set.
type key struct {
	kid string
	alg string // the JWK's alg, "" when absent
	pub crypto.PublicKey
}

// keys is an immutable snapshot of a fetched key set.
type keys struct {
	byKid   map[string][]key
	fetched time.Time
}

// KeySet is the cached keys of one issuer, safe for concurrent use. Keys are
// decoded once per fetch; Verify on a known kid takes no lock.
type KeySet struct {
	src Source
	o   Options

	cur    atomic.Pointer[keys]
	flight singleflight.Group

	mu          sync.Mutex // guards lastAttempt and lastErr
	lastAttempt time.Time
	lastErr     error
}

// NewKeySet returns a KeySet over src. It fetches nothing until the first
// Verify (or Refresh).
func NewKeySet(src Source, o Options) *KeySet {
	if o.MinRefetchInterval <= 0 {
		o.MinRefetchInterval = DefaultMinRefetchInterval
	}
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &KeySet{src: src, o: o}
}

// Refresh fetches the keys now unless a fetch started less than
// MinRefetchInterval ago, merging with a fetch in progress; on failure the
// cached keys stay. It returns an error wrapping ErrFetch when the fetch (or
// the last one, when rate-limited) failed.
func (ks *KeySet) Refresh(ctx context.Context) error {
	ch := ks.start(ctx)
	select {
	case r := <-ch:
		return r.Err
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrFetch, ctx.Err())
	}
}

// start starts a fetch, or joins the one in progress.
func (ks *KeySet) start(ctx context.Context) <-chan singleflight.Result {
	return ks.flight.DoChan("", func() (any, error) {
		// The fetch is shared by every waiting caller: one caller giving
		// up must not cancel it for the others. The source bounds its time.
		return nil, ks.fetch(context.WithoutCancel(ctx))
	})
}

// mayFetch tells whether the rate limit allows a fetch at now.
func (ks *KeySet) mayFetch(now time.Time) bool {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	return ks.lastAttempt.IsZero() || now.Sub(ks.lastAttempt) >= ks.o.MinRefetchInterval
}

// rateLimitedError is the error of a fetch the rate limit skipped: the
// error of the last fetch, which it wraps, is not news. Verify tells it from
// a fetch that failed just now.
type rateLimitedError struct{ last error }

func (e *rateLimitedError) Error() string {
	return e.last.Error() + " (last fetch; refetch rate-limited)"
}
func (e *rateLimitedError) Unwrap() error { return e.last }

// fetch fetches and decodes the keys, rate-limited.
func (ks *KeySet) fetch(ctx context.Context) error {
	now := ks.o.Now()
	ks.mu.Lock()
	if !ks.lastAttempt.IsZero() && now.Sub(ks.lastAttempt) < ks.o.MinRefetchInterval {
		err := ks.lastErr
		ks.mu.Unlock()
		if err != nil {
			return &rateLimitedError{last: err}
		}
		return nil
	}
	ks.lastAttempt = now
	ks.mu.Unlock()

	set, err := ks.load(ctx)
	if err == nil {
		set.fetched = now
		ks.cur.Store(set)
	}
	ks.mu.Lock()
	ks.lastErr = err
	ks.mu.Unlock()
	return err
}

// load fetches the document and decodes its keys.
func (ks *KeySet) load(ctx context.Context) (*keys, error) {
	doc, err := ks.src.Fetch(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFetch, err)
	}
	set, err := decodeKeys(doc)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFetch, err)
	}
	return set, nil
}

// decodeKeys decodes a JWKS. Keys podiam cannot verify with (other types,
// "use" other than "sig", bad members) are skipped, as a relying party skips
// keys it does not understand; a document with no usable key is an error.
func decodeKeys(doc []byte) (*keys, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(doc, &set); err != nil {
		return nil, fmt.Errorf("JWKS is not a JSON object with a \"keys\" array: %w", err)
	}
	out := &keys{byKid: make(map[string][]key, len(set.Keys))}
	var skipped []error
	for i, raw := range set.Keys {
		var k oidc.JWK
		if err := json.Unmarshal(raw, &k); err != nil {
			skipped = append(skipped, fmt.Errorf("key %d: %w", i+1, err))
			continue
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		pub, err := k.PublicKey()
		if err != nil {
			skipped = append(skipped, fmt.Errorf("key %d (kid %q): %w", i+1, k.Kid, err))
			continue
		}
		out.byKid[k.Kid] = append(out.byKid[k.Kid], key{kid: k.Kid, alg: k.Alg, pub: pub})
	}
	if len(out.byKid) == 0 {
		return nil, fmt.Errorf("JWKS has no usable signing key (RSA or EC P-256/384/521): %w", errors.Join(skipped...))
	}
	return out, nil
}

// Verify checks tok's signature with the issuer's key named by its kid (a
// token without kid uses the keys whose kid is "", which AWS STS requires of
// legacy clusters), refetching the keys once (rate-limited) when none
// matches; keys older than MaxAge are refetched in the background. It
// returns nil or an error wrapping ErrAlgorithm, ErrUnknownKey, ErrSignature
// or ErrFetch. An unknown kid is ErrFetch only when the keys were never
// fetched or the refetch for it failed; when the refetch is rate-limited it
// is ErrUnknownKey, even if the last fetch failed. It checks neither claims
// nor time.
func (ks *KeySet) Verify(ctx context.Context, tok *Token) error {
	if tok == nil {
		return fmt.Errorf("%w: no token", ErrMalformed)
	}
	if _, ok := algorithms[tok.Alg]; !ok {
		return fmt.Errorf("%w: alg %q; only RS256, ES256, ES384 and ES512 are accepted", ErrAlgorithm, short(tok.Alg))
	}
	set := ks.cur.Load()
	if set != nil {
		if now := ks.o.Now(); now.Sub(set.fetched) >= ks.o.MaxAge && ks.mayFetch(now) {
			// Refetch in the background: the cached keys serve this
			// request, so a slow or unreachable issuer does not delay the
			// verification of keys already known.
			ks.start(ctx)
		}
	} else {
		err := ks.Refresh(ctx)
		if set = ks.cur.Load(); set == nil {
			if err == nil { // cannot happen: a fetch without error stores keys
				err = fmt.Errorf("%w: no keys fetched", ErrFetch)
			}
			return err // never fetched: wraps ErrFetch
		}
	}
	cands := set.byKid[tok.Kid]
	if len(cands) == 0 {
		// Perhaps a key the issuer rotated in since the last fetch.
		err := ks.Refresh(ctx)
		set = ks.cur.Load()
		cands = set.byKid[tok.Kid]
		if len(cands) == 0 {
			// A fetch that failed just now may have missed the key: the
			// issuer is unreachable (ErrFetch, which callers may retry).
			// When the refetch was rate-limited, the cached keys are the
			// issuer's latest answer and do not have the key, whatever
			// became of a later (background) fetch.
			var rl *rateLimitedError
			if err != nil && !errors.As(err, &rl) {
				return err
			}
			return fmt.Errorf("%w: the issuer's JWKS has no key with kid %q", ErrUnknownKey, short(tok.Kid))
		}
	}
	// Several keys share a kid only in legacy sets (kid ""); any may verify.
	var mismatch error
	tried := false
	for _, k := range cands {
		if err := checkKeyAlg(k, tok.Alg); err != nil {
			mismatch = err
			continue
		}
		if verifySignature(tok.Alg, k.pub, tok.signingInput, tok.signature) {
			return nil
		}
		tried = true
	}
	if !tried {
		return mismatch
	}
	return fmt.Errorf("%w: with the key of kid %q", ErrSignature, short(tok.Kid))
}

// short cuts a value from the token for error messages, which end up in
// logs: a kid is a few dozen characters, a token may carry 20,000.
func short(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}

// algParams describes an accepted JWS algorithm.
type algParams struct {
	hash  crypto.Hash
	curve elliptic.Curve // nil for RSA
}

// algorithms are the only algorithms Verify accepts: those AWS STS accepts
// and kube-apiserver signs with.
var algorithms = map[string]algParams{
	"RS256": {hash: crypto.SHA256},
	"ES256": {hash: crypto.SHA256, curve: elliptic.P256()},
	"ES384": {hash: crypto.SHA384, curve: elliptic.P384()},
	"ES512": {hash: crypto.SHA512, curve: elliptic.P521()},
}

// checkKeyAlg returns an error wrapping ErrAlgorithm when k cannot verify alg.
func checkKeyAlg(k key, alg string) error {
	if k.alg != "" && k.alg != alg {
		return fmt.Errorf("%w: the token's alg is %s but the key of kid %q is for %s", ErrAlgorithm, alg, short(k.kid), k.alg)
	}
	p, ok := algorithms[alg]
	if !ok {
		return fmt.Errorf("%w: alg %q", ErrAlgorithm, alg)
	}
	switch pub := k.pub.(type) {
	case *rsa.PublicKey:
		if p.curve == nil {
			return nil
		}
	case *ecdsa.PublicKey:
		if p.curve != nil && pub.Curve == p.curve {
			return nil
		}
	}
	return fmt.Errorf("%w: the token's alg is %s but the key of kid %q is %s", ErrAlgorithm, alg, short(k.kid), describeKey(k.pub))
}

// describeKey names a key's type for errors.
func describeKey(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return "RSA"
	case *ecdsa.PublicKey:
		return "EC " + k.Curve.Params().Name
	}
	return fmt.Sprintf("%T", pub)
}

// verifySignature checks sig over input with pub, whose type checkKeyAlg
// matched to alg. ES* signatures are r||s, each the curve's size (RFC 7518
// §3.4), not ASN.1.
func verifySignature(alg string, pub crypto.PublicKey, input, sig []byte) bool {
	p := algorithms[alg]
	// The SumNNN functions hash without allocating, unlike a hash.Hash.
	var sum [sha512.Size]byte
	var digest []byte
	switch p.hash {
	case crypto.SHA256:
		d := sha256.Sum256(input)
		digest = append(sum[:0], d[:]...)
	case crypto.SHA384:
		d := sha512.Sum384(input)
		digest = append(sum[:0], d[:]...)
	case crypto.SHA512:
		d := sha512.Sum512(input)
		digest = append(sum[:0], d[:]...)
	default:
		return false
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return rsa.VerifyPKCS1v15(k, crypto.SHA256, digest, sig) == nil
	case *ecdsa.PublicKey:
		size := (p.curve.Params().BitSize + 7) / 8
		if len(sig) != 2*size {
			return false
		}
		r := new(big.Int).SetBytes(sig[:size])
		s := new(big.Int).SetBytes(sig[size:])
		return ecdsa.Verify(k, digest, r, s)
	}
	return false
}
