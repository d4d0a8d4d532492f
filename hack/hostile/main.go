// Command hostile measures the peak resident memory of the real `podiam webhook`
// process under clients that try to exhaust it: many concurrent maximum-size
// uploads, stalled or at full speed, over HTTP/1.1 (a connection each) and over
// one HTTP/2 connection with more streams than the server allows; and uploads
// that cost little to send but much to answer (a pod of a million empty
// containers, each about 500 bytes of patch).
//
// It starts a control plane (etcd + kube-apiserver from bin/, as the tests do),
// then for each scenario a fresh webhook process, and prints the process's peak
// RSS (VmHWM) and the statuses it answered:
//
//	go build -o /tmp/podiam ./cmd/podiam
//	go run ./hack/hostile -podiam /tmp/podiam [-args '--max-in-flight-bytes=48Mi']
//
// Linux only (it reads /proc). It is a measurement, not a test: it prints numbers.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/podiam/podiam/test/harness"
	"github.com/podiam/podiam/test/testcluster"
)

// bodySize is the webhook's body limit: the largest upload it must accept.
const bodySize = 3 << 20

func main() {
	bin := flag.String("podiam", "", "the podiam binary (go build -o /tmp/podiam ./cmd/podiam)")
	extra := flag.String("args", "", "extra `podiam webhook` flags, space-separated")
	uploads := flag.Int("uploads", 100, "concurrent HTTP/1.1 uploads")
	streams := flag.Int("streams", 120, "concurrent streams on the one HTTP/2 connection")
	conns := flag.Int("conns", 5000, "idle keep-alive connections of the idle-connection scenarios")
	duration := flag.Duration("duration", 10*time.Second, "how long the full-speed scenarios run")
	only := flag.String("only", "", "run only the scenarios whose name contains this")
	flag.Parse()
	if *bin == "" {
		fmt.Fprintln(os.Stderr, "hostile: -podiam is required")
		os.Exit(2)
	}
	if err := run(*bin, strings.Fields(*extra), *uploads, *streams, *conns, *duration, *only); err != nil {
		fmt.Fprintln(os.Stderr, "hostile:", err)
		os.Exit(1)
	}
}

type scenario struct {
	name string
	h2   bool
	// stall: each upload sends all but the last byte, then waits until the
	// scenario ends; otherwise uploads are sent in full, back to back.
	stall bool
	// idlePort, when set ("admission" or "metrics"), replaces the uploads:
	// -conns connections to that port each send one GET /healthz and then
	// stay open, idle, until the scenario ends.
	idlePort string
	// amplify, when set, replaces the body with amplifyingBody(amplify), a pod
	// with a list of empty items, whose ServiceAccount is
	// given Pod Identity, and prints the largest answer.
	amplify string
}

func run(bin string, extra []string, uploads, streams, conns int, duration time.Duration, only string) error {
	ctx := context.Background()
	cluster, err := testcluster.Start(ctx, testcluster.Options{})
	if err != nil {
		return err
	}
	defer cluster.Stop()
	dir, err := os.MkdirTemp("", "podiam-hostile-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	body := reviewBody()
	fmt.Printf("body %d bytes, %d HTTP/1.1 uploads, %d HTTP/2 streams, extra flags %q\n", len(body), uploads, streams, extra)
	fmt.Printf("%-26s %10s %10s  %s\n", "scenario", "idle RSS", "peak RSS", "answers")
	for _, sc := range []scenario{
		{name: "http1-stalled", stall: true},
		{name: "http1-full-speed"},
		{name: "http2-stalled", h2: true, stall: true},
		{name: "http2-full-speed", h2: true},
		{name: "idle-tls-connections", idlePort: "admission"},
		{name: "idle-metrics-connections", idlePort: "metrics"},
		{name: "http1-empty-containers", amplify: "containers"},
		{name: "http1-empty-env", amplify: "env"},
		{name: "http1-empty-volume-mounts", amplify: "volumeMounts"},
		{name: "http1-empty-volumes", amplify: "volumes"},
	} {
		if !strings.Contains(sc.name, only) {
			continue
		}
		n := uploads
		switch {
		case sc.idlePort != "":
			n = conns
		case sc.h2:
			n = streams
		}
		b := body
		if sc.amplify != "" {
			b = amplifyingBody(sc.amplify)
		}
		if err := measure(ctx, bin, extra, cluster.Kubeconfig(), filepath.Join(dir, sc.name), sc, n, b, duration); err != nil {
			return fmt.Errorf("%s: %w", sc.name, err)
		}
	}
	return nil
}

// measure runs one scenario against a fresh webhook process, its certificate
// files in dir.
func measure(ctx context.Context, bin string, extra []string, kubeconfig, dir string,
	sc scenario, n int, body []byte, duration time.Duration) error {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	args := []string{"--log-level=error", "--shutdown-timeout=2s"}
	if sc.amplify != "" {
		// The pod must get an identity for its containers to be patched.
		cc := filepath.Join(dir, "container-credentials.json")
		if err := os.WriteFile(cc, []byte(`{"identities":[{"namespace":"default","serviceAccount":"default"}]}`), 0o600); err != nil {
			return err
		}
		args = append(args, "--watch-container-credentials-config="+cc)
	}
	w, err := harness.StartWebhook(ctx, harness.WebhookOptions{
		Binary: bin, Kubeconfig: kubeconfig, Namespace: "default", Dir: dir,
		Args: append(args, extra...),
	})
	if err != nil {
		return err
	}
	defer w.Kill()
	pid := w.Pid()
	idle, _ := procStatus(pid, "VmRSS")
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(w.CABundle)
	idleAddr := w.MetricsAddr()
	if sc.idlePort == "admission" {
		idleAddr = w.Addr()
	}

	url := w.URL()
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"},
		ForceAttemptHTTP2:   sc.h2,
		DisableKeepAlives:   !sc.h2 && sc.stall,
		MaxIdleConnsPerHost: n,
	}
	if sc.h2 {
		// One connection; streams over the server's limit wait for it.
		tr.MaxConnsPerHost = 1
	}
	client := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()

	sctx, cancel := context.WithTimeout(ctx, duration)
	defer cancel()
	var mu sync.Mutex
	answers := map[string]int{}
	record := func(s string) { mu.Lock(); answers[s]++; mu.Unlock() }
	var largest int64 // bytes of the largest answer
	recordSize := func(n int64) { mu.Lock(); largest = max(largest, n); mu.Unlock() }
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if sc.idlePort != "" {
				record(holdIdle(sctx, idleAddr, sc.idlePort == "admission", roots))
				return
			}
			for sctx.Err() == nil {
				var r io.Reader = bytes.NewReader(body)
				if sc.stall {
					r = io.MultiReader(bytes.NewReader(body[:len(body)-1]), ctxReader{sctx})
				}
				req, err := http.NewRequestWithContext(sctx, http.MethodPost, url, r)
				if err != nil {
					record(err.Error())
					return
				}
				req.ContentLength = int64(len(body))
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					if sctx.Err() == nil {
						record("error")
					}
					continue
				}
				size, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				recordSize(size)
				record(strconv.Itoa(resp.StatusCode))
				if sc.stall && resp.StatusCode != http.StatusTooManyRequests {
					// A stalled upload that got an answer without sending its
					// body is over; one refused for load tries again.
					return
				}
				if sc.stall {
					time.Sleep(100 * time.Millisecond) // a retrying client, not a busy loop
				}
			}
		})
	}
	wg.Wait()
	peak, err := procStatus(pid, "VmHWM")
	if err != nil {
		return fmt.Errorf("the webhook exited? %w; its logs:\n%s", err, w.Logs())
	}
	var parts []string
	for k, v := range answers {
		parts = append(parts, fmt.Sprintf("%s×%d", k, v))
	}
	sort.Strings(parts)
	if sc.amplify != "" {
		parts = append(parts, fmt.Sprintf("(largest answer %d bytes)", largest))
	}
	fmt.Printf("%-26s %7d MiB %7d MiB  %s\n", sc.name, idle>>10, peak>>10, strings.Join(parts, " "))
	return nil
}

// holdIdle opens a connection to addr, the admission (TLS) or metrics port,
// sends GET /healthz, and keeps the connection until ctx ends. It returns what
// happened: "served" if the request was answered, else the failure.
func holdIdle(ctx context.Context, addr string, useTLS bool, roots *x509.CertPool) string {
	d := net.Dialer{Timeout: 3 * time.Second}
	var c net.Conn
	var err error
	if useTLS {
		c, err = (&tls.Dialer{NetDialer: &d, Config: &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}}).DialContext(ctx, "tcp", addr)
	} else {
		c, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return "dial failed"
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	result := "served"
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		result = "write failed"
	} else if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil {
		result = "not answered in 3s"
	} else {
		resp.Body.Close()
	}
	<-ctx.Done()
	return result
}

// ctxReader blocks until its context ends: the rest of a stalled upload.
type ctxReader struct{ ctx context.Context }

func (r ctxReader) Read([]byte) (int, error) {
	<-r.ctx.Done()
	return 0, r.ctx.Err()
}

// reviewBody is a valid pod-creation AdmissionReview of exactly bodySize bytes:
// one annotation carries the padding, so the server decodes all of it.
func reviewBody() []byte {
	const head = `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"hostile","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"operation":"CREATE","namespace":"default","object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"default","annotations":{"padding":"`
	const tail = `"}},"spec":{"serviceAccountName":"default","containers":[{"name":"c","image":"i"}]}}}}`
	return []byte(head + strings.Repeat("x", bodySize-len(head)-len(tail)) + tail)
}

// amplifyingBody is a pod-creation AdmissionReview of at most bodySize bytes
// whose pod has one list full of empty items, "{}": 3 bytes of request each.
// list "containers": about 500 bytes of patch each if podiam injected them
// all; "env" or "volumeMounts" (of the pod's one container) and "volumes":
// about 30 bytes each if decoding kept them all.
func amplifyingBody(list string) []byte {
	const head = `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"hostile","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"operation":"CREATE","namespace":"default","object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"default"},"spec":{"serviceAccountName":"default",`
	var open, tail string
	switch list {
	case "containers":
		open, tail = `"containers":[`, `{}]}}}}`
	case "volumes":
		open, tail = `"volumes":[`, `{}],"containers":[{"name":"c"}]}}}}`
	default: // a list of the container
		open, tail = `"containers":[{"name":"c","`+list+`":[`, `{}]}]}}}}`
	}
	return []byte(head + open + strings.Repeat("{},", (bodySize-len(head)-len(open)-len(tail))/3) + tail)
}

// procStatus returns a "kB" field of /proc/<pid>/status in KiB.
func procStatus(pid int, field string) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}
