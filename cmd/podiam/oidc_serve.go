package main

import (
	"context"
	"fmt"
	"net"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/podiam/podiam/internal/oidc"
	"github.com/podiam/podiam/internal/webhook"
)

// oidcServeFlags are the flags of `podiam oidc serve`.
type oidcServeFlags struct {
	dir, pathPrefix                string
	address                        string
	port                           int
	tlsCert, tlsKey                string
	tlsMinVersion, tlsCipherSuites string
	logFormat, logLevel            string
}

func newOIDCServeCommand() *cobra.Command {
	f := oidcServeFlags{}
	cmd := &cobra.Command{
		Use:   "serve --dir DIR --tls-cert FILE --tls-key FILE",
		Short: "Serve the issuer's discovery document and JWKS over HTTPS",
		Long: `Serves the two documents that podiam oidc publish --to DIR wrote, for a cluster
that hosts its issuer itself: the discovery document and the JWKS its jwks_uri
names, under the path of the issuer (or --path-prefix), and /healthz. Nothing
else: no other file of DIR, no directory listing, only GET and HEAD. A document
is re-read when its file changes (a new publish, a ConfigMap volume update); a
file caught half-written keeps the last good content. The certificate and key
are re-read when they change. SIGTERM drains requests in flight and exits.`,
		Example: `  podiam oidc publish --issuer https://oidc.example.com/clusters/prod --to /srv/oidc
  podiam oidc serve --dir /srv/oidc --port 8443 --tls-cert tls.crt --tls-key tls.key

  # Behind a reverse proxy that strips the issuer's path:
  podiam oidc serve --dir /srv/oidc --path-prefix / --tls-cert tls.crt --tls-key tls.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return runOIDCServe(ctx, f)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.dir, "dir", "", "directory written by podiam oidc publish --to (required)")
	fs.StringVar(&f.pathPrefix, "path-prefix", "", `URL path the documents are served under; empty means the issuer's path, "/" the root`)
	fs.StringVar(&f.address, "address", "", "IP address to listen on; empty means all")
	fs.IntVar(&f.port, "port", 8443, "HTTPS port")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "serving certificate (PEM, chain after the leaf), reloaded when it changes (required)")
	fs.StringVar(&f.tlsKey, "tls-key", "", "serving key, reloaded when it changes (required)")
	fs.StringVar(&f.tlsMinVersion, "tls-min-version", "1.2", "minimum TLS version (1.2 or 1.3)")
	fs.StringVar(&f.tlsCipherSuites, "tls-cipher-suites", "", "comma-separated TLS 1.2 cipher suites (IANA names); empty means Go's defaults")
	fs.StringVar(&f.logFormat, "log-format", "json", "log format: json or text")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	for _, name := range []string{"dir", "tls-cert", "tls-key"} {
		_ = cmd.MarkFlagRequired(name)
	}
	return cmd
}

func runOIDCServe(ctx context.Context, f oidcServeFlags) error {
	level, err := parseLogFlags(f.logFormat, f.logLevel)
	if err != nil {
		return err
	}
	logger := newLogger(f.logFormat, level)
	// The certificate watcher logs through controller-runtime's global.
	ctrllog.SetLogger(logr.FromSlogHandler(logger.Handler()))

	docs, err := oidc.NewDocumentHandler(oidc.ServeOptions{Dir: f.dir, PathPrefix: f.pathPrefix, Logger: logger})
	if err != nil {
		return fmt.Errorf("--dir: %w", err)
	}
	defer docs.Close()
	// The webhook's file-mode certificate source: controller-runtime's
	// certwatcher, reloading on change.
	getCert, _, err := certificateSource(ctx, webhookFlags{certMode: certModeFile, tlsCert: f.tlsCert, tlsKey: f.tlsKey}, nil, logger)
	if err != nil {
		return err
	}
	tlsCfg, err := webhook.TLSConfig(f.tlsMinVersion, f.tlsCipherSuites, getCert)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(f.address, strconv.Itoa(f.port)))
	if err != nil {
		return fmt.Errorf("listening on port %d: %w", f.port, err)
	}
	return oidc.Serve(ctx, ln, tlsCfg, docs, logger)
}
