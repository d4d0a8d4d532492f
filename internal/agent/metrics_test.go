package agent

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestMetricsNames checks that the collectors carry the names dashboards use.
func TestMetricsNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.request(200, 0.001)
	m.request(418, 0.001) // a status outside answerCodes still counts
	m.hit()
	m.miss()
	m.backendCall(ResultOK, 0.01)
	m.cacheEntries(3)
	m.tokensCached(4)
	want := []string{
		"podiam_agent_requests_total", "podiam_agent_request_duration_seconds",
		"podiam_agent_cache_hits_total", "podiam_agent_cache_misses_total",
		"podiam_agent_backend_calls_total", "podiam_agent_backend_call_duration_seconds",
		"podiam_agent_cache_entries", "podiam_agent_tokens_cached",
	}
	n, err := testutil.GatherAndCount(reg, want...)
	if err != nil {
		t.Fatal(err)
	}
	// requests_total has the pre-made children of answerCodes plus 418.
	if wantN := len(answerCodes) + 1 + 7; n != wantN {
		t.Fatalf("%d series, want %d", n, wantN)
	}
	if got := testutil.ToFloat64(m.Requests.WithLabelValues("418")); got != 1 {
		t.Fatalf(`requests_total{code="418"} = %v`, got)
	}
	if got := testutil.ToFloat64(m.TokensCached); got != 4 {
		t.Fatalf("tokens_cached = %v", got)
	}
	var nilM *Metrics // a nil *Metrics records nothing and does not panic
	nilM.request(200, 1)
	nilM.hit()
	nilM.miss()
	nilM.backendCall(ResultOK, 1)
	nilM.cacheEntries(1)
	nilM.tokensCached(1)
}

// TestStatusLabel checks the code label of a status.
func TestStatusLabel(t *testing.T) {
	for code, want := range map[int]string{200: "200", 404: "404", 503: "503", 99: "other", 1000: "other"} {
		if got := statusLabel(code); got != want {
			t.Errorf("statusLabel(%d) = %q, want %q", code, got, want)
		}
	}
	if strings.Contains(statusLabel(200), " ") {
		t.Fatal("label has a space")
	}
}
