package monitoring

import (
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestFamilies checks that the recorder finds every collector's names and
// which of them are histograms or summaries, vectors without children
// included (Gather omits those).
func TestFamilies(t *testing.T) {
	fams, err := families(func(r prometheus.Registerer) {
		r.MustRegister(
			prometheus.NewCounterVec(prometheus.CounterOpts{Name: "t_requests_total", Help: "h"}, []string{"code"}),
			prometheus.NewGauge(prometheus.GaugeOpts{Name: "t_entries", Help: "h"}),
			prometheus.NewHistogram(prometheus.HistogramOpts{Name: "t_duration_seconds", Help: "h"}),
			prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "t_call_seconds", Help: "h"}, []string{"action"}),
			prometheus.NewSummary(prometheus.SummaryOpts{Name: "t_size_bytes", Help: "h"}),
			prometheus.NewSummaryVec(prometheus.SummaryOpts{Name: "t_wait_seconds", Help: "h"}, []string{"queue"}),
		)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		suffixes []string
	}{
		{"t_requests_total", nil},
		{"t_entries", nil},
		{"t_duration_seconds", histogramSuffixes},
		{"t_call_seconds", histogramSuffixes},
		{"t_size_bytes", summarySuffixes},
		{"t_wait_seconds", summarySuffixes},
	} {
		f, ok := fams[tc.name]
		if !ok {
			t.Errorf("%s: not found in %v", tc.name, fams)
			continue
		}
		if !slices.Equal(f.Suffixes, tc.suffixes) {
			t.Errorf("%s: suffixes %v, want %v", tc.name, f.Suffixes, tc.suffixes)
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
	others := map[string]string{"up": "Prometheus"}
	for _, tc := range []struct {
		name    string
		unknown bool
	}{
		{"x_requests_total", false},
		{"x_duration_seconds", false},
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
