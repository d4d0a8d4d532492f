package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/podiam/podiam/hack/internal/benchstat"
)

// Client names accepted by Config.Client / -client.
const (
	ClientRaw  = "raw"  // hand-written HTTP/1.1 over one tls.Conn per worker
	ClientHTTP = "http" // net/http, one Transport (MaxConnsPerHost=1) per worker
)

// Config describes one load run.
type Config struct {
	URL             string
	Body            []byte
	Concurrency     int           // workers, each with its own connection
	Duration        time.Duration // measured time after warmup; 0 = until MaxRequests
	Warmup          time.Duration // requests started during warmup are not counted
	MaxRequests     int64         // cap on measured requests; 0 = no cap
	TLS             *tls.Config   // client TLS config for https URLs
	Timeout         time.Duration // per request (and per dial/handshake)
	ExpectStatus    int
	ExpectSubstring []byte // if non-empty, the body must contain it
	Client          string // ClientRaw or ClientHTTP
}

// Result is the outcome of a run. Requests counts measured requests (those
// started after warmup); Latency covers the OK ones only.
type Result struct {
	URL         string
	Client      string
	Concurrency int
	Warmup      time.Duration
	Duration    time.Duration
	MaxRequests int64

	Requests        int64
	OK              int64
	TransportErrors int64 // dial, TLS, write, read or parse failures
	StatusErrors    int64 // complete response with unexpected status
	BodyErrors      int64 // expected status, but body lacks ExpectSubstring
	Reconnects      int64 // dials beyond the first per worker (whole run)
	ErrorSamples    []string

	Elapsed    time.Duration // from end of warmup to the last measured response
	Throughput float64       // OK requests per second of Elapsed
	Latency    benchstat.Summary
}

// client is one worker's connection to the target.
type client interface {
	// Do sends the request and reads the full response. The body is only
	// valid until the next call.
	Do(ctx context.Context) (status int, body []byte, err error)
	Dials() int64
	Close()
}

// plan is the shared, read-only schedule of a run plus the request cap.
type plan struct {
	warmupEnd time.Time
	deadline  time.Time // zero: no time limit
	limit     int64     // 0: no cap
	claimed   atomic.Int64
	expStatus int
	expSubstr []byte
	errBackof time.Duration
}

// workerStats is owned by one worker and merged after all workers finish.
type workerStats struct {
	lat        *recorder
	requests   int64
	transport  int64
	status     int64
	body       int64
	lastDone   time.Time
	errSamples []string
}

const maxErrSamples = 3

func (s *workerStats) sample(format string, args ...any) {
	if len(s.errSamples) < maxErrSamples {
		s.errSamples = append(s.errSamples, fmt.Sprintf(format, args...))
	}
}

// runWorker issues requests back to back on c until the deadline, the request
// cap or ctx cancellation.
func runWorker(ctx context.Context, c client, p *plan, st *workerStats) {
	for ctx.Err() == nil {
		start := time.Now()
		if !p.deadline.IsZero() && !start.Before(p.deadline) {
			return
		}
		measured := !start.Before(p.warmupEnd)
		if measured && p.limit > 0 && p.claimed.Add(1) > p.limit {
			return
		}
		status, body, err := c.Do(ctx)
		lat := time.Since(start)
		if !measured {
			if err != nil && ctx.Err() == nil {
				sleepCtx(ctx, p.errBackof)
			}
			continue
		}
		st.requests++
		st.lastDone = start.Add(lat)
		switch {
		case err != nil:
			if ctx.Err() != nil {
				st.requests-- // interrupted by cancellation: not a server failure
				return
			}
			st.transport++
			st.sample("transport: %v", err)
			// Avoid spinning on a dead target; the run has failed anyway.
			sleepCtx(ctx, p.errBackof)
		case status != p.expStatus:
			st.status++
			st.sample("status %d, want %d: %.200q", status, p.expStatus, body)
		case len(p.expSubstr) > 0 && !bytes.Contains(body, p.expSubstr):
			st.body++
			st.sample("body lacks %q: %.200q", p.expSubstr, body)
		default:
			st.lat.record(lat)
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func (cfg *Config) validate() (*url.URL, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("bad -url: %w", err)
	}
	if u.Scheme != "https" && u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("bad -url %q: want http(s)://host[:port]/path", cfg.URL)
	}
	if cfg.Concurrency < 1 {
		return nil, errors.New("-c must be >= 1")
	}
	if cfg.Duration < 0 || cfg.Warmup < 0 || cfg.MaxRequests < 0 {
		return nil, errors.New("-d, -warmup and -n must not be negative")
	}
	if cfg.Duration == 0 && cfg.MaxRequests == 0 {
		return nil, errors.New("need -d > 0 or -n > 0")
	}
	switch cfg.Client {
	case ClientRaw, ClientHTTP:
	default:
		return nil, fmt.Errorf("unknown -client %q (want %s or %s)", cfg.Client, ClientRaw, ClientHTTP)
	}
	return u, nil
}

// Run executes the load run described by cfg. It returns an error only for
// setup problems (bad config, initial connection failure); request failures
// are counted in the Result.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	u, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	tlsConf := cfg.TLS
	if tlsConf == nil {
		tlsConf = &tls.Config{}
	}

	// Pre-size the latency recorders: up to ~100k req/s in total, or the cap.
	expected := int(cfg.Duration.Seconds() * 100000)
	if cfg.MaxRequests > 0 && (cfg.Duration == 0 || cfg.MaxRequests < int64(expected)) {
		expected = int(cfg.MaxRequests)
	}
	expected = min(expected/cfg.Concurrency+1, 1<<22)

	clients := make([]client, cfg.Concurrency)
	for i := range clients {
		switch cfg.Client {
		case ClientRaw:
			rc := newRawClient(u, cfg.Body, tlsConf, cfg.Timeout)
			// Connect up front so handshakes are not part of the run.
			if err := rc.connect(ctx); err != nil {
				for _, c := range clients[:i] {
					c.Close()
				}
				return nil, fmt.Errorf("connect %s: %w", rc.addr, err)
			}
			clients[i] = rc
		case ClientHTTP:
			clients[i] = newHTTPClient(cfg.URL, cfg.Body, tlsConf, cfg.Timeout)
		}
	}
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()

	start := time.Now()
	p := &plan{
		warmupEnd: start.Add(cfg.Warmup),
		limit:     cfg.MaxRequests,
		expStatus: cfg.ExpectStatus,
		expSubstr: cfg.ExpectSubstring,
		errBackof: 10 * time.Millisecond,
	}
	if cfg.Duration > 0 {
		p.deadline = p.warmupEnd.Add(cfg.Duration)
	}
	stats := make([]*workerStats, cfg.Concurrency)
	var wg sync.WaitGroup
	for i, c := range clients {
		stats[i] = &workerStats{lat: newRecorder(expected)}
		wg.Go(func() { runWorker(ctx, c, p, stats[i]) })
	}
	wg.Wait()

	res := &Result{
		URL:         cfg.URL,
		Client:      cfg.Client,
		Concurrency: cfg.Concurrency,
		Warmup:      cfg.Warmup,
		Duration:    cfg.Duration,
		MaxRequests: cfg.MaxRequests,
	}
	var n int
	var last time.Time
	for i, st := range stats {
		res.Requests += st.requests
		res.TransportErrors += st.transport
		res.StatusErrors += st.status
		res.BodyErrors += st.body
		res.Reconnects += max(clients[i].Dials()-1, 0)
		for _, e := range st.errSamples {
			if len(res.ErrorSamples) < maxErrSamples {
				res.ErrorSamples = append(res.ErrorSamples, e)
			}
		}
		n += st.lat.len()
		if st.lastDone.After(last) {
			last = st.lastDone
		}
	}
	samples := make([]int64, 0, n)
	for _, st := range stats {
		samples = st.lat.appendTo(samples)
	}
	res.OK = int64(len(samples))
	if !last.IsZero() {
		res.Elapsed = last.Sub(p.warmupEnd)
	}
	if res.Elapsed > 0 {
		res.Throughput = float64(res.OK) / res.Elapsed.Seconds()
	}
	res.Latency = benchstat.Summarize(samples)
	return res, nil
}
