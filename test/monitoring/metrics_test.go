package monitoring

import (
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestFamilies checks that the recorder finds every collector's names, its
// labels (variable and constant), which of them are histograms or
// summaries, vectors without children included (Gather omits those), and
// which have a series before any observation.
func TestFamilies(t *testing.T) {
	fams, err := families(func(r prometheus.Registerer) {
		r.MustRegister(
			prometheus.NewCounterVec(prometheus.CounterOpts{Name: "t_requests_total", Help: "h"}, []string{"code"}),
			prometheus.NewGauge(prometheus.GaugeOpts{Name: "t_entries", Help: "h"}),
			prometheus.NewHistogram(prometheus.HistogramOpts{Name: "t_duration_seconds", Help: "h", ConstLabels: prometheus.Labels{"server": "a"}}),
			prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "t_call_seconds", Help: "h"}, []string{"action"}),
			prometheus.NewSummary(prometheus.SummaryOpts{Name: "t_size_bytes", Help: "h"}),
			prometheus.NewSummaryVec(prometheus.SummaryOpts{Name: "t_wait_seconds", Help: "h", ConstLabels: prometheus.Labels{"zone": "b"}}, []string{"queue"}),
		)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		suffixes []string
		labels   []string
		atStart  bool
	}{
		{"t_requests_total", nil, []string{"code"}, false},
		{"t_entries", nil, nil, true},
		{"t_duration_seconds", histogramSuffixes, []string{"server"}, true},
		{"t_call_seconds", histogramSuffixes, []string{"action"}, false},
		{"t_size_bytes", summarySuffixes, nil, true},
		{"t_wait_seconds", summarySuffixes, []string{"queue", "zone"}, false},
	} {
		f, ok := fams[tc.name]
		if !ok {
			t.Errorf("%s: not found in %v", tc.name, fams)
			continue
		}
		if !slices.Equal(f.Suffixes, tc.suffixes) {
			t.Errorf("%s: suffixes %v, want %v", tc.name, f.Suffixes, tc.suffixes)
		}
		if !slices.Equal(f.Labels, tc.labels) {
			t.Errorf("%s: labels %v, want %v", tc.name, f.Labels, tc.labels)
		}
		if f.AtStart != tc.atStart {
			t.Errorf("%s: AtStart %v, want %v", tc.name, f.AtStart, tc.atStart)
		}
	}
	if len(fams) != 6 {
		t.Errorf("got %d families, want 6: %v", len(fams), fams)
	}
}

// TestExported checks what podiam's own constructors register: something
// from each server, the serving gauges of the webhook and podiam auth (the
// certificate alerts and readiness panels read them), every name in podiam's
// namespace or the Go and process collectors', and the latency histograms
// seen as histograms or summaries.
func TestExported(t *testing.T) {
	fams, err := Exported()
	if err != nil {
		t.Fatal(err)
	}
	for _, server := range []string{"podiam_webhook_", "podiam_auth_", "podiam_agent_", "podiam_sts_"} {
		if !slices.ContainsFunc(keys(fams), func(n string) bool { return strings.HasPrefix(n, server) }) {
			t.Errorf("no family named %s*", server)
		}
	}
	for _, name := range []string{
		"podiam_webhook_certificate_expiry_timestamp_seconds", "podiam_webhook_ready",
		"podiam_auth_certificate_expiry_timestamp_seconds", "podiam_auth_ready",
	} {
		if f, ok := fams[name]; !ok || f.Suffixes != nil {
			t.Errorf("%s: exported %v (%+v), want a gauge", name, ok, f)
		}
	}
	histograms := 0
	for name, f := range fams {
		if !strings.HasPrefix(name, "podiam_") && !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") {
			t.Errorf("%s: not a podiam, Go or process metric", name)
		}
		// podiam's durations are histograms (Go's GC pauses, a summary).
		if strings.HasSuffix(name, "duration_seconds") && f.Suffixes == nil {
			t.Errorf("%s: not seen as a histogram or summary", name)
		}
		if f.Suffixes != nil {
			histograms++
		}
	}
	if histograms == 0 {
		t.Error("no histogram found")
	}
}

func keys(m map[string]Family) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestNames(t *testing.T) {
	for _, tc := range []struct {
		expr    string
		want    []string
		wantErr bool
	}{
		{expr: `up`, want: []string{"up"}},
		{expr: `rate(a_total[5m]) / rate(b_total[5m]) > 0.1 or a_total offset 1h`, want: []string{"a_total", "b_total"}},
		{expr: `histogram_quantile(0.9, sum by (le) (rate(h_seconds_bucket{job="x"}[5m])))`, want: []string{"h_seconds_bucket"}},
		{expr: `{__name__="quoted_total", code="500"}`, want: []string{"quoted_total"}},
		{expr: `max_over_time(g[10m:1m])`, want: []string{"g"}},
		{expr: `time() - 1`, want: nil},
		{expr: `{__name__=~"podiam_.*"}`, wantErr: true},
	} {
		t.Run(tc.expr, func(t *testing.T) {
			e, err := Parser.ParseExpr(tc.expr)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Names(e)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error: %v", err, tc.wantErr)
			}
			if !tc.wantErr && !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestUnknown(t *testing.T) {
	exported := map[string]Family{
		"x_requests_total":   {Name: "x_requests_total"},
		"x_duration_seconds": {Name: "x_duration_seconds", Suffixes: histogramSuffixes},
		"x_size_bytes":       {Name: "x_size_bytes", Suffixes: summarySuffixes},
	}
	others := map[string]Other{"up": {From: "Prometheus"}}
	for _, tc := range []struct {
		name    string
		unknown bool
	}{
		{"x_requests_total", false},
		{"x_duration_seconds", true}, // a classic histogram has no such series
		{"x_size_bytes", false},      // a summary's quantiles
		{"x_duration_seconds_bucket", false},
		{"x_duration_seconds_sum", false},
		{"x_duration_seconds_count", false},
		{"x_size_bytes_count", false},
		{"up", false},
		{"x_size_bytes_bucket", true},      // a summary has no buckets
		{"x_requests_total_count", true},   // nor has a counter
		{"x_request_total", true},          // a typo
		{"x_duration_seconds_total", true}, // no such suffix
		{"down", true},                     // neither podiam's nor listed
	} {
		got := Unknown([]string{tc.name}, exported, others)
		if (len(got) > 0) != tc.unknown {
			t.Errorf("%s: Unknown = %v, want unknown: %v", tc.name, got, tc.unknown)
		}
	}
}

// TestLabelProblems checks that every label an expression uses is one its
// series carry: a selector's matchers, by and without, on and ignoring.
func TestLabelProblems(t *testing.T) {
	exported := map[string]Family{
		"x_requests_total":   {Name: "x_requests_total", Labels: []string{"code"}},
		"x_calls_total":      {Name: "x_calls_total", Labels: []string{"result"}},
		"x_duration_seconds": {Name: "x_duration_seconds", Suffixes: histogramSuffixes, Labels: []string{"action"}},
		"x_size_bytes":       {Name: "x_size_bytes", Suffixes: summarySuffixes},
	}
	others := map[string]Other{"kube_deployment_spec_replicas": {From: "kube-state-metrics", Labels: []string{"deployment"}}}
	for _, tc := range []struct {
		expr string
		want string // a part of the one problem expected, "" for none
	}{
		{expr: `sum by (code) (rate(x_requests_total{code=~"5..", namespace="a", pod!=""}[5m]))`},
		{expr: `histogram_quantile(0.9, sum by (le, action) (rate(x_duration_seconds_bucket{action="get"}[5m])))`},
		{expr: `x_size_bytes{quantile="0.5"}`},
		{expr: `max by (namespace, deployment) (kube_deployment_spec_replicas{deployment=~"a.*"}) > 0`},
		{expr: `label_replace(x_calls_total, "component", "auth", "", "") unless on (namespace, component) x_calls_total`, want: "matching on a label component"},
		{expr: `max by (component) (label_replace(x_calls_total, "component", "auth", "", ""))`},
		{expr: `x_requests_total and on (instance) (time() - x_calls_total < 1)`},
		{expr: `x_calls_total{reslt!="ok"}`, want: "x_calls_total has no label reslt"},
		{expr: `x_requests_total{status=~"5.."}`, want: "x_requests_total has no label status"},
		{expr: `kube_deployment_spec_replicas{webhook="a"}`, want: "kube_deployment_spec_replicas has no label webhook"},
		{expr: `x_duration_seconds_sum{le="1"}`, want: "has no label le"},
		{expr: `sum by (results) (rate(x_calls_total[5m]))`, want: "no series aggregated has a label results"},
		{expr: `sum without (cod) (rate(x_requests_total[5m]))`, want: "no series aggregated has a label cod"},
		{expr: `x_requests_total / ignoring (reslt) x_calls_total`, want: "matching on a label reslt"},
		{expr: `x_requests_total * on (namespace) group_left (deploy) kube_deployment_spec_replicas`, want: "copies a label deploy"},
	} {
		t.Run(tc.expr, func(t *testing.T) {
			e, err := Parser.ParseExpr(tc.expr)
			if err != nil {
				t.Fatal(err)
			}
			got := LabelProblems(e, exported, others)
			if tc.want == "" {
				if len(got) > 0 {
					t.Fatalf("problems %v, want none", got)
				}
				return
			}
			if len(got) != 1 || !strings.Contains(got[0], tc.want) {
				t.Fatalf("problems %v, want one containing %q", got, tc.want)
			}
		})
	}
}
