package testcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/podiam/podiam/test/testutil"
)

const testIssuer = "https://oidc.podiam.test/cluster-1"

func TestTokenRequestSignedByClusterKey(t *testing.T) {
	c := StartForTest(t, Options{IssuerURL: testIssuer})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	const ns, saName = "team-a", "app"
	labels := map[string]string{"team": "a"}
	if err := c.EnsureNamespace(ctx, ns, labels); err != nil {
		t.Fatal(err)
	}
	if err := c.EnsureNamespace(ctx, ns, nil); err != nil { // idempotent
		t.Fatal(err)
	}
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil || got.Labels["team"] != "a" {
		t.Fatalf("EnsureNamespace: namespace %v (labels %v), want the label team=a", err, got.GetLabels())
	}
	if _, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{}); err != nil {
		t.Fatalf("EnsureNamespace did not create the default ServiceAccount: %v", err)
	}
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: saName, Namespace: ns},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	exp := int64(3600)
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, saName, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			Audiences:         []string{"sts.amazonaws.com"},
			ExpirationSeconds: &exp,
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	header, claims, err := c.VerifyToken(tr.Status.Token)
	if err != nil {
		t.Fatalf("token does not verify with the cluster's key: %v", err)
	}
	if header.Kid != c.ServiceAccountKeyID() {
		t.Errorf("kid = %q, want %q", header.Kid, c.ServiceAccountKeyID())
	}
	if claims.Iss != testIssuer || c.IssuerURL() != testIssuer {
		t.Errorf("iss = %q, IssuerURL() = %q, want %q", claims.Iss, c.IssuerURL(), testIssuer)
	}
	if len(claims.Aud) != 1 || claims.Aud[0] != "sts.amazonaws.com" {
		t.Errorf("aud = %q, want [sts.amazonaws.com]", claims.Aud)
	}
	if want := "system:serviceaccount:" + ns + ":" + saName; claims.Sub != want {
		t.Errorf("sub = %q, want %q", claims.Sub, want)
	}
	if life := claims.Exp - claims.Iat; life != exp {
		t.Errorf("exp - iat = %d, want %d", life, exp)
	}

	// The key set the API server publishes matches JWKS().
	body, err := cs.RESTClient().Get().AbsPath("/openid/v1/jwks").DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := compactJSON(t, body), compactJSON(t, c.JWKS()); got != want {
		t.Errorf("/openid/v1/jwks = %s\nJWKS() = %s", got, want)
	}

	// The kubeconfig file works too.
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kc.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
		t.Fatalf("via kubeconfig: %v", err)
	}
}

func compactJSON(t *testing.T, b []byte) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	out, err := json.Marshal(v) // sorts keys
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func TestStopLeavesNothingBehind(t *testing.T) {
	c := StartForTest(t, Options{})
	if got := c.IssuerURL(); got != DefaultIssuerURL {
		t.Errorf("IssuerURL() = %q, want the default %q", got, DefaultIssuerURL)
	}
	// Both processes listen before Stop and nothing does after it: Stop
	// returns once each process has exited.
	apiURL, err := url.Parse(c.URL())
	if err != nil {
		t.Fatal(err)
	}
	addrs := map[string]string{"kube-apiserver": apiURL.Host, "etcd": c.env.ControlPlane.Etcd.URL.Host}
	for name, addr := range addrs {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Fatalf("%s not listening on %s before Stop: %v", name, addr, err)
		}
		conn.Close()
	}
	dir := c.Dir()
	if _, err := os.Stat(filepath.Join(dir, apiServerLog)); err != nil {
		t.Fatal(err)
	}

	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(); err != nil { // idempotent
		t.Fatal(err)
	}
	for name, addr := range addrs {
		if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			conn.Close()
			t.Errorf("%s still listening on %s after Stop", name, addr)
		}
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temp dir %s still exists after Stop (stat: %v)", dir, err)
	}
	if !strings.Contains(c.Logs(), apiServerLog) {
		t.Errorf("Logs() after Stop lost the captured tails: %q", c.Logs())
	}
}

func TestStartWithoutBinaries(t *testing.T) {
	_, err := Start(t.Context(), Options{BinDir: t.TempDir()})
	if !errors.Is(err, ErrBinariesMissing) || !strings.Contains(err.Error(), "make tools") {
		t.Fatalf("Start with an empty BinDir: %v, want ErrBinariesMissing mentioning make tools", err)
	}
}

func TestDefaultBinDirIsRepoBin(t *testing.T) {
	t.Setenv("PODIAM_BIN_DIR", "")
	dir, err := resolveBinDir("")
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Dir(dir)
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil || filepath.Base(dir) != "bin" || !bytes.HasPrefix(b, []byte("module "+testutil.ModulePath+"\n")) {
		t.Fatalf("resolveBinDir = %s (go.mod: %v)", dir, err)
	}
	t.Setenv("PODIAM_BIN_DIR", "/somewhere/else")
	if dir, _ := resolveBinDir(""); dir != "/somewhere/else" {
		t.Errorf("with PODIAM_BIN_DIR: %s", dir)
	}
}
