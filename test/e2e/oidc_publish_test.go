package e2e

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha1" // #nosec G505 -- the IAM thumbprint is defined as SHA-1
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podiam/podiam/internal/oidc"
	"github.com/podiam/podiam/test/fakes3"
	"github.com/podiam/podiam/test/harness"
	"github.com/podiam/podiam/test/testcluster"
	"github.com/podiam/podiam/test/testutil"
)

// TestOIDCPublish runs the issuer side end to end on a cluster whose issuer
// is https://127.0.0.1:<port>/cluster-1: the real binary publishes the live
// documents to a directory and to S3 (gofakes3, through the AWS SDK), `podiam
// oidc serve` serves the directory at the issuer, and a token from the
// TokenRequest API verifies (go-jose) against the JWKS fetched from the
// served jwks_uri. A publish for another issuer is refused; a key published
// before and missing from the cluster stays published, with a warning.
func TestOIDCPublish(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 3*time.Minute)
	ports, err := testutil.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	issuer := fmt.Sprintf("https://127.0.0.1:%d/cluster-1", ports[0])
	c := testcluster.StartForTest(t, testcluster.Options{IssuerURL: issuer})
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "issuer")
	base := []string{"oidc", "publish", "--issuer", issuer, "--kubeconfig", c.Kubeconfig()}

	// What the API server serves, to compare the published documents with.
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	liveJWKS, err := cs.Discovery().RESTClient().Get().AbsPath("/openid/v1/jwks").DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// Every subtest uses the directory published here, so that each one can
	// run alone.
	firstOut, firstErrOut, code := runPodiamEnv(t, ctx, nil, append(base, "--to", dir)...)
	if code != 0 {
		t.Fatalf("publish exited %d:\n%s%s", code, firstOut, firstErrOut)
	}

	t.Run("directory", func(t *testing.T) {
		out, errOut := firstOut, firstErrOut
		for _, want := range []string{"written   " + dir + "/openid/v1/jwks", "written   " + dir + "/.well-known/openid-configuration",
			"jwks_uri: " + issuer + "/openid/v1/jwks", "aws iam create-open-id-connect-provider", "--url " + issuer,
			`resource "aws_iam_openid_connect_provider"`} {
			if !strings.Contains(out, want) {
				t.Errorf("stdout lacks %q:\n%s", want, out)
			}
		}
		// Nothing serves the issuer yet: the hints come without a thumbprint.
		if !strings.Contains(errOut, "warning: no thumbprint") || strings.Contains(out, "warning") {
			t.Errorf("want the thumbprint warning on stderr only:\nstdout:\n%s\nstderr:\n%s", out, errOut)
		}
		jwks := readFile(t, filepath.Join(dir, "openid", "v1", "jwks"))
		if !bytes.Equal(jwks, bytes.TrimSpace(liveJWKS)) {
			t.Errorf("published JWKS\n%s\nis not the API server's\n%s", jwks, liveJWKS)
		}
		var d oidc.Discovery
		if err := json.Unmarshal(readFile(t, filepath.Join(dir, ".well-known", "openid-configuration")), &d); err != nil {
			t.Fatal(err)
		}
		if d.Issuer != issuer || d.JWKSURI != issuer+"/openid/v1/jwks" {
			t.Errorf("published discovery: issuer %q jwks_uri %q, want %q and %s/openid/v1/jwks", d.Issuer, d.JWKSURI, issuer, issuer)
		}

		// Unchanged documents are not rewritten.
		out, errOut, code := runPodiamEnv(t, ctx, nil, append(base, "--to", dir, "--no-register-hints")...)
		if code != 0 || strings.Count(out, "unchanged ") != 2 || strings.Contains(out, "written") {
			t.Errorf("second publish (exit %d) should change nothing:\n%s%s", code, out, errOut)
		}
	})

	// A destination published before from another key, at keys.json: the
	// key the cluster does not have stays published, with a warning, even
	// though this publish writes the JWKS at another path.
	t.Run("key left the cluster", func(t *testing.T) {
		prev := filepath.Join(tmp, "previous")
		oldJWKS, err := oidc.NewJWKS([]crypto.PublicKey{mustOtherKey(t)}, false)
		if err != nil {
			t.Fatal(err)
		}
		oldKid := oldJWKS.Keys[0].Kid
		oldDisc, err := oidc.NewDiscovery(issuer, issuer+"/keys.json", oldJWKS, oidc.StyleAPIServer)
		if err != nil {
			t.Fatal(err)
		}
		for p, doc := range map[string]interface{ Marshal() ([]byte, error) }{"keys.json": oldJWKS, oidc.DiscoveryPath: oldDisc} {
			body, err := doc.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if err := (&oidc.DirDestination{Root: prev}).Put(ctx, p, body); err != nil {
				t.Fatal(err)
			}
		}
		for range 2 { // it warns on every run
			out, errOut, code := runPodiamEnv(t, ctx, nil, append(base, "--to", prev, "--no-register-hints")...)
			if code != 0 {
				t.Fatalf("publish exited %d:\n%s%s", code, out, errOut)
			}
			if want := "warning: " + oidc.RetainedKeyWarning(oldKid); !strings.Contains(errOut, want) {
				t.Errorf("stderr lacks %q:\n%s", want, errOut)
			}
		}
		published, err := oidc.ParseJWKS(readFile(t, filepath.Join(prev, "openid", "v1", "jwks")))
		if err != nil {
			t.Fatal(err)
		}
		live, err := oidc.ParseJWKS(liveJWKS)
		if err != nil {
			t.Fatal(err)
		}
		var kids []string
		for _, k := range published.Keys {
			kids = append(kids, k.Kid)
		}
		want := []string{oldKid}
		for _, k := range live.Keys {
			want = append(want, k.Kid)
		}
		slices.Sort(want)
		if !slices.Equal(kids, want) {
			t.Errorf("published kids %q, want the cluster's and the retained %q", kids, want)
		}
	})

	// A destination whose JWKS was edited by hand: a symmetric "alg": "none"
	// entry is refused (nothing written) until --allow-key-removal drops it;
	// a key with the cluster's kid and other material is dropped either way.
	t.Run("invalid published key", func(t *testing.T) {
		tampered := filepath.Join(tmp, "tampered")
		live, err := oidc.ParseJWKS(liveJWKS)
		if err != nil {
			t.Fatal(err)
		}
		impostor, err := oidc.NewJWKS([]crypto.PublicKey{mustOtherKey(t)}, false)
		if err != nil {
			t.Fatal(err)
		}
		impostor.Keys[0].Kid = live.Keys[0].Kid
		b, err := json.Marshal(impostor.Keys[0])
		if err != nil {
			t.Fatal(err)
		}
		held := `{"keys":[` + string(b) + `,{"kty":"oct","alg":"none","use":"sig","kid":"sym","k":"c2VjcmV0"}]}`
		if err := (&oidc.DirDestination{Root: tampered}).Put(ctx, oidc.JWKSPath, []byte(held)); err != nil {
			t.Fatal(err)
		}
		jwksFile := filepath.Join(tampered, "openid", "v1", "jwks")
		args := append(base, "--to", tampered, "--no-register-hints")

		out, errOut, code := runPodiamEnv(t, ctx, nil, args...)
		if code == 0 || !strings.Contains(errOut, `key 2 (kid "sym")`) || !strings.Contains(errOut, "--allow-key-removal") {
			t.Fatalf("publish over an invalid entry exited %d, want a refusal naming it:\n%s%s", code, out, errOut)
		}
		if got := string(readFile(t, jwksFile)); got != held {
			t.Errorf("a refused publish rewrote the JWKS: %s", got)
		}
		if _, err := os.Stat(filepath.Join(tampered, ".well-known")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a refused publish wrote the discovery document: %v", err)
		}

		out, errOut, code = runPodiamEnv(t, ctx, nil, append(args, "--allow-key-removal")...)
		if code != 0 {
			t.Fatalf("publish --allow-key-removal exited %d:\n%s%s", code, out, errOut)
		}
		for _, want := range []string{`warning: dropped key 1 (kid "` + live.Keys[0].Kid + `")`, `warning: dropped key 2 (kid "sym")`} {
			if !strings.Contains(errOut, want) {
				t.Errorf("stderr lacks %q:\n%s", want, errOut)
			}
		}
		if got := readFile(t, jwksFile); !bytes.Equal(got, bytes.TrimSpace(liveJWKS)) {
			t.Errorf("published JWKS\n%s\nis not the API server's\n%s", got, liveJWKS)
		}
		if disc := string(readFile(t, filepath.Join(tampered, ".well-known", "openid-configuration"))); strings.Contains(disc, `"none"`) {
			t.Errorf("the discovery document advertises alg none: %s", disc)
		}
	})

	t.Run("issuer mismatch", func(t *testing.T) {
		other := filepath.Join(tmp, "other")
		out, errOut, code := runPodiamEnv(t, ctx, nil, "oidc", "publish", "--issuer", "https://oidc.example.com",
			"--kubeconfig", c.Kubeconfig(), "--to", other)
		if code == 0 {
			t.Fatalf("publish for another issuer succeeded:\n%s", out)
		}
		for _, want := range []string{`the cluster's service-account issuer is "` + issuer + `"`, "--service-account-issuer=https://oidc.example.com"} {
			if !strings.Contains(errOut, want) {
				t.Errorf("stderr lacks %q:\n%s", want, errOut)
			}
		}
		if _, err := os.Stat(other); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a refused publish created %s: %v", other, err)
		}
	})

	t.Run("s3", func(t *testing.T) {
		fake := fakes3.Start(t, "issuer-e2e")
		env := []string{
			"AWS_ENDPOINT_URL_S3=" + fake.URL, "AWS_REGION=eu-west-1",
			"AWS_ACCESS_KEY_ID=AKIDPODIAME2E", "AWS_SECRET_ACCESS_KEY=e2e-secret",
			// Nothing of the machine's own AWS setup.
			"AWS_CONFIG_FILE=" + filepath.Join(tmp, "none"), "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(tmp, "none"),
			"AWS_PROFILE=", "AWS_EC2_METADATA_DISABLED=true",
		}
		args := append(base, "--to", "s3://issuer-e2e/cluster-1", "--s3-path-style", "--no-register-hints")
		put := func(p string) fakes3.Request {
			return fakes3.Request{Method: "PUT", Path: "/issuer-e2e/cluster-1/" + p, ContentType: "application/json", CacheControl: oidc.CacheControl}
		}
		for _, step := range []struct {
			name string
			want []fakes3.Request
		}{
			// The JWKS goes up before the discovery document that names it.
			{"first", []fakes3.Request{put("openid/v1/jwks"), put(".well-known/openid-configuration")}},
			{"steady state", nil},
		} {
			out, errOut, code := runPodiamEnv(t, ctx, env, args...)
			if code != 0 {
				t.Fatalf("%s: publish exited %d:\n%s%s", step.name, code, out, errOut)
			}
			if got := fake.Puts(); !slices.Equal(got, step.want) {
				t.Errorf("%s: PUTs %+v, want %+v", step.name, got, step.want)
			}
		}
		// The bucket holds what the directory holds.
		cl := fake.Client()
		for _, p := range []string{"openid/v1/jwks", ".well-known/openid-configuration"} {
			obj, err := cl.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("issuer-e2e"), Key: aws.String("cluster-1/" + p)})
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(obj.Body)
			obj.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if want := readFile(t, filepath.Join(dir, filepath.FromSlash(p))); !bytes.Equal(body, want) {
				t.Errorf("s3 %s\n%s\ndiffers from the directory's\n%s", p, body, want)
			}
			if ct := aws.ToString(obj.ContentType); ct != "application/json" {
				t.Errorf("s3 %s Content-Type %q", p, ct)
			}
		}
	})

	t.Run("interval", func(t *testing.T) {
		syncDir := filepath.Join(tmp, "sync")
		p, logs := startPodiam(t, append(base, "--to", syncDir, "--interval=1s", "--log-format=text", "--log-level=debug")...)
		// A first round writes both documents, the next ones nothing.
		testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, "a round that finds the documents up to date", func() (bool, string) {
			return strings.Contains(logs.String(), "issuer documents up to date"), logs.String()
		})
		if n := strings.Count(logs.String(), "published the issuer documents"); n != 1 {
			t.Errorf("%d rounds wrote documents, want 1", n)
		}
		if got, want := readFile(t, filepath.Join(syncDir, "openid", "v1", "jwks")), readFile(t, filepath.Join(dir, "openid", "v1", "jwks")); !bytes.Equal(got, want) {
			t.Errorf("the sync published\n%s\nwant\n%s", got, want)
		}
		p.Signal(syscall.SIGTERM, 10*time.Second)
		if code := p.ExitCode(); code != 0 {
			t.Errorf("exit code %d after SIGTERM, want 0", code)
		}
		if !strings.Contains(logs.String(), "stopping the issuer document sync") {
			t.Errorf("no stop logged:\n%s", logs.String())
		}
	})

	t.Run("serve and verify", func(t *testing.T) {
		certDir := t.TempDir()
		caPEM, err := harness.WriteServingCert(certDir)
		if err != nil {
			t.Fatal(err)
		}
		serve, _ := startPodiam(t, "oidc", "serve", "--dir", dir, "--address", "127.0.0.1", "--port", strconv.Itoa(ports[0]),
			"--tls-cert", filepath.Join(certDir, "tls.crt"), "--tls-key", filepath.Join(certDir, "tls.key"))
		defer serve.Stop()
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(caPEM)
		hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}

		var disc oidc.Discovery
		testutil.Eventually(t, 20*time.Second, 100*time.Millisecond, "the served discovery document", func() (bool, string) {
			body, err := httpGet(ctx, hc, issuer+"/.well-known/openid-configuration")
			if err != nil {
				return false, err.Error()
			}
			return json.Unmarshal(body, &disc) == nil, string(body)
		})
		if disc.Issuer != issuer {
			t.Fatalf("served discovery issuer %q, want %q", disc.Issuer, issuer)
		}
		jwksBody, err := httpGet(ctx, hc, disc.JWKSURI)
		if err != nil {
			t.Fatalf("fetching the served jwks_uri %s: %v", disc.JWKSURI, err)
		}
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(jwksBody, &set); err != nil {
			t.Fatalf("served JWKS: %v", err)
		}

		ns := testutil.UniqueName("e2e-publish")
		if err := c.EnsureNamespace(ctx, ns, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "app"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "app", &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"sts.amazonaws.com"}}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		tok, err := jwt.ParseSigned(tr.Status.Token, []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.ES384, jose.ES512})
		if err != nil {
			t.Fatal(err)
		}
		kid := tok.Headers[0].KeyID
		keys := set.Key(kid)
		if len(keys) == 0 {
			t.Fatalf("the served JWKS has no key with the token's kid %q", kid)
		}
		var claims jwt.Claims
		if err := tok.Claims(keys[0].Key, &claims); err != nil {
			t.Fatalf("the token does not verify against the served JWKS: %v", err)
		}
		if err := claims.ValidateWithLeeway(jwt.Expected{Issuer: disc.Issuer, AnyAudience: jwt.Audience{"sts.amazonaws.com"},
			Subject: "system:serviceaccount:" + ns + ":app"}, time.Minute); err != nil {
			t.Errorf("claims %+v: %v", claims, err)
		}

		// A token signed by another key must not verify: the check can fail.
		other := *tok
		if err := other.Claims(mustOtherKey(t), &claims); err == nil {
			t.Error("the token verified against an unrelated key")
		}

		// Served now, the issuer's thumbprint is printed with the hints
		// (the test CA stands in for the system roots).
		caFile := filepath.Join(certDir, "ca.crt")
		if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		out, errOut, code := runPodiamEnv(t, ctx, []string{"SSL_CERT_FILE=" + caFile, "SSL_CERT_DIR=" + certDir}, append(base, "--to", dir)...)
		if code != 0 {
			t.Fatalf("publish exited %d:\n%s%s", code, out, errOut)
		}
		if want := "--thumbprint-list " + lastCertThumbprint(t, hc, ports[0]); !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s\nstderr:\n%s", want, out, errOut)
		}
	})
}

func httpGet(ctx context.Context, hc *http.Client, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	return body, nil
}

// lastCertThumbprint is the SHA-1 of the last certificate the server on
// 127.0.0.1:port sends, computed here independently of podiam.
func lastCertThumbprint(t *testing.T, hc *http.Client, port int) string {
	t.Helper()
	conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port), hc.Transport.(*http.Transport).TLSClientConfig)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	certs := conn.ConnectionState().PeerCertificates
	sum := sha1.Sum(certs[len(certs)-1].Raw) // #nosec G401 -- IAM's definition
	return hex.EncodeToString(sum[:])
}

// mustOtherKey is the shared test cluster's public signing key: an RSA key
// the token of this test's cluster was not signed with.
func mustOtherKey(t *testing.T) any {
	t.Helper()
	return cluster.ServiceAccountPublicKey()
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
