package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/podiam/podiam/internal/association"
	"github.com/podiam/podiam/internal/certs"
	"github.com/podiam/podiam/internal/configwatch"
	"github.com/podiam/podiam/internal/identity"
	"github.com/podiam/podiam/internal/inject"
	"github.com/podiam/podiam/internal/metrics"
	"github.com/podiam/podiam/internal/sacache"
	"github.com/podiam/podiam/internal/version"
	"github.com/podiam/podiam/internal/webhook"
)

// ConfigMapName and ConfigMapKey locate the kOps-style mapping, as the Amazon
// EKS pod identity webhook names them.
const (
	ConfigMapName = "pod-identity-webhook"
	ConfigMapKey  = "config"
)

// webhookFlags are the flags of `podiam webhook`, spelled as the Amazon EKS pod
// identity webhook spells them so that an existing Deployment can switch images.
type webhookFlags struct {
	port, metricsPort                    int
	address                              string
	kubeconfig, kubeAPI                  string
	tlsCert, tlsKey                      string
	tlsMinVersion, tlsCipherSuites       string
	namespace, serviceName               string
	annotationPrefix                     string
	tokenAudience, tokenMountPath        string
	tokenExpiration                      int64
	region                               string
	regionalSTS                          bool
	watchConfigMap                       bool
	ccConfig, ccAudience, ccMountPath    string
	ccVolumeName, ccTokenPath, ccFullURI string
	saGracePeriod, resyncPeriod          time.Duration
	roleSessionName                      string
	shutdownTimeout, shutdownDelay       time.Duration
	logFormat, logLevel                  string
	showVersion                          bool
	composeRoleARN                       bool
	awsAccountID, awsPartition           string
	inCluster, debugHandlers             bool // accepted, ignored (compat.go)
	tlsSecret                            string
	certMode, certSecretName             string
	webhookConfigName                    string
	caConfigMap                          string // self-managed: podiam auth's --ca-configmap; the webhook has none
	certExtraNames                       []string
	certValidity, caValidity             time.Duration
	certCheckInterval                    time.Duration
	profiling                            bool
	maxInFlightBytes                     string
	http2MaxStreams                      int
	maxConnections                       int
	clientCAFile                         string
	watchAssociations                    bool
}

// Certificate modes of --cert-mode.
const (
	certModeFile        = "file"
	certModeSelfManaged = "self-managed"
)

func newWebhookCommand() *cobra.Command {
	cmd, _ := webhookCommand()
	return cmd
}

// webhookCommand returns the command and the flag values it parses into.
func webhookCommand() (*cobra.Command, *webhookFlags) {
	f := &webhookFlags{}
	cmd := &cobra.Command{
		Use:   "webhook",
		Short: "Run the mutating admission webhook that injects IRSA and Pod Identity credentials",
		Example: `  # In a Deployment, with a certificate mounted from a Secret (cert-manager):
  podiam webhook --tls-cert=/etc/webhook/certs/tls.crt --tls-key=/etc/webhook/certs/tls.key

  # With its own CA and certificate, rotated, written into the webhook configuration:
  podiam webhook --cert-mode=self-managed --namespace=podiam-system --service-name=pod-identity-webhook

  # The kOps ConfigMap mapping, regional STS and a default region:
  podiam webhook --watch-config-map --sts-regional-endpoint --aws-default-region=eu-west-1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.showVersion { // as the Amazon webhook: print, exit 0, touch nothing
				_, err := fmt.Fprintln(cmd.OutOrStdout(), version.String())
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return runWebhook(ctx, cmd.Flags(), *f)
		},
	}
	fs := cmd.Flags()
	fs.IntVar(&f.port, "port", 443, "HTTPS port of the admission endpoint")
	fs.IntVar(&f.metricsPort, "metrics-port", 9999, "HTTP port of /metrics, /healthz and /readyz (0 disables)")
	fs.StringVar(&f.address, "address", "", "IP address both ports listen on (empty: every interface)")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file; empty means in-cluster, then $KUBECONFIG")
	fs.StringVar(&f.kubeAPI, "kube-api", "", "API server URL; overrides the server of the kubeconfig or in-cluster config")
	fs.BoolVar(&f.showVersion, "version", false, "print the version and exit")
	fs.StringVar(&f.tlsCert, "tls-cert", "/etc/webhook/certs/tls.crt", "serving certificate, reloaded when it changes")
	fs.StringVar(&f.tlsKey, "tls-key", "/etc/webhook/certs/tls.key", "serving key, reloaded when it changes")
	fs.StringVar(&f.certMode, "cert-mode", certModeFile, `"file": serve --tls-cert/--tls-key (cert-manager, Secret volumes); "self-managed": keep an own CA and certificate in a Secret`)
	fs.StringVar(&f.certSecretName, "cert-secret-name", "podiam-webhook-tls", "self-managed: Secret in --namespace that holds the CA and serving certificate")
	fs.StringVar(&f.webhookConfigName, "webhook-config-name", "pod-identity-webhook", "self-managed: MutatingWebhookConfiguration whose caBundle podiam writes")
	fs.StringSliceVar(&f.certExtraNames, "cert-extra-names", nil, "self-managed: extra DNS names or IP addresses for the serving certificate")
	fs.DurationVar(&f.certValidity, "cert-validity", certs.DefaultCertValidity, "self-managed: serving certificate lifetime (renewed in its last third)")
	fs.DurationVar(&f.caValidity, "ca-validity", certs.DefaultCAValidity, "self-managed: CA lifetime (rotated in its last third)")
	fs.DurationVar(&f.certCheckInterval, "cert-check-interval", certs.DefaultCheckInterval, "self-managed: longest time between checks of the Secret and caBundle, which are also watched")
	fs.StringVar(&f.tlsMinVersion, "tls-min-version", "1.2", "minimum TLS version (1.2 or 1.3)")
	fs.StringVar(&f.tlsCipherSuites, "tls-cipher-suites", "", "comma-separated TLS 1.2 cipher suites (IANA names); empty means Go's defaults")
	fs.StringVar(&f.namespace, "namespace", "eks", "namespace of the webhook and of its ConfigMap")
	fs.StringVar(&f.serviceName, "service-name", "pod-identity-webhook", "name of the webhook's Service")
	fs.StringVar(&f.annotationPrefix, "annotation-prefix", identity.DefaultAnnotationPrefix, "prefix of the annotations podiam reads")
	fs.StringVar(&f.tokenAudience, "token-audience", "sts.amazonaws.com", "default audience of IRSA tokens")
	fs.StringVar(&f.tokenMountPath, "token-mount-path", inject.DefaultTokenMountPath, "where the IRSA token is mounted")
	fs.Int64Var(&f.tokenExpiration, "token-expiration", 86400, "default token lifetime in seconds; less than 600 is raised to 600")
	fs.StringVar(&f.region, "aws-default-region", "", "if set, injected as AWS_DEFAULT_REGION and AWS_REGION")
	fs.BoolVar(&f.regionalSTS, "sts-regional-endpoint", false, "inject AWS_STS_REGIONAL_ENDPOINTS=regional by default")
	fs.BoolVar(&f.watchConfigMap, "watch-config-map", false, "read the ServiceAccount-to-role mapping from the ConfigMap "+ConfigMapName)
	fs.BoolVar(&f.composeRoleARN, "compose-role-arn", false,
		"a role-arn annotation or mapping RoleARN may be a role name and path; the ARN is composed with --aws-account-id and --aws-partition")
	fs.StringVar(&f.awsAccountID, "aws-account-id", "", "with --compose-role-arn: the 12-digit account that owns the roles")
	fs.StringVar(&f.awsPartition, "aws-partition", "", "with --compose-role-arn: the ARN partition; empty means the partition of --aws-default-region, else aws")
	fs.StringVar(&f.ccConfig, "watch-container-credentials-config", "", "file listing the ServiceAccounts that get Pod Identity")
	fs.BoolVar(&f.watchAssociations, "watch-pod-identity-associations", true,
		"give Pod Identity to the ServiceAccounts that have a PodIdentityAssociation (podiam.dev/v1alpha1); without the CRD installed there are none")
	fs.StringVar(&f.ccAudience, "container-credentials-audience", "pods.eks.amazonaws.com", "audience of Pod Identity tokens")
	fs.StringVar(&f.ccMountPath, "container-credentials-token-mount-path", inject.DefaultContainerCredsMountPath, "where the Pod Identity token is mounted")
	fs.StringVar(&f.ccVolumeName, "container-credentials-token-volume-name", inject.DefaultContainerCredsVolumeName, "name of the Pod Identity token volume")
	fs.StringVar(&f.ccTokenPath, "container-credentials-token-path", inject.DefaultContainerCredsTokenPath, "file name of the Pod Identity token in its volume")
	fs.StringVar(&f.ccFullURI, "container-credentials-full-uri", inject.DefaultContainerCredsFullURI, "Pod Identity agent endpoint")
	fs.DurationVar(&f.saGracePeriod, "service-account-lookup-grace-period", time.Second,
		"on a cache miss, how long to look for the ServiceAccount in the API server (0 disables the lookup)")
	fs.DurationVar(&f.resyncPeriod, "resync-period", 0, "informer resync period (0 disables resync)")
	fs.StringVar(&f.roleSessionName, "role-session-name", "", `"pod-name" sets AWS_ROLE_SESSION_NAME to the pod name for every IRSA pod`)
	fs.DurationVar(&f.shutdownDelay, "shutdown-delay", 5*time.Second,
		"on SIGTERM, keep serving this long with /readyz failing, so the API server stops calling before the listener closes")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 20*time.Second, "how long to drain in-flight requests on SIGTERM")
	fs.BoolVar(&f.profiling, "profiling", false, "serve /debug/pprof/ on the metrics port")
	fs.StringVar(&f.maxInFlightBytes, "max-in-flight-bytes", resource.NewQuantity(webhook.DefaultMaxInFlightBytes, resource.BinarySI).String(),
		"admission request bodies served at once, as declared, each counted as at least 64Ki; the excess is answered 429 with Retry-After, which the API server retries")
	fs.IntVar(&f.http2MaxStreams, "http2-max-concurrent-streams", webhook.DefaultHTTP2MaxConcurrentStreams, "streams per HTTP/2 connection")
	fs.IntVar(&f.maxConnections, "max-connections", webhook.DefaultMaxConnections, "open connections of the admission port; one beyond closes the longest-idle one")
	fs.StringVar(&f.clientCAFile, "client-ca-file", "", "if set, /mutate requires a client certificate signed by a CA in this PEM file (the API server's admission kubeconfig); reloaded when it changes")
	fs.StringVar(&f.logFormat, "log-format", "json", "log format: json or text")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	addAmazonCompatFlags(fs, f)
	return cmd, f
}

func runWebhook(ctx context.Context, fs *pflag.FlagSet, f webhookFlags) error {
	v, err := validateFlags(fs, &f)
	if err != nil {
		return err
	}
	logger := installLogger(f.logFormat, v.logLevel)
	logger.Info("starting", "version", version.String())
	for _, w := range v.warnings {
		logger.Warn(w)
	}

	var clientCAs *webhook.ClientCAs
	if f.clientCAFile != "" {
		// Before anything connects: a wrong path must stop the start at once.
		if clientCAs, err = webhook.LoadClientCAs(f.clientCAFile, logger); err != nil {
			return fmt.Errorf("--client-ca-file: %w", err)
		}
	}

	cfg, err := restConfig(f.kubeconfig, f.kubeAPI)
	if err != nil {
		return err
	}
	cfg.UserAgent = "podiam-webhook/" + version.Version
	// client-go's default of 5 requests/s would throttle the direct
	// ServiceAccount lookups of a burst of new namespaces past the grace period.
	cfg.QPS, cfg.Burst = 50, 100
	clientset, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("creating Kubernetes client: %w", err)
	}
	metaClient, err := metadata.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("creating metadata client: %w", err)
	}

	reg := prometheus.NewRegistry()
	m := metrics.NewWebhook(reg)
	keys := identity.NewKeys(f.annotationPrefix)

	sas := sacache.New(sacache.Options{
		Client: metaClient, AnnotationKeys: keys.ServiceAccountKeys(),
		GracePeriod: f.saGracePeriod, ResyncPeriod: f.resyncPeriod, Metrics: m, Logger: logger,
	})
	go sas.Run(ctx)
	checks := []webhook.ReadyCheck{{Name: "serviceaccount-cache", Ready: sas.HasSynced}}

	handlerOpts := webhook.HandlerOptions{
		AnnotationPrefix: f.annotationPrefix,
		Defaults: identity.Defaults{
			Audience: f.tokenAudience, RegionalSTS: f.regionalSTS, TokenExpiration: f.tokenExpiration,
			ContainerCredentialsAudience: f.ccAudience, SessionNameFromPod: f.roleSessionName == identity.RoleSessionNamePodName,
			ComposeRoleARN: v.composer,
		},
		TokenMountPath: f.tokenMountPath, Region: f.region,
		ContainerCredsMountPath: f.ccMountPath, ContainerCredsVolumeName: f.ccVolumeName,
		ContainerCredsTokenPath: f.ccTokenPath, ContainerCredsFullURI: f.ccFullURI,
		ServiceAccounts: sas,
		Metrics:         m,
		Logger:          logger,
	}
	if f.watchConfigMap {
		mw := configwatch.NewMappingWatcher(configwatch.MappingOptions{
			Client: clientset, Namespace: f.namespace, Name: ConfigMapName, Key: ConfigMapKey,
			ResyncPeriod: f.resyncPeriod, Metrics: m, Logger: logger,
		})
		go mw.Run(ctx)
		handlerOpts.Mapping = mw.Current
		checks = append(checks, webhook.ReadyCheck{Name: "configmap", Ready: mw.HasSynced})
	}
	if f.ccConfig != "" {
		fw, err := configwatch.NewFileWatcher(configwatch.FileOptions{Path: f.ccConfig, Metrics: m, Logger: logger})
		if err != nil {
			return err
		}
		go fw.Run(ctx)
		handlerOpts.ContainerCredentials = fw.Current
	}
	if f.watchAssociations {
		dyn, err := dynamic.NewForConfig(cfg)
		if err != nil {
			return fmt.Errorf("creating dynamic client: %w", err)
		}
		aw := association.New(association.Options{
			Client: dyn, Discovery: clientset.Discovery(), Logger: logger, // no resync: the store ignores it
			// The webhook only asks whether a ServiceAccount has an association.
			KeysOnly: true, Gauge: m.PodIdentityAssociations,
		})
		go aw.Run(ctx)
		// A ServiceAccount with an association gets Pod Identity as if the file
		// listed it (SPEC §2: Pod Identity first).
		handlerOpts.ContainerCredentials = identity.JoinAssociations(handlerOpts.ContainerCredentials, aw)
		checks = append(checks, webhook.ReadyCheck{Name: "podidentityassociations", Ready: aw.HasSynced})
	}

	getCert, certReady, err := certificateSource(ctx, f, clientset, logger)
	if err != nil {
		return err
	}
	checks = append(checks, webhook.ReadyCheck{Name: "certificate", Ready: certReady})
	metrics.RegisterServing(reg, "webhook", getCert, checks)
	tlsCfg, err := webhook.TLSConfig(f.tlsMinVersion, f.tlsCipherSuites, getCert)
	if err != nil {
		return err
	}
	if clientCAs != nil {
		webhook.RequireClientCerts(tlsCfg, clientCAs)
	}

	ln, metricsLn, err := listenPorts(f.address, f.port, f.metricsPort)
	if err != nil {
		return err
	}
	srv := &webhook.Server{
		Mutate: webhook.NewHandler(handlerOpts), TLS: tlsCfg, Gatherer: reg, Checks: checks,
		ShutdownDelay: f.shutdownDelay, ShutdownTimeout: f.shutdownTimeout, Logger: logger, Profiling: f.profiling,
		Metrics: m, MaxInFlightBytes: v.maxInFlightBytes, HTTP2MaxConcurrentStreams: f.http2MaxStreams,
		MaxConnections: f.maxConnections, RequireClientCert: clientCAs != nil,
	}
	return srv.Serve(ctx, ln, metricsLn)
}

// certificateSource returns where serving certificates come from: files that are
// watched for changes, or a self-managed CA kept in a Secret.
func certificateSource(ctx context.Context, f webhookFlags, client kubernetes.Interface, logger *slog.Logger) (
	func(*tls.ClientHelloInfo) (*tls.Certificate, error), func() bool, error) {
	switch f.certMode {
	case certModeFile:
		cw, err := certwatcher.New(f.tlsCert, f.tlsKey)
		if err != nil {
			return nil, nil, fmt.Errorf("loading serving certificate: %w", err)
		}
		go func() {
			if err := cw.Start(ctx); err != nil {
				logger.Error("certificate watcher stopped", "error", err)
			}
		}()
		ready := func() bool {
			c, err := cw.GetCertificate(nil)
			return err == nil && c != nil
		}
		return cw.GetCertificate, ready, nil
	case certModeSelfManaged:
		svc, ns := f.serviceName, f.namespace
		pol := certs.Policy{CAValidity: f.caValidity, CertValidity: f.certValidity,
			DNSNames: []string{svc, svc + "." + ns, svc + "." + ns + ".svc", svc + "." + ns + ".svc.cluster.local"}}
		for _, n := range f.certExtraNames {
			if ip := net.ParseIP(n); ip != nil {
				pol.IPs = append(pol.IPs, ip)
			} else {
				pol.DNSNames = append(pol.DNSNames, n)
			}
		}
		m := certs.New(certs.Options{
			Client: client, Namespace: ns, SecretName: f.certSecretName, WebhookConfigName: f.webhookConfigName,
			CAConfigMapName: f.caConfigMap, Policy: pol, CheckInterval: f.certCheckInterval, Logger: logger,
		})
		go m.Run(ctx)
		return m.GetCertificate, m.Ready, nil
	}
	return nil, nil, fmt.Errorf("--cert-mode=%q: want %s or %s", f.certMode, certModeFile, certModeSelfManaged)
}

// restConfig loads --kubeconfig, else the in-cluster config, else $KUBECONFIG or
// ~/.kube/config, as kubectl does. A non-empty kubeAPI (--kube-api) replaces only
// the server URL and keeps that config's credentials. The Amazon webhook's
// clientcmd.BuildConfigFromFlags differs there: given --kube-api without
// --kubeconfig it builds an anonymous config of only that URL (the README lists
// the difference).
func restConfig(kubeconfig, kubeAPI string) (*rest.Config, error) {
	if kubeconfig == "" {
		if cfg, err := rest.InClusterConfig(); err == nil {
			if kubeAPI != "" {
				cfg.Host = kubeAPI
			}
			return cfg, nil
		}
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	overrides := &clientcmd.ConfigOverrides{}
	overrides.ClusterInfo.Server = kubeAPI
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig: %w", err)
	}
	return cfg, nil
}

// parseLogFlags checks --log-format and --log-level, which every long-running
// command has, and returns the level; both errors at once when both are bad.
func parseLogFlags(format, level string) (slog.Level, error) {
	var errs []error
	if format != "json" && format != "text" {
		errs = append(errs, fmt.Errorf("--log-format=%q: want json or text", format))
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		errs = append(errs, fmt.Errorf("--log-level=%q: %w", level, err))
	}
	return lvl, errors.Join(errs...)
}

// installLogger makes the process's logger (newLogger) the default of slog,
// client-go (klog) and controller-runtime, whose certificate watcher logs
// through its own global, so that everything goes to one structured log.
func installLogger(format string, level slog.Level) *slog.Logger {
	logger := newLogger(format, level)
	slog.SetDefault(logger)
	klog.SetSlogLogger(logger)
	ctrllog.SetLogger(logr.FromSlogHandler(logger.Handler()))
	return logger
}

// listenPorts listens on address (empty: every interface) at port, and at
// metricsPort unless it is 0 (then the metrics listener is nil).
func listenPorts(address string, port, metricsPort int) (ln, metricsLn net.Listener, err error) {
	if ln, err = net.Listen("tcp", net.JoinHostPort(address, strconv.Itoa(port))); err != nil {
		return nil, nil, fmt.Errorf("listening on port %d: %w", port, err)
	}
	if metricsPort != 0 {
		if metricsLn, err = net.Listen("tcp", net.JoinHostPort(address, strconv.Itoa(metricsPort))); err != nil {
			ln.Close()
			return nil, nil, fmt.Errorf("listening on metrics port %d: %w", metricsPort, err)
		}
	}
	return ln, metricsLn, nil
}

// newLogger returns the process's logger: JSON, or text for --log-format=text
// (parseLogFlags has checked the format).
func newLogger(format string, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "text" {
		return slog.New(slog.NewTextHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, opts))
}
