package oidc

import (
	"bytes"
	"cmp"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
)

// JWK member values kube-apiserver writes.
const (
	useSig   = "sig"
	ktyRSA   = "RSA"
	ktyEC    = "EC"
	algRS256 = "RS256"
)

// NewJWKS returns the JSON Web Key Set kube-apiserver serves at
// /openid/v1/jwks for keys: one signing key each, with the kid, alg and use
// kube-apiserver gives it, sorted by kid, a key given more than once only
// once. kube-apiserver itself lists the keys in the order of its
// --service-account-key-file flags (and repeats a repeated key); sorting makes
// the output independent of that order, and the members of each key are
// byte for byte the API server's.
//
// With legacyEmptyKid, a copy of each RSA key with "kid": "" follows the
// sorted keys: AWS STS looks a token without a kid header (tokens of
// Kubernetes before 1.16) up under the empty kid.
func NewJWKS(keys []crypto.PublicKey, legacyEmptyKid bool) (*JWKS, error) {
	if len(keys) == 0 {
		return nil, errors.New("no keys for the JWKS")
	}
	seen := map[string]bool{}
	set := &JWKS{Keys: []JWK{}}
	for i, key := range keys {
		jwk, err := newJWK(key)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i+1, err)
		}
		if seen[jwk.Kid] {
			continue
		}
		seen[jwk.Kid] = true
		set.Keys = append(set.Keys, jwk)
	}
	slices.SortFunc(set.Keys, func(a, b JWK) int { return cmp.Compare(a.Kid, b.Kid) })
	if legacyEmptyKid {
		for _, k := range slices.Clone(set.Keys) {
			if k.Kty == ktyRSA {
				k.Kid = ""
				set.Keys = append(set.Keys, k)
			}
		}
	}
	return set, nil
}

// newJWK returns the JWK of one public key (a private key is reduced to its
// public half), as kube-apiserver encodes it (go-jose): RSA n and e as
// unpadded base64url of their big-endian bytes without leading zeros, EC x and
// y padded to the curve's coordinate size.
func newJWK(key crypto.PublicKey) (JWK, error) {
	if private, ok := key.(crypto.Signer); ok {
		key = private.Public()
	}
	if err := checkKey(key); err != nil {
		return JWK{}, err
	}
	kid, err := KeyID(key)
	if err != nil {
		return JWK{}, err
	}
	b64 := base64.RawURLEncoding.EncodeToString
	switch k := key.(type) {
	case *rsa.PublicKey:
		var e [8]byte
		binary.BigEndian.PutUint64(e[:], uint64(k.E))
		return JWK{Use: useSig, Kty: ktyRSA, Kid: kid, Alg: algRS256,
			N: b64(k.N.Bytes()), E: b64(bytes.TrimLeft(e[:], "\x00"))}, nil
	case *ecdsa.PublicKey:
		crv, alg, err := curveParams(k.Curve)
		if err != nil {
			return JWK{}, err
		}
		point, err := k.Bytes() // 0x04 || X || Y, each padded to the coordinate size
		if err != nil {
			return JWK{}, fmt.Errorf("encoding the ECDSA key: %w", err)
		}
		size := (len(point) - 1) / 2
		return JWK{Use: useSig, Kty: ktyEC, Kid: kid, Crv: crv, Alg: alg,
			X: b64(point[1 : 1+size]), Y: b64(point[1+size:])}, nil
	}
	return JWK{}, fmt.Errorf("unsupported key type %T", key) // checkKey let it through
}

// Marshal returns the JWKS as kube-apiserver serves it: compact JSON, keys
// in the set's order, members in kube-apiserver's order, no trailing newline.
func (j *JWKS) Marshal() ([]byte, error) {
	if j == nil {
		return nil, errors.New("nil JWKS")
	}
	out := *j
	if out.Keys == nil {
		out.Keys = []JWK{}
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("encoding the JWKS: %w", err)
	}
	return b, nil
}

// Algorithms returns the distinct alg values of the set's keys, sorted: the
// id_token_signing_alg_values_supported of the discovery document.
func (j *JWKS) Algorithms() []string {
	var algs []string
	for _, k := range j.Keys {
		if k.Alg != "" && !slices.Contains(algs, k.Alg) {
			algs = append(algs, k.Alg)
		}
	}
	slices.Sort(algs)
	return algs
}

// rawJWK is a JWK as read, with the private members present only to refuse
// them: a published JWKS must never carry a private key.
type rawJWK struct {
	JWK
	D  json.RawMessage `json:"d"`
	P  json.RawMessage `json:"p"`
	Q  json.RawMessage `json:"q"`
	DP json.RawMessage `json:"dp"`
	DQ json.RawMessage `json:"dq"`
	QI json.RawMessage `json:"qi"`
	K  json.RawMessage `json:"k"`
}

// ParseJWKS reads a JSON Web Key Set of signing keys such as kube-apiserver
// serves, keeping the keys in their order and their member values as
// written (members podiam does not use are dropped). Each key must be an RSA
// (RS256, at least 2048 bits) or EC (P-256/ES256, P-384/ES384, P-521/ES512)
// public key whose members decode to a valid key, with "use" "sig" or absent;
// a key with private members is refused. Errors name the key by index and
// kid, never its material.
func ParseJWKS(data []byte) (*JWKS, error) {
	var doc struct {
		Keys *[]json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("JWKS is not a JSON object with a \"keys\" array: %w", err)
	}
	if doc.Keys == nil {
		return nil, errors.New(`JWKS has no "keys" array`)
	}
	if len(*doc.Keys) == 0 {
		return nil, errors.New(`JWKS has no keys ("keys" is empty)`)
	}
	set := &JWKS{Keys: make([]JWK, 0, len(*doc.Keys))}
	for i, raw := range *doc.Keys {
		var k rawJWK
		if err := json.Unmarshal(raw, &k); err != nil {
			return nil, fmt.Errorf("JWKS key %d: not a JSON object with string members: %w", i+1, err)
		}
		if err := k.check(); err != nil {
			return nil, fmt.Errorf("JWKS key %d (kid %q): %w", i+1, k.Kid, err)
		}
		set.Keys = append(set.Keys, k.JWK)
	}
	return set, nil
}

// check validates a key read by ParseJWKS.
func (k *rawJWK) check() error {
	for _, m := range []json.RawMessage{k.D, k.P, k.Q, k.DP, k.DQ, k.QI, k.K} {
		if m != nil {
			return errors.New("holds private or symmetric key material; publish public keys only")
		}
	}
	if k.Use != "" && k.Use != useSig {
		return fmt.Errorf(`"use" is %q; signing keys have "sig"`, k.Use)
	}
	pub, err := k.PublicKey()
	if err != nil {
		return err
	}
	want, err := newJWK(pub)
	if err != nil {
		return err
	}
	if k.Alg != want.Alg {
		return fmt.Errorf(`"alg" is %q; kube-apiserver signs with this key as %q`, k.Alg, want.Alg)
	}
	return nil
}

// PublicKey decodes the key's members into an *rsa.PublicKey or an
// *ecdsa.PublicKey, checking that they form a valid key.
func (k JWK) PublicKey() (crypto.PublicKey, error) {
	switch k.Kty {
	case ktyRSA:
		if k.Crv != "" || k.X != "" || k.Y != "" {
			return nil, errors.New(`RSA key with EC members ("crv", "x" or "y")`)
		}
		n, err := decodeMember("n", k.N)
		if err != nil {
			return nil, err
		}
		e, err := decodeMember("e", k.E)
		if err != nil {
			return nil, err
		}
		if len(e) > 4 || e[0] == 0 {
			return nil, errors.New(`"e" is not a valid RSA exponent`)
		}
		exp := new(big.Int).SetBytes(e).Int64()
		if exp < 3 || exp%2 == 0 {
			return nil, errors.New(`"e" is not a valid RSA exponent`)
		}
		if n[0] == 0 {
			return nil, errors.New(`"n" has leading zero bytes`)
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(exp)}
		if err := checkKey(pub); err != nil {
			return nil, err
		}
		return pub, nil
	case ktyEC:
		if k.N != "" || k.E != "" {
			return nil, errors.New(`EC key with RSA members ("n" or "e")`)
		}
		var curve elliptic.Curve
		switch k.Crv {
		case "P-256":
			curve = elliptic.P256()
		case "P-384":
			curve = elliptic.P384()
		case "P-521":
			curve = elliptic.P521()
		default:
			return nil, fmt.Errorf(`"crv" is %q; want P-256, P-384 or P-521`, k.Crv)
		}
		size := (curve.Params().BitSize + 7) / 8
		x, err := decodeMember("x", k.X)
		if err != nil {
			return nil, err
		}
		y, err := decodeMember("y", k.Y)
		if err != nil {
			return nil, err
		}
		if len(x) != size || len(y) != size {
			return nil, fmt.Errorf(`"x" and "y" must be %d bytes each for %s`, size, k.Crv)
		}
		point := append(append([]byte{4}, x...), y...)
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, point)
		if err != nil {
			return nil, fmt.Errorf("not a point on %s", k.Crv)
		}
		return pub, nil
	}
	return nil, fmt.Errorf(`"kty" is %q; want "RSA" or "EC"`, k.Kty)
}

// decodeMember decodes a non-empty unpadded base64url member.
func decodeMember(name, value string) ([]byte, error) {
	if value == "" {
		return nil, fmt.Errorf("%q is missing", name)
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(value)
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("%q is not unpadded base64url", name)
	}
	return b, nil
}
