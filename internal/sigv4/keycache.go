package sigv4

import (
	"crypto/hmac"
	"crypto/sha256"
	"sync"
)

// maxCachedKeys bounds the signing-key cache. Keys are only cached after a
// signature verified with them, so the cache holds at most one entry per
// (secret, day, region, service) actually in use; when full it is emptied,
// which also drops the keys of past days.
const maxCachedKeys = 4096

// keyCacheKey names one derived signing key. The secret is part of the key so
// that a rotated secret never finds the old key.
type keyCacheKey struct {
	secret, date, region, service string
}

// keyCache caches derived SigV4 signing keys: deriving one costs four
// HMAC-SHA256 computations, more than the rest of a verification.
type keyCache struct {
	mu   sync.RWMutex
	keys map[keyCacheKey]*signingKey
}

func newKeyCache() *keyCache {
	return &keyCache{keys: make(map[keyCacheKey]*signingKey)}
}

// signingKey is a derived SigV4 signing key in the form HMAC uses it: the
// key XORed with the inner and outer pads. Keeping the pads saves building
// an HMAC state per request.
type signingKey struct {
	ipad, opad [sha256.BlockSize]byte
}

func newSigningKey(key []byte) *signingKey {
	k := &signingKey{}
	// key is a SHA-256 output (32 bytes), shorter than the block, so it is
	// used as is, padded with zeros.
	copy(k.ipad[:], key)
	copy(k.opad[:], key)
	for i := range k.ipad {
		k.ipad[i] ^= 0x36
		k.opad[i] ^= 0x5c
	}
	return k
}

// sum returns HMAC-SHA256(key, msg) = H(opad || H(ipad || msg)) without
// allocating for messages up to a string to sign's usual size.
func (k *signingKey) sum(msg []byte) [sha256.Size]byte {
	var innerBuf [sha256.BlockSize + 256]byte
	inner := append(append(innerBuf[:0], k.ipad[:]...), msg...)
	innerSum := sha256.Sum256(inner)
	var outer [sha256.BlockSize + sha256.Size]byte
	copy(outer[:], k.opad[:])
	copy(outer[sha256.BlockSize:], innerSum[:])
	return sha256.Sum256(outer[:])
}

// get returns the cached signing key for k, or derives it. cached reports
// which, so that the caller stores only keys that verified a signature.
func (c *keyCache) get(k keyCacheKey) (key *signingKey, cached bool) {
	c.mu.RLock()
	key, cached = c.keys[k]
	c.mu.RUnlock()
	if cached {
		return key, true
	}
	return newSigningKey(deriveSigningKey(k.secret, k.date, k.region, k.service)), false
}

// put stores a signing key that verified a signature.
func (c *keyCache) put(k keyCacheKey, key *signingKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.keys) >= maxCachedKeys {
		clear(c.keys)
	}
	c.keys[k] = key
}

// deriveSigningKey computes
// HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date), region), service), "aws4_request").
func deriveSigningKey(secret, date, region, service string) []byte {
	key := hmacSHA256([]byte("AWS4"+secret), date)
	key = hmacSHA256(key, region)
	key = hmacSHA256(key, service)
	return hmacSHA256(key, scopeTerminator)
}

func hmacSHA256(key []byte, data string) []byte {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(data))
	return mac.Sum(nil)
}
