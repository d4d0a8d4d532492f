package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/discovery"
	"k8s.io/klog/v2"

	"github.com/podiam/podiam/internal/oidc"
	"github.com/podiam/podiam/internal/version"
)

// publishFlags are the flags of `podiam oidc publish`.
type publishFlags struct {
	issuer, to, kubeconfig, jwksPath string
	legacyEmptyKid, allowKeyRemoval  bool
	interval                         time.Duration
	s3PathStyle                      bool
	clientIDs                        []string
	noRegisterHints                  bool
	logFormat, logLevel              string
}

// thumbprintTimeout bounds the TLS connections of the register hints: they
// are a convenience and must not hold up a publish that succeeded.
const thumbprintTimeout = 15 * time.Second

func newOIDCPublishCommand() *cobra.Command {
	f := &publishFlags{}
	cmd := &cobra.Command{
		Use:   "publish",
		Short: "Publish the cluster's issuer documents to a directory or an S3 bucket",
		Long: `Reads the discovery document and the JWKS that kube-apiserver serves
(/.well-known/openid-configuration, /openid/v1/jwks) and writes them under the
destination, the JWKS first, with the jwks_uri the destination serves
(<issuer>/<jwks path>). The destination is a directory (each file written to a
temporary name and renamed) or s3://bucket/prefix (Content-Type
application/json, Cache-Control max-age=300; region, endpoint and credentials
from the AWS SDK's usual configuration: AWS_REGION, AWS_ENDPOINT_URL_S3, IRSA,
Pod Identity, profiles). Only documents that changed are written.

It refuses when the cluster's issuer is not --issuer (kube-apiserver's
--service-account-issuer must be that URL). A key published before that the
cluster no longer has stays published, with a warning on every run, since
tokens signed by it would stop verifying; the cluster's new keys are
published all the same. Pass --allow-key-removal once such a key was retired
on purpose, and it is removed. The keys published before are read from the
JWKS that the destination's discovery document names, so changing
--jwks-path keeps them.

Retention trusts the destination's content: whatever key is there stays
published, so the keys read from it are checked as the cluster's are (public
only, RSA of 2048 bits or more or EC P-256/384/521, "alg" matching the key,
"use" sig). An entry that fails, a key whose "kid" names two keys, an
empty-kid copy of no RSA key kept, or a JWKS that does not parse is an error
that writes nothing. To clean the destination, run once with
--allow-key-removal: it publishes the cluster's keys only and names every
entry it drops (or edit the JWKS at the destination by hand). A key with one
of the cluster's kids but other material is always dropped, with a warning:
the cluster decides what its kids mean.

Then it prints the thumbprint of the issuer's TLS server and the AWS CLI
command and Terraform resource that register the provider with IAM (skipped
with --no-register-hints and in --interval mode).

With --interval it keeps publishing until SIGTERM, logging to stderr; failed
rounds are retried, so it can run as a Deployment (deploy/issuer-sync).`,
		Example: `  # An S3 bucket that serves https://my-bucket.s3.eu-west-1.amazonaws.com/cluster-1:
  AWS_REGION=eu-west-1 podiam oidc publish \
    --issuer https://my-bucket.s3.eu-west-1.amazonaws.com/cluster-1 \
    --to s3://my-bucket/cluster-1

  # A bucket set up by the self-hosted guides (EKS Anywhere): JWKS at keys.json,
  # with the legacy copy of each key whose "kid" is empty:
  podiam oidc publish --issuer https://oidc.example.com --to s3://oidc-example \
    --jwks-path keys.json --legacy-empty-kid

  # A directory served by podiam oidc serve or any web server:
  podiam oidc publish --issuer https://oidc.example.com --to /srv/oidc

  # Keep it in sync as keys rotate:
  podiam oidc publish --issuer https://oidc.example.com --to s3://oidc-example --interval 5m`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			useFallbackRoots() // S3
			if err := f.validate(); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return runOIDCPublish(ctx, *f, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.issuer, "issuer", "", "issuer URL (https://…) the documents are published for; the cluster's --service-account-issuer must be the same")
	fs.StringVar(&f.to, "to", "", "destination: a directory, or s3://bucket/prefix")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file; empty means in-cluster, then $KUBECONFIG")
	fs.StringVar(&f.jwksPath, "jwks-path", oidc.JWKSPath, "path of the JWKS under the destination and the issuer (keys.json for buckets set up by the self-hosted guides)")
	fs.BoolVar(&f.legacyEmptyKid, "legacy-empty-kid", false, `also publish each RSA key with "kid": "", for tokens of clusters before Kubernetes 1.16`)
	fs.BoolVar(&f.allowKeyRemoval, "allow-key-removal", false, "remove keys published before that the cluster does not have (tokens signed by them stop verifying), and invalid entries or an unreadable JWKS at the destination; without it such keys stay published, with a warning, and invalid entries are an error")
	fs.DurationVar(&f.interval, "interval", 0, "keep publishing every interval until SIGTERM (0: publish once)")
	fs.BoolVar(&f.s3PathStyle, "s3-path-style", false, "address the bucket in the URL path, as most S3-compatible servers need")
	fs.StringSliceVar(&f.clientIDs, "client-id", []string{oidc.DefaultClientID}, "client IDs (audiences) in the printed registration command")
	fs.BoolVar(&f.noRegisterHints, "no-register-hints", false, "do not print the thumbprint and the registration command")
	fs.StringVar(&f.logFormat, "log-format", "json", "with --interval: log format, json or text")
	fs.StringVar(&f.logLevel, "log-level", "info", "with --interval: log level, debug, info, warn or error")
	_ = cmd.MarkFlagRequired("issuer")
	_ = cmd.MarkFlagRequired("to")
	return cmd
}

// validate checks the flags before anything connects; the documents' own
// checks (issuer, JWKS path) run in oidc.Documents too.
func (f *publishFlags) validate() error {
	var errs []error
	if err := oidc.ValidateIssuer(f.issuer); err != nil {
		errs = append(errs, fmt.Errorf("--issuer: %w", err))
	}
	if f.interval < 0 {
		errs = append(errs, fmt.Errorf("--interval=%v: must not be negative", f.interval))
	}
	if f.interval > 0 && f.interval < time.Second {
		errs = append(errs, fmt.Errorf("--interval=%v: at least 1s (each round reads the API server and the destination)", f.interval))
	}
	if _, err := parseLogFlags(f.logFormat, f.logLevel); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (f publishFlags) options() oidc.PublishOptions {
	return oidc.PublishOptions{Issuer: f.issuer, JWKSPath: f.jwksPath, LegacyEmptyKid: f.legacyEmptyKid, AllowKeyRemoval: f.allowKeyRemoval}
}

// runOIDCPublish connects to the API server and the destination, then
// publishes once or, with --interval, until ctx ends.
func runOIDCPublish(ctx context.Context, f publishFlags, stdout, stderr io.Writer) error {
	cfg, err := restConfig(f.kubeconfig, "")
	if err != nil {
		return err
	}
	cfg.UserAgent = "podiam-oidc-publish/" + version.Version
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return fmt.Errorf("creating Kubernetes client: %w", err)
	}
	src := oidc.ClusterSource{Client: dc.RESTClient()}
	dest, err := oidc.OpenDestination(ctx, f.to, oidc.S3Options{PathStyle: f.s3PathStyle})
	if err != nil {
		return err
	}
	if f.interval == 0 {
		return publishOnce(ctx, src, dest, f, stdout, stderr)
	}
	lvl, _ := parseLogFlags(f.logFormat, f.logLevel) // validated
	logger := newLogger(f.logFormat, lvl)
	klog.SetSlogLogger(logger) // client-go's own lines in the same log
	s := &oidc.Syncer{Source: src, Destination: dest, Options: f.options(), Interval: f.interval, Logger: logger}
	return s.Run(ctx)
}

// publishOnce publishes and reports: what was written on stdout, then the
// register hints; warnings on stderr.
func publishOnce(ctx context.Context, src oidc.Source, dest oidc.Destination, f publishFlags, stdout, stderr io.Writer) error {
	res, err := oidc.Publish(ctx, src, dest, f.options())
	if err != nil {
		return err
	}
	for _, w := range res.Warnings() {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	fmt.Fprintf(stdout, "issuer:   %s\njwks_uri: %s\n", f.issuer, res.JWKSURI)
	for _, o := range res.Objects {
		state := "unchanged"
		if slices.Contains(res.Written, o.Path) {
			state = "written"
		}
		fmt.Fprintf(stdout, "%-9s %s/%s\n", state, strings.TrimSuffix(dest.String(), "/"), o.Path)
	}
	if f.noRegisterHints {
		return nil
	}
	tctx, cancel := context.WithTimeout(ctx, thumbprintTimeout)
	defer cancel()
	thumbprints, err := oidc.Thumbprints(tctx, []string{f.issuer, res.JWKSURI}, nil)
	if err != nil {
		// The documents may not be served yet (a new bucket policy, a web
		// server started next): the hints go out without thumbprints.
		fmt.Fprintf(stderr, "warning: no thumbprint (%v): IAM needs one unless a CA it trusts issued the issuer's certificate; "+
			"once the documents are served, run: podiam oidc thumbprint %s\n", err, f.issuer)
		thumbprints = nil
	} else {
		fmt.Fprintf(stdout, "\nthumbprints: %s\n", strings.Join(thumbprints, " "))
	}
	cli, tf := oidc.RegisterSnippets(f.issuer, f.clientIDs, thumbprints)
	fmt.Fprintf(stdout, "\nRegister the provider with IAM (once per issuer), with the AWS CLI:\n\n%s\nor with Terraform:\n\n%s", cli, tf)
	return nil
}
