// Package harness runs the real `podiam webhook` process against a test control
// plane and registers it with the API server. The end-to-end tests and
// `make demo` share it.
package harness

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/podiam/podiam/internal/certs"
	"github.com/podiam/podiam/test/testutil"
)

// BuildPodiam builds cmd/podiam into dir, with extra `go build` flags (such as
// -race), and returns the binary's path.
func BuildPodiam(ctx context.Context, dir string, buildFlags ...string) (string, error) {
	root, err := testutil.ModuleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "podiam")
	args := append(append([]string{"build"}, buildFlags...), "-o", bin, "./cmd/podiam")
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building podiam: %w\n%s", err, out)
	}
	return bin, nil
}

// WebhookOptions configure a webhook process.
type WebhookOptions struct {
	Binary     string
	Kubeconfig string
	// Namespace is --namespace (the ConfigMap's and the Secret's namespace).
	Namespace string
	// SelfManaged runs --cert-mode=self-managed with 127.0.0.1 in the
	// certificate; otherwise the harness writes a certificate and key for
	// 127.0.0.1 and runs the default file mode.
	SelfManaged bool
	// Dir holds the certificate files and the container-credentials file.
	Dir string
	// Port and MetricsPort are picked when zero; a restart keeps them.
	Port, MetricsPort int
	// Args are appended to the command line.
	Args []string
}

// Webhook is a running `podiam webhook` process.
type Webhook struct {
	o WebhookOptions
	// CABundle verifies the serving certificate in file mode.
	CABundle []byte

	mu   sync.Mutex
	proc *Process // the last process started
	logs testutil.SyncBuffer
}

// Addr is the host:port of the admission (TLS) port.
func (w *Webhook) Addr() string { return fmt.Sprintf("127.0.0.1:%d", w.o.Port) }

// MetricsAddr is the host:port of the metrics port.
func (w *Webhook) MetricsAddr() string { return fmt.Sprintf("127.0.0.1:%d", w.o.MetricsPort) }

// URL is the admission endpoint.
func (w *Webhook) URL() string { return "https://" + w.Addr() + "/mutate" }

// MetricsURL is the metrics endpoint.
func (w *Webhook) MetricsURL() string { return "http://" + w.MetricsAddr() + "/metrics" }

// Pid is the process ID of the last process started (for reading its
// /proc entries), or 0 if none was.
func (w *Webhook) Pid() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.proc == nil {
		return 0
	}
	return w.proc.Pid()
}

// StartWebhook starts the process and waits until /readyz answers 200. If it
// does not, the process is killed and the error holds its logs.
func StartWebhook(ctx context.Context, o WebhookOptions) (*Webhook, error) {
	ports, err := testutil.FreePorts(2)
	if err != nil {
		return nil, err
	}
	if o.Port == 0 {
		o.Port = ports[0]
	}
	if o.MetricsPort == 0 {
		o.MetricsPort = ports[1]
	}
	w := &Webhook{o: o}
	if !o.SelfManaged {
		if w.CABundle, err = WriteServingCert(o.Dir); err != nil {
			return nil, err
		}
	}
	if err := w.Start(ctx); err != nil {
		w.Kill() // the caller gets no handle: do not leave a process behind that never became ready
		return nil, err
	}
	return w, nil
}

// Start (re)starts the process with the same ports and waits for readiness.
func (w *Webhook) Start(ctx context.Context) error {
	args := []string{"webhook",
		"--kubeconfig=" + w.o.Kubeconfig,
		"--namespace=" + w.o.Namespace,
		"--address=127.0.0.1",
		"--port=" + strconv.Itoa(w.o.Port),
		"--metrics-port=" + strconv.Itoa(w.o.MetricsPort),
		"--log-format=text",
		"--shutdown-timeout=5s",
		"--shutdown-delay=0s", // tests stop and restart it often; the delay is unit-tested
	}
	if w.o.SelfManaged {
		args = append(args, "--cert-mode=self-managed", "--cert-extra-names=127.0.0.1")
	} else {
		args = append(args, "--tls-cert="+filepath.Join(w.o.Dir, "tls.crt"), "--tls-key="+filepath.Join(w.o.Dir, "tls.key"))
	}
	args = append(args, w.o.Args...)
	proc, err := StartPodiam(w.o.Binary, &w.logs, nil, args...)
	if err != nil {
		return err
	}
	w.mu.Lock()
	w.proc = proc
	w.mu.Unlock()
	return w.WaitReady(ctx, 60*time.Second)
}

// WaitReady polls /readyz until it answers 200. It fails at once if the
// process exits.
func (w *Webhook) WaitReady(ctx context.Context, timeout time.Duration) error {
	url := fmt.Sprintf("http://127.0.0.1:%d/readyz", w.o.MetricsPort)
	w.mu.Lock()
	done := w.proc.Exited()
	w.mu.Unlock()
	exited := errors.New("podiam webhook exited")
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		select {
		case <-done:
			return false, exited
		default:
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false, nil // not listening yet
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	switch {
	case errors.Is(err, exited):
		return fmt.Errorf("%w:\n%s", err, w.Logs())
	case err != nil:
		return fmt.Errorf("podiam webhook not ready: %w\n%s", err, w.Logs())
	}
	return nil
}

// Stop sends SIGTERM and waits for the process to exit; SIGKILL after 10 s.
func (w *Webhook) Stop() {
	w.signal(syscall.SIGTERM, 10*time.Second)
}

// Kill kills the process at once, as a crash would.
func (w *Webhook) Kill() {
	w.signal(syscall.SIGKILL, 10*time.Second)
}

func (w *Webhook) signal(sig syscall.Signal, wait time.Duration) {
	w.mu.Lock()
	proc := w.proc
	w.mu.Unlock()
	if proc != nil {
		proc.Signal(sig, wait)
	}
}

// Logs returns everything the process wrote so far.
func (w *Webhook) Logs() string { return w.logs.String() }

// Metrics returns the Prometheus text exposition of the metrics endpoint.
func (w *Webhook) Metrics(ctx context.Context) (string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, w.MetricsURL(), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// Registration describes the MutatingWebhookConfiguration of a test.
type Registration struct {
	Name          string
	URL           string
	CABundle      []byte
	FailurePolicy admissionregistrationv1.FailurePolicyType
	// SkipLabel is the objectSelector key that excludes pods.
	SkipLabel string
	// NamespaceSelector, when set, limits the webhook to matching namespaces.
	NamespaceSelector *metav1.LabelSelector
}

// Register creates or replaces the MutatingWebhookConfiguration, shaped like
// the chart's (charts/podiam/templates/webhook-mutatingwebhookconfiguration.yaml)
// but with a URL client config.
func Register(ctx context.Context, client kubernetes.Interface, r Registration) error {
	fp := r.FailurePolicy
	if fp == "" {
		fp = admissionregistrationv1.Fail
	}
	none := admissionregistrationv1.SideEffectClassNone
	ifNeeded := admissionregistrationv1.IfNeededReinvocationPolicy
	scope := admissionregistrationv1.NamespacedScope
	timeout := int32(10)
	url := r.URL
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: r.Name},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    r.Name + ".podiam.io",
			AdmissionReviewVersions: []string{"v1"},
			SideEffects:             &none,
			TimeoutSeconds:          &timeout,
			ReinvocationPolicy:      &ifNeeded,
			FailurePolicy:           &fp,
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: r.CABundle},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"},
					Resources: []string{"pods"}, Scope: &scope},
			}},
		}},
	}
	if r.NamespaceSelector != nil {
		cfg.Webhooks[0].NamespaceSelector = r.NamespaceSelector.DeepCopy()
	}
	if r.SkipLabel != "" {
		cfg.Webhooks[0].ObjectSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: r.SkipLabel, Operator: metav1.LabelSelectorOpDoesNotExist}}}
	}
	cfgs := client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	existing, err := cfgs.Get(ctx, r.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = cfgs.Create(ctx, cfg, metav1.CreateOptions{})
	case err == nil:
		cfg.ResourceVersion = existing.ResourceVersion
		_, err = cfgs.Update(ctx, cfg, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("registering webhook %s: %w", r.Name, err)
	}
	return nil
}

// LoopbackBundle returns a new CA and a serving certificate for 127.0.0.1 it
// signed, both valid for a day: for test servers on loopback.
func LoopbackBundle() (*certs.Bundle, error) {
	pol := certs.Policy{CAValidity: 24 * time.Hour, CertValidity: 24 * time.Hour, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}
	b, err := certs.NewBundle(pol, time.Now())
	if err != nil {
		return nil, fmt.Errorf("issuing a loopback serving certificate: %w", err)
	}
	return b, nil
}

// WriteServingCert writes a CA-signed certificate for 127.0.0.1 to dir/tls.crt
// and dir/tls.key and returns the CA's PEM for the caBundle.
func WriteServingCert(dir string) ([]byte, error) {
	b, err := LoopbackBundle()
	if err != nil {
		return nil, err
	}
	data, err := b.Encode()
	if err != nil {
		return nil, err
	}
	for _, k := range []string{certs.KeyTLSCert, certs.KeyTLSKey} {
		if err := os.WriteFile(filepath.Join(dir, k), data[k], 0o600); err != nil {
			return nil, err
		}
	}
	return data[certs.KeyCACert], nil
}

// WriteKubeconfig writes a kubeconfig file with cfg's server, CA and
// credentials (client certificate, bearer token, or none), for a process that
// takes --kubeconfig.
func WriteKubeconfig(path string, cfg *rest.Config) error {
	const name = "podiam-test"
	kc := clientcmdapi.NewConfig()
	kc.Clusters[name] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos[name] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	kc.CurrentContext = name
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return fmt.Errorf("writing kubeconfig %s: %w", path, err)
	}
	return nil
}

// TLSClientConfig trusts caBundle, for talking to the webhook directly.
func TLSClientConfig(caBundle []byte) *tls.Config {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caBundle)
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}
