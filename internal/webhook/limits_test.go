package webhook

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/podiam/podiam/internal/metrics"
	"github.com/podiam/podiam/test/testutil"
)

// stalledBody sends prefix bytes, then blocks until release is closed, the
// client closes it (its request ended) or 30 s pass, then fails: an upload that
// never finishes.
type stalledBody struct {
	prefix    int
	release   <-chan struct{}
	closed    chan struct{}
	closeOnce sync.Once
}

func newStalledBody(prefix int, release <-chan struct{}) *stalledBody {
	return &stalledBody{prefix: prefix, release: release, closed: make(chan struct{})}
}

// Close is called by the client's transport when the request is over; a
// transport may wait for the body's Read to return.
func (b *stalledBody) Close() error {
	b.closeOnce.Do(func() { close(b.closed) })
	return nil
}

func (b *stalledBody) Read(p []byte) (int, error) {
	if b.prefix > 0 {
		n := min(len(p), b.prefix)
		for i := range p[:n] {
			p[i] = ' ' // JSON whitespace: a body that is valid so far
		}
		b.prefix -= n
		return n, nil
	}
	// Bounded, so that a failing test does not hang in the client's body writer.
	select {
	case <-b.release:
	case <-b.closed:
	case <-time.After(30 * time.Second):
	}
	return 0, errors.New("upload abandoned")
}

// Many uploads that stall mid-body: full-size ones beyond the budget never reach
// the handler (and so never read or hold a body) and are answered 429 with
// Retry-After, over HTTP/1.1 (a connection each) and over one HTTP/2 connection
// alike; small ones, as real pods are, all fit.
func TestServerBoundsConcurrentAdmissions(t *testing.T) {
	const uploads = 12
	const budget = 4 * MaxBodyBytes
	for _, tc := range []struct {
		name     string
		h2       bool
		declared int64 // Content-Length of each upload
		admitted int   // how many reach the handler at once
	}{
		{"full-size over HTTP/1.1", false, MaxBodyBytes, 4},
		{"full-size over HTTP/2", true, MaxBodyBytes, 4},
		{"1 MiB over HTTP/1.1", false, 1 << 20, 4 * 3},
		{"small over HTTP/2", true, 8 << 10, uploads},
	} {
		t.Run(tc.name, func(t *testing.T) {
			limit := min(tc.admitted, uploads)
			var active, maxActive atomic.Int32
			ts := startServer(t, serverOpts{
				server: func(s *Server) { s.MaxInFlightBytes = budget },
				mutate: func(h *Handler) http.Handler {
					return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						n := active.Add(1)
						defer active.Add(-1)
						for m := maxActive.Load(); n > m && !maxActive.CompareAndSwap(m, n); m = maxActive.Load() {
						}
						h.ServeHTTP(w, r)
					})
				},
			})
			client := ts.client(tc.h2)
			release := make(chan struct{})
			var releaseOnce sync.Once
			releaseAll := func() { releaseOnce.Do(func() { close(release) }) }
			defer releaseAll()

			type answer struct {
				code       int
				retryAfter string
				proto      string
				err        error
			}
			answers := make(chan answer, uploads)
			begin := time.Now()
			for range uploads {
				go func() {
					req, err := http.NewRequest(http.MethodPost, ts.url("/mutate"), newStalledBody(int(min(tc.declared/2, 64<<10)), release))
					if err != nil {
						answers <- answer{err: err}
						return
					}
					req.ContentLength = tc.declared
					req.Header.Set("Content-Type", "application/json")
					resp, err := client.Do(req)
					if err != nil {
						answers <- answer{err: fmt.Errorf("after %v: %w", time.Since(begin), err)}
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					answers <- answer{code: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), proto: resp.Proto}
				}()
			}
			// Every upload is either in the handler, stalled, or answered. Without
			// the cap all of them would be in the handler.
			var got []answer
			testutil.Eventually(t, 20*time.Second, 5*time.Millisecond, "every upload admitted or answered", func() (bool, string) {
				for {
					select {
					case a := <-answers:
						got = append(got, a)
						continue
					default:
					}
					return int(active.Load())+len(got) >= uploads, fmt.Sprintf("%d in the handler, %d answered", active.Load(), len(got))
				}
			})
			if m := int(maxActive.Load()); m > limit {
				t.Fatalf("%d requests in the handler at once, want at most %d", m, limit)
			}
			if len(got) != uploads-limit {
				t.Fatalf("%d uploads answered (%+v) while %d stall, want %d answered", len(got), got, active.Load(), uploads-limit)
			}
			for _, a := range got {
				if a.err != nil || a.code != http.StatusTooManyRequests || a.retryAfter != "1" {
					t.Errorf("excess upload: %+v, want 429 with Retry-After: 1", a)
				}
				if tc.h2 && a.proto != "HTTP/2.0" {
					t.Errorf("answered over %s, want HTTP/2.0", a.proto)
				}
			}
			m := ts.metrics
			if got := promtestutil.ToFloat64(m.RequestsRejected.WithLabelValues(metrics.RejectOverloaded)); got != float64(uploads-limit) {
				t.Errorf("rejected{overloaded} = %v, want %d", got, uploads-limit)
			}
			if got := promtestutil.ToFloat64(m.AdmissionsInFlight); got != float64(limit) {
				t.Errorf("admissions_in_flight = %v, want %d", got, limit)
			}

			// Abandoned uploads free their slots.
			releaseAll()
			testutil.Eventually(t, 20*time.Second, 5*time.Millisecond, "stalled uploads end", func() (bool, string) {
				return active.Load() == 0, fmt.Sprintf("%d in the handler", active.Load())
			})
			postMutate(t, ts.client(tc.h2), ts.url("/mutate"), reviewBody(t, testPod(), reviewOpts{}))
			if got := promtestutil.ToFloat64(m.AdmissionsInFlight); got != 0 {
				t.Errorf("admissions_in_flight = %v after the uploads ended, want 0", got)
			}
		})
	}
}

// A declared body over the limit is refused before a slot or a buffer is taken.
func TestServerRefusesDeclaredOversizeBody(t *testing.T) {
	var reached atomic.Bool
	ts := startServer(t, serverOpts{mutate: func(h *Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached.Store(true); h.ServeHTTP(w, r) })
	}})
	release := make(chan struct{})
	defer close(release)
	req, err := http.NewRequest(http.MethodPost, ts.url("/mutate"), newStalledBody(1<<10, release))
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = MaxBodyBytes + 1
	req.Header.Set("Content-Type", "application/json")
	resp, err := ts.client(false).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || reached.Load() {
		t.Errorf("status %d, handler reached %v; want 413 before the handler", resp.StatusCode, reached.Load())
	}
	if got := promtestutil.ToFloat64(ts.metrics.RequestsRejected.WithLabelValues(metrics.RejectTooLarge)); got != 1 {
		t.Errorf("rejected{too_large} = %v, want 1", got)
	}
}

// http2Settings opens an HTTP/2 connection and returns the settings of the
// server's first SETTINGS frame (RFC 9113 §6.5).
func http2Settings(t *testing.T, ts *testServer) map[uint16]uint32 {
	t.Helper()
	conn, err := tls.Dial("tcp", ts.addr, &tls.Config{RootCAs: ts.roots, ServerName: "localhost", NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("negotiated %q, want h2", p)
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	// Client preface, then an empty SETTINGS frame.
	if _, err := conn.Write(append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 0, 0, 0, 0x4, 0, 0, 0, 0, 0)); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	var hdr [9]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		t.Fatal(err)
	}
	length := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
	if hdr[3] != 0x4 || length%6 != 0 {
		t.Fatalf("first server frame: type %d length %d, want SETTINGS", hdr[3], length)
	}
	payload := make([]byte, length)
	if _, err := io.ReadFull(r, payload); err != nil {
		t.Fatal(err)
	}
	settings := map[uint16]uint32{}
	for i := 0; i < length; i += 6 {
		settings[binary.BigEndian.Uint16(payload[i:])] = binary.BigEndian.Uint32(payload[i+2:])
	}
	return settings
}

// The server announces its stream limit; Go's HTTP/2 server refuses streams
// beyond the announced number.
func TestServerHTTP2MaxConcurrentStreams(t *testing.T) {
	const settingsMaxConcurrentStreams = 0x3
	for _, tc := range []struct {
		name string
		set  int
		want uint32
	}{{"default", 0, DefaultHTTP2MaxConcurrentStreams}, {"configured", 7, 7}} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, serverOpts{server: func(s *Server) { s.HTTP2MaxConcurrentStreams = tc.set }})
			if got, ok := http2Settings(t, ts)[settingsMaxConcurrentStreams]; !ok || got != tc.want {
				t.Errorf("SETTINGS_MAX_CONCURRENT_STREAMS = %d (sent: %v), want %d", got, ok, tc.want)
			}
		})
	}
}

// keepAlive opens a connection to addr and serves one request on it, leaving it
// an idle keep-alive connection.
func keepAlive(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := bufio.NewReader(c)
	if err := getOn(c, r); err != nil {
		t.Fatal(err)
	}
	return c, r
}

// getOn sends GET /healthz on c and reads the answer.
func getOn(c net.Conn, r *bufio.Reader) error {
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: metrics\r\n\r\n"); err != nil {
		return err
	}
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// The metrics port closes idle keep-alive connections; without an idle timeout
// each would hold memory forever.
func TestServerMetricsPortIdleTimeout(t *testing.T) {
	ts := startServer(t, serverOpts{server: func(s *Server) { s.IdleTimeout = 200 * time.Millisecond }})
	c, r := keepAlive(t, ts.metricsAddr)
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := r.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("idle connection: read %v, want EOF (closed by the server)", err)
	}
}

// fakeConn is a connection the limiter may close; only Close is used.
type fakeConn struct {
	net.Conn
	closed bool
}

func (c *fakeConn) Close() error { c.closed = true; return nil }

// The limiter's choice: at the cap, a new connection closes the one idle the
// longest (between requests, or without a request past the grace); one serving
// a request is never closed; with nothing to close, the new one is closed.
func TestConnLimiterEviction(t *testing.T) {
	const grace = 2 * time.Second
	type step struct {
		conn  string
		state http.ConnState
		at    time.Duration // on the limiter's clock
	}
	for _, tc := range []struct {
		name       string
		max        int
		steps      []step
		wantClosed []string
		wantOpen   int
	}{{
		name:     "below the cap nothing is closed",
		max:      3,
		steps:    []step{{"a", http.StateNew, 0}, {"a", http.StateIdle, time.Second}, {"b", http.StateNew, time.Hour}, {"c", http.StateNew, time.Hour}},
		wantOpen: 3,
	}, {
		name: "the longest-idle connection is closed",
		max:  2,
		steps: []step{{"a", http.StateNew, 0}, {"b", http.StateNew, 0},
			{"b", http.StateIdle, time.Second}, {"a", http.StateIdle, 2 * time.Second}, {"c", http.StateNew, time.Hour}},
		wantClosed: []string{"b"},
		wantOpen:   2,
	}, {
		name: "a connection without a request past the grace counts as idle since it opened",
		max:  2,
		steps: []step{{"a", http.StateNew, 0}, {"b", http.StateNew, time.Second},
			{"b", http.StateIdle, 2 * time.Second}, {"c", http.StateNew, 3 * time.Second}},
		wantClosed: []string{"a"},
		wantOpen:   2,
	}, {
		name: "a connection without a request within the grace is kept",
		max:  2,
		steps: []step{{"a", http.StateNew, 0}, {"a", http.StateIdle, time.Second}, {"b", http.StateNew, 9 * time.Second},
			{"c", http.StateNew, 10 * time.Second}},
		wantClosed: []string{"a"},
		wantOpen:   2,
	}, {
		name: "connections without a request within the grace: the oldest is closed",
		max:  2,
		steps: []step{{"a", http.StateNew, 0}, {"b", http.StateNew, time.Millisecond}, {"c", http.StateNew, grace - time.Millisecond},
			{"d", http.StateNew, grace}},
		wantClosed: []string{"a", "b"},
		wantOpen:   2,
	}, {
		name: "an idle connection goes before an older one within its grace",
		max:  2,
		steps: []step{{"a", http.StateNew, 0}, {"b", http.StateNew, time.Second}, {"a", http.StateIdle, 1500 * time.Millisecond},
			{"c", http.StateNew, 1600 * time.Millisecond}},
		wantClosed: []string{"a"},
		wantOpen:   2,
	}, {
		name: "connections serving requests are never closed",
		max:  2,
		steps: []step{{"a", http.StateNew, 0}, {"a", http.StateActive, 0}, {"b", http.StateNew, 0}, {"b", http.StateActive, 0},
			{"c", http.StateNew, time.Hour}, {"a", http.StateIdle, 2 * time.Hour}, {"d", http.StateNew, 2 * time.Hour}},
		wantClosed: []string{"c", "a"},
		wantOpen:   2,
	}, {
		name: "closed and hijacked connections free their places",
		max:  2,
		steps: []step{{"a", http.StateNew, 0}, {"a", http.StateActive, 0}, {"b", http.StateNew, 0}, {"b", http.StateActive, 0},
			{"a", http.StateClosed, time.Second}, {"b", http.StateHijacked, time.Second}, {"c", http.StateNew, time.Second}, {"d", http.StateNew, time.Second}},
		wantOpen: 2,
	}, {
		name: "a closed connection's last states do not count it again",
		max:  1,
		steps: []step{{"a", http.StateNew, 0}, {"a", http.StateIdle, 0}, {"b", http.StateNew, time.Second},
			{"a", http.StateActive, time.Second}, {"a", http.StateClosed, time.Second}},
		wantClosed: []string{"a"},
		wantOpen:   1,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			var now time.Time
			l := newConnLimiter(tc.max, grace)
			l.now = func() time.Time { return now }
			conns := map[string]*fakeConn{}
			var closed []string
			for _, s := range tc.steps {
				c := conns[s.conn]
				if c == nil {
					c = &fakeConn{}
					conns[s.conn] = c
				}
				now = start.Add(s.at)
				l.ConnState(c, s.state)
				for name, c := range conns {
					if c.closed && !slices.Contains(closed, name) {
						closed = append(closed, name)
					}
				}
			}
			if !slices.Equal(closed, tc.wantClosed) {
				t.Errorf("closed %v, want %v (in order)", closed, tc.wantClosed)
			}
			if got := l.open(); got != tc.wantOpen {
				t.Errorf("%d connections counted, want %d", got, tc.wantOpen)
			}
		})
	}
}

// closedWithin reads from c until d passes (false: still open) or the server
// closes it (true).
func closedWithin(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	var buf [512]byte
	for {
		if _, err := c.Read(buf[:]); err != nil {
			var ne net.Error
			return !errors.As(err, &ne) || !ne.Timeout()
		}
	}
}

// At the cap, a new client is served at once: the idle connections that fill
// the cap make room for it, whatever they are. A listener that stops accepting
// at the cap leaves the new client in the listen backlog until one of them
// ends on its own: 90 s for idle keep-alive connections, 10 s for connections
// without a request (the header timeout), after the 5 s the client waits here.
func TestServerConnectionCapClosesIdleConnections(t *testing.T) {
	const limit = 2
	for _, tc := range []struct {
		name string
		tls  bool // the admission port; else the metrics port
		// hold opens a connection that holds a place without using it.
		hold func(t *testing.T, ts *testServer) net.Conn
		// wait is how long the held connections must be idle before they may
		// be closed.
		wait time.Duration
	}{{
		name: "metrics port, idle keep-alive connections",
		hold: func(t *testing.T, ts *testServer) net.Conn {
			c, _ := keepAlive(t, ts.metricsAddr)
			return c
		},
	}, {
		name: "admission port, TLS connections without a request",
		tls:  true,
		hold: func(t *testing.T, ts *testServer) net.Conn {
			c, err := tls.Dial("tcp", ts.addr, &tls.Config{RootCAs: ts.roots, ServerName: "localhost"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			return c
		},
		wait: NewConnGrace,
	}, {
		// Silent connections opened faster than the cap per grace would
		// otherwise lock out every new one.
		name: "metrics port, connections without a request, within the grace",
		hold: func(t *testing.T, ts *testServer) net.Conn {
			c, err := net.Dial("tcp", ts.metricsAddr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			return c
		},
	}, {
		name: "admission port, TCP connections without a ClientHello",
		tls:  true,
		hold: func(t *testing.T, ts *testServer) net.Conn {
			c, err := net.Dial("tcp", ts.addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			return c
		},
		wait: NewConnGrace,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, serverOpts{server: func(s *Server) { s.MaxConnections, s.MetricsMaxConnections = limit, limit }})
			var held []net.Conn
			for range limit {
				held = append(held, tc.hold(t, ts))
			}
			time.Sleep(tc.wait + 500*time.Millisecond)

			const within = 5 * time.Second // a few milliseconds of work
			if tc.tls {
				c := ts.client(false)
				c.Timeout = within
				postMutate(t, c, ts.url("/mutate"), reviewBody(t, testPod(), reviewOpts{}))
			} else {
				c := &http.Client{Timeout: within}
				if code, _ := get(t, c, "http://"+ts.metricsAddr+"/healthz"); code != http.StatusOK {
					t.Fatalf("/healthz = %d", code)
				}
			}
			// The oldest held connection made room; the other is untouched.
			if !closedWithin(held[0], 10*time.Second) {
				t.Error("the longest-idle connection is still open")
			}
			if closedWithin(held[1], 200*time.Millisecond) {
				t.Error("a second idle connection was closed for one new client")
			}
		})
	}
}

// A connection serving a request is never closed to make room: a new
// connection at the cap is closed at once instead (not left waiting), and the
// request completes.
func TestServerConnectionCapKeepsActiveConnections(t *testing.T) {
	for _, tc := range []struct {
		name string
		h2   bool
	}{{"HTTP/1.1", false}, {"HTTP/2", true}} {
		t.Run(tc.name, func(t *testing.T) {
			entered := make(chan struct{}, 1)
			release := make(chan struct{})
			ts := startServer(t, serverOpts{
				server: func(s *Server) { s.MaxConnections = 1 },
				mutate: func(h *Handler) http.Handler {
					return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						entered <- struct{}{}
						<-release
						h.ServeHTTP(w, r)
					})
				},
			})
			defer func() {
				select {
				case <-release:
				default:
					close(release)
				}
			}()
			type result struct {
				code  int
				proto string
				err   error
			}
			results := make(chan result, 1)
			go func() {
				resp, err := ts.client(tc.h2).Post(ts.url("/mutate"), "application/json", bytes.NewReader(reviewBody(t, testPod(), reviewOpts{})))
				if err != nil {
					results <- result{err: err}
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				results <- result{code: resp.StatusCode, proto: resp.Proto}
			}()
			select {
			case <-entered:
			case <-time.After(10 * time.Second):
				t.Fatal("request did not reach the handler")
			}
			// Past the grace, so that only the request's state protects it.
			time.Sleep(NewConnGrace + 500*time.Millisecond)

			d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: &tls.Config{RootCAs: ts.roots, ServerName: "localhost"}}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := d.DialContext(ctx, "tcp", ts.addr)
			if err == nil {
				c.Close()
				t.Fatal("a connection over the cap was served while the only one serves a request")
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("connection over the cap left waiting (%v), want it closed at once", err)
			}

			close(release)
			r := <-results
			if r.err != nil || r.code != http.StatusOK {
				t.Fatalf("request in progress: %d %v, want 200", r.code, r.err)
			}
			if want := map[bool]string{false: "HTTP/1.1", true: "HTTP/2.0"}[tc.h2]; r.proto != want {
				t.Errorf("served over %s, want %s", r.proto, want)
			}
		})
	}
}
