package e2e

import (
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/podiam/podiam/test/harness"
)

// watchDelay is how far behind the API server the webhook's ServiceAccount
// watch runs in TestServiceAccountGracePeriod; below the grace period (2 s).
const watchDelay = 1500 * time.Millisecond

// TestServiceAccountGracePeriod: a pod created right after its ServiceAccount,
// before the webhook's cache has seen it, is still injected: the webhook looks
// the ServiceAccount up in the API server. The webhook here reaches the API
// server through a proxy that delays watch streams, so that its cache misses
// every new ServiceAccount (against the shared webhook the watch usually wins
// the race and the lookup path would go untested).
func TestServiceAccountGracePeriod(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, time.Minute)
	const (
		ns   = "e2e-grace"
		name = "e2e-grace"
	)
	newNamespace(t, ctx, ns, map[string]string{isolatedLabel: name})
	dir := t.TempDir()
	kubeconfig := startWatchDelayProxy(t, dir)
	w, err := harness.StartWebhook(ctx, harness.WebhookOptions{
		Binary: podiamBin, Kubeconfig: kubeconfig, Namespace: ns, Dir: dir,
		Args: []string{"--service-account-lookup-grace-period=2s", "--aws-default-region=" + region},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	logsOnFailure(t, name, w)
	err = harness.Register(ctx, client, harness.Registration{
		Name: name, URL: w.URL(), CABundle: w.CABundle, SkipLabel: skipLabel,
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{isolatedLabel: name}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = client.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, name, metav1.DeleteOptions{})
	})
	if err := waitActive(ctx, ns); err != nil {
		t.Fatal(err)
	}

	metric := func() float64 {
		text, err := w.Metrics(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return metricSum(text, "podiam_webhook_serviceaccount_lookups_total", `source="api"`, `result="found"`)
	}
	before := metric()
	const n = 5
	for i := range n {
		role := fmt.Sprintf("arn:aws:iam::111122223333:role/fresh-%d", i)
		sa := fmt.Sprintf("fresh-%d", i)
		newServiceAccount(t, ctx, ns, sa, map[string]string{annoRoleARN: role})
		got := createPod(t, ctx, client, ns, simplePod(sa)) // no wait
		checkIRSA(t, got, irsaExpect{role: role, expiration: 86400}, "app")
	}
	if found := metric() - before; found < n {
		t.Errorf("%v ServiceAccounts found by direct API lookup, want %d: the test did not exercise the cache miss", found, n)
	}
}

// startWatchDelayProxy serves the API server on 127.0.0.1 with admin
// credentials, delaying every chunk of watch responses by watchDelay, and
// returns a kubeconfig for it.
func startWatchDelayProxy(t *testing.T, dir string) string {
	t.Helper()
	target, err := url.Parse(cluster.URL())
	if err != nil {
		t.Fatal(err)
	}
	rt, err := rest.TransportFor(cluster.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Header.Del("Authorization")
		},
		Transport:     rt,
		FlushInterval: -1,
		ModifyResponse: func(resp *http.Response) error {
			if resp.Request.URL.Query().Get("watch") == "true" {
				resp.Body = &delayedReader{rc: resp.Body}
			}
			return nil
		},
	}
	caPEM, cert := testServingCert(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: proxy, ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })

	kubeconfig := filepath.Join(dir, "kubeconfig-delayed")
	cfg := strings.Join([]string{
		"apiVersion: v1",
		"kind: Config",
		"clusters:",
		"- name: delayed",
		"  cluster:",
		"    server: https://" + ln.Addr().String(),
		"    certificate-authority-data: " + base64.StdEncoding.EncodeToString(caPEM),
		"users:",
		"- name: proxy",
		"  user: {}",
		"contexts:",
		"- name: delayed",
		"  context: {cluster: delayed, user: proxy}",
		"current-context: delayed",
		"",
	}, "\n")
	if err := os.WriteFile(kubeconfig, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return kubeconfig
}

// delayedReader holds back each chunk of a watch stream by watchDelay.
type delayedReader struct {
	rc io.ReadCloser
}

func (d *delayedReader) Read(p []byte) (int, error) {
	n, err := d.rc.Read(p)
	if n > 0 {
		time.Sleep(watchDelay)
	}
	return n, err
}

func (d *delayedReader) Close() error { return d.rc.Close() }
