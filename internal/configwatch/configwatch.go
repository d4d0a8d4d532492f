// Package configwatch keeps podiam's two live configuration sources current without
// a restart:
//
//   - the kOps-style ConfigMap mapping (--watch-config-map), watched with a
//     client-go informer by [MappingWatcher];
//   - the container-credentials file (--watch-container-credentials-config), watched
//     with fsnotify plus a polling fallback by [FileWatcher].
//
// Both follow the same rules. The current value is published through an
// atomic.Pointer, so Current is lock-free and safe to call from the admission hot
// path; a nil value is valid and means "empty". A malformed update never replaces the
// last good value and never stops the process: it is logged (without the content,
// which may hold unrelated data) and counted as a reload error. Updates whose content
// did not change are ignored, so informer resyncs and unrelated file-system events
// neither log nor count anything.
package configwatch

import (
	"log/slog"

	"github.com/podiam/podiam/internal/metrics"
)

// recorder updates the reload metrics of one source. The zero metrics pointer is
// allowed and records nothing.
type recorder struct {
	m      *metrics.Webhook
	source string
}

// init makes the series visible with zero values before the first reload.
func (r recorder) init() {
	if r.m == nil {
		return
	}
	r.m.ConfigReloads.WithLabelValues(r.source, metrics.ResultOK)
	r.m.ConfigReloads.WithLabelValues(r.source, metrics.ResultError)
	r.m.ConfigEntries.WithLabelValues(r.source).Set(0)
}

// ok records a successful reload that left n entries in effect.
func (r recorder) ok(n int) {
	if r.m == nil {
		return
	}
	r.m.ConfigReloads.WithLabelValues(r.source, metrics.ResultOK).Inc()
	r.m.ConfigEntries.WithLabelValues(r.source).Set(float64(n))
}

// fail records a reload that was rejected; the entries in effect do not change.
func (r recorder) fail() {
	if r.m == nil {
		return
	}
	r.m.ConfigReloads.WithLabelValues(r.source, metrics.ResultError).Inc()
}

func loggerOrDefault(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.Default()
	}
	return l
}
