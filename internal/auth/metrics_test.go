package auth

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestMetricsNames checks that every collector is registered under the name
// and labels dashboards and the other parts of podiam auth rely on.
func TestMetricsNames(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	tests := []struct {
		name  string
		touch func() // makes the collector export one series
	}{
		{"podiam_auth_requests_total", func() { m.Requests.WithLabelValues(CodeOK).Inc() }},
		{"podiam_auth_request_duration_seconds", func() { m.RequestDuration.Observe(0.01) }},
		{"podiam_auth_issuances_total", func() { m.Issuances.WithLabelValues(SourceCache).Inc() }},
		{"podiam_auth_sts_calls_total", func() { m.STSCalls.WithLabelValues(ResultUnreachable).Inc() }},
		{"podiam_auth_sts_call_duration_seconds", func() { m.STSCallDuration.Observe(0.2) }},
		{"podiam_auth_credential_cache_entries", func() { m.CacheEntries.Set(2) }},
		{"podiam_auth_status_writes_total", func() { m.StatusWrites.WithLabelValues(ResultOK).Inc() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.touch()
			n, err := testutil.GatherAndCount(reg, tt.name)
			if err != nil || n != 1 {
				t.Fatalf("GatherAndCount(%s) = %d, %v; want 1 series", tt.name, n, err)
			}
		})
	}
	// The Go and process collectors come with NewMetrics, as with the webhook.
	if n, err := testutil.GatherAndCount(reg, "go_goroutines"); err != nil || n != 1 {
		t.Errorf("go_goroutines: %d, %v; want 1 series", n, err)
	}
}

// TestMetricsTwice checks that two instances on separate registries do not
// collide, which tests of the other parts rely on.
func TestMetricsTwice(t *testing.T) {
	a, b := NewMetrics(prometheus.NewRegistry()), NewMetrics(prometheus.NewRegistry())
	a.Requests.WithLabelValues(CodeOK).Inc()
	if got := testutil.ToFloat64(b.Requests.WithLabelValues(CodeOK)); got != 0 {
		t.Errorf("second instance counted %v requests; want 0", got)
	}
}
