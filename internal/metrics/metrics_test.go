package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestWebhookGauges checks that gauges other packages set are registered
// under the names dashboards use.
func TestWebhookGauges(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := NewWebhook(reg)
	tests := []struct {
		name  string
		gauge prometheus.Gauge
	}{
		{"podiam_webhook_pod_identity_associations", m.PodIdentityAssociations},
		{"podiam_webhook_serviceaccounts_cached", m.ServiceAccountsCached},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.gauge.Set(3)
			n, err := testutil.GatherAndCount(reg, tt.name)
			if err != nil || n != 1 {
				t.Fatalf("GatherAndCount(%s) = %d, %v; want 1 series", tt.name, n, err)
			}
			if got := testutil.ToFloat64(tt.gauge); got != 3 {
				t.Errorf("%s = %v; want 3", tt.name, got)
			}
		})
	}
}
