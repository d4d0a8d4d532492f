package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/podiam/podiam/internal/association"
	"github.com/podiam/podiam/internal/auth"
	"github.com/podiam/podiam/internal/eksauth"
	"github.com/podiam/podiam/internal/jwks"
	"github.com/podiam/podiam/internal/metrics"
	"github.com/podiam/podiam/internal/podrequest"
	"github.com/podiam/podiam/internal/version"
	"github.com/podiam/podiam/internal/webhook"
)

// authFlags are the flags of `podiam auth`.
type authFlags struct {
	address                        string
	port, metricsPort              int
	tlsCert, tlsKey, certMode      string
	namespace, serviceName         string
	tlsSecret, caConfigMap         string
	certExtraNames                 []string
	kubeconfig, kubeAPI            string
	clusterName, clusterARN        string
	region                         string
	agentServiceAccount            string
	agentAudience, issuer          string
	sessionDuration                time.Duration
	nodeRateLimit                  float64
	nodeBurst                      int
	shutdownDelay, shutdownTimeout time.Duration
	logFormat, logLevel            string
}

// Limits of the TLS port of `podiam auth`. Every node's agent keeps a few
// connections of its own, and many pods of many nodes may ask at once, each
// request small. The limits must keep an unauthenticated client (TLS and the
// limits come before any token check) from running a replica out of memory:
//
//	authMaxConnections × authConnBytes + authMaxInFlight × eksauth.MaxRequestBody
//	= 1000 × 50 KiB + 1024 × 64 KiB ≈ 113 MiB = authMemoryBound,
//
// which with the process's own ~50 MiB (informer caches, keys, credential
// cache) stays under deploy/auth's GOMEMLIMIT (200MiB) and memory limit
// (256Mi); TestAuthMemoryBoundFitsManifest checks it against the manifest.
// 1000 connections are a few per node of a few hundred nodes; beyond the cap
// a new connection closes the longest-idle one, so agents are not locked out.
const (
	authMaxConnections = 1000
	// authConnBytes is what an open TLS connection costs (buffers, TLS and
	// HTTP/2 state), as measured for the webhook's port.
	authConnBytes = 50 << 10
	// authMaxInFlight requests are served at once, each counted as
	// eksauth.MaxRequestBody (its largest body; webhook.MinRequestReservation
	// is the same 64 KiB); more are answered ThrottlingException (429) with
	// Retry-After. A thousand pods asking at once all fit.
	authMaxInFlight = 1024
	// authMemoryBound is the memory the two limits above allow at most.
	authMemoryBound = authMaxConnections*authConnBytes + authMaxInFlight*eksauth.MaxRequestBody
)

func newAuthCommand() *cobra.Command {
	cmd, _ := authCommand()
	return cmd
}

// authCommand returns the command and the flag values it parses into.
func authCommand() (*cobra.Command, *authFlags) {
	f := &authFlags{}
	cmd := &cobra.Command{
		Use:   "auth",
		Short: "Serve EKS Auth's AssumeRoleForPodIdentity for this cluster, so node agents can give pods their roles",
		Long: `podiam auth is EKS Auth for a cluster of one's own. A node agent sends
POST /clusters/{name}/assume-role-for-pod-identity with its own projected
ServiceAccount token (audience --agent-audience) as bearer token and a pod's
token (audience pods.eks.amazonaws.com) in the body. Both must verify against
the cluster's keys and name the same node; podiam auth then finds the pod's
PodIdentityAssociation and assumes its role with STS (session tags, session
name and external id as EKS sets them), and answers with the credentials.

It is the only component that holds AWS credentials, from the AWS SDK's
default chain (IRSA, credential_process, environment, ...). It writes each
association's status, one audit log line per issuance, and serves /healthz,
/readyz and /metrics over plain HTTP on --metrics-port.`,
		Example: `  # In the cluster (deploy/auth), with its own CA published for the agents:
  podiam auth --cluster-name=prod --cert-mode=self-managed --namespace=podiam-system

  # On EKS, with the cluster's ARN for the eks-cluster-arn session tag:
  podiam auth --cluster-name=prod --cluster-arn=arn:aws:eks:eu-west-1:111122223333:cluster/prod \
    --tls-cert=/etc/podiam-auth/tls/tls.crt --tls-key=/etc/podiam-auth/tls/tls.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			useFallbackRoots() // AWS STS
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return runAuth(ctx, *f)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.address, "address", "", "IP address both ports listen on; empty means every interface")
	fs.IntVar(&f.port, "port", 8443, "HTTPS port of the EKS Auth API")
	fs.IntVar(&f.metricsPort, "metrics-port", 8444, "HTTP port of /metrics, /healthz and /readyz (0 disables)")
	fs.StringVar(&f.tlsCert, "tls-cert", "/etc/podiam-auth/tls/tls.crt", "file mode: serving certificate, reloaded when it changes")
	fs.StringVar(&f.tlsKey, "tls-key", "/etc/podiam-auth/tls/tls.key", "file mode: serving key, reloaded when it changes")
	fs.StringVar(&f.certMode, "cert-mode", certModeFile,
		`"file": serve --tls-cert/--tls-key; "self-managed": keep an own CA and certificate in the Secret --tls-secret and publish the CA in the ConfigMap --ca-configmap`)
	fs.StringVar(&f.namespace, "namespace", "podiam-system", "namespace of podiam auth, its Secret and its CA ConfigMap")
	fs.StringVar(&f.serviceName, "service-name", "podiam-auth", "name of podiam auth's Service (the self-managed certificate's DNS names)")
	fs.StringVar(&f.tlsSecret, "tls-secret", "podiam-auth-tls", "self-managed: Secret in --namespace that holds the CA and serving certificate")
	fs.StringSliceVar(&f.certExtraNames, "cert-extra-names", nil, "self-managed: extra DNS names or IP addresses for the serving certificate")
	fs.StringVar(&f.caConfigMap, "ca-configmap", "podiam-auth-ca", "self-managed: ConfigMap in --namespace that gets the CA bundle (key ca.crt), for the agents to mount")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file; empty means in-cluster, then $KUBECONFIG")
	fs.StringVar(&f.kubeAPI, "kube-api", "", "API server URL; overrides the server of the kubeconfig or in-cluster config")
	fs.StringVar(&f.clusterName, "cluster-name", "", "the cluster's name (required): request paths must name it; the eks-cluster-name session tag")
	fs.StringVar(&f.clusterARN, "cluster-arn", "",
		"arn:<partition>:eks:<region>:<account>:cluster/<cluster-name>: the eks-cluster-arn session tag, and the region and account of external ids; empty: none, region from the SDK, account from sts:GetCallerIdentity")
	fs.StringVar(&f.region, "region", "", "AWS region of the STS endpoint; empty means the AWS SDK's (AWS_REGION, profile), else the --cluster-arn's")
	fs.StringVar(&f.agentServiceAccount, "agent-service-account", "podiam-system/podiam-agent", "NAMESPACE/NAME of the only ServiceAccount whose tokens may call")
	fs.StringVar(&f.agentAudience, "agent-audience", auth.DefaultAgentAudience, "audience the caller's token must have")
	fs.StringVar(&f.issuer, "issuer", "", "the cluster's service-account issuer; empty means the API server's /.well-known/openid-configuration")
	fs.DurationVar(&f.sessionDuration, "session-duration", auth.DefaultSessionDuration,
		"lifetime of the credentials asked from STS (15m to 12h; at most 1h for a chained target role, and for every role when podiam auth's own identity is a role session)")
	fs.Float64Var(&f.nodeRateLimit, "node-rate-limit", 50, "requests per second each node's agent may make; beyond, ThrottlingException")
	fs.IntVar(&f.nodeBurst, "node-burst", 500, "requests a node's agent may make at once (the size of its token bucket, refilled at --node-rate-limit)")
	fs.DurationVar(&f.shutdownDelay, "shutdown-delay", 5*time.Second,
		"on SIGTERM, keep serving this long with /readyz failing, so the Service stops sending requests before the listener closes")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 20*time.Second, "how long to drain in-flight requests on SIGTERM")
	fs.StringVar(&f.logFormat, "log-format", "json", "log format: json or text")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	return cmd, f
}

// authValidated is what validateAuthFlags derives from the flags.
type authValidated struct {
	logLevel                  slog.Level
	agentNamespace, agentName string
	// cluster is the cluster as the flags give it: with --cluster-arn its
	// region and account are the ARN's, else empty (auth.ResolveCluster).
	cluster  auth.Cluster
	nodeRate rate.Limit
}

// validateAuthFlags checks every flag value, so that a bad one fails start-up
// with an error naming it before anything connects. It reports all bad flags
// at once.
func validateAuthFlags(f *authFlags) (authValidated, error) {
	var v authValidated
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	var err error
	if v.logLevel, err = parseLogFlags(f.logFormat, f.logLevel); err != nil {
		errs = append(errs, err)
	}
	switch f.certMode {
	case certModeFile, certModeSelfManaged:
	default:
		bad("--cert-mode=%q: want %s or %s", f.certMode, certModeFile, certModeSelfManaged)
	}
	if f.port < 1 || f.port > 65535 {
		bad("--port=%d: want 1 to 65535", f.port)
	}
	if f.metricsPort < 0 || f.metricsPort > 65535 {
		bad("--metrics-port=%d: want 0 (off) to 65535", f.metricsPort)
	} else if f.metricsPort == f.port {
		bad("--metrics-port=%d: the same as --port", f.metricsPort)
	}
	if f.address != "" && net.ParseIP(f.address) == nil {
		bad("--address=%q: want an IP address, or empty for every interface", f.address)
	}
	if f.certMode == certModeSelfManaged {
		for _, n := range []struct{ flag, value string }{
			{"namespace", f.namespace}, {"service-name", f.serviceName},
		} {
			if msgs := validation.IsDNS1123Label(n.value); len(msgs) > 0 {
				bad("--%s=%q: %s", n.flag, n.value, strings.Join(msgs, "; "))
			}
		}
		for _, n := range []struct{ flag, value string }{
			{"tls-secret", f.tlsSecret}, {"ca-configmap", f.caConfigMap},
		} {
			if msgs := validation.IsDNS1123Subdomain(n.value); len(msgs) > 0 {
				bad("--%s=%q: %s", n.flag, n.value, strings.Join(msgs, "; "))
			}
		}
	}

	switch {
	case f.clusterName == "":
		bad("--cluster-name is required: the name the agents put in the request path (on EKS, the cluster's name)")
	case !eksauth.ValidClusterName(f.clusterName):
		bad("--cluster-name=%q: want 1 to 100 letters, digits, '-' or '_', starting with a letter or digit", f.clusterName)
	}
	v.cluster = auth.Cluster{Name: f.clusterName}
	if f.clusterARN != "" {
		c, err := auth.ClusterFromARN(f.clusterARN, f.clusterName)
		if err != nil {
			bad("--cluster-arn=%q: %w", f.clusterARN, err)
		}
		v.cluster = c
	}

	ns, name, ok := strings.Cut(f.agentServiceAccount, "/")
	switch {
	case !ok || ns == "" || name == "" || strings.Contains(name, "/"):
		bad("--agent-service-account=%q: want NAMESPACE/NAME", f.agentServiceAccount)
	case len(validation.IsDNS1123Label(ns)) > 0:
		bad("--agent-service-account=%q: namespace %q is not a valid namespace name", f.agentServiceAccount, ns)
	case len(validation.IsDNS1123Subdomain(name)) > 0:
		bad("--agent-service-account=%q: %q is not a valid ServiceAccount name", f.agentServiceAccount, name)
	default:
		v.agentNamespace, v.agentName = ns, name
	}
	if f.agentAudience == "" {
		bad("--agent-audience must not be empty")
	}
	if f.issuer != "" && strings.TrimSpace(f.issuer) != f.issuer {
		bad("--issuer=%q: has leading or trailing spaces", f.issuer)
	}

	// STS's DurationSeconds: 900 s to 43200 s (the role's maximum may be lower).
	if f.sessionDuration < 15*time.Minute || f.sessionDuration > 12*time.Hour || f.sessionDuration%time.Second != 0 {
		bad("--session-duration=%s: want whole seconds from 15m to 12h", f.sessionDuration)
	}
	if math.IsNaN(f.nodeRateLimit) || f.nodeRateLimit <= 0 {
		bad("--node-rate-limit=%v: want more than 0 requests per second", f.nodeRateLimit)
	} else if math.IsInf(f.nodeRateLimit, 1) {
		v.nodeRate = rate.Inf // rate's "no limit" is MaxFloat64, not +Inf
	} else {
		v.nodeRate = rate.Limit(f.nodeRateLimit)
	}
	if f.nodeBurst < 1 {
		bad("--node-burst=%d: want at least 1", f.nodeBurst)
	}
	if f.shutdownDelay < 0 {
		bad("--shutdown-delay=%s: must not be negative", f.shutdownDelay)
	}
	if f.shutdownTimeout < 0 {
		bad("--shutdown-timeout=%s: must not be negative", f.shutdownTimeout)
	}
	return v, errors.Join(errs...)
}

// startupWithin bounds how long start-up retries what it needs from STS and
// the API server before it gives up with the last error.
const startupWithin = time.Minute

// startupBackoff spaces start-up retries.
var startupBackoff = wait.Backoff{Duration: time.Second, Factor: 2, Jitter: 0.1, Steps: math.MaxInt32, Cap: 10 * time.Second}

// eksAuthReject answers, in EKS Auth's format, the requests webhook.Server's
// limits refuse before the handler sees them, so that an agent (an AWS SDK
// style client) gets a code it knows: ThrottlingException (retried) when too
// many requests are in flight, InvalidRequestException otherwise (413 for a
// body declared too large).
func eksAuthReject(w http.ResponseWriter, status int, msg string) {
	code := eksauth.CodeInvalidRequest
	if status == http.StatusTooManyRequests {
		code = eksauth.CodeThrottling
	}
	eksauth.WriteError(w, &eksauth.Error{Code: code, Message: msg, Status: status})
}

// runAuth validates the flags, puts podiam auth together and serves until ctx
// is done.
func runAuth(ctx context.Context, f authFlags) error {
	v, err := validateAuthFlags(&f)
	if err != nil {
		return err
	}
	logger := installLogger(f.logFormat, v.logLevel)
	logger.Info("starting", "version", version.String(), "cluster", f.clusterName)

	certFlags := webhookFlags{
		certMode: f.certMode, tlsCert: f.tlsCert, tlsKey: f.tlsKey,
		namespace: f.namespace, serviceName: f.serviceName, certSecretName: f.tlsSecret, caConfigMap: f.caConfigMap,
		certExtraNames: f.certExtraNames,
	}
	var getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	var certReady func() bool
	if f.certMode == certModeFile {
		// Before anything connects: a wrong path must stop the start at once,
		// not after a minute of STS and API server retries.
		if getCert, certReady, err = certificateSource(ctx, certFlags, nil, logger); err != nil {
			return fmt.Errorf("--tls-cert=%s, --tls-key=%s: %w", f.tlsCert, f.tlsKey, err)
		}
	}

	cfg, err := restConfig(f.kubeconfig, f.kubeAPI)
	if err != nil {
		return err
	}
	cfg.UserAgent = "podiam-auth/" + version.Version
	// Every request GETs its pod (and, once per 30 s per node, the agent's),
	// so client-go's own rate limit would set podiam auth's throughput: at
	// 200/s, a thousand pods asking at once took 3.3 s cold and 4.8 s even
	// when every answer came from the cache (docs/benchmarks.md). The
	// per-node rate limits bound what the agents can ask, and the API
	// server's priority and fairness protects it; no limit of ours here.
	cfg.QPS = -1
	clientset, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("creating Kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("creating dynamic client: %w", err)
	}

	stsClient, awsRegion, err := newSTSClient(ctx, f.region, v.cluster.Region)
	if err != nil {
		return err
	}
	retry := func(ctx context.Context, what string, fn func(context.Context) error) error {
		return retryWithin(ctx, startupWithin, startupBackoff, what, logger, fn)
	}
	cluster, callerARN, err := auth.ResolveCluster(ctx, v.cluster, awsRegion, f.sessionDuration, stsClient, retry)
	if err != nil {
		return err
	}
	sessionDuration, capped := auth.CapSessionDuration(f.sessionDuration, callerARN)
	if capped {
		logger.Warn("podiam auth's own identity is a role session, so its AssumeRole calls are role chaining, which STS limits: asking for less than --session-duration",
			"identity", callerARN, "sessionDuration", f.sessionDuration.String(), "using", sessionDuration.String())
	}
	issuer := f.issuer
	if issuer == "" {
		rerr := retry(ctx, "reading the cluster's issuer", func(ctx context.Context) error {
			var ierr error
			issuer, ierr = podrequest.ClusterIssuer(ctx, clientset)
			return ierr
		})
		if rerr != nil {
			return fmt.Errorf("%w (or set --issuer)", rerr)
		}
	}
	logger.Info("serving cluster", "cluster", cluster.Name, "clusterARN", cluster.ARN, "region", cluster.Region,
		"account", cluster.Account, "issuer", issuer, "agent", f.agentServiceAccount)

	src, err := jwks.NewKubeSource(cfg)
	if err != nil {
		return err
	}
	keys := jwks.NewKeySet(src, jwks.Options{})
	keysReady := fetchKeysUntilReady(ctx, keys, startupBackoff, logger)

	reg := prometheus.NewRegistry()
	m := auth.NewMetrics(reg)
	associations := association.New(association.Options{Client: dyn, Discovery: clientset.Discovery(), Logger: logger})
	go associations.Run(ctx)
	// The status writer keeps its own informer on associations: it needs the
	// full objects with their status, the Watcher keeps reduced ones.
	status := auth.NewStatusWriter(auth.StatusOptions{Client: dyn, Discovery: clientset.Discovery(), Cluster: cluster, Metrics: m, Logger: logger})
	go status.Run(ctx)
	creds := auth.NewCredentials(auth.CredentialsOptions{
		STS: stsClient, Cluster: cluster, Duration: sessionDuration, Status: status, Metrics: m,
	})
	handler := auth.NewHandler(auth.HandlerOptions{
		Cluster: cluster,
		Verifier: &auth.Verifier{
			Keys: keys, Issuer: issuer, AgentNamespace: v.agentNamespace, AgentServiceAccount: v.agentName,
			AgentAudience: f.agentAudience, Leeway: auth.DefaultLeeway,
		},
		Pods: func(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
			return clientset.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
		},
		Associations: associations,
		Credentials:  creds,
		Limiter:      auth.NewNodeLimiter(v.nodeRate, f.nodeBurst),
		Metrics:      m,
		Logger:       logger,
	})

	if f.certMode == certModeSelfManaged {
		// podiam auth's own CA and certificate, the CA published for the agents.
		if getCert, certReady, err = certificateSource(ctx, certFlags, clientset, logger); err != nil {
			return err
		}
	}
	tlsCfg, err := webhook.TLSConfig("1.2", "", getCert)
	if err != nil {
		return err
	}

	ln, metricsLn, err := listenPorts(f.address, f.port, f.metricsPort)
	if err != nil {
		return err
	}
	checks := []webhook.ReadyCheck{
		{Name: "podidentityassociations", Ready: associations.HasSynced},
		{Name: "certificate", Ready: certReady},
		{Name: "keys", Ready: keysReady.Load},
	}
	metrics.RegisterServing(reg, "auth", getCert, checks)
	srv := &webhook.Server{
		Mutate: handler, Path: "/clusters/", TLS: tlsCfg, Gatherer: reg, Checks: checks,
		ShutdownDelay: f.shutdownDelay, ShutdownTimeout: f.shutdownTimeout, Logger: logger,
		BodyLimit: eksauth.MaxRequestBody, MaxInFlightBytes: authMaxInFlight * eksauth.MaxRequestBody,
		MaxConnections: authMaxConnections, Reject: eksAuthReject,
	}
	return srv.Serve(ctx, ln, metricsLn)
}

// newSTSClient returns the STS client of the AWS SDK's default chain and the
// region it uses: flagRegion if set, else the SDK's (AWS_REGION, the
// profile), else arnRegion (--cluster-arn's). AWS_ENDPOINT_URL_STS and the
// other SDK settings apply as everywhere.
func newSTSClient(ctx context.Context, flagRegion, arnRegion string, more ...func(*config.LoadOptions) error) (*sts.Client, string, error) {
	// Many pods of many nodes ask at once: keep enough idle connections to
	// STS for them to be reused (the SDK keeps 10 per host).
	httpClient := awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.MaxIdleConnsPerHost = 256
		tr.MaxIdleConns = 256
	})
	opts := []func(*config.LoadOptions) error{config.WithHTTPClient(httpClient)}
	if flagRegion != "" {
		opts = append(opts, config.WithRegion(flagRegion))
	}
	if arnRegion != "" {
		// A default, not a fix-up afterwards: the SDK builds the client of
		// its own credentials (IRSA's AssumeRoleWithWebIdentity) with the
		// region it resolves here, and fails without one.
		opts = append(opts, config.WithDefaultRegion(arnRegion))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, append(opts, more...)...)
	if err != nil {
		return nil, "", fmt.Errorf("loading the AWS SDK configuration: %w", err)
	}
	if awsCfg.Region == "" {
		return nil, "", errors.New("no AWS region: set --region or AWS_REGION, or give --cluster-arn")
	}
	return sts.NewFromConfig(awsCfg), awsCfg.Region, nil
}

// retryWithin calls fn until it succeeds, spaced by b, for at most within
// (no limit when 0) and while ctx lasts; each failure is logged. The error
// names what was tried and wraps the last failure, and says whether ctx ended
// (SIGTERM) or time ran out.
func retryWithin(ctx context.Context, within time.Duration, b wait.Backoff, what string, logger *slog.Logger, fn func(context.Context) error) error {
	tctx := ctx
	if within > 0 {
		var cancel context.CancelFunc
		tctx, cancel = context.WithTimeout(ctx, within)
		defer cancel()
	}
	var last error
	attempt := 0
	err := wait.ExponentialBackoffWithContext(tctx, b, func(tctx context.Context) (bool, error) {
		attempt++
		if last = fn(tctx); last == nil {
			return true, nil
		}
		logger.Warn(what+" failed; retrying", "error", last, "attempt", attempt)
		return false, nil
	})
	switch {
	case err == nil:
		return nil
	case last == nil: // ctx ended before the first attempt
		return fmt.Errorf("%s: %w", what, err)
	case ctx.Err() != nil:
		return fmt.Errorf("%s: stopped (%w) while failing: %w", what, context.Cause(ctx), last)
	case within > 0:
		return fmt.Errorf("%s: still failing after %s: %w", what, within, last)
	}
	return fmt.Errorf("%s: still failing after %d attempts: %w", what, attempt, last)
}

// fetchKeysUntilReady fetches the cluster's keys in the background, spaced by
// b, until a fetch succeeds or ctx ends, and returns whether one has (a
// readiness check: without the keys no token verifies). Later fetches are the
// KeySet's own, on unknown kids and when the keys are older than its MaxAge.
func fetchKeysUntilReady(ctx context.Context, keys *jwks.KeySet, b wait.Backoff, logger *slog.Logger) *atomic.Bool {
	var ready atomic.Bool
	go func() {
		if err := retryWithin(ctx, 0, b, "fetching the cluster's keys", logger, keys.Refresh); err != nil {
			return // ctx ended: shutting down
		}
		ready.Store(true)
		logger.Info("fetched the cluster's keys")
	}()
	return &ready
}
