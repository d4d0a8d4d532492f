package webhook

import (
	"context"
	"crypto/tls"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/podiam/podiam/internal/httpserve"
	"github.com/podiam/podiam/internal/metrics"
)

// ReadyCheck is one condition of /readyz; the same checks are exported as
// the gauge podiam_<subsystem>_ready (metrics.RegisterServing).
type ReadyCheck = metrics.Check

// Server runs the TLS admission endpoint and the plain-HTTP metrics endpoint.
type Server struct {
	// Mutate serves the TLS port's requests under Path.
	Mutate http.Handler
	// Path is the http.ServeMux pattern Mutate is served on; empty means
	// "/mutate". `podiam auth` serves EKS Auth's API under "/clusters/" with the
	// same TLS, limits, probes and shutdown.
	Path string
	// TLS is the serving configuration; its GetCertificate supplies the
	// (reloadable) certificate.
	TLS *tls.Config
	// Gatherer backs /metrics.
	Gatherer prometheus.Gatherer
	// Checks gate /readyz.
	Checks []ReadyCheck
	// Profiling serves net/http/pprof under /debug/pprof/ on the metrics port.
	Profiling bool
	// ShutdownDelay is how long the server keeps serving after it is asked to
	// stop, with /readyz failing, so that the API server stops sending requests
	// (endpoints are removed asynchronously) before the listener closes. Without
	// it every rollout opens a window in which admission fails open.
	ShutdownDelay time.Duration
	// ShutdownTimeout bounds the graceful drain on stop.
	ShutdownTimeout time.Duration
	Logger          *slog.Logger
	// Metrics counts refused requests and admissions in flight; may be nil.
	Metrics *metrics.Webhook

	// MaxInFlightBytes bounds the bodies of the /mutate requests served at once,
	// as they declare them (each counted as at least MinRequestReservation);
	// the excess is answered 429 with Retry-After before its body is read.
	// Zero means DefaultMaxInFlightBytes.
	MaxInFlightBytes int64
	// BodyLimit is the largest body a request under Path may declare: a
	// larger one is answered 413, unread, and a chunked one reserves this much.
	// Zero means MaxBodyBytes (an AdmissionReview's).
	BodyLimit int64
	// Reject writes the answer to a request under Path that the limits refuse
	// before Mutate sees it: 413 (body over BodyLimit) or 429 (too many
	// requests in flight, with Retry-After already set). Nil means
	// http.Error's plain text; `podiam auth` answers in EKS Auth's format, so
	// that its clients (AWS SDK style) see a code they know and retry a 429.
	Reject func(w http.ResponseWriter, status int, msg string)
	// HTTP2MaxConcurrentStreams bounds the streams of one HTTP/2 connection.
	// Zero means DefaultHTTP2MaxConcurrentStreams.
	HTTP2MaxConcurrentStreams int
	// MaxConnections and MetricsMaxConnections bound the open connections of the
	// admission and metrics ports; a connection beyond closes the longest-idle
	// one (or, if every one is serving a request, is closed itself), so that
	// idle connections cannot lock out the API server or kubelet's probes. Zero
	// means DefaultMaxConnections and DefaultMetricsMaxConnections.
	MaxConnections, MetricsMaxConnections int
	// RequireClientCert refuses /mutate (403) to a client without a verified
	// certificate; TLS must verify them (RequireClientCerts).
	RequireClientCert bool
	// ReadTimeout, WriteTimeout and IdleTimeout apply to both ports. Zero means
	// 30 s, 30 s and 90 s.
	ReadTimeout, WriteTimeout, IdleTimeout time.Duration

	draining atomic.Bool
}

// Routes returns the handler of the TLS port: Mutate on Path (/mutate),
// /healthz and /readyz.
func (s *Server) Routes() http.Handler {
	mux := http.NewServeMux()
	var mutate http.Handler = newAdmissionLimiter(s.Mutate, orDefault(s.MaxInFlightBytes, DefaultMaxInFlightBytes),
		orDefault(s.BodyLimit, MaxBodyBytes), s.Reject, s.Metrics)
	if s.RequireClientCert {
		mutate = requireClientCert(mutate, s.Metrics)
	}
	path := s.Path
	if path == "" {
		path = "/mutate"
	}
	mux.Handle(path, mutate)
	s.health(mux)
	return mux
}

// MetricsRoutes returns the handler of the metrics port: /metrics, /healthz and
// /readyz, so that probes need no TLS.
func (s *Server) MetricsRoutes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.Gatherer, promhttp.HandlerOpts{}))
	if s.Profiling {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	s.health(mux)
	return mux
}

func (s *Server) health(mux *http.ServeMux) {
	HandleHealth(mux, s.Checks, &s.draining)
}

// HandleHealth serves /healthz (always ok) and /readyz on mux: 503 naming
// the checks not ready yet, or "shutting down" once draining is set.
func HandleHealth(mux *http.ServeMux, checks []ReadyCheck, draining *atomic.Bool) {
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if draining.Load() {
			http.Error(w, "not ready: shutting down", http.StatusServiceUnavailable)
			return
		}
		var waiting []string
		for _, c := range checks {
			if !c.Ready() {
				waiting = append(waiting, c.Name)
			}
		}
		if len(waiting) > 0 {
			http.Error(w, "not ready: "+strings.Join(waiting, ", "), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
}

// Serve serves the admission endpoint over TLS on ln and metrics on metricsLn (may
// be nil) until ctx is done, then drains in-flight requests (httpserve.Run:
// /readyz fails through ShutdownDelay, then the drain is bounded by
// ShutdownTimeout, 20 s when zero).
func (s *Server) Serve(ctx context.Context, ln, metricsLn net.Listener) error {
	logger := s.Logger
	if logger == nil {
		logger = slog.Default()
	}
	errLog := slog.NewLogLogger(logger.Handler(), slog.LevelWarn)
	api := s.httpServer(s.Routes(), errLog, orDefault(s.MaxConnections, DefaultMaxConnections))
	api.TLSConfig = s.TLS
	api.HTTP2 = &http.HTTP2Config{
		MaxConcurrentStreams: orDefault(s.HTTP2MaxConcurrentStreams, DefaultHTTP2MaxConcurrentStreams),
	}
	endpoints := []httpserve.Endpoint{{Server: api, Listener: tls.NewListener(ln, s.TLS)}}
	if metricsLn != nil {
		// The metrics port gets the same timeouts: without them every idle
		// keep-alive connection would stay open, and hold memory, forever.
		msrv := s.httpServer(s.MetricsRoutes(), errLog, orDefault(s.MetricsMaxConnections, DefaultMetricsMaxConnections))
		if s.Profiling && msrv.WriteTimeout < profilingWriteTimeout {
			// /debug/pprof/profile and /trace stream for their ?seconds= (30 s by
			// default) and refuse durations past the write timeout.
			msrv.WriteTimeout = profilingWriteTimeout
		}
		endpoints = append(endpoints, httpserve.Endpoint{Server: msrv, Listener: metricsLn})
	}
	logger.Info("serving", "address", ln.Addr().String(), "metricsAddress", addr(metricsLn))
	return httpserve.Run(ctx, httpserve.Options{
		ShutdownDelay: s.ShutdownDelay, ShutdownTimeout: orDefault(s.ShutdownTimeout, 20*time.Second),
		Draining: &s.draining, Logger: logger,
	}, endpoints...)
}

// profilingWriteTimeout is the metrics port's write timeout with profiling on.
const profilingWriteTimeout = 2 * time.Minute

// httpServer returns an http.Server with the timeouts of Server and at most
// maxConns open connections.
func (s *Server) httpServer(h http.Handler, errLog *log.Logger, maxConns int) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		// The API server gives up on a webhook after at most 30 s; a client that
		// trickles its body must not hold a goroutine and buffer longer.
		ReadTimeout:  orDefault(s.ReadTimeout, 30*time.Second),
		WriteTimeout: orDefault(s.WriteTimeout, 30*time.Second),
		IdleTimeout:  orDefault(s.IdleTimeout, 90*time.Second),
		ErrorLog:     errLog,
		// The cap is kept by closing connections, never by not accepting:
		// see connLimiter.
		ConnState: newConnLimiter(maxConns, NewConnGrace).ConnState,
	}
}

func orDefault[T int | int64 | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

func addr(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}
