package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/net/netutil"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"

	"github.com/podiam/podiam/internal/agent"
	"github.com/podiam/podiam/internal/eksauth"
	"github.com/podiam/podiam/internal/httpserve"
	"github.com/podiam/podiam/internal/jwks"
	"github.com/podiam/podiam/internal/podrequest"
	"github.com/podiam/podiam/internal/version"
	"github.com/podiam/podiam/internal/webhook"
)

// Backends of `podiam agent`.
const (
	backendEKS    = "eks"
	backendPodiam = "podiam"
)

// The link-local addresses the AWS SDKs' container credential provider
// accepts over plain HTTP (SPEC §7), as Amazon's agent binds them.
const (
	agentIPv4Host = "169.254.170.23"
	agentIPv6Host = "[fd00:ec2::23]"
)

// eksAuthServiceID is EKS Auth's SDK service id: the AWS SDK's
// configuration names its endpoint AWS_ENDPOINT_URL_EKS_AUTH (or
// eks_auth in a profile's services section).
const eksAuthServiceID = "EKS Auth"

// agentFlags are the flags of `podiam agent`.
type agentFlags struct {
	// Amazon's agent's (cmd/server.go), same names, shorthands and defaults.
	clusterName                  string
	port, probePort, metricsPort uint16
	metricsAddress               string
	maxRetention                 time.Duration
	maxCacheSize, maxServiceQPS  int
	bindHosts                    []string
	endpoint                     string
	rotateCredentials            bool

	// podiam's own.
	listen                         []string
	nodeName                       string
	backend                        string
	authURL, authCAFile            string
	authTokenFile                  string
	kubeconfig, kubeAPI, issuer    string
	podRateLimit                   float64
	podBurst                       int
	shutdownDelay, shutdownTimeout time.Duration
	logFormat, logLevel            string
}

func newAgentCommand() *cobra.Command {
	cmd, _ := agentCommand()
	return cmd
}

// agentCommand returns `podiam agent`, with its alias subcommand `server`
// (Amazon's agent's command, so that an existing DaemonSet's arguments
// work), and the flag values `podiam agent` parses into.
func agentCommand() (*cobra.Command, *agentFlags) {
	f := &agentFlags{}
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Serve the node-local Pod Identity endpoint that the AWS SDKs call for a pod's credentials",
		Long: `podiam agent runs on every node (a DaemonSet with hostNetwork) and serves
GET /v1/credentials on 169.254.170.23:80 and [fd00:ec2::23]:80, the endpoint
that the webhook gives Pod Identity pods (AWS_CONTAINER_CREDENTIALS_FULL_URI).
It checks each pod's token locally (the cluster's keys, issuer, audience
pods.eks.amazonaws.com, and this node), then gets the credentials of the pod's
association from --backend: podiam auth (any cluster) or EKS Auth (EKS), and
caches them per pod. A node without IPv6 is served on IPv4 with a warning.

/healthz and /readyz are served on localhost:--probe-port, /metrics on
--metrics-address:--metrics-port. "podiam agent server" is the same command,
for the arguments of Amazon's agent.`,
		Example: `  # Any cluster, with podiam auth as the backend:
  podiam agent --cluster-name=prod --backend=podiam \
    --auth-url=https://podiam-auth.podiam-system.svc \
    --auth-ca-file=/etc/podiam-auth/ca/ca.crt --auth-token-file=/var/run/secrets/podiam-auth/token

  # EKS, in place of Amazon's agent (node credentials from the AWS SDK's chain):
  podiam agent server --cluster-name=prod`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAgentCommand(cmd, *f)
		},
	}
	addAgentFlags(cmd.Flags(), f)

	sf := &agentFlags{}
	server := &cobra.Command{
		Use:   "server",
		Short: "The same as podiam agent (the subcommand of Amazon's agent)",
		Example: `  # The arguments of Amazon's agent DaemonSet:
  podiam agent server --cluster-name=prod --port=80 --probe-port=2703 --metrics-port=2705`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAgentCommand(cmd, *sf)
		},
	}
	addAgentFlags(server.Flags(), sf)
	cmd.AddCommand(server, newAgentInitCommand())
	return cmd, f
}

func runAgentCommand(cmd *cobra.Command, f agentFlags) error {
	if f.backend == backendEKS { // EKS Auth, a public AWS endpoint
		useFallbackRoots()
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return runAgent(ctx, f)
}

// addAgentFlags registers the flags of `podiam agent` on fs.
func addAgentFlags(fs *pflag.FlagSet, f *agentFlags) {
	// Amazon's agent's flags.
	fs.StringVarP(&f.clusterName, "cluster-name", "c", "", "the cluster's name (required): sent to the backend, which must serve this cluster")
	fs.Uint16VarP(&f.port, "port", "p", 80, "port of the credentials endpoint on each --bind-hosts address")
	fs.Uint16Var(&f.probePort, "probe-port", 2703, "port of /healthz and /readyz on localhost (0 disables)")
	fs.StringVar(&f.metricsAddress, "metrics-address", "0.0.0.0", "address of /metrics")
	fs.Uint16Var(&f.metricsPort, "metrics-port", 2705, "port of /metrics (0 disables)")
	fs.DurationVar(&f.maxRetention, "max-credential-retention-before-renewal", agent.DefaultMaxRetention,
		"longest time credentials are served from the cache before they are renewed; 0 disables the cache")
	fs.IntVar(&f.maxCacheSize, "max-cache-size", agent.DefaultMaxCacheSize, "pods whose credentials are cached (least recently used out first); 0 disables the cache")
	fs.IntVar(&f.maxServiceQPS, "max-service-qps", agent.DefaultBackendQPS, "renewals per second asked of the backend, for the whole node (first credentials are not limited); 0 means no limit")
	fs.StringArrayVarP(&f.bindHosts, "bind-hosts", "b", []string{agentIPv4Host, agentIPv6Host},
		"addresses the credentials endpoint listens on, each on --port (ignored when --listen is given)")
	fs.StringVar(&f.endpoint, "endpoint", "", "--backend=eks: EKS Auth endpoint URL; empty means the AWS SDK's (AWS_ENDPOINT_URL_EKS_AUTH, else the region's)")
	fs.BoolVar(&f.rotateCredentials, "rotate-credentials", false,
		"--backend=eks: read the node's AWS credentials again every "+rotateCredentialsEvery.String()+", so that a rotated shared credentials file is followed")

	// podiam's own.
	fs.StringArrayVar(&f.listen, "listen", nil, "ADDRESS:PORT of the credentials endpoint, repeatable; replaces --bind-hosts and --port")
	fs.StringVar(&f.nodeName, "node-name", "", "this node's name (required; empty means $NODE_NAME): tokens of pods of other nodes are refused")
	fs.StringVar(&f.backend, "backend", backendEKS, `where credentials come from: "podiam" (podiam auth, --auth-url) or "eks" (EKS Auth, signed with the node's AWS credentials)`)
	fs.StringVar(&f.authURL, "auth-url", "", "--backend=podiam: https URL of podiam auth")
	fs.StringVar(&f.authCAFile, "auth-ca-file", "", "--backend=podiam: PEM CA bundle that podiam auth's certificate must chain to, reloaded when it changes; empty means the system's")
	fs.StringVar(&f.authTokenFile, "auth-token-file", "", "--backend=podiam: the agent's projected ServiceAccount token (audience podiam-auth), read on every call")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file; empty means in-cluster, then $KUBECONFIG")
	fs.StringVar(&f.kubeAPI, "kube-api", "", "API server URL; overrides the server of the kubeconfig or in-cluster config")
	fs.StringVar(&f.issuer, "issuer", "", "the cluster's service-account issuer; empty means the API server's /.well-known/openid-configuration")
	fs.Float64Var(&f.podRateLimit, "pod-rate-limit", agent.DefaultPodRate, "requests per second each pod may make; beyond, 429 (0 means no limit)")
	fs.IntVar(&f.podBurst, "pod-burst", agent.DefaultPodBurst, "requests a pod may make at once (its token bucket, refilled at --pod-rate-limit)")
	fs.DurationVar(&f.shutdownDelay, "shutdown-delay", 0, "on SIGTERM, keep serving this long with /readyz failing before the listeners close")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 20*time.Second, "how long to drain in-flight requests on SIGTERM")
	fs.StringVar(&f.logFormat, "log-format", "json", "log format: json or text")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
}

// rotateCredentialsEvery is how often --rotate-credentials reads the node's
// credentials again.
const rotateCredentialsEvery = 5 * time.Minute

// agentValidated is what validateAgentFlags derives from the flags.
type agentValidated struct {
	logLevel slog.Level
	nodeName string
	// listen are the addresses of the credentials endpoint, host:port.
	listen []string
	// maxCacheSize is --max-cache-size, 0 when
	// --max-credential-retention-before-renewal is 0 (Amazon's meaning).
	maxCacheSize int
}

// validateAgentFlags checks every flag value, so that a bad one fails
// start-up with an error naming it before anything connects. It reports all
// bad flags at once. getenv reads $NODE_NAME.
func validateAgentFlags(f *agentFlags, getenv func(string) string) (agentValidated, error) {
	var v agentValidated
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	var err error
	if v.logLevel, err = parseLogFlags(f.logFormat, f.logLevel); err != nil {
		errs = append(errs, err)
	}
	switch {
	case f.clusterName == "":
		bad("--cluster-name is required: the cluster's name as the backend knows it (on EKS, the cluster's name)")
	case !eksauth.ValidClusterName(f.clusterName):
		bad("--cluster-name=%q: want 1 to 100 letters, digits, '-' or '_', starting with a letter or digit", f.clusterName)
	}
	v.nodeName = f.nodeName
	if v.nodeName == "" {
		v.nodeName = getenv("NODE_NAME")
	}
	switch {
	case v.nodeName == "":
		bad("--node-name is required (or $NODE_NAME, from the downward API's spec.nodeName): tokens must name this node")
	case len(validation.IsDNS1123Subdomain(v.nodeName)) > 0:
		bad("--node-name=%q: not a valid node name", v.nodeName)
	}

	if f.port == 0 {
		bad("--port=0: want 1 to 65535")
	}
	if len(f.listen) > 0 {
		for _, a := range f.listen {
			host, port, err := net.SplitHostPort(a)
			switch {
			case err != nil || host == "" || !validPort(port):
				bad("--listen=%q: want ADDRESS:PORT, e.g. 169.254.170.23:80 or [fd00:ec2::23]:80", a)
			case unspecifiedIP(host):
				bad("--listen=%q: an unspecified address would open the credentials endpoint on the node's own addresses; give the link-local ones (169.254.170.23, fd00:ec2::23)", a)
			}
		}
		v.listen = f.listen
	} else {
		if len(f.bindHosts) == 0 {
			bad("--bind-hosts is empty: give at least one address (or --listen)")
		}
		for _, h := range f.bindHosts {
			host := strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
			if host == "" || strings.ContainsAny(host, "[]/ ") || (strings.Contains(host, ":") && net.ParseIP(host) == nil) {
				bad("--bind-hosts=%q: want an IP address or host name", h)
				continue
			}
			if unspecifiedIP(host) {
				bad("--bind-hosts=%q: an unspecified address would open the credentials endpoint on the node's own addresses; give the link-local ones (169.254.170.23, fd00:ec2::23)", h)
				continue
			}
			v.listen = append(v.listen, net.JoinHostPort(host, strconv.Itoa(int(f.port))))
		}
	}
	if f.metricsPort != 0 && f.metricsAddress == "" {
		bad("--metrics-address is empty: give an address, e.g. 0.0.0.0")
	}

	switch f.backend {
	case backendPodiam:
		if u, err := url.Parse(f.authURL); f.authURL == "" || err != nil || u.Scheme != "https" || u.Host == "" {
			bad("--backend=podiam needs --auth-url=https://HOST[:PORT], the URL of podiam auth (got %q)", f.authURL)
		}
		if f.authTokenFile == "" {
			bad("--backend=podiam needs --auth-token-file, the agent's projected ServiceAccount token (audience podiam-auth)")
		}
		if f.endpoint != "" {
			bad("--endpoint is EKS Auth's (--backend=eks); podiam auth's URL is --auth-url")
		}
		if f.rotateCredentials {
			bad("--rotate-credentials is for --backend=eks; with podiam auth the agent holds no AWS credentials")
		}
	case backendEKS:
		for _, fl := range []struct{ name, value string }{
			{"auth-url", f.authURL}, {"auth-ca-file", f.authCAFile}, {"auth-token-file", f.authTokenFile},
		} {
			if fl.value != "" {
				bad("--%s is for --backend=podiam; --backend=eks calls EKS Auth (--endpoint) with the node's AWS credentials", fl.name)
			}
		}
		if f.endpoint != "" {
			if u, err := url.Parse(f.endpoint); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				bad("--endpoint=%q: want an http(s) URL", f.endpoint)
			}
		}
	default:
		bad("--backend=%q: want %s or %s", f.backend, backendPodiam, backendEKS)
	}

	if f.issuer != "" && strings.TrimSpace(f.issuer) != f.issuer {
		bad("--issuer=%q: has leading or trailing spaces", f.issuer)
	}
	if f.maxCacheSize < 0 {
		bad("--max-cache-size=%d: must not be negative (0 disables the cache)", f.maxCacheSize)
	}
	if f.maxRetention < 0 {
		bad("--max-credential-retention-before-renewal=%s: must not be negative (0 disables the cache)", f.maxRetention)
	}
	v.maxCacheSize = f.maxCacheSize
	if f.maxRetention == 0 {
		v.maxCacheSize = 0
	}
	if f.maxServiceQPS < 0 {
		bad("--max-service-qps=%d: must not be negative (0 means no limit)", f.maxServiceQPS)
	}
	if math.IsNaN(f.podRateLimit) || f.podRateLimit < 0 {
		bad("--pod-rate-limit=%v: want 0 (no limit) or more requests per second", f.podRateLimit)
	}
	if f.podBurst < 1 {
		bad("--pod-burst=%d: want at least 1", f.podBurst)
	}
	if f.shutdownDelay < 0 {
		bad("--shutdown-delay=%s: must not be negative", f.shutdownDelay)
	}
	if f.shutdownTimeout < 0 {
		bad("--shutdown-timeout=%s: must not be negative", f.shutdownTimeout)
	}
	return v, errors.Join(errs...)
}

// validPort reports whether s is a port number (0 picks a free one).
func validPort(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n >= 0 && n <= 65535
}

func runAgent(ctx context.Context, f agentFlags) error {
	v, err := validateAgentFlags(&f, os.Getenv)
	if err != nil {
		return err
	}
	logger := installLogger(f.logFormat, v.logLevel)
	logger.Info("starting", "version", version.String(), "cluster", f.clusterName, "node", v.nodeName, "backend", f.backend)

	// Listen first: a port taken or an address missing must stop the start
	// at once, not after the API server and backend set-up.
	lns, err := listenCredentials(v.listen, net.Listen, logger)
	if err != nil {
		return err
	}
	probeLn, metricsLn, err := listenAgentPorts(f, net.Listen)
	if err != nil {
		closeAll(lns)
		return err
	}
	listeners := append(append([]net.Listener(nil), lns...), probeLn, metricsLn)
	defer closeAll(listeners) // those Serve did not take (an error before it)

	backend, err := newAgentBackend(ctx, f, logger)
	if err != nil {
		return err
	}

	cfg, err := restConfig(f.kubeconfig, f.kubeAPI)
	if err != nil {
		return err
	}
	cfg.UserAgent = "podiam-agent/" + version.Version
	clientset, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("creating Kubernetes client: %w", err)
	}
	issuer := f.issuer
	if issuer == "" {
		rerr := retryWithin(ctx, startupWithin, startupBackoff, "reading the cluster's issuer", logger, func(ctx context.Context) error {
			var ierr error
			issuer, ierr = podrequest.ClusterIssuer(ctx, clientset)
			return ierr
		})
		if rerr != nil {
			return fmt.Errorf("%w (or set --issuer)", rerr)
		}
	}
	src, err := jwks.NewKubeSource(cfg)
	if err != nil {
		return err
	}
	keys := jwks.NewKeySet(src, jwks.Options{})
	keysReady := fetchKeysUntilReady(ctx, keys, startupBackoff, logger)

	reg := prometheus.NewRegistry()
	handler, err := agent.NewHandler(agent.Options{
		ClusterName: f.clusterName, NodeName: v.nodeName, Issuer: issuer, Keys: keys, Backend: backend,
		ListenAddrs:  hostAddrs(v.listen, lns),
		MaxCacheSize: v.maxCacheSize, MaxRetention: f.maxRetention,
		BackendQPS: float64(f.maxServiceQPS), PodRate: f.podRateLimit, PodBurst: f.podBurst,
		Leeway: agent.DefaultLeeway, Metrics: agent.NewMetrics(reg), Logger: logger,
	})
	if err != nil {
		return err
	}
	pods, err := agent.NewPodWatcher(agent.PodWatchOptions{Client: clientset, NodeName: v.nodeName, Forget: handler.Forget, Logger: logger})
	if err != nil {
		return err
	}
	go pods.Run(ctx)
	logger.Info("serving node", "issuer", issuer, "listen", addrsOf(lns))

	return serveAgent(ctx, agentServer{
		Handler: handler, Listeners: lns, ProbeListener: probeLn, MetricsListener: metricsLn, Gatherer: reg,
		Checks: []webhook.ReadyCheck{
			{Name: "keys", Ready: keysReady.Load},
			{Name: "pods", Ready: pods.HasSynced},
		},
		ShutdownDelay: f.shutdownDelay, ShutdownTimeout: f.shutdownTimeout, Logger: logger,
	})
}

// newAgentBackend returns the client of --backend: podiam auth with the
// agent's token, or EKS Auth signed with the node's AWS credentials.
func newAgentBackend(ctx context.Context, f agentFlags, logger *slog.Logger) (*eksauth.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// Every pod of the node may miss at once (a restart of the agent): they
	// share a few connections rather than open one each (250 pods opened
	// about 190, each a TLS handshake and a share of the memory peak), as
	// many as the backend calls the handler makes at once.
	// All are kept while idle (fewer made the burst close and redial 100 of
	// them); those that renewals do not use close after IdleConnTimeout.
	tr.MaxConnsPerHost = agent.DefaultMaxConcurrentMisses
	tr.MaxIdleConnsPerHost = agent.DefaultMaxConcurrentMisses
	hc := &http.Client{Transport: tr}

	if f.backend == backendPodiam {
		if f.authCAFile != "" {
			// Read now, so that a wrong path stops the start; reloaded when
			// it changes (podiam auth's self-managed CA rotates).
			cas, err := webhook.LoadClientCAs(f.authCAFile, logger)
			if err != nil {
				return nil, fmt.Errorf("--auth-ca-file: %w", err)
			}
			tr.TLSClientConfig = verifyWithPool(cas.Pool)
		}
		return &eksauth.Client{Endpoint: f.authURL, HTTPClient: hc, Auth: &eksauth.BearerTokenFile{Path: f.authTokenFile}}, nil
	}

	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var opts []func(*config.LoadOptions) error
	awsCfg, err := config.LoadDefaultConfig(lctx)
	if err != nil {
		return nil, fmt.Errorf("loading the AWS SDK configuration: %w", err)
	}
	if awsCfg.Region == "" {
		// On an EC2 node without AWS_REGION the region comes from the
		// instance metadata, as the node's credentials do.
		opts = append(opts, config.WithEC2IMDSRegion())
		if awsCfg, err = config.LoadDefaultConfig(lctx, opts...); err != nil || awsCfg.Region == "" {
			return nil, fmt.Errorf("--backend=eks: no AWS region: set AWS_REGION (EKS Auth is regional); the instance metadata gave none: %v", err)
		}
	}
	endpoint, err := eksAuthEndpoint(lctx, awsCfg, f.endpoint)
	if err != nil {
		return nil, err
	}
	creds := awsCfg.Credentials
	if f.rotateCredentials {
		creds = aws.NewCredentialsCache(aws.CredentialsProviderFunc(func(ctx context.Context) (aws.Credentials, error) {
			return reloadCredentials(ctx, opts)
		}))
	}
	logger.Info("EKS Auth", "endpoint", endpoint, "region", awsCfg.Region)
	return &eksauth.Client{Endpoint: endpoint, HTTPClient: hc, Auth: &eksauth.SigV4{Credentials: creds, Region: awsCfg.Region}}, nil
}

// reloadCredentials loads the AWS SDK's default chain anew (the shared
// credentials file as it is now) and returns its credentials, to be used
// for at most rotateCredentialsEvery.
func reloadCredentials(ctx context.Context, opts []func(*config.LoadOptions) error) (aws.Credentials, error) {
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Credentials{}, fmt.Errorf("loading the AWS SDK configuration: %w", err)
	}
	creds, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		return aws.Credentials{}, err
	}
	if next := time.Now().Add(rotateCredentialsEvery); !creds.CanExpire || creds.Expires.After(next) {
		creds.CanExpire, creds.Expires = true, next
	}
	return creds, nil
}

// eksAuthEndpoint is EKS Auth's URL: override (--endpoint), else the AWS
// SDK's configured endpoint for EKS Auth (AWS_ENDPOINT_URL_EKS_AUTH, a
// profile's services section), else its global one (AWS_ENDPOINT_URL), else
// the region's dual-stack endpoint, as the SDK's eksauth client resolves it.
func eksAuthEndpoint(ctx context.Context, cfg aws.Config, override string) (string, error) {
	if override != "" {
		return override, nil
	}
	type serviceEndpoint interface {
		GetServiceBaseEndpoint(ctx context.Context, sdkID string) (string, bool, error)
	}
	for _, src := range cfg.ConfigSources {
		if p, ok := src.(serviceEndpoint); ok {
			u, found, err := p.GetServiceBaseEndpoint(ctx, eksAuthServiceID)
			if err != nil {
				return "", fmt.Errorf("reading the EKS Auth endpoint from the AWS SDK configuration: %w", err)
			}
			if found {
				return u, nil
			}
		}
	}
	if cfg.BaseEndpoint != nil && *cfg.BaseEndpoint != "" {
		return *cfg.BaseEndpoint, nil
	}
	suffix := "api.aws"
	if strings.HasPrefix(cfg.Region, "cn-") {
		suffix = "api.amazonwebservices.com.cn"
	}
	return "https://eks-auth." + cfg.Region + "." + suffix, nil
}

// verifyWithPool is a client TLS configuration that verifies the server's
// certificate chain and name against pool() at each handshake (crypto/tls's
// documented way to verify against roots that change).
func verifyWithPool(pool func() *x509.CertPool) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Verification is VerifyConnection's, against the current pool.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the server sent no certificate")
			}
			opts := x509.VerifyOptions{DNSName: cs.ServerName, Roots: pool(), Intermediates: x509.NewCertPool()}
			for _, c := range cs.PeerCertificates[1:] {
				opts.Intermediates.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(opts)
			return err
		},
	}
}

// unspecifiedIP reports whether host is 0.0.0.0 or :: (in any spelling):
// listening there serves every address of the node, its own IP included.
func unspecifiedIP(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}

// listenFunc is net.Listen, or a stand-in in tests.
type listenFunc func(network, address string) (net.Listener, error)

// listenCredentials listens on every address of the credentials endpoint.
// An IPv6 address that the node cannot have (no IPv6: EADDRNOTAVAIL or
// EAFNOSUPPORT) is skipped with a warning as long as another address
// works, where Amazon's agent crash-loops (agent#16); any other failure
// stops the start.
func listenCredentials(addrs []string, listen listenFunc, logger *slog.Logger) ([]net.Listener, error) {
	var lns []net.Listener
	var skipped []error
	for _, a := range addrs {
		ln, err := listen("tcp", a)
		if err == nil {
			lns = append(lns, ln)
			continue
		}
		if isIPv6(a) && (errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.EAFNOSUPPORT)) {
			skipped = append(skipped, err)
			logger.Warn("not serving on an IPv6 address this node does not have; IPv6 pods get no credentials from this agent", "address", a, "error", err)
			continue
		}
		closeAll(lns)
		return nil, fmt.Errorf("listening on %s: %w (is the address on an interface of the node? hostNetwork is needed)", a, err)
	}
	if len(lns) == 0 {
		return nil, fmt.Errorf("no address to serve credentials on: %w", errors.Join(skipped...))
	}
	return lns, nil
}

// isIPv6 reports whether the host of address host:port is an IPv6 address.
func isIPv6(address string) bool {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Is6() && !ip.Is4In6()
}

// listenAgentPorts listens on localhost:--probe-port and
// --metrics-address:--metrics-port; a port 0 gives a nil listener.
func listenAgentPorts(f agentFlags, listen listenFunc) (probeLn, metricsLn net.Listener, err error) {
	if f.probePort != 0 {
		if probeLn, err = listen("tcp", net.JoinHostPort("localhost", strconv.Itoa(int(f.probePort)))); err != nil {
			return nil, nil, fmt.Errorf("listening on --probe-port %d: %w", f.probePort, err)
		}
	}
	if f.metricsPort != 0 {
		if metricsLn, err = listen("tcp", net.JoinHostPort(f.metricsAddress, strconv.Itoa(int(f.metricsPort)))); err != nil {
			if probeLn != nil {
				probeLn.Close()
			}
			return nil, nil, fmt.Errorf("listening on --metrics-address %s, --metrics-port %d: %w", f.metricsAddress, f.metricsPort, err)
		}
	}
	return probeLn, metricsLn, nil
}

// hostAddrs are the addresses a request's Host header may name: each
// listener's address, and its configured host (a name such as localhost)
// with the port it got.
func hostAddrs(configured []string, lns []net.Listener) []string {
	var out []string
	for _, ln := range lns {
		a := ln.Addr().String()
		out = append(out, a)
		_, port, _ := net.SplitHostPort(a)
		for _, c := range configured {
			if host, cport, err := net.SplitHostPort(c); err == nil && (cport == port || cport == "0") {
				out = append(out, net.JoinHostPort(host, port))
			}
		}
	}
	return out
}

func addrsOf(lns []net.Listener) []string {
	out := make([]string, len(lns))
	for i, ln := range lns {
		out[i] = ln.Addr().String()
	}
	return out
}

// closeAll closes the listeners that are not nil.
func closeAll(lns []net.Listener) {
	for _, ln := range lns {
		if ln != nil {
			ln.Close()
		}
	}
}

// agentServer is what serveAgent serves: plain HTTP, since the SDKs call
// the agent over http on link-local addresses.
type agentServer struct {
	// Handler serves the credentials endpoint on every Listeners.
	Handler   http.Handler
	Listeners []net.Listener
	// ProbeListener serves /healthz and /readyz (nil: none); Checks gate
	// /readyz.
	ProbeListener net.Listener
	Checks        []webhook.ReadyCheck
	// MetricsListener serves /metrics from Gatherer (nil: none).
	MetricsListener net.Listener
	Gatherer        prometheus.Gatherer
	// ShutdownDelay is how long serving goes on after ctx ends, with
	// /readyz failing; ShutdownTimeout bounds the drain that follows.
	ShutdownDelay, ShutdownTimeout time.Duration
	Logger                         *slog.Logger
	// MaxConns caps the open connections of each credentials listener;
	// agentMaxConns when 0.
	MaxConns int
}

// Bounds of the agent's plain-HTTP servers, which every pod of the node can
// reach.
const (
	// agentMaxHeaderBytes bounds a request's headers: a pod token is 1 to 2
	// KiB, the SDKs send a few short headers besides.
	agentMaxHeaderBytes = 24 << 10
	// agentIdleTimeout closes a keep-alive connection idle that long: the
	// SDKs call again minutes later, and an idle connection holds one of
	// the agentMaxConns.
	agentIdleTimeout = 30 * time.Second
	// agentMaxConns caps the open connections of each credentials listener
	// (further ones wait in the listen backlog): a node runs a few hundred
	// pods at most, each with one or a few connections to the agent.
	agentMaxConns = 1024
)

// serveAgent serves until ctx ends, then drains gracefully (httpserve.Run);
// it returns the first serving error, after closing every listener.
func serveAgent(ctx context.Context, s agentServer) error {
	logger := s.Logger
	errLog := slog.NewLogLogger(logger.Handler(), slog.LevelWarn)
	newServer := func(h http.Handler) *http.Server {
		return &http.Server{
			Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
			// Longer than a backend call (agent.DefaultBackendTimeout).
			WriteTimeout: 30 * time.Second, IdleTimeout: agentIdleTimeout,
			MaxHeaderBytes: agentMaxHeaderBytes, ErrorLog: errLog,
		}
	}
	var endpoints []httpserve.Endpoint
	creds := newServer(s.Handler)
	maxConns := s.MaxConns
	if maxConns <= 0 {
		maxConns = agentMaxConns
	}
	for _, ln := range s.Listeners {
		endpoints = append(endpoints, httpserve.Endpoint{Server: creds, Listener: netutil.LimitListener(ln, maxConns)})
	}
	var draining atomic.Bool
	if s.ProbeListener != nil {
		mux := http.NewServeMux()
		webhook.HandleHealth(mux, s.Checks, &draining)
		endpoints = append(endpoints, httpserve.Endpoint{Server: newServer(mux), Listener: s.ProbeListener})
	}
	if s.MetricsListener != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(s.Gatherer, promhttp.HandlerOpts{}))
		endpoints = append(endpoints, httpserve.Endpoint{Server: newServer(mux), Listener: s.MetricsListener})
	}
	logger.Info("serving", "credentials", addrsOf(s.Listeners), "probes", addrOrNone(s.ProbeListener), "metrics", addrOrNone(s.MetricsListener))
	return httpserve.Run(ctx, httpserve.Options{
		ShutdownDelay: s.ShutdownDelay, ShutdownTimeout: s.ShutdownTimeout, Draining: &draining, Logger: logger,
	}, endpoints...)
}

func addrOrNone(ln net.Listener) string {
	if ln == nil {
		return "none"
	}
	return ln.Addr().String()
}
