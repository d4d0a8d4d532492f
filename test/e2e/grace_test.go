package e2e

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/podiam/podiam/test/harness"
	"github.com/podiam/podiam/test/testutil"
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
	name := testutil.UniqueName("e2e-grace") // the registration, its namespace and the namespace's label
	ns := name
	newNamespace(t, ctx, ns, map[string]string{isolatedLabel: name})
	dir := t.TempDir()
	kubeconfig := startWatchDelayProxy(t, dir)
	w := startWebhook(t, ctx, name, harness.WebhookOptions{
		Binary: podiamBin, Kubeconfig: kubeconfig, Namespace: ns, Dir: dir,
		Args: []string{"--service-account-lookup-grace-period=2s", "--aws-default-region=" + region},
	})
	registerIsolated(t, ctx, name, harness.Registration{Name: name, URL: w.URL(), CABundle: w.CABundle})
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

	// No credentials: the proxy adds the admin's.
	kubeconfig := filepath.Join(dir, "kubeconfig-delayed")
	err = harness.WriteKubeconfig(kubeconfig, &rest.Config{Host: "https://" + ln.Addr().String(),
		TLSClientConfig: rest.TLSClientConfig{CAData: caPEM}})
	if err != nil {
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
