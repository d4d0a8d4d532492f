package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/podiam/podiam/internal/identity"
	"github.com/podiam/podiam/internal/webhook"
)

// parseWebhookFlags parses args as `podiam webhook` does and validates them.
func parseWebhookFlags(t *testing.T, args ...string) (*webhookFlags, validated, error) {
	t.Helper()
	restoreKlog(t)
	cmd, f := webhookCommand()
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatalf("parsing %q: %v", args, err)
	}
	v, err := validateFlags(cmd.Flags(), f)
	return f, v, err
}

// Each bad value fails with an error that names its flag.
func TestValidateFlagsRejects(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--cert-mode=vault"}, `--cert-mode="vault"`},
		{[]string{"--tls-min-version=1.1"}, `--tls-min-version="1.1"`},
		{[]string{"--tls-cipher-suites=TLS_RSA_WITH_RC4_128_SHA"}, `--tls-cipher-suites="TLS_RSA_WITH_RC4_128_SHA"`},
		{[]string{"--token-expiration=4294967297"}, "--token-expiration=4294967297"},
		{[]string{"--role-session-name=x"}, `--role-session-name="x"`},
		{[]string{"--log-format=xml"}, `--log-format="xml"`},
		{[]string{"--log-level=loud"}, `--log-level="loud"`},
		{[]string{"--port=0"}, "--port=0"},
		{[]string{"--metrics-port=70000"}, "--metrics-port=70000"},
		{[]string{"--resync-period=-1s"}, "--resync-period=-1s"},
		{[]string{"--service-account-lookup-grace-period=-1s"}, "--service-account-lookup-grace-period=-1s"},
		{[]string{"--max-in-flight-bytes=lots"}, `--max-in-flight-bytes="lots"`},
		{[]string{"--max-in-flight-bytes=1Mi"}, `--max-in-flight-bytes="1Mi"`},
		{[]string{"--http2-max-concurrent-streams=0"}, "--http2-max-concurrent-streams=0"},
		{[]string{"--max-connections=-1"}, "--max-connections=-1"},
		{[]string{"--compose-role-arn"}, "--compose-role-arn needs --aws-account-id"},
		{[]string{"--compose-role-arn", "--aws-account-id=1234"}, `--aws-account-id="1234"`},
		{[]string{"--compose-role-arn", "--aws-account-id=111122223333", "--aws-partition=gcp"}, `--aws-partition="gcp"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, _, err := parseWebhookFlags(t, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// Several bad flags are reported together, so one restart shows them all.
func TestValidateFlagsReportsAll(t *testing.T) {
	_, _, err := parseWebhookFlags(t, "--cert-mode=vault", "--log-format=xml", "--tls-min-version=1.0")
	for _, want := range []string{"--cert-mode", "--log-format", "--tls-min-version"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error = %v, want it to name %s", err, want)
		}
	}
}

func TestValidateFlagsDerives(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		level      slog.Level
		composer   *identity.ARNComposer
		expiration int64
		warnings   []string // substrings, in order
	}{
		{name: "defaults", level: slog.LevelInfo, expiration: 86400},
		{name: "log level", args: []string{"--log-level=warn"}, level: slog.LevelWarn, expiration: 86400},
		{name: "klog -v shows V(n) lines", args: []string{"--v=2"}, level: -2, expiration: 86400},
		{name: "klog -v 4 includes debug", args: []string{"-v", "4"}, level: slog.LevelDebug, expiration: 86400},
		{name: "--log-level wins over -v", args: []string{"--v=4", "--log-level=error"}, level: slog.LevelError, expiration: 86400},
		{name: "short token expiration raised as Amazon does", args: []string{"--token-expiration=60"}, level: slog.LevelInfo,
			expiration: 600, warnings: []string{"--token-expiration=60 is below the minimum; using 600 seconds"}},
		{name: "compose in the default partition", args: []string{"--compose-role-arn", "--aws-account-id=111122223333"},
			level: slog.LevelInfo, expiration: 86400, composer: &identity.ARNComposer{Partition: "aws", AccountID: "111122223333"}},
		{name: "compose: partition from the region", level: slog.LevelInfo, expiration: 86400,
			args:     []string{"--compose-role-arn", "--aws-account-id=111122223333", "--aws-default-region=cn-north-1"},
			composer: &identity.ARNComposer{Partition: "aws-cn", AccountID: "111122223333"}},
		{name: "compose: explicit partition wins", level: slog.LevelInfo, expiration: 86400,
			args:     []string{"--compose-role-arn", "--aws-account-id=111122223333", "--aws-default-region=cn-north-1", "--aws-partition=aws-us-gov"},
			composer: &identity.ARNComposer{Partition: "aws-us-gov", AccountID: "111122223333"}},
		{name: "account without composing", args: []string{"--aws-account-id=111122223333"}, level: slog.LevelInfo, expiration: 86400,
			warnings: []string{"have no effect without --compose-role-arn"}},
		{name: "ignored Amazon flag", args: []string{"--in-cluster"}, level: slog.LevelInfo, expiration: 86400,
			warnings: []string{"--in-cluster=true has no effect"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, v, err := parseWebhookFlags(t, tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			if v.logLevel != tt.level {
				t.Errorf("log level %v, want %v", v.logLevel, tt.level)
			}
			if f.tokenExpiration != tt.expiration {
				t.Errorf("token expiration %d, want %d", f.tokenExpiration, tt.expiration)
			}
			switch {
			case (v.composer == nil) != (tt.composer == nil):
				t.Errorf("composer %+v, want %+v", v.composer, tt.composer)
			case v.composer != nil && *v.composer != *tt.composer:
				t.Errorf("composer %+v, want %+v", *v.composer, *tt.composer)
			}
			if len(v.warnings) != len(tt.warnings) {
				t.Fatalf("warnings %q, want %d matching %q", v.warnings, len(tt.warnings), tt.warnings)
			}
			for i := range tt.warnings {
				if !strings.Contains(v.warnings[i], tt.warnings[i]) {
					t.Errorf("warning %d = %q, want it to contain %q", i, v.warnings[i], tt.warnings[i])
				}
			}
		})
	}
}

// staticServiceAccounts is a ServiceAccount lookup with fixed annotations.
type staticServiceAccounts map[string]string

func (s staticServiceAccounts) Lookup(context.Context, string, string) (map[string]string, bool, error) {
	return s, true, nil
}

// The composer the flags give reaches the injected AWS_ROLE_ARN through the
// handler's Defaults, as runWebhook passes it.
func TestComposeRoleARNFlags(t *testing.T) {
	_, v, err := parseWebhookFlags(t, "--compose-role-arn", "--aws-account-id=111122223333", "--aws-default-region=us-gov-west-1")
	if err != nil {
		t.Fatal(err)
	}
	h := webhook.NewHandler(webhook.HandlerOptions{
		Defaults:        identity.Defaults{Audience: "sts.amazonaws.com", ComposeRoleARN: v.composer},
		ServiceAccounts: staticServiceAccounts{identity.DefaultAnnotationPrefix + "/role-arn": "team/app"},
		Logger:          slog.New(slog.DiscardHandler),
	})
	review := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"1",
		"kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},
		"namespace":"default","operation":"CREATE","object":{"apiVersion":"v1","kind":"Pod",
		"metadata":{"name":"p","namespace":"default"},"spec":{"serviceAccountName":"app","containers":[{"name":"c","image":"i"}]}}}}`
	out, err := h.Review(context.Background(), []byte(review))
	if err != nil {
		t.Fatal(err)
	}
	var resp struct {
		Response struct{ Patch []byte } `json:"response"`
	}
	if err := json.Unmarshal(out, &resp); err != nil {
		t.Fatalf("decoding %s: %v", out, err)
	}
	if want := `"arn:aws-us-gov:iam::111122223333:role/team/app"`; !strings.Contains(string(resp.Response.Patch), want) {
		t.Fatalf("patch %s does not inject %s", resp.Response.Patch, want)
	}
}
