// Package httpserve runs podiam's HTTP servers: it serves [http.Server] values
// on listeners until a context ends, then fails readiness for a delay while
// still serving, then shuts the servers down within a timeout.
//
// Every podiam server stops this way, so that a rollout loses no request: the
// delay lets the endpoints controller take the pod out of its Services (and
// the API server stop calling a webhook) before the listeners close, and the
// timeout bounds the drain of the requests in flight.
package httpserve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Endpoint is a server and one listener it serves on. Several endpoints may
// share a server (one handler on several addresses); it is shut down once.
// TLS, when wanted, is the listener's (tls.NewListener): the server then
// speaks exactly the protocols its tls.Config offers.
type Endpoint struct {
	Server   *http.Server
	Listener net.Listener
}

// Options says how [Run] stops.
type Options struct {
	// ShutdownDelay is how long serving goes on once ctx has ended, with
	// Draining set, before the listeners close.
	ShutdownDelay time.Duration
	// ShutdownTimeout bounds the graceful drain that follows (see
	// http.Server.Shutdown); the connections still open then are closed.
	// Zero gives no time: with any request in flight, every connection is
	// closed at once and Run reports context.DeadlineExceeded.
	ShutdownTimeout time.Duration
	// Draining, when not nil, is set as serving stops (ctx ended or an
	// endpoint failed), so that a /readyz reading it fails from then on.
	Draining *atomic.Bool
	// Logger receives the shutdown's lines. Nil means slog.Default().
	Logger *slog.Logger
}

// Run serves every endpoint until ctx ends or one of them fails, then stops
// them all as Options say. It returns once every listener is closed and
// every Serve has returned: nil after a clean stop, else the first serving
// error (naming its listener's address) joined with those of the drain.
func Run(ctx context.Context, o Options, endpoints ...Endpoint) error {
	logger := o.Logger
	if logger == nil {
		logger = slog.Default()
	}
	errc := make(chan error, len(endpoints))
	for _, e := range endpoints {
		go func() { errc <- serve(e) }()
	}
	running := len(endpoints)
	var err error
	select {
	case err = <-errc:
		running--
	case <-ctx.Done():
	}
	// Serving stops either way: readiness fails from now on.
	if o.Draining != nil {
		o.Draining.Store(true)
	}
	switch {
	case running < len(endpoints): // an endpoint is down: no delay
	case o.ShutdownDelay <= 0:
		logger.Info("shutting down")
	default:
		logger.Info("shutting down: failing readiness, still serving", "delay", o.ShutdownDelay.String())
		delay := time.NewTimer(o.ShutdownDelay)
		defer delay.Stop()
		select {
		case <-delay.C:
		case err = <-errc: // nothing to wait for once an endpoint is down
			running--
		}
	}
	err = errors.Join(err, shutdown(ctx, o.ShutdownTimeout, endpoints))
	// Shutdown waits for the Serve calls under way; reading every result
	// also covers one that had not begun, keeps the errors and leaves no
	// goroutine behind.
	for ; running > 0; running-- {
		err = errors.Join(err, <-errc)
	}
	logger.Info("stopped serving")
	return err
}

// serve serves e until its server shuts down (nil) or its listener fails.
func serve(e Endpoint) error {
	if err := e.Server.Serve(e.Listener); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving on %s: %w", e.Listener.Addr(), err)
	}
	return nil
}

// shutdown shuts every server down at once (so that no listener stays open
// while another server drains), each within timeout, and closes the
// connections a server could not drain in time.
func shutdown(ctx context.Context, timeout time.Duration, endpoints []Endpoint) error {
	// The drain outlives ctx, which has usually ended: that is why it runs.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		seen = map[*http.Server]bool{}
	)
	for _, e := range endpoints {
		if seen[e.Server] {
			continue
		}
		seen[e.Server] = true
		wg.Go(func() {
			if err := e.Server.Shutdown(sctx); err != nil {
				_ = e.Server.Close() // its error is the one Shutdown returned
				mu.Lock()
				errs = append(errs, fmt.Errorf("shutting down: %w", err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
