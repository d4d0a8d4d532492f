package webhook

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ReadyCheck is one condition of /readyz.
type ReadyCheck struct {
	Name  string
	Ready func() bool
}

// Server runs the TLS admission endpoint and the plain-HTTP metrics endpoint.
type Server struct {
	// Mutate serves /mutate.
	Mutate http.Handler
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

	draining atomic.Bool
}

// Routes returns the handler of the TLS port: /mutate, /healthz and /readyz.
func (s *Server) Routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/mutate", s.Mutate)
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
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if s.draining.Load() {
			http.Error(w, "not ready: shutting down", http.StatusServiceUnavailable)
			return
		}
		var waiting []string
		for _, c := range s.Checks {
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
// be nil) until ctx is done, then drains in-flight requests.
func (s *Server) Serve(ctx context.Context, ln, metricsLn net.Listener) error {
	logger := s.Logger
	if logger == nil {
		logger = slog.Default()
	}
	errLog := slog.NewLogLogger(logger.Handler(), slog.LevelWarn)
	servers := []*http.Server{{
		Handler:           s.Routes(),
		TLSConfig:         s.TLS,
		ReadHeaderTimeout: 10 * time.Second,
		// The API server gives up on a webhook after at most 30 s; a client that
		// trickles its body must not hold a goroutine and buffer longer.
		ReadTimeout:  30 * time.Second,
		WriteTimeout: 30 * time.Second,
		IdleTimeout:  90 * time.Second,
		ErrorLog:     errLog,
	}}
	lns := []net.Listener{tls.NewListener(ln, s.TLS)}
	if metricsLn != nil {
		servers = append(servers, &http.Server{Handler: s.MetricsRoutes(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: errLog})
		lns = append(lns, metricsLn)
	}
	errc := make(chan error, len(servers))
	for i := range servers {
		go func() { errc <- servers[i].Serve(lns[i]) }()
	}
	logger.Info("serving", "address", ln.Addr().String(), "metricsAddress", addr(metricsLn))

	var err error
	running := len(servers)
	select {
	case <-ctx.Done():
		if s.ShutdownDelay > 0 {
			s.draining.Store(true)
			logger.Info("shutting down: failing readiness, still serving", "delay", s.ShutdownDelay.String())
			select {
			case <-time.After(s.ShutdownDelay):
			case err = <-errc:
				err = fmt.Errorf("serving: %w", err)
				running--
			}
		}
	case err = <-errc:
		err = fmt.Errorf("serving: %w", err)
		running--
	}
	timeout := s.ShutdownTimeout
	if timeout == 0 {
		timeout = 20 * time.Second
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	for _, srv := range servers {
		if serr := srv.Shutdown(sctx); serr != nil && !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, fmt.Errorf("shutting down: %w", serr))
		}
	}
	// Each Serve returns once Shutdown has closed its listener; wait for them so
	// that no listener is left open and no goroutine outlives Serve.
	for ; running > 0; running-- {
		<-errc
	}
	logger.Info("stopped serving")
	return err
}

func addr(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}
