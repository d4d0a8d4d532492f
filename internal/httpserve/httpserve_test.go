package httpserve

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podiam/podiam/test/testutil"
)

// errBroken is what a failingListener's Accept returns: not net.ErrClosed,
// nor temporary, so http.Server.Serve gives up.
var errBroken = errors.New("accept: broken")

// failingListener fails Accept once fail is closed, as a listener whose
// socket breaks does; Close unblocks Accept as a real listener's does.
type failingListener struct {
	fail      <-chan struct{}
	closed    chan struct{}
	closeOnce sync.Once
}

func newFailingListener(fail <-chan struct{}) *failingListener {
	return &failingListener{fail: fail, closed: make(chan struct{})}
}

func (l *failingListener) Accept() (net.Conn, error) {
	select {
	case <-l.fail:
		return nil, errBroken
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *failingListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

func (l *failingListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }

// running is Run serving an app server on two loopback listeners and a probe
// server, whose /readyz fails once Draining is set, on a third.
type running struct {
	app1, app2, probe string // host:port
	draining          *atomic.Bool
	logs              *testutil.SyncBuffer
	cancel            context.CancelFunc
	done              chan error
	// entered receives a request to /block once it is in its handler, which
	// returns when release is closed.
	entered chan struct{}
	release chan struct{}
}

// start runs Run with o (Draining and Logger are filled in) on fresh
// listeners, plus extra endpoints.
func start(t *testing.T, o Options, extra ...Endpoint) *running {
	t.Helper()
	listen := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return ln
	}
	r := &running{draining: new(atomic.Bool), logs: new(testutil.SyncBuffer), done: make(chan error, 1),
		entered: make(chan struct{}, 1), release: make(chan struct{})}
	app := http.NewServeMux()
	app.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "app") })
	app.HandleFunc("/block", func(w http.ResponseWriter, _ *http.Request) {
		r.entered <- struct{}{}
		<-r.release
		_, _ = io.WriteString(w, "released")
	})
	probe := http.NewServeMux()
	probe.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if r.draining.Load() {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	appSrv, probeSrv := &http.Server{Handler: app}, &http.Server{Handler: probe}
	ln1, ln2, pln := listen(), listen(), listen()
	r.app1, r.app2, r.probe = ln1.Addr().String(), ln2.Addr().String(), pln.Addr().String()
	o.Draining, o.Logger = r.draining, slog.New(slog.NewTextHandler(r.logs, nil))
	ctx, cancel := context.WithCancel(t.Context())
	r.cancel = cancel
	endpoints := append([]Endpoint{{appSrv, ln1}, {appSrv, ln2}, {probeSrv, pln}}, extra...)
	go func() { r.done <- Run(ctx, o, endpoints...) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.release:
		default:
			close(r.release)
		}
		<-r.done // refilled by the tests that read it
	})
	return r
}

// wait returns Run's result, failing the test if it takes longer than 10 s.
func (r *running) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
		return nil
	}
}

// get returns the status and body of GET http://addr/path, or the error.
func get(addr, path string) (int, string, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// expectClosed fails t if any of addrs still accepts connections.
func expectClosed(t *testing.T, addrs ...string) {
	t.Helper()
	for _, a := range addrs {
		if c, err := net.DialTimeout("tcp", a, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after Run returned", a)
		}
	}
}

// Every endpoint is served, two of them by one server, until ctx ends.
func TestRunServesEveryEndpoint(t *testing.T) {
	r := start(t, Options{ShutdownTimeout: 5 * time.Second})
	for _, tt := range []struct{ addr, path, want string }{
		{r.app1, "/", "app"},
		{r.app2, "/", "app"},
		{r.probe, "/readyz", "ok"},
	} {
		if code, body, err := get(tt.addr, tt.path); code != http.StatusOK || body != tt.want {
			t.Errorf("GET %s%s = %d %q %v, want 200 %q", tt.addr, tt.path, code, body, err, tt.want)
		}
	}
	r.cancel()
	if err := r.wait(t); err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
	expectClosed(t, r.app1, r.app2, r.probe)
}

// Each way serving ends: ctx (with and without a delay) or a listener that
// fails (before ctx ends, or during the delay, which it cuts short). In all,
// readiness fails from then on and every listener is closed.
func TestRunStops(t *testing.T) {
	tests := []struct {
		name   string
		delay  time.Duration
		cancel bool
		// fail: when the extra listener fails, after the start or the
		// cancel; negative: never.
		fail    time.Duration
		wantErr bool
		// logs maps a fragment of a log line to whether the logs have it.
		logs         map[string]bool
		wantAtLeast  time.Duration // Run's stop, from the cancel (or the start)
		wantLessThan time.Duration
	}{
		{name: "ctx ends", cancel: true, fail: -1,
			logs: map[string]bool{`msg="shutting down"`: true, `msg="stopped serving"`: true}, wantLessThan: 2 * time.Second},
		{name: "ctx ends, with a delay", delay: 400 * time.Millisecond, cancel: true, fail: -1,
			logs:        map[string]bool{`msg="shutting down: failing readiness, still serving" delay=400ms`: true, `msg="stopped serving"`: true},
			wantAtLeast: 400 * time.Millisecond, wantLessThan: 5 * time.Second},
		{name: "a listener fails", fail: 0, wantErr: true,
			logs: map[string]bool{`msg="stopped serving"`: true, "shutting down": false}, wantLessThan: 2 * time.Second},
		{name: "a listener fails during the delay", delay: time.Minute, cancel: true, fail: 200 * time.Millisecond, wantErr: true,
			logs: map[string]bool{"failing readiness": true, `msg="stopped serving"`: true}, wantAtLeast: 200 * time.Millisecond, wantLessThan: 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fail := make(chan struct{})
			broken := newFailingListener(fail)
			r := start(t, Options{ShutdownDelay: tt.delay, ShutdownTimeout: 5 * time.Second},
				Endpoint{&http.Server{Handler: http.NotFoundHandler()}, broken})
			testutil.Eventually(t, 5*time.Second, 10*time.Millisecond, "serving", func() bool {
				code, _, _ := get(r.probe, "/readyz")
				return code == http.StatusOK
			})
			from := time.Now()
			if tt.cancel {
				r.cancel()
			}
			if tt.fail >= 0 {
				time.AfterFunc(tt.fail, func() { close(fail) })
			}
			err := r.wait(t)
			took := time.Since(from)
			if tt.wantErr {
				if !errors.Is(err, errBroken) || !strings.Contains(err.Error(), "serving on 127.0.0.1:1: ") {
					t.Errorf("Run = %v, want the broken listener's error, naming it", err)
				}
			} else if err != nil {
				t.Errorf("Run = %v, want nil", err)
			}
			if took < tt.wantAtLeast || took >= tt.wantLessThan {
				t.Errorf("Run stopped after %v, want [%v, %v)", took, tt.wantAtLeast, tt.wantLessThan)
			}
			if !r.draining.Load() {
				t.Error("Draining not set after Run returned")
			}
			expectClosed(t, r.app1, r.app2, r.probe)
			logs := r.logs.String()
			for line, want := range tt.logs {
				if strings.Contains(logs, line) != want {
					t.Errorf("logs have %q: %v, want %v:\n%s", line, !want, want, logs)
				}
			}
		})
	}
}

// During the delay every endpoint still serves while readiness fails, so that
// clients can go elsewhere before the listeners close.
func TestRunFailsReadinessThroughTheDelay(t *testing.T) {
	const delay = time.Second
	r := start(t, Options{ShutdownDelay: delay, ShutdownTimeout: 5 * time.Second})
	testutil.Eventually(t, 5*time.Second, 10*time.Millisecond, "ready", func() bool {
		code, _, _ := get(r.probe, "/readyz")
		return code == http.StatusOK
	})
	from := time.Now()
	r.cancel()
	testutil.Eventually(t, delay/2, 10*time.Millisecond, "readiness to fail", func() (bool, string) {
		code, body, err := get(r.probe, "/readyz")
		return code == http.StatusServiceUnavailable, strings.TrimSpace(body) + " " + errString(err)
	})
	for _, addr := range []string{r.app1, r.app2} {
		if code, body, err := get(addr, "/"); code != http.StatusOK || body != "app" {
			t.Errorf("during the delay, GET %s/ = %d %q %v, want 200 app", addr, code, body, err)
		}
	}
	if err := r.wait(t); err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
	if took := time.Since(from); took < delay {
		t.Errorf("Run returned %v after ctx ended, before the %v delay", took, delay)
	}
}

// A request in flight when serving stops completes within the timeout, while
// every listener is already closed (the servers shut down together); one that
// outlasts the timeout has its connection closed, and Run says so.
func TestRunDrainsRequestsInFlight(t *testing.T) {
	tests := []struct {
		name    string
		timeout time.Duration
		// release: the request's handler returns once every listener is
		// closed; otherwise it outlasts Run.
		release    bool
		wantStatus int // 0: the client sees its connection closed
		wantErr    error
	}{
		{name: "finishes within the timeout", timeout: 10 * time.Second, release: true, wantStatus: http.StatusOK},
		{name: "outlasts the timeout", timeout: 300 * time.Millisecond, wantErr: context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := start(t, Options{ShutdownTimeout: tt.timeout})
			type result struct {
				code int
				err  error
			}
			got := make(chan result, 1)
			go func() {
				code, _, err := get(r.app1, "/block")
				got <- result{code, err}
			}()
			select {
			case <-r.entered:
			case <-time.After(5 * time.Second):
				t.Fatal("the request did not reach its handler")
			}
			r.cancel()
			select {
			case err := <-r.done: // both cases hold the request 300 ms at least
				r.done <- err
				t.Fatalf("Run returned %v with a request in flight", err)
			case <-time.After(150 * time.Millisecond):
			}
			if tt.release {
				testutil.Eventually(t, 5*time.Second, 10*time.Millisecond, "every listener to close", func() bool {
					c, err := net.DialTimeout("tcp", r.probe, time.Second)
					if err == nil {
						c.Close()
					}
					return err != nil
				})
				expectClosed(t, r.app1, r.app2)
				select {
				case err := <-r.done:
					r.done <- err
					t.Fatalf("Run returned %v with a request in flight", err)
				default:
				}
				close(r.release)
			}
			err := r.wait(t)
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("Run = %v, want %v", err, tt.wantErr)
			}
			select {
			case res := <-got:
				if res.code != tt.wantStatus || (tt.wantStatus == 0) != (res.err != nil) {
					t.Errorf("the request in flight got %d %v, want %d", res.code, res.err, tt.wantStatus)
				}
			case <-time.After(2 * time.Second): // before the client's own timeout
				t.Error("the request in flight got no answer once Run returned")
			}
			expectClosed(t, r.app1, r.app2, r.probe)
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
