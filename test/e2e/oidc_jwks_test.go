package e2e

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podiam/podiam/test/testcluster"
	"github.com/podiam/podiam/test/testutil"
)

// TestOIDCDocumentsMatchAPIServer starts a cluster of its own whose
// kube-apiserver trusts, besides its RSA signing key, an ECDSA P-256 public
// key, a P-384 key in a two-block file as `openssl ecparam -genkey` writes it
// (EC PARAMETERS, then EC PRIVATE KEY), a P-521 certificate, and a file with
// two more keys (RSA 3072 and P-256), through repeated
// --service-account-key-file flags. It reads /openid/v1/jwks and
// /.well-known/openid-configuration from the API server and checks that
// `podiam oidc jwks` and `podiam oidc discovery`, run on the same key files,
// print the same documents.
func TestOIDCDocumentsMatchAPIServer(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, blocks ...*pem.Block) string {
		var b bytes.Buffer
		for _, block := range blocks {
			if err := pem.Encode(&b, block); err != nil {
				t.Fatal(err)
			}
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	p256, p384, p521, p256b := newECKey(t, elliptic.P256()), newECKey(t, elliptic.P384()), newECKey(t, elliptic.P521()), newECKey(t, elliptic.P256())
	rsa3072, err := rsa.GenerateKey(rand.Reader, 3072)
	if err != nil {
		t.Fatal(err)
	}
	p384DER, err := x509.MarshalECPrivateKey(p384)
	if err != nil {
		t.Fatal(err)
	}
	extra := []string{
		write("p256.pub", publicBlock(t, &p256.PublicKey)),
		write("p384.key", &pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22}}, // OID secp384r1
			&pem.Block{Type: "EC PRIVATE KEY", Bytes: p384DER}),
		write("p521.crt", &pem.Block{Type: "CERTIFICATE", Bytes: selfSigned(t, p521)}),
		write("two-keys.pem", publicBlock(t, &rsa3072.PublicKey), publicBlock(t, &p256b.PublicKey)),
	}

	c := testcluster.StartForTest(t, testcluster.Options{
		IssuerURL:              "https://oidc.podiam.test/" + testutil.UniqueName("jwks"),
		ServiceAccountKeyFiles: extra,
	})
	ctx := ctxFor(t, 2*time.Minute)
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string) []byte {
		t.Helper()
		body, err := cs.RESTClient().Get().AbsPath(path).DoRaw(ctx)
		if err != nil {
			t.Fatalf("GET %s: %v: %s", path, err, body)
		}
		return body
	}
	served := get("/openid/v1/jwks")
	servedDiscovery := get("/.well-known/openid-configuration")

	// podiam reads the signing key itself (PKCS#8, as kube-apiserver's
	// --service-account-signing-key-file may be) rather than its public file.
	signingDER, err := x509.MarshalPKCS8PrivateKey(c.ServiceAccountSigningKey())
	if err != nil {
		t.Fatal(err)
	}
	keyArgs := []string{"--key", write("signing.key", &pem.Block{Type: "PRIVATE KEY", Bytes: signingDER})}
	for _, f := range extra {
		keyArgs = append(keyArgs, "--key", f)
	}

	t.Run("jwks", func(t *testing.T) {
		out := podiamOutput(t, ctx, append([]string{"oidc", "jwks"}, keyArgs...)...)
		// kube-apiserver lists keys in the order of its flags, podiam by kid:
		// the served keys are put in kid order, each key's bytes kept exactly
		// as served, so that the comparison covers every member, its
		// encoding and the members' order, and only the keys' order is
		// normalized.
		want := inKidOrder(t, served)
		if got := strings.TrimSuffix(out, "\n"); got != want {
			t.Errorf("podiam oidc jwks differs from the API server's JWKS (in kid order)\npodiam: %s\nserver: %s", got, want)
		}
		var set struct{ Keys []struct{ Kid, Alg string } }
		if err := json.Unmarshal(served, &set); err != nil {
			t.Fatal(err)
		}
		var algs []string
		for _, k := range set.Keys {
			algs = append(algs, k.Alg)
		}
		slices.Sort(algs)
		if want := []string{"ES256", "ES256", "ES384", "ES512", "RS256", "RS256"}; !slices.Equal(algs, want) {
			t.Errorf("the API server serves keys %v, want %v: not every key file was used", algs, want)
		}
		verifyClusterToken(t, ctx, c, []byte(out))
	})

	t.Run("discovery", func(t *testing.T) {
		var doc struct {
			JWKSURI string `json:"jwks_uri"`
		}
		if err := json.Unmarshal(servedDiscovery, &doc); err != nil {
			t.Fatal(err)
		}
		jwksFile := filepath.Join(t.TempDir(), "keys.json")
		if err := os.WriteFile(jwksFile, served, 0o600); err != nil {
			t.Fatal(err)
		}
		base := []string{"oidc", "discovery", "--issuer", c.IssuerURL(), "--jwks-uri", doc.JWKSURI}
		for name, args := range map[string][]string{
			"algorithms from the key files":   append(slices.Clone(base), keyArgs...),
			"algorithms from the served JWKS": append(slices.Clone(base), "--jwks", jwksFile),
		} {
			// Compared byte for byte: same fields, order and values.
			if got := strings.TrimSuffix(podiamOutput(t, ctx, args...), "\n"); got != string(servedDiscovery) {
				t.Errorf("%s: podiam oidc discovery differs from the API server's\npodiam: %s\nserver: %s", name, got, servedDiscovery)
			}
		}
	})
}

// inKidOrder returns a JWKS document with the keys of jwks sorted by kid,
// each key's JSON kept byte for byte.
func inKidOrder(t *testing.T, jwks []byte) string {
	t.Helper()
	var doc struct{ Keys []json.RawMessage }
	if err := json.Unmarshal(jwks, &doc); err != nil {
		t.Fatalf("served JWKS: %v", err)
	}
	kid := func(raw json.RawMessage) string {
		var k struct{ Kid string }
		if err := json.Unmarshal(raw, &k); err != nil {
			t.Fatal(err)
		}
		return k.Kid
	}
	slices.SortFunc(doc.Keys, func(a, b json.RawMessage) int { return strings.Compare(kid(a), kid(b)) })
	parts := make([]string, len(doc.Keys))
	for i, k := range doc.Keys {
		parts[i] = string(k)
	}
	return `{"keys":[` + strings.Join(parts, ",") + `]}`
}

// verifyClusterToken asks the API server for a ServiceAccount token and
// verifies it against jwks, the way a relying party (AWS STS) does: by the
// kid in its header.
func verifyClusterToken(t *testing.T, ctx context.Context, c *testcluster.Cluster, jwks []byte) {
	t.Helper()
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	ns := testutil.UniqueName("jwks")
	if err := c.EnsureNamespace(ctx, ns, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "app"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "app", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{defaultAud}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sig, err := jose.ParseSigned(tr.Status.Token, []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.ES384, jose.ES512})
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwks, &set); err != nil {
		t.Fatal(err)
	}
	kid := sig.Signatures[0].Header.KeyID
	keys := set.Key(kid)
	if len(keys) != 1 {
		t.Fatalf("token kid %q matches %d keys of podiam's JWKS", kid, len(keys))
	}
	payload, err := sig.Verify(keys[0])
	if err != nil {
		t.Fatalf("token does not verify against podiam's JWKS: %v", err)
	}
	var claims struct{ Iss, Sub string }
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	if claims.Iss != c.IssuerURL() || claims.Sub != "system:serviceaccount:"+ns+":app" {
		t.Errorf("token claims iss=%q sub=%q", claims.Iss, claims.Sub)
	}
}

func newECKey(t *testing.T, curve elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// publicBlock is pub as a PEM "PUBLIC KEY" block.
func publicBlock(t *testing.T, pub crypto.PublicKey) *pem.Block {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return &pem.Block{Type: "PUBLIC KEY", Bytes: der}
}

// selfSigned returns the DER of a self-signed certificate for key.
func selfSigned(t *testing.T, key crypto.Signer) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "service-account-signer"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}
