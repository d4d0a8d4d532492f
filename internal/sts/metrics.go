package sts

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/podiam/podiam/internal/metrics"
)

// actionOther is the action label of requests naming no action the STS serves, so
// that a client cannot create label values at will.
const actionOther = "other"

// resultSuccess is the result label of answered calls; failures carry their AWS
// error code (a fixed set).
const resultSuccess = "success"

// Metrics holds the STS's collectors.
type Metrics struct {
	// Calls counts calls by action and result: "success" or the AWS error code
	// answered (AccessDenied, InvalidIdentityToken, …).
	Calls *prometheus.CounterVec
	// Duration observes the time to serve a call by action, body read included.
	Duration *prometheus.HistogramVec
	// ConfigReloads counts re-reads of the config file by result (ok, error).
	ConfigReloads *prometheus.CounterVec

	// durations caches Duration's child per action: a label lookup per request
	// is avoidable work on the hot path.
	durations map[string]prometheus.Observer
}

// NewMetrics creates the STS collectors and registers them, with the Go and
// process collectors, on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "podiam", Subsystem: "sts", Name: "calls_total",
			Help: "STS calls by action and result (success, or the AWS error code answered).",
		}, []string{"action", "result"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "podiam", Subsystem: "sts", Name: "call_duration_seconds",
			Help:    "Time to serve an STS call, from the request's body read to the response written.",
			Buckets: metrics.LatencyBuckets,
		}, []string{"action"}),
		ConfigReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "podiam", Subsystem: "sts", Name: "config_reloads_total",
			Help: "Re-reads of the config file by result (ok, error: the last good config stays).",
		}, []string{"result"}),
		durations: map[string]prometheus.Observer{},
	}
	reg.MustRegister(m.Calls, m.Duration, m.ConfigReloads,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, a := range []string{actionWebIdentity, actionAssumeRole, actionCallerIdentity, actionOther} {
		m.durations[a] = m.Duration.WithLabelValues(a)
	}
	return m
}

// observe records one call.
func (m *Metrics) observe(action, result string, seconds float64) {
	if m == nil {
		return
	}
	o, ok := m.durations[action]
	if !ok {
		action, o = actionOther, m.durations[actionOther]
	}
	m.Calls.WithLabelValues(action, result).Inc()
	o.Observe(seconds)
}

// ConfigReloaded counts one reload attempt, for WatcherOptions.OnReload.
func (m *Metrics) ConfigReloaded(err error) {
	if m == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.ConfigReloads.WithLabelValues(result).Inc()
}
