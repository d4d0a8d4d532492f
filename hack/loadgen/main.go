// Command loadgen is a closed-loop HTTP/1.1 load generator for the podiam
// admission webhook. Each of -c workers owns one keep-alive (TLS) connection
// and sends the -body request back to back; every measured request's latency
// is recorded exactly and summarised as min/mean/p50/p90/p99/p99.9/max.
//
// Exit status: 0 all measured requests succeeded (and -min-rps/-max-p99, if
// set, were met); 1 some request failed; 2 usage or setup error (including the
// initial connection); 3 all requests succeeded but a threshold was missed.
//
// See README.md for the measuring command.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/podiam/podiam/hack/internal/benchstat"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		rawURL    = fs.String("url", "", "target URL, e.g. https://127.0.0.1:8443/mutate (required)")
		bodyFile  = fs.String("body", "", "file with the request body, sent as-is with Content-Type: application/json (default: empty body)")
		conc      = fs.Int("c", 4, "concurrent workers, each with its own single keep-alive connection")
		dur       = fs.Duration("d", 10*time.Second, "measured duration after warmup (0: run until -n requests)")
		warmup    = fs.Duration("warmup", time.Second, "warmup time; requests started during warmup are not counted")
		maxReq    = fs.Int64("n", 0, "stop after this many measured requests (0: no cap)")
		cacert    = fs.String("cacert", "", "PEM file with the CA certificate(s) to verify the server with")
		insecure  = fs.Bool("insecure", false, "skip TLS certificate verification")
		sni       = fs.String("servername", "", "TLS server name to send and verify (default: host of -url)")
		timeout   = fs.Duration("timeout", 10*time.Second, "per-request timeout (also dial and TLS handshake); 0: none")
		expStatus = fs.Int("expect-status", 200, "expected HTTP status; any other status counts as an error")
		expSubstr = fs.String("expect-substring", "", "if set, a response body not containing this string counts as an error (e.g. '\"allowed\":true')")
		clientStr = fs.String("client", ClientRaw, "client implementation: raw (hand-written HTTP/1.1 over tls.Conn, cheapest) or http (net/http Transport per worker)")
		jsonOut   = fs.Bool("json", false, "print the result as JSON")
		minRPS    = fs.Float64("min-rps", 0, "if > 0, exit 3 when throughput is below this many req/s")
		maxP99    = fs.Duration("max-p99", 0, "if > 0, exit 3 when p99 latency is above this")
	)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "loadgen: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if *rawURL == "" {
		fmt.Fprintln(stderr, "loadgen: -url is required")
		fs.Usage()
		return 2
	}
	cfg := Config{
		URL:             *rawURL,
		Concurrency:     *conc,
		Duration:        *dur,
		Warmup:          *warmup,
		MaxRequests:     *maxReq,
		Timeout:         *timeout,
		ExpectStatus:    *expStatus,
		ExpectSubstring: []byte(*expSubstr),
		Client:          *clientStr,
	}
	if *bodyFile != "" {
		b, err := os.ReadFile(*bodyFile)
		if err != nil {
			fmt.Fprintf(stderr, "loadgen: %v\n", err)
			return 2
		}
		cfg.Body = b
	}
	tlsConf, err := buildTLS(*cacert, *insecure, *sni)
	if err != nil {
		fmt.Fprintf(stderr, "loadgen: %v\n", err)
		return 2
	}
	cfg.TLS = tlsConf

	// Ctrl-C stops the run early and still prints what was measured.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "loadgen: %v\n", err)
		return 2
	}

	pass, reasons := checkThresholds(res, *minRPS, *maxP99)
	if *jsonOut {
		var p *bool
		if *minRPS > 0 || *maxP99 > 0 || res.Failed() > 0 {
			p = &pass
		}
		err = writeJSON(stdout, res, p, reasons)
	} else {
		err = writeText(stdout, res)
		for _, r := range reasons {
			fmt.Fprintf(stdout, "FAIL        %s\n", r)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "loadgen: %v\n", err)
		return 2
	}
	switch {
	case res.Failed() > 0:
		return 1
	case !pass:
		return 3
	}
	return 0
}

// checkThresholds applies -min-rps/-max-p99 and the no-failures rule.
func checkThresholds(res *Result, minRPS float64, maxP99 time.Duration) (bool, []string) {
	var reasons []string
	if n := res.Failed(); n > 0 {
		reasons = append(reasons, fmt.Sprintf("%d of %d requests failed", n, res.Requests))
	}
	if res.OK == 0 {
		reasons = append(reasons, "no successful measured requests")
	}
	if minRPS > 0 && res.Throughput < minRPS {
		reasons = append(reasons, fmt.Sprintf("throughput %.1f req/s < %.1f", res.Throughput, minRPS))
	}
	if maxP99 > 0 && res.Latency.P99 > maxP99 {
		reasons = append(reasons, fmt.Sprintf("p99 %s > %s", benchstat.FormatDuration(res.Latency.P99), maxP99))
	}
	return len(reasons) == 0, reasons
}

func buildTLS(cacert string, insecure bool, serverName string) (*tls.Config, error) {
	conf := &tls.Config{ServerName: serverName, InsecureSkipVerify: insecure}
	if cacert != "" {
		if insecure {
			return nil, errors.New("-cacert and -insecure are mutually exclusive")
		}
		pem, err := os.ReadFile(cacert)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificates found", cacert)
		}
		conf.RootCAs = pool
	}
	return conf, nil
}
