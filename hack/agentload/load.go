package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/podiam/podiam/hack/internal/benchstat"
)

// credentialsPath is the agent's endpoint (SPEC §6).
const credentialsPath = "/v1/credentials"

// buildRequest is the request an AWS SDK's container credential provider
// sends: GET with the pod's token as Authorization, on a keep-alive
// connection.
func buildRequest(host, token string) []byte {
	return fmt.Appendf(nil, "GET %s HTTP/1.1\r\nHost: %s\r\nAuthorization: %s\r\nUser-Agent: podiam-agentload\r\nAccept: application/json\r\n\r\n",
		credentialsPath, host, token)
}

// rawConn speaks HTTP/1.1 by hand on one keep-alive TCP connection: the
// requests are built once and the response is parsed in place, so the
// generator allocates nothing per request and leaves the CPU to measure.
type rawConn struct {
	addr  string
	conn  net.Conn
	br    *bufio.Reader
	body  []byte
	dials int
}

func (c *rawConn) dial(ctx context.Context) error {
	c.dials++
	d := net.Dialer{Timeout: 10 * time.Second, KeepAlive: -1}
	conn, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", c.addr, err)
	}
	c.conn = conn
	if c.br == nil {
		c.br = bufio.NewReaderSize(conn, 16<<10)
	} else {
		c.br.Reset(conn)
	}
	return nil
}

func (c *rawConn) close() {
	if c.conn != nil {
		_ = c.conn.Close()
		c.conn = nil
	}
}

// roundTrip writes req and reads the whole response; the body is valid
// until the next call. It redials when the connection was closed.
func (c *rawConn) roundTrip(ctx context.Context, req []byte) (int, []byte, error) {
	if c.conn == nil {
		if err := c.dial(ctx); err != nil {
			return 0, nil, err
		}
	}
	if _, err := c.conn.Write(req); err != nil {
		c.close()
		return 0, nil, fmt.Errorf("writing the request: %w", err)
	}
	status, body, keep, err := readResponse(c.br, c.body[:0])
	c.body = body
	if err != nil || !keep {
		c.close()
	}
	return status, body, err
}

// readResponse parses one HTTP/1.1 response with a Content-Length (the
// agent's answers are small and never chunked) into body; keep is false
// when the server closes the connection after it.
func readResponse(br *bufio.Reader, body []byte) (status int, _ []byte, keep bool, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, body, false, fmt.Errorf("reading the status line: %w", err)
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, body, false, fmt.Errorf("malformed status line %.60q", line)
	}
	if status, err = strconv.Atoi(string(line[9:12])); err != nil {
		return 0, body, false, fmt.Errorf("malformed status line %.60q", line)
	}
	length, keep := -1, true
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return status, body, false, fmt.Errorf("reading the headers: %w", err)
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return status, body, false, fmt.Errorf("malformed header %.60q", line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil || length < 0 || length > 1<<20 {
				return status, body, false, fmt.Errorf("bad Content-Length %.20q", value)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			return status, body, false, errors.New("chunked responses are not read")
		case bytes.EqualFold(name, []byte("Connection")) && bytes.EqualFold(value, []byte("close")):
			keep = false
		}
	}
	if length < 0 {
		return status, body, false, errors.New("no Content-Length")
	}
	body = append(body, make([]byte, length)...)
	if _, err := io.ReadFull(br, body[len(body)-length:]); err != nil {
		return status, body, false, fmt.Errorf("reading the body: %w", err)
	}
	return status, body, keep, nil
}

// loadResult is what the load measured.
type loadResult struct {
	latencies []int64          // of the good answers, ns
	errs      benchstat.Errors // by "status N", "no credentials" or "transport"
	elapsed   time.Duration    // end of warm-up to the last answer
	redials   int
}

// worker is one connection's share of the load.
type worker struct {
	conn      rawConn
	latencies []int64
	errs      benchstat.Errors
	last      time.Time
}

// runLoad sends requests back to back on conns keep-alive connections, each
// going round the pods' requests from its own starting point, for warmup
// (not counted) then dur. A good answer is 200 with credentials in its body.
func runLoad(ctx context.Context, addr string, reqs [][]byte, conns int, warmup, dur time.Duration) (*loadResult, error) {
	workers := make([]*worker, conns)
	for i := range workers {
		w := &worker{conn: rawConn{addr: addr, body: make([]byte, 0, 4096)},
			latencies: make([]int64, 0, int(dur.Seconds()*60000)/conns+1)}
		// Connect before the clock starts.
		if err := w.conn.dial(ctx); err != nil {
			return nil, err
		}
		defer w.conn.close()
		workers[i] = w
	}
	want := []byte(`"AccessKeyId"`)
	start := time.Now()
	warmEnd := start.Add(warmup)
	deadline := warmEnd.Add(dur)
	var wg sync.WaitGroup
	for wi, w := range workers {
		wg.Go(func() {
			next := wi * len(reqs) / conns
			for ctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(deadline) {
					return
				}
				status, body, err := w.conn.roundTrip(ctx, reqs[next])
				next = (next + 1) % len(reqs)
				lat := time.Since(t0)
				if t0.Before(warmEnd) {
					continue
				}
				w.last = t0.Add(lat)
				kind := ""
				switch {
				case err != nil:
					kind = "transport"
				case status != 200:
					kind = "status " + strconv.Itoa(status)
					err = fmt.Errorf("%.200q", body)
				case !bytes.Contains(body, want):
					kind = "no credentials"
					err = fmt.Errorf("%.200q", body)
				default:
					w.latencies = append(w.latencies, int64(lat))
					continue
				}
				w.errs.Add(kind, err.Error())
				if kind == "transport" {
					time.Sleep(10 * time.Millisecond) // a dead agent: do not spin
				}
			}
		})
	}
	wg.Wait()
	res := &loadResult{}
	var last time.Time
	for _, w := range workers {
		res.latencies = append(res.latencies, w.latencies...)
		res.errs.Merge(&w.errs)
		res.redials += w.conn.dials - 1
		if w.last.After(last) {
			last = w.last
		}
	}
	if !last.IsZero() {
		res.elapsed = last.Sub(warmEnd)
	}
	return res, nil
}

// coldResult is the first request of every pod.
type coldResult struct {
	wall time.Duration
	ok   int
	// throttled counts the 429 answers that were retried, of throttledPods pods.
	throttled, throttledPods int
	errs                     benchstat.Errors
}

// A cold request answered 429 is retried up to coldTries times in all,
// after coldRetryDelay times the attempts so far.
const (
	coldTries      = 10
	coldRetryDelay = 50 * time.Millisecond
)

// askOnce sends every pod's request once, each on its own connection: all
// at once, as the pods of a node whose agent just started, or at most
// conns at a time (conns > 0).
func askOnce(ctx context.Context, addr string, reqs [][]byte, conns int) *coldResult {
	if conns <= 0 {
		conns = len(reqs)
	}
	slots := make(chan struct{}, conns)
	type outcome struct {
		kind, msg string
		lat       time.Duration
		throttled int // 429 answers before the last
	}
	outcomes := make([]outcome, len(reqs))
	release := make(chan struct{})
	var ready, done sync.WaitGroup
	var t0 time.Time
	for i, req := range reqs {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			c := rawConn{addr: addr}
			err := c.dial(ctx)
			ready.Done()
			if err != nil {
				outcomes[i] = outcome{kind: "transport", msg: err.Error()}
				return
			}
			defer c.close()
			<-release
			slots <- struct{}{}
			defer func() { <-slots }()
			// A 429 (the node's limit on new tokens to verify) is retried
			// as the AWS SDKs retry a throttled credential request.
			var status, tries int
			var body []byte
			for tries = 1; ; tries++ {
				status, body, err = c.roundTrip(ctx, req)
				if err != nil || status != http.StatusTooManyRequests || tries == coldTries {
					break
				}
				time.Sleep(time.Duration(tries) * coldRetryDelay)
			}
			o := outcome{lat: time.Since(t0), throttled: tries - 1}
			switch {
			case err != nil:
				o.kind, o.msg = "transport", err.Error()
			case status != 200 || !bytes.Contains(body, []byte(`"AccessKeyId"`)):
				o.kind, o.msg = "status "+strconv.Itoa(status), fmt.Sprintf("%.200q", body)
			}
			outcomes[i] = o
		}()
	}
	ready.Wait()
	t0 = time.Now()
	close(release)
	done.Wait()
	res := &coldResult{}
	for _, o := range outcomes {
		res.wall = max(res.wall, o.lat)
		res.throttled += o.throttled
		if o.throttled > 0 {
			res.throttledPods++
		}
		if o.kind == "" {
			res.ok++
			continue
		}
		res.errs.Add(o.kind, o.msg)
	}
	return res
}
