package auth

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Label values shared by the collectors of Metrics.
const (
	// CodeOK is the code label of podiam_auth_requests_total for a request
	// answered with credentials; refused requests carry their eksauth code.
	CodeOK = "OK"
	// SourceSTS and SourceCache are the source label of
	// podiam_auth_issuances_total: credentials fresh from STS or from the cache.
	SourceSTS   = "sts"
	SourceCache = "cache"
	// ResultOK is the result label of a successful STS call or status write.
	ResultOK = "ok"
	// ResultUnreachable is the result label of an STS call that got no answer
	// (connection refused, timeout, canceled); other failures carry STS's
	// error code.
	ResultUnreachable = "unreachable"
)

// requestBuckets span 100 µs to about 13 s: a cached issuance takes well under
// a millisecond, one that calls STS (twice when chaining) takes up to seconds.
var requestBuckets = prometheus.ExponentialBuckets(100e-6, 2, 18)

// stsBuckets span 1 ms to about 16 s, from a local STS to a slow regional one.
var stsBuckets = prometheus.ExponentialBuckets(1e-3, 2, 15)

// Metrics holds every Prometheus collector of `podiam auth`. Create it with
// NewMetrics; the handler, the credentialer and the status writer share one.
type Metrics struct {
	// Requests counts AssumeRoleForPodIdentity requests by code: CodeOK or
	// the eksauth error code of the refusal (podiam_auth_requests_total).
	Requests *prometheus.CounterVec
	// RequestDuration observes the time to answer a request, refusals
	// included (podiam_auth_request_duration_seconds).
	RequestDuration prometheus.Histogram
	// Issuances counts credentials handed out by source, SourceSTS or
	// SourceCache (podiam_auth_issuances_total).
	Issuances *prometheus.CounterVec
	// STSCalls counts AssumeRole calls by result: ResultOK, STS's error code,
	// or ResultUnreachable (podiam_auth_sts_calls_total).
	STSCalls *prometheus.CounterVec
	// STSCallDuration observes the time of each AssumeRole call
	// (podiam_auth_sts_call_duration_seconds).
	STSCallDuration prometheus.Histogram
	// CacheEntries is the number of credentials held in the cache
	// (podiam_auth_credential_cache_entries).
	CacheEntries prometheus.Gauge
	// StatusWrites counts writes of PodIdentityAssociation status by result,
	// ResultOK or a short error reason (podiam_auth_status_writes_total).
	StatusWrites *prometheus.CounterVec
}

// NewMetrics creates the collectors of `podiam auth` and registers them, with
// the Go and process collectors (as the webhook does), on reg. It panics if
// reg already holds collectors of the same names, so call it once per
// registry; tests pass prometheus.NewRegistry().
func NewMetrics(reg prometheus.Registerer) *Metrics {
	const ns, sub = "podiam", "auth"
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "requests_total",
			Help: `AssumeRoleForPodIdentity requests by code ("OK" or the EKS Auth error code).`,
		}, []string{"code"}),
		RequestDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "request_duration_seconds",
			Help:    "Time to answer an AssumeRoleForPodIdentity request, refusals included.",
			Buckets: requestBuckets,
		}),
		Issuances: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "issuances_total",
			Help: `Credentials handed out by source ("sts" or "cache").`,
		}, []string{"source"}),
		STSCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "sts_calls_total",
			Help: `AssumeRole calls by result ("ok", the STS error code, or "unreachable").`,
		}, []string{"result"}),
		STSCallDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "sts_call_duration_seconds",
			Help:    "Time of each AssumeRole call to STS.",
			Buckets: stsBuckets,
		}),
		CacheEntries: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "credential_cache_entries",
			Help: "Credentials held in the cache, per association and pod.",
		}),
		StatusWrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "status_writes_total",
			Help: "Writes of PodIdentityAssociation status by result.",
		}, []string{"result"}),
	}
	reg.MustRegister(m.Requests, m.RequestDuration, m.Issuances, m.STSCalls,
		m.STSCallDuration, m.CacheEntries, m.StatusWrites,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
