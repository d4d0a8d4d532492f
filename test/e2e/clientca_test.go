package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podiam/podiam/internal/certs"
	"github.com/podiam/podiam/test/harness"
	"github.com/podiam/podiam/test/testcluster"
	"github.com/podiam/podiam/test/testutil"
)

// writeClientCert writes a CA's certificate (ca.crt) and a client certificate
// and key it signed (client.crt, client.key) into dir.
func writeClientCert(t *testing.T, dir string) {
	t.Helper()
	b, err := certs.NewBundle(certs.Policy{CAValidity: time.Hour, CertValidity: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := b.IssueClientCert("kube-apiserver-webhook-client", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"ca.crt": b.CABundle(), "client.crt": certPEM, "client.key": keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// With --client-ca-file, a kube-apiserver whose admission kubeconfig holds a
// client certificate from that CA is served; one whose certificate comes from
// another CA is refused. It runs its own control plane: the admission
// configuration is a kube-apiserver flag.
func TestClientCertificateFromAPIServer(t *testing.T) {
	ctx := ctxFor(t, 3*time.Minute)
	dir := t.TempDir()
	apiDir, otherDir := filepath.Join(dir, "apiserver"), filepath.Join(dir, "other")
	for _, d := range []string{apiDir, otherDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		writeClientCert(t, d)
	}
	// kube-apiserver presents this certificate to every webhook ("*") that asks
	// for one.
	kubeconfig := filepath.Join(dir, "admission-kubeconfig.yaml")
	admission := filepath.Join(dir, "admission.yaml")
	files := map[string]string{
		kubeconfig: fmt.Sprintf("apiVersion: v1\nkind: Config\nusers:\n- name: \"*\"\n  user:\n    client-certificate: %s\n    client-key: %s\n",
			filepath.Join(apiDir, "client.crt"), filepath.Join(apiDir, "client.key")),
		admission: fmt.Sprintf(`apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: MutatingAdmissionWebhook
  configuration:
    apiVersion: apiserver.config.k8s.io/v1
    kind: WebhookAdmissionConfiguration
    kubeConfigFile: %s
`, kubeconfig),
	}
	for path, data := range files {
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cc, err := testcluster.Start(ctx, testcluster.Options{ExtraAPIServerFlags: []string{"--admission-control-config-file=" + admission}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Stop() })
	cs, err := cc.Clientset()
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name     string
		caDir    string
		wantRole bool
	}{
		{"trusted CA", apiDir, true},
		{"another CA", otherDir, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := testutil.UniqueName("client-ca")
			if err := cc.EnsureNamespace(ctx, ns, map[string]string{"client-ca": ns}); err != nil {
				t.Fatal(err)
			}
			wh := startWebhook(t, ctx, "client-ca", harness.WebhookOptions{
				Binary: podiamBin, Kubeconfig: cc.Kubeconfig(), Namespace: ns, Dir: t.TempDir(),
				Args: []string{"--client-ca-file=" + filepath.Join(tc.caDir, "ca.crt")},
			})
			// failurePolicy Fail: a refused call rejects the pod instead of
			// admitting it unmutated.
			if err := harness.Register(ctx, cs, harness.Registration{
				Name: ns, URL: wh.URL(), CABundle: wh.CABundle,
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"client-ca": ns}},
			}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				_ = cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, ns, metav1.DeleteOptions{})
			})
			const role = "arn:aws:iam::111122223333:role/client-ca"
			sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: ns,
				Annotations: map[string]string{"eks.amazonaws.com/role-arn": role}}}
			if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			pod, err := cs.CoreV1().Pods(ns).Create(ctx, simplePod("app"), metav1.CreateOptions{})
			if !tc.wantRole {
				if err == nil || !strings.Contains(err.Error(), "failed calling webhook") {
					t.Fatalf("pod creation: %v, want the webhook call refused", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("pod creation: %v\nwebhook logs:\n%s", err, wh.Logs())
			}
			if got := envMap(t, &pod.Spec.Containers[0])["AWS_ROLE_ARN"]; got != role {
				t.Errorf("AWS_ROLE_ARN = %q, want %q", got, role)
			}
		})
	}
}
