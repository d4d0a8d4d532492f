package oidc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"
)

// PublishOptions says what to publish.
type PublishOptions struct {
	// Issuer is the issuer URL the documents are published for; the
	// cluster's own issuer must be the same.
	Issuer string
	// JWKSPath is where the JWKS goes under the destination, and under
	// Issuer in the published jwks_uri. Empty means JWKSPath (the constant).
	JWKSPath string
	// LegacyEmptyKid adds a copy of each RSA key with "kid": "" for tokens
	// signed before Kubernetes 1.16, which carry no kid (SPEC §3).
	LegacyEmptyKid bool
	// AllowKeyRemoval lets a publish drop keys that the destination's JWKS
	// has and the cluster's has not, entries of it that are not valid
	// signing keys, and a JWKS there that does not parse. Without it such
	// keys stay published, and invalid entries or an unreadable JWKS are
	// an error.
	AllowKeyRemoval bool
}

func (o PublishOptions) jwksPath() string {
	if o.JWKSPath == "" {
		return JWKSPath
	}
	return o.JWKSPath
}

// Object is one document to publish at a path under the destination.
type Object struct {
	Path string
	Body []byte
}

// Live is the pair of documents the cluster serves.
type Live struct {
	Discovery []byte
	JWKS      []byte
}

// Source gives the cluster's live documents.
type Source interface {
	Fetch(ctx context.Context) (Live, error)
}

// ClusterSource reads the documents from kube-apiserver, which serves them
// to any identity bound to the ClusterRole system:service-account-issuer-discovery.
type ClusterSource struct {
	// Client is a REST client of the API server, for example
	// clientset.Discovery().RESTClient().
	Client rest.Interface
}

// Fetch implements Source.
func (s ClusterSource) Fetch(ctx context.Context) (Live, error) {
	var l Live
	var err error
	if l.Discovery, err = s.get(ctx, "/"+DiscoveryPath); err != nil {
		return Live{}, err
	}
	if l.JWKS, err = s.get(ctx, "/"+JWKSPath); err != nil {
		return Live{}, err
	}
	return l, nil
}

func (s ClusterSource) get(ctx context.Context, p string) ([]byte, error) {
	body, err := s.Client.Get().AbsPath(p).DoRaw(ctx)
	if err == nil {
		return body, nil
	}
	switch {
	case apierrors.IsNotFound(err):
		return nil, fmt.Errorf("the API server does not serve %s: kube-apiserver serves the issuer documents only when --service-account-issuer is an https URL "+
			"(and the ServiceAccountIssuerDiscovery feature is on, the default since Kubernetes 1.21): %w", p, err)
	case apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err):
		return nil, fmt.Errorf("reading %s from the API server: %w (the identity needs the ClusterRole system:service-account-issuer-discovery)", p, err)
	}
	return nil, fmt.Errorf("reading %s from the API server: %w", p, err)
}

// IssuerMismatchError is returned when the cluster signs tokens for another
// issuer than the one being published: AWS would reject every token.
type IssuerMismatchError struct {
	Cluster, Want string
}

func (e *IssuerMismatchError) Error() string {
	return fmt.Sprintf("the cluster's service-account issuer is %q, not %q: its tokens carry iss=%q, which AWS would not match to this provider. "+
		"Set kube-apiserver's --service-account-issuer=%s (EKS Anywhere: spec.podIamConfig.serviceAccountIssuer). "+
		"During a migration kube-apiserver accepts the flag twice: the first one signs new tokens and is the issuer it serves, "+
		"the others are still accepted, so put %s first",
		e.Cluster, e.Want, e.Cluster, e.Want, e.Want)
}

// KeyChanges say what a publish does to the keys the destination's JWKS
// has and the cluster's has not, named by kid ("" for a legacy copy).
type KeyChanges struct {
	// RetainedKeys are still published, without o.AllowKeyRemoval: tokens
	// signed by them keep verifying.
	RetainedKeys []string
	// RemovedKeys are dropped, with o.AllowKeyRemoval: tokens signed by them
	// stop verifying once the new JWKS is published.
	RemovedKeys []string
	// DroppedKeys are entries of the destination's JWKS that are not
	// published again whatever the flags say: entries that are not valid
	// signing keys (dropped only with o.AllowKeyRemoval; without it they are
	// an error), and keys with one of the cluster's kids but other material.
	DroppedKeys []DroppedKey
	// Unreadable is set when the destination's JWKS does not parse and was
	// replaced (o.AllowKeyRemoval; without it that is an error): which keys
	// it published is unknown.
	Unreadable error
}

// DroppedKey is an entry of the destination's JWKS that a publish drops.
type DroppedKey struct {
	// Index is the entry's 1-based position in the JWKS.
	Index int
	Kid   string
	// Reason says why, without key material.
	Reason string
}

func (d DroppedKey) String() string {
	return fmt.Sprintf("key %d (kid %q): %s", d.Index, d.Kid, d.Reason)
}

// InvalidPublishedKeysError is returned, before anything is written, when
// the destination's JWKS holds entries that are not valid signing keys and
// o.AllowKeyRemoval is not set: keeping them would publish whatever the
// destination holds, dropping them silently could break tokens.
type InvalidPublishedKeysError struct {
	Keys []DroppedKey
}

func (e *InvalidPublishedKeysError) Error() string {
	entries := make([]string, len(e.Keys))
	for i, k := range e.Keys {
		entries[i] = k.String()
	}
	return fmt.Sprintf("the destination's JWKS has entries that are not valid signing keys, so they cannot be published again: %s; "+
		"nothing was written. Remove them from the destination's JWKS, or run with --allow-key-removal to drop them "+
		"(it also removes every other key the cluster does not have)", strings.Join(entries, "; "))
}

// Documents builds the JWKS and the discovery document to publish, in the
// order they must be written (the JWKS first: the discovery document points
// to it), from the cluster's live documents and the JWKS the destination
// publishes now (published; nil when there is none). The JWKS holds the
// cluster's keys plus, unless o.AllowKeyRemoval, the published keys the
// cluster does not have: removing a key breaks every token it signed, so it
// stays until the operator says otherwise (see mergePublished for which
// published keys qualify). The discovery document names the jwks_uri the
// destination serves, <issuer>/<jwks path>, not the API server's own, and
// the algorithms of every key published. It refuses when the cluster's
// issuer is not o.Issuer, and, unless o.AllowKeyRemoval, when published does
// not parse or holds invalid entries.
func Documents(o PublishOptions, live Live, published []byte) ([]Object, KeyChanges, error) {
	if err := ValidateIssuer(o.Issuer); err != nil {
		return nil, KeyChanges{}, fmt.Errorf("--issuer: %w", err)
	}
	jwksPath := o.jwksPath()
	if err := validateJWKSPath(jwksPath); err != nil {
		return nil, KeyChanges{}, err
	}
	var disc Discovery
	if err := json.Unmarshal(live.Discovery, &disc); err != nil {
		return nil, KeyChanges{}, fmt.Errorf("the cluster's discovery document: %w", err)
	}
	if disc.Issuer != o.Issuer {
		return nil, KeyChanges{}, &IssuerMismatchError{Cluster: disc.Issuer, Want: o.Issuer}
	}
	jwks, err := ParseJWKS(live.JWKS)
	if err != nil {
		return nil, KeyChanges{}, fmt.Errorf("the cluster's JWKS: %w", err)
	}
	if o.LegacyEmptyKid {
		jwks = withLegacyEmptyKid(jwks)
	}
	jwks, changes, err := mergePublished(jwks, published, o.AllowKeyRemoval)
	if err != nil {
		return nil, KeyChanges{}, err
	}
	jwksBody, err := jwks.Marshal()
	if err != nil {
		return nil, KeyChanges{}, err
	}
	disc.JWKSURI = JWKSURI(o.Issuer, jwksPath)
	// A retained key may be of an algorithm the cluster no longer uses; a
	// verifier that checks the list must still accept its tokens.
	algs := slices.Concat(disc.IDTokenSigningAlgValuesSupported, jwks.Algorithms())
	slices.Sort(algs)
	disc.IDTokenSigningAlgValuesSupported = slices.Compact(algs)
	discBody, err := disc.Marshal()
	if err != nil {
		return nil, KeyChanges{}, err
	}
	return []Object{{Path: jwksPath, Body: jwksBody}, {Path: DiscoveryPath, Body: discBody}}, changes, nil
}

// UnreadableJWKSError is returned, before anything is written, when the
// destination's JWKS does not parse and o.AllowKeyRemoval is not set:
// replacing it would drop keys nobody can name.
type UnreadableJWKSError struct {
	Err error
}

func (e *UnreadableJWKSError) Error() string {
	return fmt.Sprintf("the destination's JWKS does not parse (%v), so which keys it publishes is unknown; nothing was written. "+
		"Repair or delete it at the destination, or run with --allow-key-removal to replace it "+
		"(tokens signed by keys only it had stop verifying)", e.Err)
}

func (e *UnreadableJWKSError) Unwrap() error { return e.Err }

// publishedEntry is one entry of the destination's JWKS.
type publishedEntry struct {
	index int // 1-based
	key   JWK
	// invalid says why the entry is not a valid signing key; "" when it is.
	invalid string
}

// readPublished reads the destination's JWKS entry by entry, each checked
// as ParseJWKS checks the cluster's keys (public only, RSA of at least
// MinRSABits or EC P-256/384/521, alg matching the key, use sig or absent).
// Unlike ParseJWKS, an invalid entry is reported, not the end of the read;
// the error is for a document that is not a JWKS at all.
func readPublished(data []byte) ([]publishedEntry, error) {
	var doc struct {
		Keys *[]json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("not a JSON object with a \"keys\" array: %w", err)
	}
	if doc.Keys == nil {
		return nil, errors.New(`no "keys" array`)
	}
	entries := make([]publishedEntry, 0, len(*doc.Keys))
	for i, raw := range *doc.Keys {
		e := publishedEntry{index: i + 1}
		var k rawJWK
		if err := json.Unmarshal(raw, &k); err != nil {
			e.invalid = "not a JSON object with string members"
		} else if err := k.check(); err != nil {
			e.key, e.invalid = k.JWK, err.Error()
		} else {
			e.key = k.JWK
			if e.key.Use == "" {
				// A hand-written JWKS may omit it; JWK always writes the
				// member, and "use": "" is not a valid value.
				e.key.Use = useSig
			}
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// mergePublished returns the cluster's keys plus, unless allowRemoval, the
// keys of the destination's JWKS (published, nil when there is none) that
// the cluster lacks: sorted by kid (legacy copies with an empty kid last,
// as NewJWKS puts them), each key once.
//
// Retention trusts the destination's content only as far as it can be
// checked. A published key is kept only if
//   - it is a valid signing key (readPublished);
//   - its kid is none of the cluster's: the cluster decides what its kids
//     mean, so a key with a cluster kid and other material is dropped with
//     a warning (two keys with one kid would let a verifier pick either);
//     a kid that names two different keys in the published JWKS is invalid
//     for the same reason;
//   - with an empty kid, its material is that of an RSA key kept: the
//     legacy copy exists only for tokens of such a key.
//
// Invalid entries, and a published JWKS that does not parse, are an error
// unless allowRemoval, then dropped with a warning (KeyChanges).
func mergePublished(cluster *JWKS, published []byte, allowRemoval bool) (*JWKS, KeyChanges, error) {
	out := &JWKS{}
	seen := map[keyIdentity]bool{}
	clusterKids := map[string]keyIdentity{}
	add := func(k JWK) bool {
		if seen[identity(k)] {
			return false
		}
		seen[identity(k)] = true
		out.Keys = append(out.Keys, k)
		return true
	}
	for _, k := range cluster.Keys {
		add(k)
		clusterKids[k.Kid] = identity(k)
	}
	var changes KeyChanges
	var entries []publishedEntry
	if published != nil {
		var err error
		if entries, err = readPublished(published); err != nil {
			if !allowRemoval {
				return nil, KeyChanges{}, &UnreadableJWKSError{Err: err}
			}
			changes.Unreadable = err
		}
	}
	// A kid that names two different materials is ambiguous.
	materials := map[string]map[keyIdentity]bool{}
	for _, e := range entries {
		if e.invalid == "" && e.key.Kid != "" {
			if materials[e.key.Kid] == nil {
				materials[e.key.Kid] = map[keyIdentity]bool{}
			}
			materials[e.key.Kid][identity(e.key)] = true
		}
	}
	// RSA material of the keys kept, for the legacy copies.
	rsaKept := map[keyIdentity]bool{}
	for _, k := range cluster.Keys {
		if k.Kty == ktyRSA {
			rsaKept[material(k)] = true
		}
	}
	var invalid []DroppedKey
	var candidates []JWK // the keys kept unless allowRemoval, in JWKS order
	for _, e := range entries {
		k := e.key
		clusterKey, clusterKid := clusterKids[k.Kid]
		switch {
		case e.invalid != "":
			invalid = append(invalid, DroppedKey{Index: e.index, Kid: k.Kid, Reason: e.invalid})
		case k.Kid == "":
			// Legacy copies are judged once every key with a kid is.
		case len(materials[k.Kid]) > 1:
			invalid = append(invalid, DroppedKey{Index: e.index, Kid: k.Kid, Reason: "the JWKS has other keys with this kid"})
		case clusterKid && clusterKey == identity(k):
			// The cluster's own key, as published before.
		case clusterKid:
			changes.DroppedKeys = append(changes.DroppedKeys, DroppedKey{Index: e.index, Kid: k.Kid,
				Reason: "the cluster has a key with this kid and other material; the cluster's key is published"})
		default:
			candidates = append(candidates, k)
			if k.Kty == ktyRSA {
				rsaKept[material(k)] = true
			}
		}
	}
	for _, e := range entries {
		k := e.key
		switch {
		case e.invalid != "" || k.Kid != "":
		case !rsaKept[material(k)]:
			invalid = append(invalid, DroppedKey{Index: e.index, Kid: "",
				Reason: "an empty-kid (legacy) copy of no RSA key published with a kid"})
		default:
			candidates = append(candidates, k)
		}
	}
	if len(invalid) > 0 {
		if !allowRemoval {
			slices.SortFunc(invalid, func(a, b DroppedKey) int { return a.Index - b.Index })
			return nil, KeyChanges{}, &InvalidPublishedKeysError{Keys: invalid}
		}
		changes.DroppedKeys = append(changes.DroppedKeys, invalid...)
	}
	slices.SortFunc(changes.DroppedKeys, func(a, b DroppedKey) int { return a.Index - b.Index })
	for _, k := range candidates {
		switch {
		case seen[identity(k)]:
		case allowRemoval:
			seen[identity(k)] = true
			changes.RemovedKeys = append(changes.RemovedKeys, k.Kid)
		default:
			if add(k) {
				changes.RetainedKeys = append(changes.RetainedKeys, k.Kid)
			}
		}
	}
	slices.SortStableFunc(out.Keys, func(a, b JWK) int {
		if (a.Kid == "") != (b.Kid == "") {
			if a.Kid == "" {
				return 1
			}
			return -1
		}
		return strings.Compare(a.Kid, b.Kid)
	})
	return out, changes, nil
}

// JWKSURI is the URL at which a JWKS published at jwksPath under issuer is
// served.
func JWKSURI(issuer, jwksPath string) string {
	return issuer + "/" + jwksPath
}

// validateJWKSPath accepts a clean relative slash-separated path such as
// openid/v1/jwks or keys.json.
func validateJWKSPath(p string) error {
	switch {
	case p == "" || strings.HasPrefix(p, "/") || path.Clean(p) != p || p == "." || p == ".." || strings.HasPrefix(p, "../"):
		return fmt.Errorf("--jwks-path %q: want a relative path such as %s or keys.json, without empty, . or .. segments", p, JWKSPath)
	case p == DiscoveryPath:
		return fmt.Errorf("--jwks-path %q: that is where the discovery document goes", p)
	case strings.ContainsAny(p, "?#\\"):
		return fmt.Errorf("--jwks-path %q: ?, # and \\ would not survive in the jwks_uri", p)
	}
	return nil
}

// withLegacyEmptyKid returns jwks plus, for each RSA key, a copy with an
// empty kid, unless the set already has an empty-kid copy of that key.
func withLegacyEmptyKid(jwks *JWKS) *JWKS {
	out := &JWKS{Keys: slices.Clone(jwks.Keys)}
	for _, k := range jwks.Keys {
		if k.Kty != "RSA" || k.Kid == "" {
			continue
		}
		c := k
		c.Kid = ""
		if !slices.Contains(out.Keys, c) {
			out.Keys = append(out.Keys, c)
		}
	}
	return out
}

// Plan is what one publish does to a destination.
type Plan struct {
	// Objects are all the documents, in write order.
	Objects []Object
	// Changed are the paths of Objects whose content or headers differ
	// from what the destination holds: only these are written.
	Changed []string
	KeyChanges
	// PublishedJWKSPath is where the destination's current JWKS was read:
	// the path its discovery document names, else the one being published.
	PublishedJWKSPath string
}

// NewPlan compares the documents to publish with what the destination holds
// (current, by path).
func NewPlan(objects []Object, current map[string]Current) Plan {
	p := Plan{Objects: objects}
	for _, o := range objects {
		c := current[o.Path]
		if !c.Found || c.StaleHeaders || !bytes.Equal(c.Body, o.Body) {
			p.Changed = append(p.Changed, o.Path)
		}
	}
	return p
}

// keyIdentity is what makes two JWKs the same key for a verifier: the kid a
// token names and the key material. Not the kid alone: the empty kid is
// shared by every legacy copy. Not "use" or "alg": a hand-written JWKS may
// spell those differently for the same key.
type keyIdentity struct {
	Kid, Kty, Crv, N, E, X, Y string
}

func identity(k JWK) keyIdentity {
	return keyIdentity{Kid: k.Kid, Kty: k.Kty, Crv: k.Crv, N: k.N, E: k.E, X: k.X, Y: k.Y}
}

// material is the identity of k's key material, whatever its kid.
func material(k JWK) keyIdentity {
	m := identity(k)
	m.Kid = ""
	return m
}

// RetainedKeyWarning says why the key with kid is still published though
// the cluster does not have it (it may never have had it: the key was read
// from the destination), and how to remove it.
func RetainedKeyWarning(kid string) string {
	msg := fmt.Sprintf("the published key with kid %q is not in the cluster; still published so tokens it signed keep verifying; "+
		"run with --allow-key-removal to remove it", kid)
	if kid == "" {
		msg += " (it is the legacy copy for tokens without a kid: --legacy-empty-kid publishes it for every RSA key)"
	}
	return msg
}

// RemovedKeyWarning says that the key with kid was removed.
func RemovedKeyWarning(kid string) string {
	return fmt.Sprintf("removed the published key with kid %q (--allow-key-removal): tokens signed by it no longer verify", kid)
}

// DroppedKeyWarning says that an entry of the destination's JWKS at
// jwksPath was not published again, and why.
func DroppedKeyWarning(jwksPath string, d DroppedKey) string {
	return fmt.Sprintf("dropped key %d (kid %q) of the published JWKS %s: %s", d.Index, d.Kid, jwksPath, d.Reason)
}

// UnreadableJWKSWarning says that the destination's JWKS at jwksPath did
// not parse and was replaced.
func UnreadableJWKSWarning(jwksPath string, err error) string {
	return fmt.Sprintf("the published JWKS %s did not parse (%v); replaced (--allow-key-removal): which keys it had is unknown, "+
		"and tokens signed by keys only it had no longer verify", jwksPath, err)
}

// Result is what one publish did.
type Result struct {
	Plan
	// Destination names the destination (Destination.String).
	Destination string
	// JWKSURI is the jwks_uri of the published discovery document.
	JWKSURI string
	// Written are the paths written, in order.
	Written []string
}

// Warnings are the lines an operator must read about the keys of this
// publish: an unreadable JWKS replaced, entries dropped, keys retained or
// removed. The command prints them, the sync loop logs them.
func (r Result) Warnings() []string {
	var out []string
	jwksPath := strings.TrimSuffix(r.Destination, "/") + "/" + r.PublishedJWKSPath
	if r.Unreadable != nil {
		out = append(out, UnreadableJWKSWarning(jwksPath, r.Unreadable))
	}
	for _, d := range r.DroppedKeys {
		out = append(out, DroppedKeyWarning(jwksPath, d))
	}
	for _, kid := range r.RetainedKeys {
		out = append(out, RetainedKeyWarning(kid))
	}
	for _, kid := range r.RemovedKeys {
		out = append(out, RemovedKeyWarning(kid))
	}
	return out
}

// Publish reads the cluster's documents from src and the JWKS dest
// publishes now, and writes the documents that changed to dest, the JWKS
// before the discovery document that points to it. It refuses, writing
// nothing, when the issuer differs (an *IssuerMismatchError) and, unless
// o.AllowKeyRemoval, when the destination's JWKS does not parse (an
// *UnreadableJWKSError) or holds entries that are not valid signing keys
// (an *InvalidPublishedKeysError). Published keys the cluster does not have
// stay published (Result.RetainedKeys), or with o.AllowKeyRemoval are
// dropped (Result.RemovedKeys): either way the caller prints
// Result.Warnings.
func Publish(ctx context.Context, src Source, dest Destination, o PublishOptions) (Result, error) {
	live, err := src.Fetch(ctx)
	if err != nil {
		return Result{}, err
	}
	current := map[string]Current{}
	get := func(p string) (Current, error) {
		if c, ok := current[p]; ok {
			return c, nil
		}
		c, err := dest.Get(ctx, p)
		if err != nil {
			return Current{}, err
		}
		current[p] = c
		return c, nil
	}
	for _, p := range []string{DiscoveryPath, o.jwksPath()} {
		if _, err := get(p); err != nil {
			return Result{}, err
		}
	}
	// The keys published now are in the JWKS the destination's discovery
	// document names, which is not where this publish writes when
	// --jwks-path changed.
	publishedPath := o.jwksPath()
	if p, ok := namedJWKSPath(current[DiscoveryPath], o.Issuer); ok {
		c, err := get(p)
		if err != nil {
			return Result{}, err
		}
		if c.Found {
			publishedPath = p
		}
	}
	var published []byte
	if c := current[publishedPath]; c.Found {
		// Non-nil even when empty: an empty object is an unreadable JWKS.
		published = append([]byte{}, c.Body...)
	}
	objects, changes, err := Documents(o, live, published)
	var invalid *InvalidPublishedKeysError
	var unreadable *UnreadableJWKSError
	if errors.As(err, &invalid) || errors.As(err, &unreadable) {
		return Result{}, fmt.Errorf("%s/%s: %w", strings.TrimSuffix(dest.String(), "/"), publishedPath, err)
	}
	if err != nil {
		return Result{}, err
	}
	res := Result{Plan: NewPlan(objects, current), Destination: dest.String(), JWKSURI: JWKSURI(o.Issuer, o.jwksPath())}
	res.KeyChanges, res.PublishedJWKSPath = changes, publishedPath
	for _, obj := range objects {
		if !slices.Contains(res.Changed, obj.Path) {
			continue
		}
		if err := dest.Put(ctx, obj.Path, obj.Body); err != nil {
			return res, err
		}
		res.Written = append(res.Written, obj.Path)
	}
	return res, nil
}

// namedJWKSPath returns the path under issuer of the jwks_uri that the
// discovery document disc names, when it is one a publish could have
// written.
func namedJWKSPath(disc Current, issuer string) (string, bool) {
	if !disc.Found {
		return "", false
	}
	var d Discovery
	if err := json.Unmarshal(disc.Body, &d); err != nil {
		return "", false
	}
	p, ok := strings.CutPrefix(d.JWKSURI, issuer+"/")
	if !ok || validateJWKSPath(p) != nil {
		return "", false
	}
	return p, true
}
