package main

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/podiam/podiam/internal/identity"
	"github.com/podiam/podiam/internal/webhook"
)

// validated is what validateFlags derives from the flags.
type validated struct {
	logLevel slog.Level
	// maxInFlightBytes is --max-in-flight-bytes.
	maxInFlightBytes int64
	// composer is nil unless --compose-role-arn is set.
	composer *identity.ARNComposer
	// warnings are logged once the logger exists: one per accepted flag podiam
	// cannot honour, and per value it had to adjust.
	warnings []string
}

// validateFlags checks every flag value, so that a bad one fails start-up with an
// error naming it before any client, cache, watcher or listener starts. It reports
// all bad flags at once. It may adjust f where the Amazon webhook would accept a
// value podiam cannot use as given (a --token-expiration below the minimum).
func validateFlags(fs *pflag.FlagSet, f *webhookFlags) (validated, error) {
	var v validated
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	var err error
	if v.logLevel, err = parseLogFlags(f.logFormat, f.logLevel); err != nil {
		errs = append(errs, err)
	}
	// klog's --v N, as in the Amazon webhook's Deployments, shows klog's V(N)
	// lines of client-go; podiam's log must then be at least that verbose
	// (logr maps V(N) to slog level -N, N ≥ 4 includes podiam's debug lines).
	if pv := fs.Lookup("v"); pv != nil && pv.Changed && !fs.Changed("log-level") {
		if n, err := strconv.Atoi(pv.Value.String()); err == nil && n > 0 {
			v.logLevel = min(v.logLevel, slog.Level(-n))
		}
	}

	switch f.certMode {
	case certModeFile, certModeSelfManaged:
	default:
		bad("--cert-mode=%q: want %s or %s", f.certMode, certModeFile, certModeSelfManaged)
	}
	if _, err := webhook.ParseTLSVersion(f.tlsMinVersion); err != nil {
		bad("--tls-min-version=%q: %w", f.tlsMinVersion, err)
	}
	if _, err := webhook.ParseCipherSuites(f.tlsCipherSuites); err != nil {
		bad("--tls-cipher-suites=%q: %w", f.tlsCipherSuites, err)
	}
	if f.port < 1 || f.port > 65535 {
		bad("--port=%d: want 1 to 65535", f.port)
	}
	if f.metricsPort < 0 || f.metricsPort > 65535 {
		bad("--metrics-port=%d: want 0 (off) to 65535", f.metricsPort)
	}
	if q, err := resource.ParseQuantity(f.maxInFlightBytes); err != nil || q.Value() < webhook.MaxBodyBytes {
		bad("--max-in-flight-bytes=%q: want a size of at least %s, such as 24Mi", f.maxInFlightBytes,
			resource.NewQuantity(webhook.MaxBodyBytes, resource.BinarySI))
	} else {
		v.maxInFlightBytes = q.Value()
	}
	for _, n := range []struct {
		name  string
		value int
	}{{"http2-max-concurrent-streams", f.http2MaxStreams}, {"max-connections", f.maxConnections}} {
		if n.value < 1 {
			bad("--%s=%d: want at least 1", n.name, n.value)
		}
	}

	// The Amazon webhook raises a short --token-expiration to the minimum, so an
	// existing Deployment may carry one; the API server's maximum has no such
	// precedent and would make every injected pod invalid.
	switch {
	case f.tokenExpiration > identity.MaxTokenExpiration:
		bad("--token-expiration=%d: want at most %d seconds", f.tokenExpiration, identity.MaxTokenExpiration)
	case f.tokenExpiration < identity.MinTokenExpiration:
		v.warnings = append(v.warnings, fmt.Sprintf("--token-expiration=%d is below the minimum; using %d seconds",
			f.tokenExpiration, identity.MinTokenExpiration))
		f.tokenExpiration = identity.MinTokenExpiration
	}
	if f.roleSessionName != "" && f.roleSessionName != identity.RoleSessionNamePodName {
		bad("--role-session-name=%q: only %q is supported", f.roleSessionName, identity.RoleSessionNamePodName)
	}
	for _, d := range []struct {
		name  string
		value int64
	}{{"service-account-lookup-grace-period", int64(f.saGracePeriod)}, {"resync-period", int64(f.resyncPeriod)}} {
		if d.value < 0 {
			bad("--%s=%s: must not be negative", d.name, fs.Lookup(d.name).Value)
		}
	}

	if f.composeRoleARN {
		// The Amazon webhook reads the account and region from the node's
		// instance metadata; podiam runs on any cluster, so they are flags.
		partition := f.awsPartition
		if partition == "" {
			partition = identity.PartitionForRegion(f.region)
		}
		switch c, err := identity.NewARNComposer(partition, f.awsAccountID); {
		case f.awsAccountID == "":
			bad("--compose-role-arn needs --aws-account-id: the account that owns the roles (podiam does not read instance metadata)")
		case err != nil:
			bad("--compose-role-arn with --aws-account-id=%q --aws-partition=%q: %w", f.awsAccountID, partition, err)
		default:
			v.composer = c
		}
	} else if fs.Changed("aws-account-id") || fs.Changed("aws-partition") {
		v.warnings = append(v.warnings, "--aws-account-id and --aws-partition have no effect without --compose-role-arn")
	}

	v.warnings = append(v.warnings, ignoredFlagWarnings(fs)...)
	return v, errors.Join(errs...)
}
