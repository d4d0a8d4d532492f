package oidc

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/podiam/podiam/test/fakes3"
)

const pubIssuer = "https://oidc.example.com/cluster-1"

// pubTestKeys loads three distinct public keys from testdata: RSA, EC P-256 and
// EC P-384 (no key generation: fast under -race).
func pubTestKeys(t *testing.T) (rsaKey, ec256, ec384 crypto.PublicKey) {
	t.Helper()
	var out []crypto.PublicKey
	for _, f := range []string{"rsa.pub", "ec-p256.pub", "ec-p384.key"} {
		k, err := LoadKeys(filepath.Join("testdata", "keys", f))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, k[0])
	}
	return out[0], out[1], out[2]
}

// pubLiveDocs returns the documents kube-apiserver with issuer and keys serves:
// its jwks_uri names the API server, not the issuer.
func pubLiveDocs(t *testing.T, issuer string, keys ...crypto.PublicKey) Live {
	t.Helper()
	jwks, err := NewJWKS(keys, false)
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewDiscovery(issuer, "https://10.0.0.1:6443/openid/v1/jwks", jwks, StyleAPIServer)
	if err != nil {
		t.Fatal(err)
	}
	var l Live
	if l.JWKS, err = jwks.Marshal(); err != nil {
		t.Fatal(err)
	}
	if l.Discovery, err = d.Marshal(); err != nil {
		t.Fatal(err)
	}
	return l
}

func publishedKids(t *testing.T, body []byte) []string {
	t.Helper()
	var j JWKS
	if err := json.Unmarshal(body, &j); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, k := range j.Keys {
		out = append(out, k.Kid)
	}
	return out
}

func pubKid(t *testing.T, k crypto.PublicKey) string {
	t.Helper()
	kid, err := KeyID(k)
	if err != nil {
		t.Fatal(err)
	}
	return kid
}

func TestDocuments(t *testing.T) {
	t.Parallel()
	rsaKey, ec256, _ := pubTestKeys(t)
	rsaKid, ecKid := pubKid(t, rsaKey), pubKid(t, ec256)
	sorted := []string{rsaKid, ecKid}
	slices.Sort(sorted)
	live := pubLiveDocs(t, pubIssuer, rsaKey, ec256)

	for _, tc := range []struct {
		name     string
		o        PublishOptions
		live     Live
		jwksPath string
		wantKids []string
		err      string
	}{
		{name: "default path", o: PublishOptions{Issuer: pubIssuer}, live: live,
			jwksPath: JWKSPath, wantKids: sorted},
		{name: "keys.json", o: PublishOptions{Issuer: pubIssuer, JWKSPath: "keys.json"}, live: live,
			jwksPath: "keys.json", wantKids: sorted},
		{name: "legacy empty kid for the RSA key only", o: PublishOptions{Issuer: pubIssuer, LegacyEmptyKid: true}, live: live,
			jwksPath: JWKSPath, wantKids: append(slices.Clone(sorted), "")},
		{name: "issuer mismatch", o: PublishOptions{Issuer: "https://other.example.com"}, live: live,
			err: "--service-account-issuer=https://other.example.com"},
		{name: "issuer mismatch by a trailing slash", o: PublishOptions{Issuer: pubIssuer}, live: pubLiveDocs(t, pubIssuer+"/x", rsaKey),
			err: "not \"" + pubIssuer + "\""},
		{name: "issuer not https", o: PublishOptions{Issuer: "http://oidc.example.com"}, live: live, err: "--issuer"},
		{name: "absolute jwks path", o: PublishOptions{Issuer: pubIssuer, JWKSPath: "/keys.json"}, live: live, err: "--jwks-path"},
		{name: "jwks path escapes", o: PublishOptions{Issuer: pubIssuer, JWKSPath: "../keys.json"}, live: live, err: "--jwks-path"},
		{name: "jwks path not clean", o: PublishOptions{Issuer: pubIssuer, JWKSPath: "a//keys.json"}, live: live, err: "--jwks-path"},
		{name: "jwks path is the discovery path", o: PublishOptions{Issuer: pubIssuer, JWKSPath: DiscoveryPath}, live: live, err: "discovery document"},
		{name: "jwks path with a query", o: PublishOptions{Issuer: pubIssuer, JWKSPath: "keys?x"}, live: live, err: "--jwks-path"},
		{name: "discovery not JSON", o: PublishOptions{Issuer: pubIssuer}, live: Live{Discovery: []byte("<html>"), JWKS: live.JWKS},
			err: "discovery document"},
		{name: "JWKS without keys", o: PublishOptions{Issuer: pubIssuer}, live: Live{Discovery: live.Discovery, JWKS: []byte(`{"keys":[]}`)},
			err: "the cluster's JWKS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, _, err := Documents(tc.o, tc.live, nil)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(objs) != 2 || objs[0].Path != tc.jwksPath || objs[1].Path != DiscoveryPath {
				t.Fatalf("objects %v, want the JWKS at %s, then %s", objectPaths(objs), tc.jwksPath, DiscoveryPath)
			}
			if got := publishedKids(t, objs[0].Body); !slices.Equal(got, tc.wantKids) {
				t.Errorf("kids %q, want %q", got, tc.wantKids)
			}
			var d Discovery
			if err := json.Unmarshal(objs[1].Body, &d); err != nil {
				t.Fatal(err)
			}
			if d.Issuer != pubIssuer || d.JWKSURI != pubIssuer+"/"+tc.jwksPath {
				t.Errorf("discovery issuer %q jwks_uri %q, want %q and %q", d.Issuer, d.JWKSURI, pubIssuer, pubIssuer+"/"+tc.jwksPath)
			}
			if !slices.Equal(d.IDTokenSigningAlgValuesSupported, []string{"ES256", "RS256"}) {
				t.Errorf("algorithms %q, want the cluster's [ES256 RS256]", d.IDTokenSigningAlgValuesSupported)
			}
		})
	}
}

// TestDocumentsMismatchError: the refusal is typed and tells how to fix
// the cluster, including the two-flag migration.
func TestDocumentsMismatchError(t *testing.T) {
	t.Parallel()
	rsaKey, _, _ := pubTestKeys(t)
	_, _, err := Documents(PublishOptions{Issuer: pubIssuer}, pubLiveDocs(t, "https://kubernetes.default.svc", rsaKey), nil)
	var mm *IssuerMismatchError
	if !errors.As(err, &mm) || mm.Cluster != "https://kubernetes.default.svc" || mm.Want != pubIssuer {
		t.Fatalf("error %v, want an *IssuerMismatchError", err)
	}
	for _, want := range []string{"--service-account-issuer=" + pubIssuer, "twice", "first"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message lacks %q: %v", want, err)
		}
	}
}

func objectPaths(objs []Object) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.Path)
	}
	return out
}

func TestNewPlan(t *testing.T) {
	t.Parallel()
	rsaKey, ec256, ec384 := pubTestKeys(t)
	docs := func(keys ...crypto.PublicKey) []Object {
		objs, _, err := Documents(PublishOptions{Issuer: pubIssuer}, pubLiveDocs(t, pubIssuer, keys...), nil)
		if err != nil {
			t.Fatal(err)
		}
		return objs
	}
	holds := func(objs []Object) map[string]Current {
		m := map[string]Current{}
		for _, o := range objs {
			m[o.Path] = Current{Body: o.Body, Found: true}
		}
		return m
	}
	two := docs(rsaKey, ec256)
	three := docs(rsaKey, ec256, ec384)
	staleHeaders := holds(two)
	staleHeaders[DiscoveryPath] = Current{Body: two[1].Body, Found: true, StaleHeaders: true}

	for _, tc := range []struct {
		name        string
		objs        []Object
		current     map[string]Current
		wantChanged []string
	}{
		{name: "empty destination", objs: two, current: nil, wantChanged: []string{JWKSPath, DiscoveryPath}},
		{name: "steady state", objs: two, current: holds(two)},
		{name: "stale headers", objs: two, current: staleHeaders, wantChanged: []string{DiscoveryPath}},
		// A key of a new algorithm changes both documents.
		{name: "key added", objs: three, current: holds(two), wantChanged: []string{JWKSPath, DiscoveryPath}},
		{name: "key removed", objs: two, current: holds(three), wantChanged: []string{JWKSPath, DiscoveryPath}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := NewPlan(tc.objs, tc.current)
			if !slices.Equal(p.Changed, tc.wantChanged) {
				t.Errorf("changed %q, want %q", p.Changed, tc.wantChanged)
			}
		})
	}
}

// TestDocumentsPublishedKeys: keys the destination publishes and the cluster
// no longer has stay in the JWKS (in kid order, legacy copies last, each key
// once) and their algorithms in the discovery document, unless removal is
// allowed.
func TestDocumentsPublishedKeys(t *testing.T) {
	t.Parallel()
	rsaKey, ec256, ec384 := pubTestKeys(t)
	rsaKid, ec256Kid, ec384Kid := pubKid(t, rsaKey), pubKid(t, ec256), pubKid(t, ec384)
	jwks := func(legacy bool, keys ...crypto.PublicKey) *JWKS {
		j, err := NewJWKS(keys, legacy)
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	// The same keys as a hand-written JWKS may spell them: no "use".
	respelled := jwks(false, rsaKey, ec256)
	for i := range respelled.Keys {
		respelled.Keys[i].Use = ""
	}
	// A hand-written key without "use" that the cluster lacks.
	noUse := jwks(false, ec384)
	noUse.Keys[0].Use = ""

	for _, tc := range []struct {
		name                      string
		cluster                   []crypto.PublicKey
		legacy, allowRemoval      bool
		published                 *JWKS
		wantKids, wantAlgs        []string
		wantRetained, wantRemoved []string
	}{
		{name: "nothing published", cluster: []crypto.PublicKey{rsaKey}, wantKids: []string{rsaKid}, wantAlgs: []string{"RS256"}},
		{name: "same keys", cluster: []crypto.PublicKey{rsaKey, ec256}, published: jwks(false, rsaKey, ec256),
			wantKids: sortedKids(rsaKid, ec256Kid), wantAlgs: []string{"ES256", "RS256"}},
		{name: "same keys spelled differently", cluster: []crypto.PublicKey{rsaKey, ec256}, published: respelled,
			wantKids: sortedKids(rsaKid, ec256Kid), wantAlgs: []string{"ES256", "RS256"}},
		{name: "key added", cluster: []crypto.PublicKey{rsaKey, ec256}, published: jwks(false, rsaKey),
			wantKids: sortedKids(rsaKid, ec256Kid), wantAlgs: []string{"ES256", "RS256"}},
		// The RSA key left the cluster, the P-384 key is new: both published,
		// and RS256 stays in the discovery document for the retained key.
		{name: "key retained while a new one is published", cluster: []crypto.PublicKey{ec256, ec384}, published: jwks(false, rsaKey, ec256),
			wantKids: sortedKids(rsaKid, ec256Kid, ec384Kid), wantAlgs: []string{"ES256", "ES384", "RS256"}, wantRetained: []string{rsaKid}},
		{name: "key removed when allowed", cluster: []crypto.PublicKey{ec256, ec384}, published: jwks(false, rsaKey, ec256), allowRemoval: true,
			wantKids: sortedKids(ec256Kid, ec384Kid), wantAlgs: []string{"ES256", "ES384"}, wantRemoved: []string{rsaKid}},
		{name: "retained key without use", cluster: []crypto.PublicKey{rsaKey}, published: noUse,
			wantKids: sortedKids(rsaKid, ec384Kid), wantAlgs: []string{"ES384", "RS256"}, wantRetained: []string{ec384Kid}},
		{name: "legacy copy retained without --legacy-empty-kid", cluster: []crypto.PublicKey{rsaKey}, published: jwks(true, rsaKey),
			wantKids: []string{rsaKid, ""}, wantAlgs: []string{"RS256"}, wantRetained: []string{""}},
		{name: "legacy copy removed when allowed", cluster: []crypto.PublicKey{rsaKey}, published: jwks(true, rsaKey), allowRemoval: true,
			wantKids: []string{rsaKid}, wantAlgs: []string{"RS256"}, wantRemoved: []string{""}},
		{name: "legacy copy of a retained key", cluster: []crypto.PublicKey{ec256}, legacy: true, published: jwks(true, rsaKey, ec256),
			wantKids: append(sortedKids(ec256Kid, rsaKid), ""), wantAlgs: []string{"ES256", "RS256"}, wantRetained: []string{rsaKid, ""}},
		{name: "legacy steady state", cluster: []crypto.PublicKey{rsaKey, ec256}, legacy: true, published: jwks(true, rsaKey, ec256),
			wantKids: append(sortedKids(rsaKid, ec256Kid), ""), wantAlgs: []string{"ES256", "RS256"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := PublishOptions{Issuer: pubIssuer, LegacyEmptyKid: tc.legacy, AllowKeyRemoval: tc.allowRemoval}
			var published []byte
			if tc.published != nil {
				var err error
				if published, err = tc.published.Marshal(); err != nil {
					t.Fatal(err)
				}
			}
			objs, changes, err := Documents(o, pubLiveDocs(t, pubIssuer, tc.cluster...), published)
			if err != nil {
				t.Fatal(err)
			}
			if got := publishedKids(t, objs[0].Body); !slices.Equal(got, tc.wantKids) {
				t.Errorf("kids %q, want %q", got, tc.wantKids)
			}
			set, err := ParseJWKS(objs[0].Body)
			if err != nil {
				t.Fatalf("the published JWKS does not parse: %v\n%s", err, objs[0].Body)
			}
			for _, k := range set.Keys {
				if k.Use != "sig" {
					t.Errorf("kid %q: use %q, want sig", k.Kid, k.Use)
				}
			}
			var d Discovery
			if err := json.Unmarshal(objs[1].Body, &d); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(d.IDTokenSigningAlgValuesSupported, tc.wantAlgs) {
				t.Errorf("algorithms %q, want %q", d.IDTokenSigningAlgValuesSupported, tc.wantAlgs)
			}
			if !slices.Equal(changes.RetainedKeys, tc.wantRetained) || !slices.Equal(changes.RemovedKeys, tc.wantRemoved) {
				t.Errorf("retained %q removed %q, want %q and %q", changes.RetainedKeys, changes.RemovedKeys, tc.wantRetained, tc.wantRemoved)
			}
		})
	}
}

// fakeSource serves fixed live documents, changeable between rounds.
type fakeSource struct {
	mu   sync.Mutex
	live Live
	err  error
}

func (s *fakeSource) Fetch(context.Context) (Live, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.live, s.err
}

func (s *fakeSource) set(l Live, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.live, s.err = l, err
}

// recordingDest records the paths written, in order, and can fail the
// writes of one path.
type recordingDest struct {
	Destination
	mu     sync.Mutex
	puts   []string
	failAt string
}

func (d *recordingDest) Put(ctx context.Context, p string, body []byte) error {
	d.mu.Lock()
	d.puts = append(d.puts, p)
	fail := d.failAt == p
	d.mu.Unlock()
	if fail {
		return errors.New("injected write failure")
	}
	return d.Destination.Put(ctx, p, body)
}

func (d *recordingDest) takePuts() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	p := d.puts
	d.puts = nil
	return p
}

// TestPublishDirectory walks key rotations against a directory: first
// publish, steady state, a new key, a key that left the cluster and is
// retained, the next new key published all the same, an allowed removal.
func TestPublishDirectory(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	rsaKey, ec256, ec384 := pubTestKeys(t)
	// A second key of an algorithm already published.
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ec256b := ec.Public()
	root := t.TempDir()
	dest := &recordingDest{Destination: &DirDestination{Root: root}}
	src := &fakeSource{live: pubLiveDocs(t, pubIssuer, rsaKey)}
	o := PublishOptions{Issuer: pubIssuer}
	both := []string{JWKSPath, DiscoveryPath}

	steps := []struct {
		name       string
		live       Live
		o          PublishOptions
		wantPuts   []string
		wantKids   []string
		wantRemove []string
		wantRetain []string
		err        any
	}{
		{name: "first publish", live: pubLiveDocs(t, pubIssuer, rsaKey), o: o, wantPuts: both, wantKids: []string{pubKid(t, rsaKey)}},
		{name: "steady state", live: pubLiveDocs(t, pubIssuer, rsaKey), o: o, wantKids: []string{pubKid(t, rsaKey)}},
		{name: "new key", live: pubLiveDocs(t, pubIssuer, rsaKey, ec256), o: o, wantPuts: both,
			wantKids: sortedKids(pubKid(t, rsaKey), pubKid(t, ec256))},
		{name: "new key of the same algorithm: the JWKS only", live: pubLiveDocs(t, pubIssuer, rsaKey, ec256, ec256b), o: o, wantPuts: []string{JWKSPath},
			wantKids: sortedKids(pubKid(t, rsaKey), pubKid(t, ec256), pubKid(t, ec256b))},
		// The RSA key left the cluster: it stays published, and nothing
		// changes.
		{name: "key left the cluster: retained", live: pubLiveDocs(t, pubIssuer, ec256, ec256b), o: o,
			wantRetain: []string{pubKid(t, rsaKey)}, wantKids: sortedKids(pubKid(t, rsaKey), pubKid(t, ec256), pubKid(t, ec256b))},
		// The next rotation's key is published while the old one is retained:
		// tokens it signs verify.
		{name: "new key published while one is retained", live: pubLiveDocs(t, pubIssuer, ec256b, ec384), o: o, wantPuts: both,
			wantRetain: sortedKids(pubKid(t, rsaKey), pubKid(t, ec256)),
			wantKids:   sortedKids(pubKid(t, rsaKey), pubKid(t, ec256), pubKid(t, ec256b), pubKid(t, ec384))},
		{name: "other issuer refused", live: pubLiveDocs(t, "https://kubernetes.default.svc", ec256), o: o, err: new(*IssuerMismatchError),
			wantKids: sortedKids(pubKid(t, rsaKey), pubKid(t, ec256), pubKid(t, ec256b), pubKid(t, ec384))},
		{name: "removal allowed", live: pubLiveDocs(t, pubIssuer, ec256b, ec384), o: PublishOptions{Issuer: pubIssuer, AllowKeyRemoval: true},
			wantPuts: both, wantRemove: sortedKids(pubKid(t, rsaKey), pubKid(t, ec256)), wantKids: sortedKids(pubKid(t, ec256b), pubKid(t, ec384))},
		{name: "steady state after the removal", live: pubLiveDocs(t, pubIssuer, ec256b, ec384), o: o,
			wantKids: sortedKids(pubKid(t, ec256b), pubKid(t, ec384))},
	}
	for _, s := range steps {
		src.set(s.live, nil)
		res, err := Publish(ctx, src, dest, s.o)
		if s.err != nil {
			if !errors.As(err, s.err) {
				t.Fatalf("%s: error %v, want %T", s.name, err, s.err)
			}
		} else if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got := dest.takePuts(); !slices.Equal(got, s.wantPuts) {
			t.Errorf("%s: wrote %q, want %q", s.name, got, s.wantPuts)
		}
		if s.err == nil && !slices.Equal(res.Written, s.wantPuts) {
			t.Errorf("%s: Result.Written %q, want %q", s.name, res.Written, s.wantPuts)
		}
		if s.err == nil && (!slices.Equal(res.RemovedKeys, s.wantRemove) || !slices.Equal(res.RetainedKeys, s.wantRetain)) {
			t.Errorf("%s: removed %q retained %q, want %q and %q", s.name, res.RemovedKeys, res.RetainedKeys, s.wantRemove, s.wantRetain)
		}
		body, err := os.ReadFile(filepath.Join(root, "openid", "v1", "jwks"))
		if err != nil {
			t.Fatal(err)
		}
		if got := publishedKids(t, body); !slices.Equal(got, s.wantKids) {
			t.Errorf("%s: published kids %q, want %q", s.name, got, s.wantKids)
		}
	}
	disc, err := os.ReadFile(filepath.Join(root, ".well-known", "openid-configuration"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(disc), `"jwks_uri":"`+pubIssuer+`/openid/v1/jwks"`) {
		t.Errorf("published discovery %s does not name the issuer's jwks_uri", disc)
	}
}

func sortedKids(k ...string) []string {
	slices.Sort(k)
	return k
}

// TestPublishNeverHalfWritten: when the JWKS cannot be written, the
// discovery document is not written either, and a failing source writes
// nothing.
func TestPublishNeverHalfWritten(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	rsaKey, _, _ := pubTestKeys(t)
	root := t.TempDir()
	dest := &recordingDest{Destination: &DirDestination{Root: root}, failAt: JWKSPath}
	src := &fakeSource{live: pubLiveDocs(t, pubIssuer, rsaKey)}
	if _, err := Publish(ctx, src, dest, PublishOptions{Issuer: pubIssuer}); err == nil {
		t.Fatal("publish succeeded with a failing JWKS write")
	}
	if got := dest.takePuts(); !slices.Equal(got, []string{JWKSPath}) {
		t.Errorf("wrote %q, want only the attempt at the JWKS", got)
	}
	if _, err := os.Stat(filepath.Join(root, ".well-known")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("discovery written although its JWKS was not: %v", err)
	}

	src.set(Live{}, errors.New("connection refused"))
	if _, err := Publish(ctx, src, dest, PublishOptions{Issuer: pubIssuer}); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("publish with a failing source: %v", err)
	}
	if got := dest.takePuts(); len(got) != 0 {
		t.Errorf("wrote %q with a failing source", got)
	}
}

// TestPublishS3 runs publish with the real SDK client against gofakes3: the
// JWKS goes up before the discovery document, both with the headers, and a
// steady state sends no PUT at all.
func TestPublishS3(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	rsaKey, ec256, _ := pubTestKeys(t)
	fake := fakes3.Start(t, "oidc-bucket")
	dest := &S3Destination{Client: fake.Client(), Bucket: "oidc-bucket", Prefix: "cluster-1"}
	src := &fakeSource{live: pubLiveDocs(t, pubIssuer, rsaKey)}
	o := PublishOptions{Issuer: pubIssuer, JWKSPath: "keys.json", LegacyEmptyKid: true}

	put := func(p string) fakes3.Request {
		return fakes3.Request{Method: "PUT", Path: "/oidc-bucket/cluster-1/" + p, ContentType: ContentType, CacheControl: CacheControl}
	}
	for _, step := range []struct {
		name string
		live Live
		want []fakes3.Request
	}{
		{"first publish", pubLiveDocs(t, pubIssuer, rsaKey), []fakes3.Request{put("keys.json"), put(DiscoveryPath)}},
		{"steady state", pubLiveDocs(t, pubIssuer, rsaKey), nil},
		{"again", pubLiveDocs(t, pubIssuer, rsaKey), nil},
		{"new key", pubLiveDocs(t, pubIssuer, rsaKey, ec256), []fakes3.Request{put("keys.json"), put(DiscoveryPath)}},
		{"steady state after rotation", pubLiveDocs(t, pubIssuer, rsaKey, ec256), nil},
	} {
		src.set(step.live, nil)
		if _, err := Publish(ctx, src, dest, o); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if got := fake.Puts(); !slices.Equal(got, step.want) {
			t.Errorf("%s: PUTs %+v, want %+v", step.name, got, step.want)
		}
	}
	c, err := dest.Get(ctx, "keys.json")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := publishedKids(t, c.Body), append(sortedKids(pubKid(t, rsaKey), pubKid(t, ec256)), ""); !slices.Equal(got, want) {
		t.Errorf("published kids %q, want %q", got, want)
	}
}

// TestKeyWarnings: the warnings name the kid and the way out, and point at
// --legacy-empty-kid for the legacy copy (a bucket set up by the
// self-hosted guides, published again without it).
func TestKeyWarnings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		msg       string
		want, not []string
	}{
		{msg: RetainedKeyWarning("abc"), want: []string{`kid "abc"`, "not in the cluster", "keep verifying", "--allow-key-removal"},
			not: []string{"--legacy-empty-kid"}},
		{msg: RetainedKeyWarning(""), want: []string{`kid ""`, "--allow-key-removal", "--legacy-empty-kid"}},
		{msg: RemovedKeyWarning("abc"), want: []string{`kid "abc"`, "no longer verify"}},
	} {
		for _, w := range tc.want {
			if !strings.Contains(tc.msg, w) {
				t.Errorf("message lacks %q: %s", w, tc.msg)
			}
		}
		for _, w := range tc.not {
			if strings.Contains(tc.msg, w) {
				t.Errorf("message has %q: %s", w, tc.msg)
			}
		}
	}
}

// TestPublishReadsNamedJWKS: the keys published before are read from the
// JWKS the destination's discovery document names, so a publish with
// another --jwks-path still retains them; when the discovery document names
// nothing usable, they are read from the path being published.
func TestPublishReadsNamedJWKS(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	rsaKey, ec256, ec384 := pubTestKeys(t)
	rsaKid := pubKid(t, rsaKey)
	old, err := NewJWKS([]crypto.PublicKey{rsaKey, ec256}, false)
	if err != nil {
		t.Fatal(err)
	}
	oldBody, err := old.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewJWKS([]crypto.PublicKey{ec384, ec256}, false)
	if err != nil {
		t.Fatal(err)
	}
	otherBody, err := other.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	discovery := func(jwksURI string) string {
		d, err := NewDiscovery(pubIssuer, jwksURI, old, StyleAPIServer)
		if err != nil {
			t.Fatal(err)
		}
		b, err := d.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for _, tc := range []struct {
		name string
		// held is what the destination holds, by path.
		held          map[string]string
		wantRead      string
		wantRetained  []string
		wantPublished []string
	}{
		// The path being published holds another key: reading it instead
		// of the named one would retain that key, not the RSA key.
		{name: "discovery names the old path", held: map[string]string{
			"keys.json": string(oldBody), JWKSPath: string(otherBody), DiscoveryPath: discovery(pubIssuer + "/keys.json")},
			wantRead: "keys.json", wantRetained: []string{rsaKid}, wantPublished: sortedKids(rsaKid, pubKid(t, ec256))},
		{name: "discovery names a missing object", held: map[string]string{
			JWKSPath: string(oldBody), DiscoveryPath: discovery(pubIssuer + "/gone.json")},
			wantRead: JWKSPath, wantRetained: []string{rsaKid}, wantPublished: sortedKids(rsaKid, pubKid(t, ec256))},
		{name: "discovery names another host", held: map[string]string{
			JWKSPath: string(oldBody), "keys.json": string(otherBody), DiscoveryPath: discovery("https://other.example.com/keys.json")},
			wantRead: JWKSPath, wantRetained: []string{rsaKid}, wantPublished: sortedKids(rsaKid, pubKid(t, ec256))},
		{name: "discovery does not parse", held: map[string]string{
			JWKSPath: string(oldBody), DiscoveryPath: "<html>"},
			wantRead: JWKSPath, wantRetained: []string{rsaKid}, wantPublished: sortedKids(rsaKid, pubKid(t, ec256))},
		{name: "no discovery", held: map[string]string{JWKSPath: string(oldBody)},
			wantRead: JWKSPath, wantRetained: []string{rsaKid}, wantPublished: sortedKids(rsaKid, pubKid(t, ec256))},
		{name: "empty destination", held: nil, wantRead: JWKSPath, wantPublished: []string{pubKid(t, ec256)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			dest := &DirDestination{Root: root}
			for p, body := range tc.held {
				if err := dest.Put(ctx, p, []byte(body)); err != nil {
					t.Fatal(err)
				}
			}
			res, err := Publish(ctx, &fakeSource{live: pubLiveDocs(t, pubIssuer, ec256)}, dest, PublishOptions{Issuer: pubIssuer})
			if err != nil {
				t.Fatal(err)
			}
			if res.PublishedJWKSPath != tc.wantRead || !slices.Equal(res.RetainedKeys, tc.wantRetained) {
				t.Errorf("read %q, retained %q; want %q and %q", res.PublishedJWKSPath, res.RetainedKeys, tc.wantRead, tc.wantRetained)
			}
			body, err := os.ReadFile(filepath.Join(root, "openid", "v1", "jwks"))
			if err != nil {
				t.Fatal(err)
			}
			if got := publishedKids(t, body); !slices.Equal(got, tc.wantPublished) {
				t.Errorf("published kids %q, want %q", got, tc.wantPublished)
			}
		})
	}
}

// jwkJSON returns the JWK of pub as JSON, with its members replaced or
// added by set (a nil value deletes the member): the hand-edited entries a
// destination may hold.
func jwkJSON(t *testing.T, pub crypto.PublicKey, set map[string]any) string {
	t.Helper()
	j, err := NewJWKS([]crypto.PublicKey{pub}, false)
	if err != nil {
		t.Fatal(err)
	}
	return rawJWKJSON(t, j.Keys[0], set)
}

func rawJWKJSON(t *testing.T, k JWK, set map[string]any) string {
	t.Helper()
	b, err := json.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]any{}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for name, v := range set {
		if v == nil {
			delete(m, name)
		} else {
			m[name] = v
		}
	}
	if b, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDocumentsInvalidPublishedKeys: retention trusts the destination only
// as far as its keys pass the cluster's checks. An invalid entry is an
// error that names it unless removal is allowed, then it is dropped and
// named; a key with a cluster kid and other material is always dropped and
// named; nothing invalid reaches the JWKS or its algorithm the discovery
// document.
func TestDocumentsInvalidPublishedKeys(t *testing.T) {
	t.Parallel()
	rsaKey, ec256, ec384 := pubTestKeys(t)
	rsaKid, ec256Kid, ec384Kid := pubKid(t, rsaKey), pubKid(t, ec256), pubKid(t, ec384)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	smallJWK := rawJWKJSON(t, JWK{Use: "sig", Kty: "RSA", Kid: "small", Alg: "RS256",
		N: b64(small.N.Bytes()), E: "AQAB"}, nil)
	ec384JWK := jwkJSON(t, ec384, nil)
	set := func(keys ...string) string { return `{"keys":[` + strings.Join(keys, ",") + `]}` }

	for _, tc := range []struct {
		name      string
		published string
		// err is in the error without --allow-key-removal; "" means none.
		err string
		// With --allow-key-removal (and without, when err is ""); the
		// JWKS is then the cluster's.
		wantAlgs     []string
		wantDropped  []string // "<index> <kid>"
		wantRetained []string // without --allow-key-removal
		wantRemoved  []string // with it
	}{
		{name: "alg none, symmetric", published: set(ec384JWK, `{"kty":"oct","alg":"none","use":"sig","kid":"sym","k":"c2VjcmV0"}`),
			err:      `key 2 (kid "sym"): holds private or symmetric key material`,
			wantAlgs: []string{"ES256"}, wantDropped: []string{"2 sym"}, wantRemoved: []string{ec384Kid}},
		{name: "alg none, no key material", published: set(`{"kty":"oct","alg":"none","kid":"none"}`),
			err:      `key 1 (kid "none"): "kty" is "oct"`,
			wantAlgs: []string{"ES256"}, wantDropped: []string{"1 none"}},
		{name: "RSA key with HS256", published: set(jwkJSON(t, rsaKey, map[string]any{"alg": "HS256"})),
			err:      `"alg" is "HS256"`,
			wantAlgs: []string{"ES256"}, wantDropped: []string{"1 " + rsaKid}},
		{name: "RSA key for encryption", published: set(jwkJSON(t, rsaKey, map[string]any{"use": "enc"})),
			err:      `"use" is "enc"`,
			wantAlgs: []string{"ES256"}, wantDropped: []string{"1 " + rsaKid}},
		{name: "RSA key of 1024 bits", published: set(smallJWK),
			err:      "RSA key of 1024 bits",
			wantAlgs: []string{"ES256"}, wantDropped: []string{"1 small"}},
		{name: "private member", published: set(jwkJSON(t, rsaKey, map[string]any{"d": "AQAB"})),
			err:      "private or symmetric key material",
			wantAlgs: []string{"ES256"}, wantDropped: []string{"1 " + rsaKid}},
		{name: "not an object", published: `{"keys":[42]}`, err: "key 1",
			wantAlgs: []string{"ES256"}, wantDropped: []string{"1 "}},
		// The cluster's kid on the P-384 key: the cluster's key is published,
		// the other dropped with a warning, with or without the flag.
		{name: "cluster kid with other material", published: set(jwkJSON(t, ec384, map[string]any{"kid": ec256Kid})),
			wantAlgs: []string{"ES256"}, wantDropped: []string{"1 " + ec256Kid}},
		{name: "one kid for two keys", published: set(jwkJSON(t, rsaKey, map[string]any{"kid": "dup"}), jwkJSON(t, ec384, map[string]any{"kid": "dup"})),
			err:      `key 1 (kid "dup"): the JWKS has other keys with this kid`,
			wantAlgs: []string{"ES256"}, wantDropped: []string{"1 dup", "2 dup"}},
		{name: "legacy copy of no key", published: set(ec384JWK, jwkJSON(t, rsaKey, map[string]any{"kid": ""})),
			err:      `key 2 (kid ""): an empty-kid (legacy) copy of no RSA key`,
			wantAlgs: []string{"ES256"}, wantDropped: []string{"2 "}, wantRemoved: []string{ec384Kid}},
		{name: "EC legacy copy", published: set(jwkJSON(t, ec256, map[string]any{"kid": ""})),
			err:      `key 1 (kid ""): an empty-kid (legacy) copy of no RSA key`,
			wantAlgs: []string{"ES256"}, wantDropped: []string{"1 "}},
		// Valid keys only: the P-384 key is retained (removed with the flag).
		{name: "valid key retained", published: set(ec384JWK),
			wantAlgs: []string{"ES256"}, wantRetained: []string{ec384Kid}, wantRemoved: []string{ec384Kid}},
		{name: "empty set", published: `{"keys":[]}`, wantAlgs: []string{"ES256"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			live := pubLiveDocs(t, pubIssuer, ec256)
			_, changes, err := Documents(PublishOptions{Issuer: pubIssuer}, live, []byte(tc.published))
			switch {
			case tc.err != "":
				var invalid *InvalidPublishedKeysError
				if !errors.As(err, &invalid) || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "--allow-key-removal") {
					t.Fatalf("without --allow-key-removal: error %v, want an *InvalidPublishedKeysError containing %q", err, tc.err)
				}
			case err != nil:
				t.Fatalf("without --allow-key-removal: %v", err)
			case !slices.Equal(changes.RetainedKeys, tc.wantRetained):
				t.Errorf("without --allow-key-removal: retained %q, want %q", changes.RetainedKeys, tc.wantRetained)
			}

			objs, changes, err := Documents(PublishOptions{Issuer: pubIssuer, AllowKeyRemoval: true}, live, []byte(tc.published))
			if err != nil {
				t.Fatalf("with --allow-key-removal: %v", err)
			}
			set, err := ParseJWKS(objs[0].Body)
			if err != nil {
				t.Fatalf("the published JWKS does not parse: %v\n%s", err, objs[0].Body)
			}
			if !slices.Equal(set.Keys, mustParseJWKS(t, live.JWKS).Keys) {
				t.Errorf("published %s, want the cluster's keys only %s", objs[0].Body, live.JWKS)
			}
			var d Discovery
			if err := json.Unmarshal(objs[1].Body, &d); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(d.IDTokenSigningAlgValuesSupported, tc.wantAlgs) {
				t.Errorf("algorithms %q, want %q", d.IDTokenSigningAlgValuesSupported, tc.wantAlgs)
			}
			var dropped []string
			for _, k := range changes.DroppedKeys {
				dropped = append(dropped, strconv.Itoa(k.Index)+" "+k.Kid)
			}
			if !slices.Equal(dropped, tc.wantDropped) {
				t.Errorf("dropped %q, want %q", dropped, tc.wantDropped)
			}
			if !slices.Equal(changes.RemovedKeys, tc.wantRemoved) {
				t.Errorf("removed %q, want %q", changes.RemovedKeys, tc.wantRemoved)
			}
		})
	}
}

func mustParseJWKS(t *testing.T, b []byte) *JWKS {
	t.Helper()
	j, err := ParseJWKS(b)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// TestPublishBadPublishedJWKS: a destination JWKS that does not parse, or
// holds an invalid entry, stops the publish before anything is written,
// unless removal is allowed: then it is replaced by the cluster's keys,
// with warnings that name what was dropped.
func TestPublishBadPublishedJWKS(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	_, ec256, _ := pubTestKeys(t)
	for _, tc := range []struct {
		name, held string
		err        any
		warning    string
	}{
		{name: "truncated", held: `{"keys":[{"use":"sig"`, err: new(*UnreadableJWKSError), warning: "did not parse"},
		{name: "not JSON", held: `<html>`, err: new(*UnreadableJWKSError), warning: "did not parse"},
		{name: "empty", held: ``, err: new(*UnreadableJWKSError), warning: "did not parse"},
		{name: "no keys array", held: `{"kty":"RSA"}`, err: new(*UnreadableJWKSError), warning: "did not parse"},
		{name: "alg none", held: `{"keys":[{"kty":"oct","alg":"none","kid":"sym","k":"c2VjcmV0"}]}`,
			err: new(*InvalidPublishedKeysError), warning: `dropped key 1 (kid "sym")`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			dest := &recordingDest{Destination: &DirDestination{Root: root}}
			jwksFile := filepath.Join(root, "openid", "v1", "jwks")
			if err := dest.Destination.Put(ctx, JWKSPath, []byte(tc.held)); err != nil {
				t.Fatal(err)
			}
			src := &fakeSource{live: pubLiveDocs(t, pubIssuer, ec256)}
			_, err := Publish(ctx, src, dest, PublishOptions{Issuer: pubIssuer})
			if !errors.As(err, tc.err) || !strings.Contains(err.Error(), jwksFile) || !strings.Contains(err.Error(), "nothing was written") {
				t.Fatalf("error %v, want a %T naming %s", err, tc.err, jwksFile)
			}
			if got := dest.takePuts(); len(got) != 0 {
				t.Errorf("wrote %q, want nothing", got)
			}
			if b, err := os.ReadFile(jwksFile); err != nil || string(b) != tc.held {
				t.Errorf("the JWKS at the destination changed: %q, %v", b, err)
			}

			res, err := Publish(ctx, src, dest, PublishOptions{Issuer: pubIssuer, AllowKeyRemoval: true})
			if err != nil {
				t.Fatalf("with --allow-key-removal: %v", err)
			}
			if w := res.Warnings(); len(w) != 1 || !strings.Contains(w[0], tc.warning) || !strings.Contains(w[0], jwksFile) {
				t.Errorf("warnings %q, want one containing %q and %s", w, tc.warning, jwksFile)
			}
			if got := publishedKids(t, readTestFile(t, jwksFile)); !slices.Equal(got, []string{pubKid(t, ec256)}) {
				t.Errorf("published kids %q, want the cluster's", got)
			}
		})
	}
}

func readTestFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestResultWarnings: one list, in the order an operator acts on it, for
// the command and the sync loop alike.
func TestResultWarnings(t *testing.T) {
	t.Parallel()
	res := Result{Destination: "s3://b/p/", Plan: Plan{PublishedJWKSPath: "keys.json", KeyChanges: KeyChanges{
		Unreadable:   errors.New("unexpected end of JSON input"),
		DroppedKeys:  []DroppedKey{{Index: 2, Kid: "x", Reason: "bad"}},
		RetainedKeys: []string{"r"}, RemovedKeys: []string{"g"},
	}}}
	want := []string{
		UnreadableJWKSWarning("s3://b/p/keys.json", res.Unreadable),
		`dropped key 2 (kid "x") of the published JWKS s3://b/p/keys.json: bad`,
		RetainedKeyWarning("r"), RemovedKeyWarning("g"),
	}
	if got := res.Warnings(); !slices.Equal(got, want) {
		t.Errorf("warnings\n%q\nwant\n%q", got, want)
	}
	if w := (Result{}).Warnings(); len(w) != 0 {
		t.Errorf("warnings %q for a publish that kept and dropped nothing", w)
	}
}
