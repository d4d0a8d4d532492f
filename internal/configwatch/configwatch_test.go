package configwatch

import (
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/podiam/podiam/internal/metrics"
)

func TestRecorder(t *testing.T) {
	tests := []struct {
		name          string
		record        func(r recorder)
		ok, err, ents float64
	}{
		{"init only", func(r recorder) {}, 0, 0, 0},
		{"ok sets entries", func(r recorder) { r.ok(3) }, 1, 0, 3},
		{"fail keeps entries", func(r recorder) { r.ok(3); r.fail() }, 1, 1, 3},
		{"ok to empty", func(r recorder) { r.ok(3); r.ok(0) }, 2, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			met := metrics.NewWebhook(prometheus.NewRegistry())
			r := recorder{m: met, source: metrics.SourceContainerCredentials}
			r.init()
			tt.record(r)
			if got := reloads(met, r.source, metrics.ResultOK); got != tt.ok {
				t.Errorf("ok = %v, want %v", got, tt.ok)
			}
			if got := reloads(met, r.source, metrics.ResultError); got != tt.err {
				t.Errorf("error = %v, want %v", got, tt.err)
			}
			if got := entries(met, r.source); got != tt.ents {
				t.Errorf("entries = %v, want %v", got, tt.ents)
			}
			// The other source is untouched.
			if got := reloads(met, metrics.SourceConfigMap, metrics.ResultOK); got != 0 {
				t.Errorf("configmap ok = %v, want 0", got)
			}
		})
	}
}

func TestRecorderNilMetrics(t *testing.T) {
	r := recorder{source: metrics.SourceConfigMap}
	r.init()
	r.ok(1)
	r.fail() // must not panic
}

func TestLoggerOrDefault(t *testing.T) {
	if loggerOrDefault(nil) != slog.Default() {
		t.Error("nil logger is not slog.Default()")
	}
	l := slog.New(slog.DiscardHandler)
	if loggerOrDefault(l) != l {
		t.Error("logger replaced")
	}
}
