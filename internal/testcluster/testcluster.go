// Package testcluster runs a real Kubernetes control plane — etcd and
// kube-apiserver, built from source by `make tools` into bin/ — for tests and
// the demo.
//
// Only etcd and kube-apiserver run: there is no kube-controller-manager,
// scheduler or kubelet. In particular:
//
//   - The apiserver itself creates the namespaces default, kube-system,
//     kube-public and kube-node-lease shortly after it starts (not
//     necessarily before it reports ready).
//   - Nothing creates the "default" ServiceAccount of a namespace, and the
//     ServiceAccount admission plugin rejects pods whose ServiceAccount does
//     not exist. Use [Cluster.EnsureNamespace] to create a namespace together
//     with its default ServiceAccount.
//   - Pods are stored and admitted (mutating webhooks run) but never
//     scheduled or run; namespaces are never finalized after deletion.
//
// The API server uses RBAC, the default admission plugins (which include
// MutatingAdmissionWebhook and ServiceAccount), and signs service-account
// tokens with a fresh RSA 2048 key for the configured issuer. Admin access is
// a client certificate in group system:masters.
package testcluster

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// DefaultIssuerURL is the service-account issuer used when Options.IssuerURL
// is empty; it is also kube-apiserver's conventional in-cluster issuer.
const DefaultIssuerURL = "https://kubernetes.default.svc"

// ModulePath is the module whose root holds bin/ by default.
const ModulePath = "github.com/podiam/podiam"

// ErrBinariesMissing is returned (wrapped) by Start when etcd or
// kube-apiserver is not in the bin directory.
var ErrBinariesMissing = errors.New("control-plane binaries missing: run `make tools` at the repository root to build bin/etcd and bin/kube-apiserver")

// Options configures Start. The zero value is valid.
type Options struct {
	// IssuerURL is the service-account token issuer (--service-account-issuer),
	// also the API audience. Default DefaultIssuerURL.
	IssuerURL string
	// BinDir holds etcd and kube-apiserver. Default $PODIAM_BIN_DIR, else
	// bin/ at the root of the github.com/podiam/podiam module, found by
	// walking up from the working directory.
	BinDir string
	// ExtraAPIServerFlags are appended to kube-apiserver's command line; a
	// flag given here overrides the same flag set by default.
	ExtraAPIServerFlags []string
	// Logf, if set, receives progress messages.
	Logf func(format string, args ...any)
}

// Cluster is a running etcd + kube-apiserver. Stop it when done.
type Cluster struct {
	issuer     string
	dir        string
	url        string
	etcdURL    string
	kubeconfig string
	pki        *pki
	restConfig *rest.Config
	etcd, api  *process
	logf       func(string, ...any)
	startTime  time.Duration

	clientOnce sync.Once
	client     *kubernetes.Clientset
	clientErr  error

	stopOnce  sync.Once
	stopErr   error
	mu        sync.Mutex
	finalLogs string // Logs() captured by Stop before the temp dir goes
}

const (
	etcdReadyTimeout = 30 * time.Second
	apiReadyTimeout  = 90 * time.Second
	startAttempts    = 3 // new ports each time; covers races on the ports we pick
	logTailBytes     = 6 << 10
)

// Start runs etcd and kube-apiserver on free 127.0.0.1 ports, with all state
// in a new temporary directory, and returns once /readyz answers ok. ctx
// bounds only the start-up: the cluster runs until Stop.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	begin := time.Now()
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	issuer := opts.IssuerURL
	if issuer == "" {
		issuer = DefaultIssuerURL
	}
	binDir, err := resolveBinDir(opts.BinDir)
	if err != nil {
		return nil, err
	}
	etcdBin, apiBin := filepath.Join(binDir, "etcd"), filepath.Join(binDir, "kube-apiserver")
	for _, b := range []string{etcdBin, apiBin} {
		if st, err := os.Stat(b); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return nil, fmt.Errorf("%w (%s is missing or not executable; the directory comes from Options.BinDir, $PODIAM_BIN_DIR or <repo>/bin)", ErrBinariesMissing, b)
		}
	}

	dir, err := os.MkdirTemp("", "podiam-testcluster-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{issuer: issuer, dir: dir, logf: logf}
	ok := false
	defer func() {
		if !ok {
			_ = c.Stop()
		}
	}()
	if c.pki, err = newPKI(dir); err != nil {
		return nil, err
	}

	for attempt := 1; ; attempt++ {
		retry, err := c.startOnce(ctx, attempt, etcdBin, apiBin, opts.ExtraAPIServerFlags)
		if err == nil {
			break
		}
		logs := c.Logs()
		c.stopProcesses()
		if !retry || attempt == startAttempts || ctx.Err() != nil {
			return nil, fmt.Errorf("testcluster: %w\n%s", err, logs)
		}
		logf("testcluster: attempt %d: %v; retrying on other ports", attempt, err)
	}

	c.restConfig = &rest.Config{
		Host: c.url,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   c.pki.caPEM,
			CertData: c.pki.adminCertPEM,
			KeyData:  c.pki.adminKeyPEM,
		},
		QPS:   200,
		Burst: 400,
	}
	c.kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(c.kubeconfig, c.kubeconfigYAML(), 0o600); err != nil {
		return nil, err
	}
	c.startTime = time.Since(begin)
	logf("testcluster: kube-apiserver ready at %s in %v (dir %s)", c.url, c.startTime.Round(time.Millisecond), dir)
	ok = true
	return c, nil
}

// startOnce starts etcd then kube-apiserver on newly picked ports and waits
// for both. retry reports whether a failure looks like a lost port race.
func (c *Cluster) startOnce(ctx context.Context, attempt int, etcdBin, apiBin string, extra []string) (retry bool, err error) {
	c.etcd, c.api = nil, nil // the previous attempt's are stopped
	ports, err := freePorts(3)
	if err != nil {
		return false, err
	}
	clientPort, peerPort, apiPort := ports[0], ports[1], ports[2]
	c.etcdURL = "http://127.0.0.1:" + strconv.Itoa(clientPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	c.url = "https://127.0.0.1:" + strconv.Itoa(apiPort)

	c.etcd, err = startProcess("etcd", etcdBin, []string{
		"--name=testcluster",
		"--data-dir=" + filepath.Join(c.dir, "etcd-"+strconv.Itoa(attempt)),
		"--listen-client-urls=" + c.etcdURL,
		"--advertise-client-urls=" + c.etcdURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=testcluster=" + peerURL,
		"--unsafe-no-fsync=true", // throw-away data
		"--log-level=warn",
	}, filepath.Join(c.dir, "etcd.log"))
	if err != nil {
		return false, fmt.Errorf("start etcd: %w", err)
	}
	if err := waitReady(ctx, etcdReadyTimeout, c.etcd, http.DefaultTransport, c.etcdURL+"/health"); err != nil {
		return portRace(c.etcd), fmt.Errorf("etcd: %w", err)
	}

	args := []string{
		"--etcd-servers=" + c.etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		// Kubernetes 1.37 refuses a loopback advertise address with the
		// default (lease) endpoint reconciler; without it, the kubernetes
		// Service in default has no endpoints, which nothing here needs.
		"--endpoint-reconciler-type=none",
		"--secure-port=" + strconv.Itoa(apiPort),
		"--tls-cert-file=" + c.pki.serverCertFile,
		"--tls-private-key-file=" + c.pki.serverKeyFile,
		"--client-ca-file=" + c.pki.caFile,
		"--authorization-mode=RBAC",
		"--enable-admission-plugins=NamespaceLifecycle,ServiceAccount,MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
		"--service-account-issuer=" + c.issuer,
		"--api-audiences=" + c.issuer,
		"--service-account-key-file=" + c.pki.saPublicKeyFile,
		"--service-account-signing-key-file=" + c.pki.saKeyFile,
		"--service-cluster-ip-range=10.0.0.0/24",
		"--cert-dir=" + filepath.Join(c.dir, "apiserver-certs"),
		"--profiling=false",
	}
	c.api, err = startProcess("kube-apiserver", apiBin, append(args, extra...), filepath.Join(c.dir, "kube-apiserver.log"))
	if err != nil {
		return false, fmt.Errorf("start kube-apiserver: %w", err)
	}
	if err := waitReady(ctx, apiReadyTimeout, c.api, c.adminTransport(), c.url+"/readyz"); err != nil {
		return portRace(c.api) || portRace(c.etcd), fmt.Errorf("kube-apiserver: %w", err)
	}
	return false, nil
}

// freePorts returns n distinct ports that were free on 127.0.0.1 a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// portRace reports whether p died because its port was taken.
func portRace(p *process) bool {
	if p == nil || !p.exited() {
		return false
	}
	b, _ := os.ReadFile(p.logPath)
	return bytes.Contains(b, []byte("address already in use"))
}

// waitReady polls url until it answers 200, p exits, or the timeout or ctx ends.
func waitReady(ctx context.Context, timeout time.Duration, p *process, rt http.RoundTripper, url string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Transport: rt, Timeout: 5 * time.Second}
	last := "no answer"
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if p.exited() {
			return fmt.Errorf("exited during start-up (%v)", p.waitErr)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%s: %s", resp.Status, bytes.TrimSpace(body))
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready at %s: %w (last: %s)", url, ctx.Err(), last)
		case <-tick.C:
		}
	}
}

func (c *Cluster) adminTransport() *http.Transport {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.pki.caPEM)
	cert, err := tls.X509KeyPair(c.pki.adminCertPEM, c.pki.adminKeyPEM)
	if err != nil {
		panic(err) // generated by newPKI
	}
	return &http.Transport{
		Proxy:           nil,
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
	}
}

func (c *Cluster) kubeconfigYAML() []byte {
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters:
- name: podiam-testcluster
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: podiam-admin
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: podiam-testcluster
  context:
    cluster: podiam-testcluster
    user: podiam-admin
current-context: podiam-testcluster
`, c.url, b64(c.pki.caPEM), b64(c.pki.adminCertPEM), b64(c.pki.adminKeyPEM))
}

// resolveBinDir applies the BinDir defaults.
func resolveBinDir(dir string) (string, error) {
	if dir != "" {
		return dir, nil
	}
	if dir := os.Getenv("PODIAM_BIN_DIR"); dir != "" {
		return dir, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if modulePath(filepath.Join(d, "go.mod")) == ModulePath {
			return filepath.Join(d, "bin"), nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("%w (no go.mod of %s above %s; set PODIAM_BIN_DIR)", ErrBinariesMissing, ModulePath, wd)
		}
	}
}

// modulePath returns the module path declared in a go.mod file, or "".
func modulePath(gomod string) string {
	b, err := os.ReadFile(gomod)
	if err != nil {
		return ""
	}
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`+"`")
		}
	}
	return ""
}

// Stop terminates kube-apiserver and etcd (SIGTERM to each process group,
// SIGKILL after a grace period) and removes the temporary directory. It is
// safe to call more than once and from several goroutines.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		begin := time.Now()
		logs := c.Logs()
		c.stopProcesses()
		c.mu.Lock()
		c.finalLogs = logs
		c.mu.Unlock()
		if c.dir != "" {
			c.stopErr = os.RemoveAll(c.dir)
		}
		c.logf("testcluster: stopped in %v", time.Since(begin).Round(time.Millisecond))
	})
	return c.stopErr
}

// stopProcesses stops the API server first, then etcd.
func (c *Cluster) stopProcesses() {
	if c.api != nil {
		c.api.stop()
	}
	if c.etcd != nil {
		c.etcd.stop()
	}
}

// RESTConfig returns a new copy of the admin (system:masters) client config.
func (c *Cluster) RESTConfig() *rest.Config { return rest.CopyConfig(c.restConfig) }

// Kubeconfig is the path of a kubeconfig file with admin credentials (in the
// temporary directory: gone after Stop).
func (c *Cluster) Kubeconfig() string { return c.kubeconfig }

// URL is the API server's base URL, https://127.0.0.1:<port>.
func (c *Cluster) URL() string { return c.url }

// EtcdURL is etcd's client URL (plain HTTP on 127.0.0.1).
func (c *Cluster) EtcdURL() string { return c.etcdURL }

// Dir is the temporary directory that holds the cluster's state and logs.
func (c *Cluster) Dir() string { return c.dir }

// StartupTime is how long Start took until /readyz answered.
func (c *Cluster) StartupTime() time.Duration { return c.startTime }

// CACertPEM is the CA that signed the API server's serving certificate.
func (c *Cluster) CACertPEM() []byte { return bytes.Clone(c.pki.caPEM) }

// Logs returns the tails of the etcd and kube-apiserver logs (after Stop,
// as they were when Stop was called).
func (c *Cluster) Logs() string {
	c.mu.Lock()
	final := c.finalLogs
	c.mu.Unlock()
	if final != "" {
		return final
	}
	var b strings.Builder
	for _, name := range []string{"etcd.log", "kube-apiserver.log"} {
		path := filepath.Join(c.dir, name)
		if _, err := os.Stat(path); err != nil {
			continue
		}
		fmt.Fprintf(&b, "----- %s (tail) -----\n%s\n", name, strings.TrimRight(tailFile(path, logTailBytes), "\n"))
	}
	return b.String()
}

// IssuerURL is the service-account token issuer ("iss" of projected tokens).
func (c *Cluster) IssuerURL() string { return c.issuer }

// ServiceAccountPublicKey is the public half of the token signing key.
func (c *Cluster) ServiceAccountPublicKey() *rsa.PublicKey { return &c.pki.saKey.PublicKey }

// ServiceAccountSigningKey is the RSA 2048 key kube-apiserver signs
// service-account tokens with (handy for minting tokens in tests).
func (c *Cluster) ServiceAccountSigningKey() *rsa.PrivateKey { return c.pki.saKey }

// ServiceAccountPublicKeyFile is the PEM ("PUBLIC KEY") file of the public key.
func (c *Cluster) ServiceAccountPublicKeyFile() string { return c.pki.saPublicKeyFile }

// ServiceAccountKeyID is the "kid" header of tokens the cluster signs.
func (c *Cluster) ServiceAccountKeyID() string {
	kid, err := KeyID(&c.pki.saKey.PublicKey)
	if err != nil {
		panic(err) // an RSA key always marshals
	}
	return kid
}

// JWKS is the JSON Web Key Set of the signing key, as served by the API
// server at /openid/v1/jwks (same key, kid, alg and use).
func (c *Cluster) JWKS() []byte {
	b, err := jwks(&c.pki.saKey.PublicKey)
	if err != nil {
		panic(err)
	}
	return b
}

// Clientset returns a shared admin clientset.
func (c *Cluster) Clientset() (*kubernetes.Clientset, error) {
	c.clientOnce.Do(func() {
		c.client, c.clientErr = kubernetes.NewForConfig(c.RESTConfig())
	})
	return c.client, c.clientErr
}

// EnsureNamespace creates namespace name and its "default" ServiceAccount if
// they do not exist. Without kube-controller-manager nothing else creates
// that ServiceAccount, and pods that use it are rejected without it.
func (c *Cluster) EnsureNamespace(ctx context.Context, name string) error {
	cs, err := c.Clientset()
	if err != nil {
		return err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: name}}
	if _, err := cs.CoreV1().ServiceAccounts(name).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create serviceaccount %s/default: %w", name, err)
	}
	return nil
}
