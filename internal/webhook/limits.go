package webhook

import (
	"crypto/tls"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/podiam/podiam/internal/metrics"
)

// Defaults of the limits that keep memory bounded whatever clients send
// (measured with hack/hostile, docs/benchmarks.md). A /mutate request may hold a
// body of up to MaxBodyBytes, the garbage of reading it and its decoding: each
// full-size request adds about 12 MiB to peak RSS at full speed. The budget of
// DefaultMaxInFlightBytes (8 full-size bodies) keeps 100 concurrent 3 MiB uploads
// at about 175 MiB, under the manifest's 256 MiB, while ordinary pods (a few KiB,
// each counted as MinRequestReservation) can be served 384 at once, so slow
// ServiceAccount lookups in a burst of new pods do not starve each other.
const (
	DefaultMaxInFlightBytes = 8 * MaxBodyBytes
	// MinRequestReservation is the least a request counts against the budget:
	// it covers the decoding garbage and state of a small request.
	MinRequestReservation = 64 << 10
	// DefaultHTTP2MaxConcurrentStreams bounds the streams of one HTTP/2
	// connection. The API server's HTTP/2 client opens another connection when
	// one is full, so this does not limit it; it bounds the goroutines and stream
	// state one hostile connection can create (Go's default is 250).
	DefaultHTTP2MaxConcurrentStreams = 100
	// DefaultMaxConnections bounds the open connections of the admission port.
	// A kube-apiserver keeps a few; an idle TLS connection costs about 50 KiB,
	// so 500 cost at most about 25 MiB. A new connection beyond the cap closes
	// the longest-idle one (connLimiter).
	DefaultMaxConnections = 500
	// DefaultMetricsMaxConnections bounds the open connections of the metrics
	// port: probes and scrapers need a handful.
	DefaultMetricsMaxConnections = 100
	// NewConnGrace is how long a connection may stay without a request (on the
	// admission port: without finishing its TLS handshake and sending a request)
	// before it counts as idle, first to be closed for a new connection beyond
	// the cap. A real client, the API server or kubelet's probe, sends its
	// ClientHello and request at once.
	NewConnGrace = 2 * time.Second
	// RetryAfterSeconds is the Retry-After of an overloaded answer. The API
	// server's webhook client (client-go's rest.Request) retries a 429 or 5xx
	// that carries Retry-After, up to 10 times within the webhook's timeout.
	RetryAfterSeconds = 1
)

// admissionLimiter serves requests of next while the bodies they declare add up
// to at most its budget. A request reserves its declared length (at least
// MinRequestReservation; the body limit when it declares none) before next reads
// the body, so bodies held in memory are bounded whatever the clients send; a
// request that does not fit is answered at once, its body unread.
type admissionLimiter struct {
	next    http.Handler
	budget  *semaphore.Weighted
	maxBody int64
	// write answers a refused request (Server.Reject); never nil.
	write   func(w http.ResponseWriter, status int, msg string)
	metrics *metrics.Webhook
}

// newAdmissionLimiter returns next behind the budget and body limit; write
// answers refused requests, nil meaning http.Error.
func newAdmissionLimiter(next http.Handler, budget, maxBody int64, write func(http.ResponseWriter, int, string), m *metrics.Webhook) *admissionLimiter {
	if write == nil {
		write = func(w http.ResponseWriter, status int, msg string) { http.Error(w, msg, status) }
	}
	return &admissionLimiter{next: next, budget: semaphore.NewWeighted(max(budget, maxBody)), maxBody: maxBody, write: write, metrics: m}
}

// reservation is what a request counts against the budget.
func (l *admissionLimiter) reservation(r *http.Request) int64 {
	if r.ContentLength < 0 { // chunked: it may grow to the limit
		return l.maxBody
	}
	return max(r.ContentLength, MinRequestReservation)
}

func (l *admissionLimiter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// A body declared too large is refused before it takes a slot or a byte of
	// buffer; an undeclared (chunked) one is cut by the handler's own limit.
	if r.ContentLength > l.maxBody {
		l.reject(w, r, metrics.RejectTooLarge, http.StatusRequestEntityTooLarge,
			"request body over "+strconv.FormatInt(l.maxBody, 10)+" bytes")
		return
	}
	n := l.reservation(r)
	if !l.budget.TryAcquire(n) {
		w.Header().Set("Retry-After", strconv.Itoa(RetryAfterSeconds))
		l.reject(w, r, metrics.RejectOverloaded, http.StatusTooManyRequests, "too many requests in flight; retry later")
		return
	}
	if l.metrics != nil {
		l.metrics.AdmissionsInFlight.Inc()
	}
	defer func() {
		l.budget.Release(n)
		if l.metrics != nil {
			l.metrics.AdmissionsInFlight.Dec()
		}
	}()
	l.next.ServeHTTP(w, r)
}

// reject answers without reading the body. On HTTP/1.x the connection is closed
// after the answer: otherwise net/http would read and discard up to 256 KiB of
// the unread body before answering, which a stalled upload never sends.
func (l *admissionLimiter) reject(w http.ResponseWriter, r *http.Request, reason string, status int, msg string) {
	if l.metrics != nil {
		l.metrics.RequestsRejected.WithLabelValues(reason).Inc()
	}
	if r.ProtoMajor < 2 {
		w.Header().Set("Connection", "close")
	}
	l.write(w, status, msg)
}

// requireClientCert refuses requests whose TLS connection carries no verified
// client certificate. The TLS configuration verifies certificates when given
// (tls.VerifyClientCertIfGiven), so that probes on the TLS port's /healthz and
// /readyz need none; /mutate is wrapped with this.
func requireClientCert(next http.Handler, m *metrics.Webhook) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			if m != nil {
				m.RequestsRejected.WithLabelValues(metrics.RejectClientCertificate).Inc()
			}
			if r.ProtoMajor < 2 {
				w.Header().Set("Connection", "close")
			}
			http.Error(w, "client certificate required", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// connLimiter caps the open connections of one http.Server without ever
// blocking Accept; its ConnState method is the server's ConnState hook. A
// listener that stops accepting at the cap (netutil.LimitListener) lets whoever
// holds the connections, idle, starve everyone else: kubelet's probes and the
// API server's calls would wait in the listen backlog until they time out.
// Instead, a connection that arrives at the cap closes another: the one idle
// the longest, between requests (http.StateIdle) or without a request
// NewConnGrace after it was accepted (http.StateNew: a TCP connection with no
// ClientHello, or a TLS one with no request); failing that, the oldest one
// still within its grace. A connection serving a request (http.StateActive) is
// never closed; only when every one is serving is the new one closed instead.
// Memory stays bounded by the cap.
type connLimiter struct {
	max   int
	grace time.Duration
	now   func() time.Time

	mu    sync.Mutex
	conns map[net.Conn]connEntry // open connections, hijacked ones excluded
}

// connEntry is the last state of a connection and when it entered it.
type connEntry struct {
	state http.ConnState
	since time.Time
}

func newConnLimiter(maxConns int, grace time.Duration) *connLimiter {
	return &connLimiter{max: maxConns, grace: grace, now: time.Now, conns: make(map[net.Conn]connEntry, maxConns)}
}

// ConnState records c's new state; on a new connection at the cap it closes
// the one evictableLocked picks, or c when there is none. net/http calls it
// for StateNew in its accept loop, so it must not block: see closeConn.
func (l *connLimiter) ConnState(c net.Conn, state http.ConnState) {
	now := l.now()
	var victim net.Conn
	l.mu.Lock()
	switch state {
	case http.StateNew:
		if len(l.conns) >= l.max {
			if victim = l.evictableLocked(now); victim == nil {
				victim = c // every connection is serving a request
				break
			}
			delete(l.conns, victim)
		}
		l.conns[c] = connEntry{state, now}
	case http.StateActive, http.StateIdle:
		// A connection closed by the limiter may still report a state on its
		// way out; only tracked ones are updated.
		if _, ok := l.conns[c]; ok {
			l.conns[c] = connEntry{state, now}
		}
	case http.StateHijacked, http.StateClosed:
		// A hijacked connection is its hijacker's: no more states are reported.
		delete(l.conns, c)
	}
	l.mu.Unlock()
	if victim != nil {
		closeConn(victim)
	}
}

// evictableLocked returns the connection to close for a new one, or nil when
// every connection is serving a request. First choice is the one idle the
// longest: between requests, or without a request past the grace. Failing
// that, the oldest of the connections still within their grace: otherwise a
// client opening silent connections faster than the cap per grace (50 a second
// on the metrics port) would fill the table with young ones and every new
// connection, kubelet's probes included, would be closed. A real client leaves
// StateNew within milliseconds, so a flood must be far faster to catch it.
func (l *connLimiter) evictableLocked(now time.Time) net.Conn {
	var idle, young net.Conn
	var idleSince, youngSince time.Time
	for c, e := range l.conns {
		switch {
		case e.state == http.StateIdle || (e.state == http.StateNew && now.Sub(e.since) >= l.grace):
			if idle == nil || e.since.Before(idleSince) {
				idle, idleSince = c, e.since
			}
		case e.state == http.StateNew:
			if young == nil || e.since.Before(youngSince) {
				young, youngSince = c, e.since
			}
		}
	}
	if idle != nil {
		return idle
	}
	return young
}

// open returns the number of connections the limiter counts.
func (l *connLimiter) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// closeConn closes c's socket. A TLS connection's own Close first sends a
// close_notify alert, which blocks (up to 5 s) on a peer that does not read:
// the accept loop would stall. Closing the socket ends the connection's reads
// and writes at once; its goroutine then reports StateClosed.
func closeConn(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	_ = c.Close()
}
