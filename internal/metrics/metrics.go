// Package metrics defines podiam's Prometheus collectors in one place, so that names
// and labels stay consistent across packages and tests can use a fresh registry.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

const namespace = "podiam"

// LatencyBuckets resolve 50 µs to about 1.6 s in powers of two: the handler's normal
// latency is tens of microseconds, which a default histogram cannot see.
var LatencyBuckets = prometheus.ExponentialBuckets(50e-6, 2, 16)

// Webhook holds the webhook's collectors.
type Webhook struct {
	// Requests counts admission HTTP requests by HTTP status code.
	Requests *prometheus.CounterVec
	// RequestDuration observes the time to serve /mutate.
	RequestDuration prometheus.Histogram
	// Mutations counts admitted pods by mode (irsa, pod-identity, none).
	Mutations *prometheus.CounterVec
	// ContainersSkipped counts containers left alone by reason (annotation, conflict).
	ContainersSkipped *prometheus.CounterVec
	// Warnings counts admission warnings returned to users.
	Warnings prometheus.Counter
	// ServiceAccountLookups counts ServiceAccount lookups by source (cache, api) and
	// result (found, not_found, error).
	ServiceAccountLookups *prometheus.CounterVec
	// ServiceAccountsCached is the number of ServiceAccounts in the cache.
	ServiceAccountsCached prometheus.Gauge
	// ConfigReloads counts reloads of the ConfigMap mapping and container-credentials
	// file by source and result (ok, error).
	ConfigReloads *prometheus.CounterVec
	// ConfigEntries is the number of entries in the current mapping by source.
	ConfigEntries *prometheus.GaugeVec
	// RequestsRejected counts admission requests refused before the handler ran,
	// by reason (RejectOverloaded, RejectTooLarge, RejectClientCertificate).
	RequestsRejected *prometheus.CounterVec
	// AdmissionsInFlight is the number of /mutate requests being served, bodies
	// being read included; their declared bodies never exceed --max-in-flight-bytes.
	AdmissionsInFlight prometheus.Gauge
	// PodIdentityAssociations is the number of PodIdentityAssociations known
	// to the webhook's watcher.
	PodIdentityAssociations prometheus.Gauge
}

// NewWebhook creates the webhook collectors and registers them, with the Go and
// process collectors, on reg.
func NewWebhook(reg prometheus.Registerer) *Webhook {
	m := &Webhook{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "webhook", Name: "requests_total",
			Help: "Admission requests by HTTP status code.",
		}, []string{"code"}),
		RequestDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "webhook", Name: "request_duration_seconds",
			Help:    "Time to serve an admission request, from body read to response written.",
			Buckets: LatencyBuckets,
		}),
		Mutations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "webhook", Name: "pods_total",
			Help: "Admitted pods by identity mode (irsa, pod-identity, none) and whether a patch was returned.",
		}, []string{"mode", "patched"}),
		ContainersSkipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "webhook", Name: "containers_skipped_total",
			Help: "Containers not injected, by reason (annotation, conflict).",
		}, []string{"reason"}),
		Warnings: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "webhook", Name: "admission_warnings_total",
			Help: "Admission warnings returned to users.",
		}),
		ServiceAccountLookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "webhook", Name: "serviceaccount_lookups_total",
			Help: "ServiceAccount lookups by source (cache, api) and result (found, not_found, error).",
		}, []string{"source", "result"}),
		ServiceAccountsCached: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "webhook", Name: "serviceaccounts_cached",
			Help: "ServiceAccounts held in the cache.",
		}),
		ConfigReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "webhook", Name: "config_reloads_total",
			Help: "Reloads of the ConfigMap mapping and the container-credentials file by source and result (ok, error).",
		}, []string{"source", "result"}),
		ConfigEntries: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "webhook", Name: "config_entries",
			Help: "Entries in the current mapping by source (configmap, container-credentials).",
		}, []string{"source"}),
		RequestsRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "webhook", Name: "requests_rejected_total",
			Help: "Admission requests refused before their body was read, by reason (overloaded, too_large, client_certificate).",
		}, []string{"reason"}),
		AdmissionsInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "webhook", Name: "admissions_in_flight",
			Help: "Admission requests being served, their bodies being read included.",
		}),
		PodIdentityAssociations: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "webhook", Name: "pod_identity_associations",
			Help: "PodIdentityAssociations known to the webhook, whether or not they win for their ServiceAccount.",
		}),
	}
	reg.MustRegister(m.Requests, m.RequestDuration, m.Mutations, m.ContainersSkipped, m.Warnings,
		m.ServiceAccountLookups, m.ServiceAccountsCached, m.ConfigReloads, m.ConfigEntries,
		m.RequestsRejected, m.AdmissionsInFlight, m.PodIdentityAssociations,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Config-reload sources and results, used as label values.
const (
	SourceConfigMap            = "configmap"
	SourceContainerCredentials = "container-credentials"
	ResultOK                   = "ok"
	ResultError                = "error"
)

// ServiceAccount lookup label values.
const (
	LookupCache    = "cache"
	LookupAPI      = "api"
	LookupFound    = "found"
	LookupNotFound = "not_found"
	LookupError    = "error"
)

// Reasons of RequestsRejected, used as label values.
const (
	// RejectOverloaded: the request did not fit in --max-in-flight-bytes;
	// answered 429 with Retry-After.
	RejectOverloaded = "overloaded"
	// RejectTooLarge: the declared Content-Length is over the body limit.
	RejectTooLarge = "too_large"
	// RejectClientCertificate: --client-ca-file is set and the client presented
	// no verified certificate.
	RejectClientCertificate = "client_certificate"
)
