package monitoring

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// root is the repository's root: go test runs in test/monitoring.
var root = filepath.Join("..", "..")

// Paths of the files under test.
var (
	monitoringDir = filepath.Join(root, "deploy", "monitoring")
	alertsFile    = filepath.Join(monitoringDir, "podiam-alerts.yaml")
	alertsTests   = filepath.Join(monitoringDir, "podiam-alerts_test.yaml")
)

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseRules(t *testing.T) {
	for _, tc := range []struct {
		name    string
		rules   string
		wantErr string
	}{
		{name: "valid", rules: `
groups:
  - name: g
    rules:
      - alert: A
        expr: rate(x_total[5m]) > 0
        for: 5m
        labels: {severity: warning}
        annotations: {summary: "{{ $value }}"}
`},
		{name: "bad expression", wantErr: "parse error", rules: `
groups:
  - name: g
    rules:
      - alert: A
        expr: rate(x_total[5m] > 0
`},
		{name: "unknown field", wantErr: "field severity not found", rules: `
groups:
  - name: g
    rules:
      - alert: A
        expr: up == 0
        severity: warning
`},
		{name: "bad template", wantErr: "annotation \"summary\"", rules: `
groups:
  - name: g
    rules:
      - alert: A
        expr: up == 0
        annotations: {summary: "{{ $value "}
`},
		{name: "bad duration", wantErr: "unknown unit", rules: `
groups:
  - name: g
    rules:
      - alert: A
        expr: up == 0
        for: 5 minutes
`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rules, err := ParseRules([]byte(tc.rules))
			if tc.wantErr == "" {
				if err != nil || len(rules) != 1 || rules[0].Parsed == nil {
					t.Fatalf("ParseRules = %v, %v; want one parsed rule", rules, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestAlertRules checks the shipped rules: they load as Prometheus loads
// them, each is an alert with a severity and the annotations an on-call
// engineer reads, and every metric they name is one podiam exports or one
// of Others.
func TestAlertRules(t *testing.T) {
	rules, err := ParseRules(readFile(t, alertsFile))
	if err != nil {
		t.Fatal(err)
	}
	exported, err := Exported()
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) == 0 {
		t.Fatal("no rules")
	}
	seen := map[string]bool{}
	for _, r := range rules {
		if r.Alert == "" {
			t.Errorf("%s: a recording rule; this file holds alerts", r.Record)
			continue
		}
		if seen[r.Alert] {
			t.Errorf("%s: two alerts of that name", r.Alert)
		}
		seen[r.Alert] = true
		if s := r.Labels["severity"]; s != "warning" && s != "critical" {
			t.Errorf("%s: severity %q, want warning or critical", r.Alert, s)
		}
		for _, a := range []string{"summary", "description", "runbook"} {
			if strings.TrimSpace(r.Annotations[a]) == "" {
				t.Errorf("%s: no %s annotation", r.Alert, a)
			}
		}
		names, err := Names(r.Parsed)
		if err != nil {
			t.Errorf("%s: %v", r.Alert, err)
		}
		if u := Unknown(names, exported, Others); len(u) > 0 {
			t.Errorf("%s names metrics that podiam does not export: %v", r.Alert, u)
		}
		for _, p := range LabelProblems(r.Parsed, exported, Others) {
			t.Errorf("%s: %s", r.Alert, p)
		}
	}
}

// TestAlertRulesUnknownLabel proves that TestAlertRules's label check
// catches a rule using a label its metric lacks: each case breaks one label
// of the shipped rules.
func TestAlertRulesUnknownLabel(t *testing.T) {
	shipped := string(readFile(t, alertsFile))
	exported, err := Exported()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, old, new, want string }{
		{"a misspelled matcher", `podiam_auth_sts_calls_total{result=~"unreachable|`, `podiam_auth_sts_calls_total{reslt=~"unreachable|`, "no label reslt"},
		{"another metric's label", `podiam_agent_requests_total{code=~"5.."}`, `podiam_agent_requests_total{status=~"5.."}`, "no label status"},
		{"a label the metric lacks", `apiserver_admission_webhook_fail_open_count{name=~".*podiam.*"}[10m]`, `apiserver_admission_webhook_fail_open_count{webhook=~".*podiam.*"}[10m]`, "no label webhook"},
		{"grouping by a missing label", "count by (namespace) (", "count by (node_name) (", "label node_name"},
		{"matching on a missing label", "and on (namespace, deployment)", "and on (namespace, deploy)", "label deploy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(shipped, tc.old) {
				t.Fatalf("the rules no longer contain %q: update this case", tc.old)
			}
			rules, err := ParseRules([]byte(strings.Replace(shipped, tc.old, tc.new, 1)))
			if err != nil {
				t.Fatal(err)
			}
			var problems []string
			for _, r := range rules {
				problems = append(problems, LabelProblems(r.Parsed, exported, Others)...)
			}
			if len(problems) != 1 || !strings.Contains(problems[0], tc.want) {
				t.Errorf("problems %v, want one containing %q", problems, tc.want)
			}
		})
	}
}

// TestAlertRulesUnknownMetric proves that TestAlertRules's check catches a
// rule naming a metric that does not exist: each case breaks one name in the
// shipped rules.
func TestAlertRulesUnknownMetric(t *testing.T) {
	shipped := string(readFile(t, alertsFile))
	exported, err := Exported()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, old, new string }{
		{"a typo in a podiam metric", "podiam_auth_sts_calls_total{result=~", "podiam_auth_sts_call_total{result=~"},
		{"a counter's _bucket", "podiam_agent_requests_total{code=~", "podiam_agent_requests_total_bucket{code=~"},
		{"a histogram's own name", "podiam_auth_sts_calls_total[5m]", "podiam_auth_sts_call_duration_seconds[5m]"},
		{"another component's metric not listed", "kube_deployment_spec_replicas{deployment=~\".*podiam.*-auth", "kube_deployment_spec_replica{deployment=~\".*podiam.*-auth"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(shipped, tc.old) {
				t.Fatalf("the rules no longer contain %q: update this case", tc.old)
			}
			rules, err := ParseRules([]byte(strings.Replace(shipped, tc.old, tc.new, 1)))
			if err != nil {
				t.Fatal(err)
			}
			var unknown []string
			for _, r := range rules {
				names, err := Names(r.Parsed)
				if err != nil {
					t.Fatal(err)
				}
				unknown = append(unknown, Unknown(names, exported, Others)...)
			}
			want := strings.FieldsFunc(tc.new, func(r rune) bool { return r == '{' || r == '[' })[0]
			if !slices.Equal(unknown, []string{want}) {
				t.Errorf("unknown metrics %v, want [%s]", unknown, want)
			}
		})
	}
}

// TestOthersUsed keeps Others minimal: each metric listed is read by a rule
// or a panel.
func TestOthersUsed(t *testing.T) {
	used := map[string]bool{}
	rules, err := ParseRules(readFile(t, alertsFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		names, _ := Names(r.Parsed)
		for _, n := range names {
			used[n] = true
		}
	}
	for _, d := range dashboards(t) {
		for _, p := range d.AllPanels() {
			for _, tg := range p.Targets {
				e, err := ParseTargetExpr(tg.Expr)
				if err != nil {
					t.Fatal(err)
				}
				names, _ := Names(e)
				for _, n := range names {
					used[n] = true
				}
			}
		}
	}
	for name := range Others {
		if !used[name] {
			t.Errorf("Others lists %s, which no rule or panel reads", name)
		}
	}
}

// TestAlertRulesUnitTests runs the rules' unit tests
// (podiam-alerts_test.yaml) with promtool, pinned in hack/promtool/go.mod,
// on the shipped rules and on rules broken on purpose, which must fail them.
// promtool builds once into the build cache (about 8 CPU-minutes with a cold
// cache); -short skips the test.
func TestAlertRulesUnitTests(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping promtool")
	}
	// A cold build of promtool can outlast go test's default 10-minute
	// timeout on a busy machine: stop in time to say so, rather than
	// letting the test binary panic.
	deadline := time.Now().Add(15 * time.Minute)
	if d, ok := t.Deadline(); ok {
		deadline = d.Add(-30 * time.Second)
	}
	ctx, cancel := context.WithDeadline(t.Context(), deadline)
	defer cancel()
	// Read, so that go test's result cache notices a change in any of them
	// (promtool reads them in a child process, which the cache cannot see).
	readFile(t, filepath.Join(root, "hack", "promtool", "go.mod"))
	shipped, tests := string(readFile(t, alertsFile)), readFile(t, alertsTests)

	// `go tool -n` builds promtool and prints its path without running it.
	promtool, err := run(ctx, "", "go", "-C", filepath.Join(root, "hack", "promtool"), "tool", "-n", "promtool")
	if ctx.Err() != nil {
		t.Fatalf("building promtool did not finish before the test's deadline: build it once with `make test-rules`, or give go test a longer -timeout: %v", err)
	}
	if err != nil {
		t.Fatalf("building promtool: %v", err)
	}
	promtool = strings.TrimSpace(promtool)

	for _, tc := range []struct {
		name     string
		old, new string // a change to the shipped rules; none if old is ""
		failing  string // the alert whose test must then fail
	}{
		{name: "shipped rules"},
		{name: "warning at 1 day", old: "- time() < 7 * 86400", new: "- time() < 86400", failing: "PodiamCertificateExpiringSoon"},
		{name: "critical at 7 days", old: "- time() < 86400", new: "- time() < 7 * 86400", failing: "PodiamCertificateExpiring"},
		{name: "auth certificate not read", old: `podiam_auth_certificate_expiry_timestamp_seconds, "component"`, new: `podiam_auth_certificate_expiry_timestamp_second, "component"`, failing: "PodiamCertificateExpiringSoon"},
		{name: "webhook certificate not read", old: `podiam_webhook_certificate_expiry_timestamp_seconds, "component"`, new: `podiam_webhook_certificate_expiry_timestamp_second, "component"`, failing: "PodiamCertificateExpiringSoon"},
		{name: "latest replica's expiry", old: "min by (namespace, component)", new: "max by (namespace, component)", failing: "PodiamCertificateExpiring"},
		{name: "4xx counted as errors", old: `{code=~"5.."}`, new: `{code=~"[45].."}`, failing: "PodiamAgentErrors"},
		{name: "no replica check ignores spec", old: `max by (namespace, deployment) (kube_deployment_spec_replicas{deployment=~".*podiam.*-auth"}) > 0`, new: `max by (namespace, deployment) (kube_deployment_spec_replicas{deployment=~".*podiam.*-auth"}) >= 0`, failing: "PodiamAuthNoReadyReplica"},
		// Releases podiam-prod and mypodiam name their objects
		// podiam-prod-webhook and mypodiam-auth (the chart's fullname).
		{name: "release names of one form only (webhook)", old: `.*podiam.*-webhook`, new: `(.+-)?podiam-webhook`, failing: "PodiamWebhookNoReadyReplica"},
		{name: "release names of one form only (auth)", old: `.*podiam.*-auth`, new: `(.+-)?podiam-auth`, failing: "PodiamAuthNoReadyReplica"},
		{name: "deleted webhook Deployment not seen", old: `webhook_name=~".*podiam.*"`, new: `webhook_name=~"none"`, failing: "PodiamWebhookNoReadyReplica"},
		{name: "one alert per kube-state-metrics replica", old: `max by (namespace, deployment) (kube_deployment_status_replicas_available{deployment=~".*podiam.*-webhook"})`, new: `kube_deployment_status_replicas_available{deployment=~".*podiam.*-webhook"}`, failing: "PodiamWebhookNoReadyReplica"},
		{name: "agents counted per kube-state-metrics replica", old: "max by (namespace, daemonset) (kube_daemonset_status_number_unavailable", new: "sum by (namespace, daemonset) (kube_daemonset_status_number_unavailable", failing: "PodiamAgentUnavailable"},
		{name: "first fail-open missed", old: "offset 10m", new: "offset 1m", failing: "PodiamWebhookFailingOpen"},
		// Without the API server's start as a gate, an old counter after a
		// scrape gap, or on a fresh Prometheus, reads as a new failure.
		{name: "new fail-open series not gated", old: "(time() - process_start_time_seconds < 1200)", new: "(time() - process_start_time_seconds < 1e12)", failing: "PodiamWebhookFailingOpen"},
		{name: "webhook's own denials counted", old: `, error_type="calling_webhook_error"`, new: ``, failing: "PodiamWebhookUnreachable"},
		{name: "scraped namespaces not told apart", old: "max by (namespace) (podiam_webhook_ready)", new: `max by (namespace) (podiam_webhook_ready{namespace="none"})`, failing: "PodiamNotScraped"},
		{name: "trust-policy denials counted", old: `result=~"unreachable|`, new: `result=~"AccessDenied|unreachable|`, failing: "PodiamAuthSTSErrors"},
		{name: "STS errors without a minimum volume", old: "sum by (namespace) (increase(podiam_auth_sts_calls_total[5m])) >= 20", new: "sum by (namespace) (increase(podiam_auth_sts_calls_total[5m])) >= 0", failing: "PodiamAuthSTSErrors"},
		{name: "agent errors without a minimum volume", old: "sum by (namespace, pod) (increase(podiam_agent_requests_total[5m])) >= 20", new: "sum by (namespace, pod) (increase(podiam_agent_requests_total[5m])) >= 0", failing: "PodiamAgentErrors"},
		{name: "one agent alert per node", old: "count by (namespace) (", new: "count by (namespace, pod) (", failing: "PodiamAgentErrors"},
		{name: "thresholds raised to 10%", old: "> 0.05", new: "> 0.1", failing: "PodiamAuthSTSErrors"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// promtool reads the rule files named in the test file relative
			// to it: both go into a directory of their own.
			dir := t.TempDir()
			rules := shipped
			if tc.old != "" {
				if !strings.Contains(rules, tc.old) {
					t.Fatalf("the rules no longer contain %q: update this case", tc.old)
				}
				rules = strings.ReplaceAll(rules, tc.old, tc.new)
			}
			for name, content := range map[string][]byte{
				filepath.Base(alertsFile): []byte(rules), filepath.Base(alertsTests): tests,
			} {
				if err := os.WriteFile(filepath.Join(dir, name), content, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			out, err := run(ctx, dir, promtool, "test", "rules", filepath.Base(alertsTests))
			if tc.failing == "" {
				if err != nil {
					t.Errorf("promtool: %v\n%s", err, out)
				}
				return
			}
			if err == nil {
				t.Fatalf("promtool passed rules broken on purpose:\n%s", out)
			}
			// It must fail on the broken alert's test, not on something else
			// (a file it cannot read, a syntax error).
			if msg := err.Error(); !strings.Contains(msg, "FAILED:") || !strings.Contains(msg, "alertname: "+tc.failing+",") {
				t.Errorf("promtool did not fail the test of %s: %v\n%s", tc.failing, err, out)
			}
		})
	}
}

// run runs name with args in dir and returns its stdout; the error carries
// stderr.
func run(ctx context.Context, dir, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}
