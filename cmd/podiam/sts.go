package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/podiam/podiam/internal/httpserve"
	"github.com/podiam/podiam/internal/sts"
	"github.com/podiam/podiam/internal/webhook"
)

// stsFlags are the flags of `podiam sts`.
type stsFlags struct {
	config              string
	address             string
	metricsAddress      string
	port, metricsPort   int
	tlsCert, tlsKey     string
	stateKeyFile        string
	logFormat, logLevel string
}

// Default ports of `podiam sts`: 8080 is where local emulators and test
// set-ups usually put a plain-HTTP endpoint (AWS_ENDPOINT_URL_STS=http://127.0.0.1:8080),
// and it needs no privileges; the metrics port sits next to it.
const (
	defaultSTSPort        = 8080
	defaultSTSMetricsPort = 8081
)

func newSTSCommand() *cobra.Command {
	f := stsFlags{}
	cmd := &cobra.Command{
		Use:   "sts --config FILE",
		Short: "Run a local AWS STS that really verifies tokens, signatures and trust policies",
		Long: `Answers the AWS STS query protocol (AssumeRoleWithWebIdentity, AssumeRole,
GetCallerIdentity) as AWS STS does: element names, error codes, messages and
HTTP statuses. Web identity tokens are verified against the keys of the OIDC
providers of --config (fetched over HTTPS, or read from a cluster's API server),
SigV4 signatures against its users and the sessions it issued, and every
request against the role's trust policy. Each denial is logged with its reason
(the check, the statement and condition, the value expected and the one
received) while the client gets AWS's answer.

The config file is re-read when it changes; a bad new version is rejected whole
and the last good one stays. Sessions are sealed with the state key: podiam sts
processes given the same --state-key-file (created when absent) accept each
other's sessions, across restarts too; without it the key lives in memory.

Without --tls-cert and --tls-key it serves plain HTTP, and only on a loopback
address. /metrics and /healthz are served over plain HTTP on --metrics-address
(loopback unless set otherwise) and --metrics-port (0 disables).`,
		Example: `  podiam sts --config sts.yaml --state-key-file state.key
  AWS_ENDPOINT_URL_STS=http://127.0.0.1:8080 aws sts get-caller-identity

  # Over HTTPS on every interface, the certificate reloaded when it changes:
  podiam sts --config sts.yaml --address 0.0.0.0 --port 8443 --tls-cert tls.crt --tls-key tls.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			useFallbackRoots() // the JWKS of public issuers (EKS's, S3)
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return runSTS(ctx, f)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.config, "config", "", "STS config file (YAML): accounts, OIDC providers, roles, users (required)")
	fs.StringVar(&f.address, "address", "127.0.0.1", "IP address to listen on; a non-loopback address needs --tls-cert and --tls-key")
	fs.IntVar(&f.port, "port", defaultSTSPort, "port of the STS endpoint")
	fs.StringVar(&f.metricsAddress, "metrics-address", "127.0.0.1", "IP address of /metrics and /healthz (plain HTTP, whatever --address is)")
	fs.IntVar(&f.metricsPort, "metrics-port", defaultSTSMetricsPort, "HTTP port of /metrics and /healthz (0 disables)")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "serving certificate (PEM, chain after the leaf), reloaded when it changes")
	fs.StringVar(&f.tlsKey, "tls-key", "", "serving key, reloaded when it changes")
	fs.StringVar(&f.stateKeyFile, "state-key-file", "", "file holding the key that seals sessions, created when absent; empty: a key in memory")
	fs.StringVar(&f.logFormat, "log-format", "json", "log format: json or text")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info (denials and their reasons), warn or error")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}

// validate checks the flags that need no I/O.
func (f stsFlags) validate() error {
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if f.tlsCert == "" && !isLoopback(f.address) {
		return fmt.Errorf("--address=%q: plain HTTP is served on a loopback address only; give --tls-cert and --tls-key", f.address)
	}
	if f.metricsAddress != "localhost" && net.ParseIP(f.metricsAddress) == nil {
		return fmt.Errorf("--metrics-address=%q: want an IP address", f.metricsAddress)
	}
	if f.port < 0 || f.port > 65535 || f.metricsPort < 0 || f.metricsPort > 65535 {
		return errors.New("--port and --metrics-port must be 0..65535")
	}
	_, err := parseLogFlags(f.logFormat, f.logLevel)
	return err
}

// isLoopback tells whether address is a loopback IP or localhost.
func isLoopback(address string) bool {
	if address == "localhost" {
		return true
	}
	ip := net.ParseIP(address)
	return ip != nil && ip.IsLoopback()
}

func runSTS(ctx context.Context, f stsFlags) error {
	if err := f.validate(); err != nil {
		return err
	}
	level, _ := parseLogFlags(f.logFormat, f.logLevel) // validated
	logger := newLogger(f.logFormat, level)
	// The certificate watcher logs through controller-runtime's global.
	ctrllog.SetLogger(logr.FromSlogHandler(logger.Handler()))

	reg := prometheus.NewRegistry()
	m := sts.NewMetrics(reg)
	watcher, err := sts.NewWatcher(sts.WatcherOptions{Path: f.config, Logger: logger, OnReload: m.ConfigReloaded})
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	key, err := stateKey(f.stateKeyFile, logger)
	if err != nil {
		return err
	}
	sealer, err := sts.NewSealer(key)
	if err != nil {
		return err
	}
	srv, err := sts.NewServer(sts.Options{Config: watcher.Current, Sealer: sealer, Metrics: m, Logger: logger})
	if err != nil {
		return err
	}

	var tlsCfg *tls.Config
	if f.tlsCert != "" {
		// The webhook's file-mode certificate source, as podiam oidc serve uses it:
		// controller-runtime's certwatcher, reloading on change.
		getCert, _, err := certificateSource(ctx, webhookFlags{certMode: certModeFile, tlsCert: f.tlsCert, tlsKey: f.tlsKey}, nil, logger)
		if err != nil {
			return err
		}
		if tlsCfg, err = webhook.TLSConfig("1.2", "", getCert); err != nil {
			return err
		}
	}
	apiAddr, metricsAddr := f.listenAddresses()
	ln, err := net.Listen("tcp", apiAddr)
	if err != nil {
		return fmt.Errorf("listening on port %d: %w", f.port, err)
	}
	var metricsLn net.Listener
	if f.metricsPort != 0 {
		if metricsLn, err = net.Listen("tcp", metricsAddr); err != nil {
			ln.Close()
			return fmt.Errorf("listening on metrics port %d: %w", f.metricsPort, err)
		}
	}
	go watcher.Run(ctx)
	go srv.Refresh(ctx)
	return serveSTS(ctx, ln, tlsCfg, srv, metricsLn, reg, logger)
}

// listenAddresses are the host:port of the STS endpoint and of the metrics. The
// metrics are plain HTTP even when the endpoint has TLS, so they have their own
// address, loopback by default, rather than following --address.
func (f stsFlags) listenAddresses() (api, metrics string) {
	return net.JoinHostPort(f.address, strconv.Itoa(f.port)), net.JoinHostPort(f.metricsAddress, strconv.Itoa(f.metricsPort))
}

// stateKey reads the state key file, creating it with a new key when it does not
// exist; without a file the key is random and lives in memory.
func stateKey(path string, logger *slog.Logger) (sts.StateKey, error) {
	if path == "" {
		logger.Warn("no --state-key-file: sessions issued now are not accepted after a restart or by another replica")
		return sts.GenerateStateKey()
	}
	key, err := sts.LoadStateKeyFile(path, logger)
	if err == nil {
		return key, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return sts.StateKey{}, fmt.Errorf("--state-key-file: %w", err)
	}
	if key, err = sts.GenerateStateKey(); err != nil {
		return sts.StateKey{}, err
	}
	if err := sts.WriteStateKeyFile(path, key); err != nil {
		return sts.StateKey{}, fmt.Errorf("--state-key-file: %w", err)
	}
	logger.Info("created a state key", "file", path)
	return key, nil
}

// stsShutdownTimeout bounds the drain of in-flight requests.
const stsShutdownTimeout = 10 * time.Second

// serveSTS serves h on ln (over TLS when tlsCfg is set) and /metrics and /healthz
// on metricsLn (when not nil) until ctx is done, then drains both
// (httpserve.Run, within stsShutdownTimeout).
func serveSTS(ctx context.Context, ln net.Listener, tlsCfg *tls.Config, h http.Handler,
	metricsLn net.Listener, gatherer prometheus.Gatherer, logger *slog.Logger) error {
	newServer := func(h http.Handler) *http.Server {
		return &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       90 * time.Second,
			MaxHeaderBytes:    32 << 10,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		}
	}
	api := newServer(h)
	apiLn := ln
	if tlsCfg != nil {
		// tlsCfg (webhook.TLSConfig) offers HTTP/2 exactly when its suites allow it.
		api.TLSConfig, apiLn = tlsCfg, tls.NewListener(ln, tlsCfg)
	}
	endpoints := []httpserve.Endpoint{{Server: api, Listener: apiLn}}
	if metricsLn != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
		endpoints = append(endpoints, httpserve.Endpoint{Server: newServer(mux), Listener: metricsLn})
		logger.Info("serving metrics", "address", metricsLn.Addr().String())
	}
	logger.Info("serving STS", "address", ln.Addr().String(), "tls", tlsCfg != nil)
	if err := httpserve.Run(ctx, httpserve.Options{ShutdownTimeout: stsShutdownTimeout, Logger: logger}, endpoints...); err != nil {
		return fmt.Errorf("serving STS: %w", err)
	}
	return nil
}
