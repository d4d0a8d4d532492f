// Package testcluster runs a real Kubernetes control plane — etcd and
// kube-apiserver, built from source by `make tools` into bin/ — for tests and
// the demo.
//
// controller-runtime's envtest starts and stops the two processes: free
// ports, the serving certificate, an admin client certificate in group
// system:masters, the health checks and the process-group stop are its. This
// package adds only what envtest does not give:
//
//   - kube-apiserver flags for what podiam needs of a real cluster: the
//     ServiceAccount admission plugin (envtest turns it off) and
//     MutatingAdmissionWebhook, a configurable service-account issuer, and a
//     loopback advertise address with the endpoint reconciler off (Kubernetes
//     1.37 refuses a loopback address with the default lease reconciler);
//   - an RSA service-account signing key that tests can read: envtest makes an
//     ECDSA key and does not expose it, and tests verify RS256 tokens against
//     the key and its JWKS (see [Cluster.VerifyToken], [Cluster.JWKS]);
//   - the etcd and kube-apiserver output in files, whose tails explain a
//     failure ([Cluster.Logs]) and whose whole text tests can search
//     ([Cluster.Dir]/kube-apiserver.log); envtest only takes writers;
//   - a kubeconfig file, for the podiam process under test;
//   - [Cluster.EnsureNamespace], which creates a namespace with its default
//     ServiceAccount (see below);
//   - a new start on fresh ports when a port picked for etcd or kube-apiserver
//     was taken meanwhile (envtest retries on the same ports);
//   - a wait for /readyz after envtest's /healthz.
//
// What is lost against running the processes by hand: envtest gives no way
// to set a parent-death signal, so a test binary killed outright (SIGKILL, or
// a `go test -timeout` panic that skips Stop) leaves etcd and kube-apiserver
// running until killed; Stop itself stops both process groups.
//
// The package is imported by tests only (and by hack/demo and hack/cachemem),
// hence its place under test/.
//
// Only etcd and kube-apiserver run: there is no kube-controller-manager,
// scheduler or kubelet. In particular:
//
//   - The apiserver itself creates the namespaces default, kube-system,
//     kube-public and kube-node-lease shortly after it starts.
//   - Nothing creates the "default" ServiceAccount of a namespace, and the
//     ServiceAccount admission plugin rejects pods whose ServiceAccount does
//     not exist. Use [Cluster.EnsureNamespace].
//   - Pods are stored and admitted (mutating webhooks run) but never
//     scheduled or run; namespaces are never finalized after deletion, so a
//     test that may run twice against one cluster uses a new namespace name
//     each time.
package testcluster

import (
	"bytes"
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/podiam/podiam/internal/oidc"
	"github.com/podiam/podiam/test/testutil"
)

// DefaultIssuerURL is the service-account issuer used when Options.IssuerURL
// is empty; it is also kube-apiserver's conventional in-cluster issuer.
const DefaultIssuerURL = "https://kubernetes.default.svc"

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
	// ExtraAPIServerFlags are added to kube-apiserver's command line as
	// "--name=value" or "--name"; a flag given here replaces the same flag
	// set by default.
	ExtraAPIServerFlags []string
	// ServiceAccountKeyFiles are more public key files for kube-apiserver's
	// --service-account-key-file, after the cluster's own key: the keys it
	// accepts service-account tokens from and publishes in its JWKS (a file
	// may hold several PEM blocks). A key rotation looks like this.
	ServiceAccountKeyFiles []string
	// Logf, if set, receives progress messages.
	Logf func(format string, args ...any)
}

// Cluster is a running etcd + kube-apiserver. Stop it when done.
type Cluster struct {
	issuer     string
	dir        string
	kubeconfig string
	sa         *saKeys
	keyFiles   []string // Options.ServiceAccountKeyFiles
	env        *envtest.Environment
	restConfig *rest.Config
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
	// maxStartTimeout bounds how long etcd and kube-apiserver each get to
	// become healthy; the caller's context deadline may shorten it.
	maxStartTimeout = 90 * time.Second
	stopTimeout     = 10 * time.Second
	readyTimeout    = 30 * time.Second
	startAttempts   = 3 // fresh ports each time; covers races on the ports picked
	logTailBytes    = 6 << 10
)

// Log files in Dir.
const (
	etcdLog      = "etcd.log"
	apiServerLog = "kube-apiserver.log"
)

// Start runs etcd and kube-apiserver on free 127.0.0.1 ports, with all state
// in a new temporary directory, and returns once /readyz answers ok. ctx
// bounds only the start-up (its deadline caps each process's start timeout):
// the cluster runs until Stop.
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
	for _, b := range []string{"etcd", "kube-apiserver"} {
		path := filepath.Join(binDir, b)
		if st, err := os.Stat(path); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return nil, fmt.Errorf("%w (%s is missing or not executable; the directory comes from Options.BinDir, $PODIAM_BIN_DIR or <repo>/bin)", ErrBinariesMissing, path)
		}
	}

	dir, err := os.MkdirTemp("", "podiam-testcluster-")
	if err != nil {
		return nil, fmt.Errorf("testcluster: %w", err)
	}
	c := &Cluster{issuer: issuer, dir: dir, logf: logf, keyFiles: opts.ServiceAccountKeyFiles}
	ok := false
	defer func() {
		if !ok {
			_ = c.Stop()
		}
	}()
	if c.sa, err = newSAKeys(dir); err != nil {
		return nil, fmt.Errorf("testcluster: %w", err)
	}

	for attempt := 1; ; attempt++ {
		err := c.startOnce(ctx, attempt, binDir, opts.ExtraAPIServerFlags)
		if err == nil {
			break
		}
		logs := c.Logs()
		c.stopEnv()
		if !strings.Contains(logs, "address already in use") || attempt == startAttempts || ctx.Err() != nil {
			return nil, fmt.Errorf("testcluster: %w\n%s", err, logs)
		}
		logf("testcluster: attempt %d: %v; retrying on other ports", attempt, err)
	}

	c.kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(c.kubeconfig, c.env.KubeConfig, 0o600); err != nil {
		return nil, fmt.Errorf("testcluster: writing the kubeconfig: %w", err)
	}
	c.startTime = time.Since(begin)
	logf("testcluster: kube-apiserver ready at %s in %v (dir %s)", c.URL(), c.startTime.Round(time.Millisecond), dir)
	ok = true
	return c, nil
}

// startOnce starts a new envtest environment (etcd, then kube-apiserver, on
// newly picked ports) and waits until kube-apiserver is ready.
func (c *Cluster) startOnce(ctx context.Context, attempt int, binDir string, extra []string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	startTimeout := maxStartTimeout
	if deadline, ok := ctx.Deadline(); ok {
		startTimeout = min(startTimeout, time.Until(deadline))
	}
	etcdOut, err := logFile(filepath.Join(c.dir, etcdLog))
	if err != nil {
		return err
	}
	defer etcdOut.Close() // the child has its own descriptor
	apiOut, err := logFile(filepath.Join(c.dir, apiServerLog))
	if err != nil {
		return err
	}
	defer apiOut.Close()
	// Fresh directories: envtest keeps an existing serving certificate.
	etcdDir := filepath.Join(c.dir, "etcd-"+strconv.Itoa(attempt))
	certDir := filepath.Join(c.dir, "apiserver-"+strconv.Itoa(attempt))
	for _, d := range []string{etcdDir, certDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return err
		}
	}

	api := &envtest.APIServer{
		Path: filepath.Join(binDir, "kube-apiserver"), CertDir: certDir,
		Out: apiOut, Err: apiOut,
	}
	args := api.Configure()
	args.Disable("disable-admission-plugins") // envtest turns ServiceAccount admission off
	args.Set("enable-admission-plugins", "NamespaceLifecycle,ServiceAccount,MutatingAdmissionWebhook,ValidatingAdmissionWebhook")
	args.Set("advertise-address", "127.0.0.1")
	args.Set("endpoint-reconciler-type", "none") // 1.37 refuses a loopback address with the lease reconciler
	args.Set("service-account-issuer", c.issuer)
	args.Set("api-audiences", c.issuer)
	args.Set("service-account-key-file", c.sa.publicFile)
	args.Append("service-account-key-file", c.keyFiles...) // repeated flag: --service-account-key-file=a --service-account-key-file=b
	args.Set("service-account-signing-key-file", c.sa.keyFile)
	args.Set("profiling", "false")
	for _, f := range extra {
		name, value, hasValue := strings.Cut(strings.TrimLeft(f, "-"), "=")
		if hasValue {
			args.Set(name, value)
		} else {
			args.Enable(name)
		}
	}
	c.env = &envtest.Environment{
		ControlPlane: envtest.ControlPlane{
			APIServer: api,
			Etcd: &envtest.Etcd{
				Path: filepath.Join(binDir, "etcd"), DataDir: etcdDir,
				Out: etcdOut, Err: etcdOut,
			},
		},
		BinaryAssetsDirectory:    binDir,
		UseExistingCluster:       ptr.To(false), // whatever USE_EXISTING_CLUSTER says
		ControlPlaneStartTimeout: startTimeout,
		ControlPlaneStopTimeout:  stopTimeout,
	}
	cfg, err := c.env.Start()
	if err != nil {
		return fmt.Errorf("starting etcd and kube-apiserver: %w", err)
	}
	c.restConfig = rest.CopyConfig(cfg)
	c.restConfig.QPS, c.restConfig.Burst = 200, 400
	return c.waitReady(ctx)
}

// waitReady polls /readyz: envtest waits for /healthz and the default
// namespace only.
func (c *Cluster) waitReady(ctx context.Context) error {
	cs, err := kubernetes.NewForConfig(c.restConfig)
	if err != nil {
		return fmt.Errorf("admin client: %w", err)
	}
	last := "no answer"
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, readyTimeout, true, func(ctx context.Context) (bool, error) {
		body, err := cs.RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			last = fmt.Sprintf("%v: %s", err, bytes.TrimSpace(body))
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("kube-apiserver not ready: %w (last: %s)", err, last)
	}
	return nil
}

// logFile opens path for a child's output, truncated: each attempt starts a
// new log.
func logFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	return f, nil
}

// resolveBinDir applies the BinDir defaults.
func resolveBinDir(dir string) (string, error) {
	if dir != "" {
		return dir, nil
	}
	if dir := os.Getenv("PODIAM_BIN_DIR"); dir != "" {
		return dir, nil
	}
	root, err := testutil.ModuleRoot()
	if err != nil {
		return "", fmt.Errorf("%w (%v; set PODIAM_BIN_DIR)", ErrBinariesMissing, err)
	}
	return filepath.Join(root, "bin"), nil
}

// Stop terminates kube-apiserver and etcd (SIGTERM to each process group,
// SIGKILL after a grace period) and removes the temporary directory. It is
// safe to call more than once and from several goroutines.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		begin := time.Now()
		logs := c.Logs()
		stopErr := c.stopEnv()
		c.mu.Lock()
		c.finalLogs = logs
		c.mu.Unlock()
		c.stopErr = errors.Join(stopErr, os.RemoveAll(c.dir))
		c.logf("testcluster: stopped in %v", time.Since(begin).Round(time.Millisecond))
	})
	return c.stopErr
}

// stopEnv stops the API server, then etcd, of the current environment.
func (c *Cluster) stopEnv() error {
	if c.env == nil {
		return nil
	}
	err := c.env.Stop()
	c.env = nil
	if err != nil {
		return fmt.Errorf("stopping etcd and kube-apiserver: %w", err)
	}
	return nil
}

// RESTConfig returns a new copy of the admin (system:masters) client config.
func (c *Cluster) RESTConfig() *rest.Config { return rest.CopyConfig(c.restConfig) }

// Kubeconfig is the path of a kubeconfig file with admin credentials (in the
// temporary directory: gone after Stop).
func (c *Cluster) Kubeconfig() string { return c.kubeconfig }

// URL is the API server's base URL, https://127.0.0.1:<port>.
func (c *Cluster) URL() string { return strings.TrimSuffix(c.restConfig.Host, "/") }

// Dir is the temporary directory that holds the cluster's state and the logs
// etcd.log and kube-apiserver.log.
func (c *Cluster) Dir() string { return c.dir }

// StartupTime is how long Start took until /readyz answered.
func (c *Cluster) StartupTime() time.Duration { return c.startTime }

// CACertPEM is the CA that signed the API server's serving certificate.
func (c *Cluster) CACertPEM() []byte { return bytes.Clone(c.restConfig.CAData) }

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
	for _, name := range []string{etcdLog, apiServerLog} {
		path := filepath.Join(c.dir, name)
		if _, err := os.Stat(path); err != nil {
			continue
		}
		fmt.Fprintf(&b, "----- %s (tail) -----\n%s\n", name, strings.TrimRight(tailFile(path, logTailBytes), "\n"))
	}
	return b.String()
}

// tailFile returns about the last limit bytes of a file, starting at a line.
func tailFile(path string, limit int64) string {
	f, err := os.Open(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "(" + err.Error() + ")"
	}
	off := max(st.Size()-limit, 0)
	b, err := io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
	if err != nil {
		return "(" + err.Error() + ")"
	}
	if off > 0 {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
		b = append([]byte("[...]\n"), b...)
	}
	return string(b)
}

// IssuerURL is the service-account token issuer ("iss" of projected tokens).
func (c *Cluster) IssuerURL() string { return c.issuer }

// ServiceAccountPublicKey is the public half of the token signing key.
func (c *Cluster) ServiceAccountPublicKey() *rsa.PublicKey { return &c.sa.key.PublicKey }

// ServiceAccountSigningKey is the RSA 2048 key kube-apiserver signs
// service-account tokens with (handy for minting tokens in tests).
func (c *Cluster) ServiceAccountSigningKey() *rsa.PrivateKey { return c.sa.key }

// ServiceAccountKeyID is the "kid" header of tokens the cluster signs.
func (c *Cluster) ServiceAccountKeyID() string {
	kid, err := oidc.KeyID(&c.sa.key.PublicKey)
	if err != nil {
		panic(err) // an RSA key always marshals
	}
	return kid
}

// JWKS is the JSON Web Key Set of the signing key, as served by the API
// server at /openid/v1/jwks (same key, kid, alg and use) when
// Options.ServiceAccountKeyFiles is empty; those keys are not in it.
func (c *Cluster) JWKS() []byte {
	b, err := jwks(&c.sa.key.PublicKey)
	if err != nil {
		panic(err) // an RSA key always marshals
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

// EnsureNamespace creates namespace name, with labels, and its "default"
// ServiceAccount if they do not exist (an existing namespace keeps its
// labels). Without kube-controller-manager nothing else creates that
// ServiceAccount, and pods that use it are rejected without it.
func (c *Cluster) EnsureNamespace(ctx context.Context, name string, labels map[string]string) error {
	cs, err := c.Clientset()
	if err != nil {
		return err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: name}}
	if _, err := cs.CoreV1().ServiceAccounts(name).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create serviceaccount %s/default: %w", name, err)
	}
	return nil
}
