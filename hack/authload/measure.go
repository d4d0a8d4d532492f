package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http/httptrace"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/podiam/podiam/hack/internal/benchstat"
	"github.com/podiam/podiam/internal/eksauth"
)

// roundSpec is one round: its calls, fired at once, and the AssumeRole calls
// `podiam sts` must count for it.
type roundSpec struct {
	name           string
	calls          []call
	wantAssumeRole int
}

// roundResult is what a round measured.
type roundResult struct {
	spec      roundSpec
	latencies []time.Duration  // of the successful calls, sorted
	wall      time.Duration    // release to last answer (success or not)
	errs      benchstat.Errors // by EKS Auth code, or "transport"
	newConns  int64

	// Counter deltas over the round: AssumeRole calls `podiam sts` served
	// (any result), and `podiam auth`'s own view.
	assumeRole     float64
	authSTSCalls   float64
	issuedSTS      float64
	issuedCache    float64
	authRequestsOK float64
	// kube-apiserver's view: GETs of single pods (podiam auth checks the
	// pod of every request and the agent's pod), writes of association status.
	podGets      float64
	statusWrites float64
	cpu          []procCPU
	// machineBusy is the CPU time every process of the machine used over the
	// round (from /proc/stat): beyond the sum of cpu, other work competed.
	machineBusy time.Duration
}

type procCPU struct {
	name string
	cpu  time.Duration
}

// counters is the snapshot of both processes' metrics a round compares.
type counters struct {
	assumeRole, authSTSCalls, issuedSTS, issuedCache, authOK float64
	podGets, statusWrites                                    float64
}

func (e *env) counters(ctx context.Context) (counters, error) {
	var c counters
	sm, err := benchstat.Scrape(ctx, e.stsMetricsURL)
	if err != nil {
		return c, fmt.Errorf("reading podiam sts metrics: %w", err)
	}
	am, err := benchstat.Scrape(ctx, e.authMetricsURL)
	if err != nil {
		return c, fmt.Errorf("reading podiam auth metrics: %w", err)
	}
	c.assumeRole = sm.Sum("podiam_sts_calls_total", `action="AssumeRole"`)
	c.authSTSCalls = am.Sum("podiam_auth_sts_calls_total")
	c.issuedSTS = am.Sum("podiam_auth_issuances_total", `source="sts"`)
	c.issuedCache = am.Sum("podiam_auth_issuances_total", `source="cache"`)
	c.authOK = am.Sum("podiam_auth_requests_total", `code="OK"`)
	kubeText, err := e.kube.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return c, fmt.Errorf("reading kube-apiserver metrics: %w", err)
	}
	km := benchstat.ParseMetrics(string(kubeText))
	c.podGets = km.Sum("apiserver_request_total", `resource="pods"`, `subresource=""`, `verb="GET"`)
	c.statusWrites = km.Sum("apiserver_request_total", `resource="podidentityassociations"`, `subresource="status"`)
	return c, nil
}

// fire sends every call of spec at once, each from its own goroutine released
// by one barrier, and measures the round.
func (e *env) fire(ctx context.Context, spec roundSpec, timeout time.Duration) (*roundResult, error) {
	before, err := e.counters(ctx)
	if err != nil {
		return nil, err
	}
	cpuBefore := e.cpuTimes()
	busyBefore := machineBusy()
	e.newConns.Store(0)

	type outcome struct {
		latency time.Duration
		err     error
	}
	outcomes := make([]outcome, len(spec.calls))
	release := make(chan struct{})
	var ready, done sync.WaitGroup
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		if !info.Reused {
			e.newConns.Add(1)
		}
	}}
	var t0 time.Time
	for i, c := range spec.calls {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			cctx, cancel := context.WithTimeout(httptrace.WithClientTrace(ctx, trace), timeout)
			defer cancel()
			ready.Done()
			<-release
			_, err := e.agents[c.agent].AssumeRoleForPodIdentity(cctx, clusterName, c.token)
			outcomes[i] = outcome{time.Since(t0), err}
		}()
	}
	ready.Wait()
	t0 = time.Now()
	close(release)
	done.Wait()

	after, err := e.counters(ctx)
	if err != nil {
		return nil, err
	}
	res := &roundResult{spec: spec, newConns: e.newConns.Load()}
	for _, o := range outcomes {
		res.wall = max(res.wall, o.latency)
		if o.err == nil {
			res.latencies = append(res.latencies, o.latency)
			continue
		}
		code := "transport"
		var ee *eksauth.Error
		if errors.As(o.err, &ee) {
			code = ee.Code
		}
		res.errs.Add(code, o.err.Error())
	}
	slices.Sort(res.latencies)
	res.assumeRole = after.assumeRole - before.assumeRole
	res.authSTSCalls = after.authSTSCalls - before.authSTSCalls
	res.issuedSTS = after.issuedSTS - before.issuedSTS
	res.issuedCache = after.issuedCache - before.issuedCache
	res.authRequestsOK = after.authOK - before.authOK
	res.podGets = after.podGets - before.podGets
	res.statusWrites = after.statusWrites - before.statusWrites
	cpuAfter := e.cpuTimes()
	res.machineBusy = machineBusy() - busyBefore
	for i, p := range e.procs {
		res.cpu = append(res.cpu, procCPU{p.name, cpuAfter[i] - cpuBefore[i]})
	}
	return res, nil
}

// writeTable prints one line per round, then each round's errors and CPU time.
func writeTable(w io.Writer, results []*roundResult) {
	ms := func(d time.Duration) string { return strconv.FormatFloat(d.Seconds()*1000, 'f', 0, 64) + "ms" }
	fmt.Fprintf(w, "\n%-9s %6s %6s %8s %8s %8s %8s %7s %12s %10s %16s %9s\n",
		"round", "calls", "ok", "wall", "p50", "p99", "max", "errors", "AssumeRole", "auth→sts", "issued sts/cache", "new conns")
	for _, r := range results {
		var maxLat time.Duration
		if n := len(r.latencies); n > 0 {
			maxLat = r.latencies[n-1]
		}
		ar := fmt.Sprintf("%.0f (want %d)", r.assumeRole, r.spec.wantAssumeRole)
		fmt.Fprintf(w, "%-9s %6d %6d %8s %8s %8s %8s %7d %12s %10.0f %16s %9d\n",
			r.spec.name, len(r.spec.calls), len(r.latencies), ms(r.wall), ms(benchstat.Percentile(r.latencies, 50)),
			ms(benchstat.Percentile(r.latencies, 99)), ms(maxLat), r.errs.Total(), ar, r.authSTSCalls,
			fmt.Sprintf("%.0f/%.0f", r.issuedSTS, r.issuedCache), r.newConns)
	}
	for _, r := range results {
		r.errs.Write(w, r.spec.name)
	}
	fmt.Fprintln(w, "\nkube-apiserver requests during each round:")
	for _, r := range results {
		fmt.Fprintf(w, "%-9s GET pod %.0f, association status writes %.0f\n", r.spec.name, r.podGets, r.statusWrites)
	}
	fmt.Fprintln(w, "\nCPU time used during each round (s):")
	for _, r := range results {
		var total time.Duration
		parts := make([]string, 0, len(r.cpu))
		for _, c := range r.cpu {
			total += c.cpu
			parts = append(parts, fmt.Sprintf("%s %.2f", c.name, c.cpu.Seconds()))
		}
		// /proc counts in 10 ms ticks: no share of a short round.
		share := ""
		if r.wall >= time.Second {
			share = fmt.Sprintf(" (%.0f %% of %d cores)", 100*total.Seconds()/(r.wall.Seconds()*float64(runtime.NumCPU())), runtime.NumCPU())
		}
		fmt.Fprintf(w, "%-9s %s; total %.2f over %s wall%s; whole machine %.2f\n", r.spec.name, strings.Join(parts, ", "),
			total.Seconds(), ms(r.wall), share, r.machineBusy.Seconds())
	}
	// When answers come: a steady rate is a queue (a rate limit, one busy
	// lock), a flat then steep curve is CPU.
	fmt.Fprintln(w, "\nanswered by (cumulative, every 500 ms):")
	for _, r := range results {
		if len(r.spec.calls) < 100 {
			continue
		}
		fmt.Fprintf(w, "%-9s %s\n", r.spec.name, timeline(r.latencies, 500*time.Millisecond))
	}
}

// timeline counts the sorted latencies up to each multiple of step.
func timeline(sorted []time.Duration, step time.Duration) string {
	var parts []string
	i := 0
	for t := step; i < len(sorted); t += step {
		for i < len(sorted) && sorted[i] <= t {
			i++
		}
		parts = append(parts, fmt.Sprintf("%.1fs:%d", t.Seconds(), i))
	}
	return strings.Join(parts, " ")
}

// cpuTimes reads the user+system CPU time of each of e.procs (0 when gone).
func (e *env) cpuTimes() []time.Duration {
	out := make([]time.Duration, len(e.procs))
	for i, p := range e.procs {
		out[i], _ = benchstat.ProcessCPU(p.pid)
	}
	return out
}

// machineBusy is the CPU time all processes used since boot (0 when
// /proc/stat cannot be read).
func machineBusy() time.Duration {
	d, _ := benchstat.MachineBusy()
	return d
}
