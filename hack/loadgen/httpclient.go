package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// httpClient is the net/http alternative to rawClient: one http.Transport
// per worker, limited to a single HTTP/1.1 keep-alive connection.
type httpClient struct {
	url    string
	body   []byte
	client *http.Client
	tr     *http.Transport
	buf    bytes.Buffer
	dials  atomic.Int64 // written from transport dial goroutines
}

func newHTTPClient(rawURL string, body []byte, tlsConf *tls.Config, timeout time.Duration) *httpClient {
	c := &httpClient{url: rawURL, body: body}
	d := &net.Dialer{Timeout: timeout, KeepAlive: -1}
	conf := tlsConf.Clone()
	conf.NextProtos = []string{"http/1.1"}
	c.tr = &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c.dials.Add(1)
			return d.DialContext(ctx, network, addr)
		},
		TLSClientConfig:     conf,
		TLSHandshakeTimeout: timeout,
		MaxConnsPerHost:     1,
		MaxIdleConns:        1,
		MaxIdleConnsPerHost: 1,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
		// A non-nil empty map disables HTTP/2.
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
	c.client = &http.Client{Transport: c.tr, Timeout: timeout}
	return c
}

func (c *httpClient) Do(ctx context.Context) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(c.body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	c.buf.Reset()
	_, err = c.buf.ReadFrom(resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, c.buf.Bytes(), nil
}

func (c *httpClient) Dials() int64 { return c.dials.Load() }

func (c *httpClient) Close() { c.tr.CloseIdleConnections() }
