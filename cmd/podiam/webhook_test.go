package main

import (
	"context"
	"io"
	"strings"
	"testing"
)

// The flags of the Amazon webhook's own manifests must parse unchanged.
func TestWebhookAcceptsAmazonFlags(t *testing.T) {
	cmd := newWebhookCommand()
	args := []string{"--in-cluster=false", "--namespace=default", "--service-name=pod-identity-webhook",
		"--annotation-prefix=eks.amazonaws.com", "--token-audience=sts.amazonaws.com", "--logtostderr",
		"--tls-secret", "pod-identity-webhook", "--v=2", "--alsologtostderr", "--port=8443", "--metrics-port=9999",
		"--watch-config-map", "--sts-regional-endpoint=true", "--aws-default-region=eu-west-1",
		"--token-expiration=3600", "--tls-cert=/c", "--tls-key=/k", "--service-account-lookup-grace-period=250ms",
		"--watch-container-credentials-config=/cc.json", "--container-credentials-audience=pods.eks.amazonaws.com",
		"--container-credentials-token-mount-path=/m", "--container-credentials-token-volume-name=v",
		"--container-credentials-token-path=p", "--container-credentials-full-uri=http://169.254.170.23/v1/credentials",
		"--resync-period=1m", "--kubeconfig=/kc", "--tls-min-version=1.3", "--tls-cipher-suites=TLS_AES_128_GCM_SHA256"}
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatalf("parsing Amazon flags: %v", err)
	}
	for _, name := range []string{"in-cluster", "tls-secret", "logtostderr", "v"} {
		if !cmd.Flags().Changed(name) {
			t.Errorf("--%s not recorded", name)
		}
	}
}

// Bad flag values fail before anything connects to a cluster.
func TestRunWebhookRejectsBadFlags(t *testing.T) {
	base := func() webhookFlags {
		return webhookFlags{tokenExpiration: 86400, logFormat: "json", logLevel: "info"}
	}
	tests := []struct {
		name   string
		modify func(*webhookFlags)
		want   string
	}{
		{"short token expiration", func(f *webhookFlags) { f.tokenExpiration = 60 }, "--token-expiration=60"},
		{"session name", func(f *webhookFlags) { f.roleSessionName = "x" }, `--role-session-name="x"`},
		{"log format", func(f *webhookFlags) { f.logFormat = "xml" }, `--log-format="xml"`},
		{"log level", func(f *webhookFlags) { f.logLevel = "loud" }, `--log-level="loud"`},
		{"kubeconfig", func(f *webhookFlags) { f.kubeconfig = "/does/not/exist" }, "loading kubeconfig"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := base()
			tt.modify(&f)
			err := runWebhook(context.Background(), newWebhookCommand().Flags(), f)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("runWebhook error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// Legacy flags with their value as a separate word, as the Amazon manifests
// write them, must reach the webhook rather than be taken for arguments.
func TestWebhookLegacyFlagsWithSeparateValues(t *testing.T) {
	root := newRootCommand()
	root.SetArgs([]string{"webhook", "--tls-secret", "pod-identity-webhook", "--v", "2", "--in-cluster", "--logtostderr",
		"--alsologtostderr", "--token-expiration=60"})
	root.SetOut(io.Discard)
	root.SetErr(io.Discard)
	err := root.Execute()
	// Reaching the token-expiration check proves every flag above parsed.
	if err == nil || !strings.Contains(err.Error(), "--token-expiration=60") {
		t.Fatalf("Execute error = %v, want the token-expiration check", err)
	}
}
