package agent

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Result labels of podiam_agent_backend_calls_total besides the backend's
// error codes.
const (
	// ResultOK is a backend call that returned credentials.
	ResultOK = "ok"
	// ResultUnreachable is a backend call that got no answer (connection
	// refused, timeout, a malformed answer).
	ResultUnreachable = "unreachable"
	// ResultLimited is a backend call the agent did not make: held back past
	// its timeout by the node's own backend limits (--max-service-qps, or
	// every backend call the agent makes at once taken).
	ResultLimited = "limited"
)

// requestBuckets span 50 µs to about 6.5 s: a cached answer takes well under
// a millisecond, one that calls the backend up to seconds.
var requestBuckets = prometheus.ExponentialBuckets(50e-6, 2, 18)

// backendBuckets span 1 ms to about 16 s.
var backendBuckets = prometheus.ExponentialBuckets(1e-3, 2, 15)

// Metrics holds the Prometheus collectors of `podiam agent`. Create it with
// NewMetrics and pass it in Options.
type Metrics struct {
	// Requests counts answers by HTTP status code
	// (podiam_agent_requests_total{code}).
	Requests *prometheus.CounterVec
	// RequestDuration observes the time to answer a request, refusals
	// included (podiam_agent_request_duration_seconds).
	RequestDuration prometheus.Histogram
	// CacheHits and CacheMisses count requests answered from the credential
	// cache and those that called the backend (a refresh is a miss).
	CacheHits, CacheMisses prometheus.Counter
	// BackendCalls counts backend calls by result: ResultOK, the backend's
	// error code, ResultUnreachable, or ResultLimited for a call held back
	// by the node's own limits (podiam_agent_backend_calls_total).
	BackendCalls *prometheus.CounterVec
	// BackendCallDuration observes each backend call.
	BackendCallDuration prometheus.Histogram
	// CacheEntries is the number of pods with cached credentials.
	CacheEntries prometheus.Gauge
	// TokensCached is the number of verified tokens remembered.
	TokensCached prometheus.Gauge

	// codes are the Requests children of the statuses the handler answers
	// with, looked up once so that a request does not hash its label.
	codes map[int]prometheus.Counter
}

// answerCodes are the statuses the handler answers with.
var answerCodes = []int{200, 400, 403, 404, 405, 429, 500, 503}

// NewMetrics creates the collectors of `podiam agent` and registers them, with
// the Go and process collectors (as the other podiam servers do), on reg. It
// panics if reg already holds collectors of the same names, so call it once
// per registry; tests pass prometheus.NewRegistry().
func NewMetrics(reg prometheus.Registerer) *Metrics {
	const ns, sub = "podiam", "agent"
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "requests_total",
			Help: "Requests to /v1/credentials by HTTP status code.",
		}, []string{"code"}),
		RequestDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "request_duration_seconds",
			Help:    "Time to answer a request to /v1/credentials, refusals included.",
			Buckets: requestBuckets,
		}),
		CacheHits: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "cache_hits_total",
			Help: "Requests answered with cached credentials.",
		}),
		CacheMisses: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "cache_misses_total",
			Help: "Requests that needed credentials from the backend (refreshes included).",
		}),
		BackendCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "backend_calls_total",
			Help: `Backend calls by result ("ok", the backend's error code, "unreachable", or "limited" when held back by the agent's own limits: --max-service-qps, or too many calls at once).`,
		}, []string{"result"}),
		BackendCallDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "backend_call_duration_seconds",
			Help:    "Time of each backend call.",
			Buckets: backendBuckets,
		}),
		CacheEntries: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "cache_entries",
			Help: "Pods whose credentials are cached.",
		}),
		TokensCached: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "tokens_cached",
			Help: "Verified pod tokens remembered.",
		}),
	}
	m.codes = make(map[int]prometheus.Counter, len(answerCodes))
	for _, c := range answerCodes {
		m.codes[c] = m.Requests.WithLabelValues(statusLabel(c))
	}
	reg.MustRegister(m.Requests, m.RequestDuration, m.CacheHits, m.CacheMisses,
		m.BackendCalls, m.BackendCallDuration, m.CacheEntries, m.TokensCached,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// statusLabel is the code label of a status.
func statusLabel(code int) string {
	const digits = "0123456789"
	if code < 100 || code > 999 {
		return "other"
	}
	return string([]byte{digits[code/100], digits[code/10%10], digits[code%10]})
}

// The methods below accept a nil *Metrics, which records nothing.

func (m *Metrics) request(code int, seconds float64) {
	if m == nil {
		return
	}
	c, ok := m.codes[code]
	if !ok {
		c = m.Requests.WithLabelValues(statusLabel(code))
	}
	c.Inc()
	m.RequestDuration.Observe(seconds)
}

func (m *Metrics) hit() {
	if m != nil {
		m.CacheHits.Inc()
	}
}

func (m *Metrics) miss() {
	if m != nil {
		m.CacheMisses.Inc()
	}
}

func (m *Metrics) backendCall(result string, seconds float64) {
	if m == nil {
		return
	}
	m.BackendCalls.WithLabelValues(result).Inc()
	m.BackendCallDuration.Observe(seconds)
}

// backendLimited counts a call held back by the node's backend limits: no
// call was made, so no duration is observed.
func (m *Metrics) backendLimited() {
	if m != nil {
		m.BackendCalls.WithLabelValues(ResultLimited).Inc()
	}
}

func (m *Metrics) cacheEntries(n int) {
	if m != nil {
		m.CacheEntries.Set(float64(n))
	}
}

func (m *Metrics) tokensCached(n int) {
	if m != nil {
		m.TokensCached.Set(float64(n))
	}
}
