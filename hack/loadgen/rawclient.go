package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"time"
)

// maxBody bounds a response body so a misbehaving server cannot make the
// generator allocate without limit.
const maxBody = 64 << 20

// rawClient speaks HTTP/1.1 by hand over a single keep-alive (TLS)
// connection: the request bytes are built once, written with one Write per
// request, and the response is parsed in place from a bufio.Reader. It
// allocates nothing per request in the steady state. It redials only when the
// connection fails or the server asks to close it.
type rawClient struct {
	addr    string
	tlsConf *tls.Config // nil for plain http
	timeout time.Duration
	req     []byte
	dialer  net.Dialer

	conn  net.Conn
	br    *bufio.Reader
	body  []byte
	dials int64
}

func newRawClient(u *url.URL, body []byte, tlsConf *tls.Config, timeout time.Duration) *rawClient {
	var b bytes.Buffer
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: podiam-loadgen\r\n"+
		"Content-Type: application/json\r\nAccept: application/json\r\nContent-Length: %d\r\n\r\n",
		u.RequestURI(), u.Host, len(body))
	b.Write(body)
	c := &rawClient{
		addr:    hostPort(u),
		timeout: timeout,
		req:     b.Bytes(),
		dialer:  net.Dialer{Timeout: timeout, KeepAlive: -1},
		body:    make([]byte, 0, 4096),
	}
	if u.Scheme == "https" {
		c.tlsConf = tlsConf.Clone()
		c.tlsConf.NextProtos = []string{"http/1.1"}
		if c.tlsConf.ServerName == "" {
			c.tlsConf.ServerName = u.Hostname()
		}
	}
	return c
}

func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	if u.Scheme == "https" {
		return net.JoinHostPort(u.Hostname(), "443")
	}
	return net.JoinHostPort(u.Hostname(), "80")
}

func (c *rawClient) connect(ctx context.Context) error {
	c.dials++
	conn, err := c.dialer.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return err
	}
	if c.tlsConf != nil {
		tc := tls.Client(conn, c.tlsConf)
		hctx, cancel := ctx, context.CancelFunc(func() {})
		if c.timeout > 0 {
			hctx, cancel = context.WithTimeout(ctx, c.timeout)
		}
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			conn.Close()
			return err
		}
		if p := tc.ConnectionState().NegotiatedProtocol; p != "" && p != "http/1.1" {
			tc.Close()
			return fmt.Errorf("server negotiated ALPN %q, want http/1.1", p)
		}
		conn = tc
	}
	c.conn = conn
	if c.br == nil {
		c.br = bufio.NewReaderSize(conn, 64<<10)
	} else {
		c.br.Reset(conn)
	}
	return nil
}

func (c *rawClient) drop() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

func (c *rawClient) Close() { c.drop() }

func (c *rawClient) Dials() int64 { return c.dials }

// Do sends the request and reads the whole response. The returned body is
// valid until the next call.
func (c *rawClient) Do(ctx context.Context) (int, []byte, error) {
	if c.conn == nil {
		if err := c.connect(ctx); err != nil {
			return 0, nil, err
		}
	}
	if c.timeout > 0 {
		c.conn.SetDeadline(time.Now().Add(c.timeout))
	}
	if _, err := c.conn.Write(c.req); err != nil {
		c.drop()
		return 0, nil, err
	}
	status, keepAlive, err := c.readResponse()
	if err != nil {
		c.drop()
		return 0, nil, err
	}
	if !keepAlive {
		c.drop()
	}
	return status, c.body, nil
}

var (
	errMalformed = errors.New("malformed HTTP response")
	hdrCL        = []byte("Content-Length")
	hdrTE        = []byte("Transfer-Encoding")
	hdrConn      = []byte("Connection")
)

// readLine returns the next line without its CRLF/LF. The slice is only valid
// until the next read.
func (c *rawClient) readLine() ([]byte, error) {
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("%w: line too long", errMalformed)
		}
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// readResponse parses one response (skipping 1xx interim responses) into
// c.body and reports whether the connection may be reused.
func (c *rawClient) readResponse() (status int, keepAlive bool, err error) {
	for {
		line, err := c.readLine()
		if err != nil {
			return 0, false, err
		}
		// "HTTP/1.1 200 OK"
		if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
			return 0, false, fmt.Errorf("%w: status line %q", errMalformed, line)
		}
		http11 := line[7] == '1'
		status = 0
		for _, d := range line[9:12] {
			if d < '0' || d > '9' {
				return 0, false, fmt.Errorf("%w: status line %q", errMalformed, line)
			}
			status = status*10 + int(d-'0')
		}
		keepAlive = http11
		contentLength := int64(-1)
		chunked := false
		for {
			h, err := c.readLine()
			if err != nil {
				return 0, false, err
			}
			if len(h) == 0 {
				break
			}
			name, value, ok := bytes.Cut(h, []byte(":"))
			if !ok {
				return 0, false, fmt.Errorf("%w: header %q", errMalformed, h)
			}
			value = bytes.TrimSpace(value)
			switch {
			case bytes.EqualFold(name, hdrCL):
				n, ok := parseUint(value, 10)
				if !ok {
					return 0, false, fmt.Errorf("%w: Content-Length %q", errMalformed, value)
				}
				contentLength = n
			case bytes.EqualFold(name, hdrTE):
				chunked = hasToken(value, "chunked")
			case bytes.EqualFold(name, hdrConn):
				if hasToken(value, "close") {
					keepAlive = false
				} else if hasToken(value, "keep-alive") {
					keepAlive = true
				}
			}
		}
		if status >= 100 && status < 200 && status != 101 {
			continue // interim response; the real one follows
		}
		c.body = c.body[:0]
		switch {
		case status == 204 || status == 304 || status == 101:
		case chunked:
			err = c.readChunked()
		case contentLength >= 0:
			err = c.readN(contentLength)
		default:
			// Delimited by connection close.
			keepAlive = false
			var b bytes.Buffer
			_, err = b.ReadFrom(io.LimitReader(c.br, maxBody))
			c.body = append(c.body, b.Bytes()...)
		}
		return status, keepAlive, err
	}
}

// readN appends exactly n body bytes to c.body.
func (c *rawClient) readN(n int64) error {
	if n > maxBody || int64(len(c.body))+n > maxBody {
		return fmt.Errorf("response body larger than %d bytes", maxBody)
	}
	off := len(c.body)
	c.body = slicesGrow(c.body, int(n))
	_, err := io.ReadFull(c.br, c.body[off:off+int(n)])
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return err
}

func slicesGrow(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		nb := make([]byte, len(b), 2*cap(b)+n)
		copy(nb, b)
		b = nb
	}
	return b[:len(b)+n]
}

func (c *rawClient) readChunked() error {
	for {
		line, err := c.readLine()
		if err != nil {
			return err
		}
		size, _, _ := bytes.Cut(line, []byte(";"))
		n, ok := parseUint(bytes.TrimSpace(size), 16)
		if !ok {
			return fmt.Errorf("%w: chunk size %q", errMalformed, line)
		}
		if n == 0 {
			for { // trailers up to the empty line
				t, err := c.readLine()
				if err != nil {
					return err
				}
				if len(t) == 0 {
					return nil
				}
			}
		}
		if err := c.readN(int64(n)); err != nil {
			return err
		}
		crlf, err := c.readLine()
		if err != nil {
			return err
		}
		if len(crlf) != 0 {
			return fmt.Errorf("%w: missing CRLF after chunk", errMalformed)
		}
	}
}

// parseUint parses a non-empty decimal or hex number without allocating.
func parseUint(b []byte, base int64) (int64, bool) {
	if len(b) == 0 || len(b) > 15 {
		return 0, false
	}
	var n int64
	for _, ch := range b {
		var d int64
		switch {
		case ch >= '0' && ch <= '9':
			d = int64(ch - '0')
		case base == 16 && ch >= 'a' && ch <= 'f':
			d = int64(ch-'a') + 10
		case base == 16 && ch >= 'A' && ch <= 'F':
			d = int64(ch-'A') + 10
		default:
			return 0, false
		}
		n = n*base + d
	}
	return n, true
}

// hasToken reports whether the comma-separated header value contains token
// (case-insensitive).
func hasToken(value []byte, token string) bool {
	for len(value) > 0 {
		var part []byte
		part, value, _ = bytes.Cut(value, []byte(","))
		if bytes.EqualFold(bytes.TrimSpace(part), []byte(token)) {
			return true
		}
	}
	return false
}
