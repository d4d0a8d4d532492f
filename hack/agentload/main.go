// Command agentload measures `podiam agent` as issue 10 states its speed
// targets: credentials served from cache at 20,000 requests per second or
// more on one core with p99 under 1 ms, one backend call per (association,
// pod) per credential lifetime, and under 40 MiB resident with 250 pods on
// the node.
//
// Everything is real except the kubelet and EKS Auth: it starts etcd and
// kube-apiserver (test/testcluster, binaries from `make tools`), creates a
// Node, -serviceaccounts ServiceAccounts and -pods pods on the node
// (spec.nodeName set: nothing schedules or runs them), and gets each pod's
// token from the TokenRequest API (audience pods.eks.amazonaws.com, bound to
// the pod), as the kubelet projects it. It runs the released binary as
// `podiam agent --backend=eks` on loopback, pinned to -agent-cpus with
// taskset, with made-up node credentials and AWS_ENDPOINT_URL_EKS_AUTH
// pointing at a stand-in EKS Auth endpoint in this process: it answers in
// EKS Auth's wire format, checks only that the request is SigV4-signed, and
// counts the calls. The agent checks the tokens itself (the cluster's keys,
// its issuer, this node) and watches the node's pods, as on a real node.
//
// Phases:
//
//   - cold: every pod asks once, all at once (-cold-c: so many at a time),
//     each on its own connection, retrying an answer 429 (the agent's
//     node-wide limit on new tokens to verify) as the AWS SDKs do: the
//     stand-in must count exactly one call per pod;
//   - load: -c keep-alive connections send requests back to back, going
//     round the pods' tokens, for -warmup (not counted) then -d; every
//     answer should come from the cache: the stand-in must count no call.
//
// It prints the load's requests per second and latency percentiles
// (nearest rank over every request), errors by kind, the agent's CPU time
// per request (from /proc/<pid>/stat), the backend calls of each phase (the
// stand-in's count and the agent's own metrics) and the agent's VmRSS and
// VmHWM after each phase and after -idle without requests. With -perf it
// records the agent with `perf record -g` during the load.
//
// With -cgroup the agent runs in a memory cgroup of its own (cgroup v1,
// created under -cgroup-parent and removed at the end), and each phase also
// reports what Kubernetes counts: the cgroup's usage, its peak, rss, page
// cache (mapped, active, inactive), kernel memory and the kubelet's working
// set (usage less inactive file pages), and how much of the executable is in
// the page cache; -cgroup-limit sets the group's limit, as a container's. A
// page of the page cache is charged to the cgroup that read it first: as
// after a container runtime unpacked the image, the executable's pages are
// the writer's (bench-agent.sh copies the binary anew). With
// -evict they are dropped from the page cache before the agent starts
// (written back, then POSIX_FADV_DONTNEED, checked with mincore), so that
// the agent's own page faults read them and they are charged to its cgroup:
// the worst case.
//
// Exit status: 0 every target met; 1 a request failed or the backend calls
// differ from one per pod; 2 setup error; 3 no failure but a target
// (-min-rps, -max-p99, -max-rss) missed.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/podiam/podiam/hack/internal/benchstat"
)

// options are agentload's flags.
type options struct {
	podiam          string
	pods            int
	serviceAccounts int
	conns           int
	coldConns       int
	warmup, dur     time.Duration
	agentCPUs       string
	agentArgs       []string
	agentEnv        []string
	perf            string
	keep            bool
	minRPS          float64
	maxP99          time.Duration
	maxRSSMiB       float64
	idle            time.Duration
	cgroup          bool
	cgroupParent    string
	cgroupLimit     int64
	evict           bool
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("agentload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var agentArgs, agentEnv string
	fs.StringVar(&o.podiam, "podiam", "bin/podiam", "the podiam binary to run as podiam agent")
	fs.IntVar(&o.pods, "pods", 250, "pods on the node, each with its own token")
	fs.IntVar(&o.serviceAccounts, "serviceaccounts", 25, "ServiceAccounts (one association each at the stand-in); pods are spread evenly over them")
	fs.IntVar(&o.conns, "c", 4, "keep-alive connections of the load")
	fs.IntVar(&o.coldConns, "cold-c", 0, "pods asking at once in the cold phase (0: all at once, as after the agent restarts)")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "load not counted, before -d")
	fs.DurationVar(&o.dur, "d", 10*time.Second, "measured load")
	fs.StringVar(&o.agentCPUs, "agent-cpus", "0", "CPUs the agent is pinned to (taskset -c); empty: not pinned")
	fs.StringVar(&agentArgs, "agent-args", "", "extra flags for podiam agent, space-separated")
	fs.StringVar(&agentEnv, "agent-env", "", "extra environment of podiam agent, space-separated KEY=VALUE (e.g. \"GOMEMLIMIT=24MiB\")")
	fs.StringVar(&o.perf, "perf", "", "record the agent's CPU with \"perf record -g\" during the load into this file")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (the agent's log) and print its path")
	fs.Float64Var(&o.minRPS, "min-rps", 20000, "target: answers per second of the load")
	fs.DurationVar(&o.maxP99, "max-p99", time.Millisecond, "target: p99 latency of the load")
	fs.Float64Var(&o.maxRSSMiB, "max-rss", 40, "target: the agent's VmHWM in MiB after the load")
	fs.DurationVar(&o.idle, "idle", 30*time.Second, "after the load, read the agent's memory again after this long without requests (0: not)")
	fs.BoolVar(&o.cgroup, "cgroup", false, "run the agent in a memory cgroup of its own (cgroup v1) and report its accounting")
	fs.StringVar(&o.cgroupParent, "cgroup-parent", defaultCgroupParent, "with -cgroup: the memory cgroup to create the agent's in")
	fs.Func("cgroup-limit", "with -cgroup: the cgroup's memory limit, as a container's (e.g. 32Mi; default none)", func(v string) error {
		q, err := resource.ParseQuantity(v)
		if err != nil || q.Value() <= 0 {
			return fmt.Errorf("want a positive quantity such as 32Mi")
		}
		o.cgroupLimit = q.Value()
		return nil
	})
	fs.BoolVar(&o.evict, "evict", false, "drop the executable from the page cache before the agent starts, so that the agent's page faults read it (and, with -cgroup, charge it to the agent's cgroup)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	o.agentArgs, o.agentEnv = strings.Fields(agentArgs), strings.Fields(agentEnv)
	if fs.NArg() > 0 || o.pods < 1 || o.serviceAccounts < 1 || o.conns < 1 || o.coldConns < 0 || o.dur <= 0 || o.warmup < 0 || o.idle < 0 {
		fmt.Fprintln(stderr, "agentload: need -pods, -serviceaccounts, -c >= 1, -d > 0 and no arguments")
		fs.Usage()
		return 2
	}
	if o.cgroupLimit > 0 && !o.cgroup {
		fmt.Fprintln(stderr, "agentload: -cgroup-limit needs -cgroup")
		return 2
	}

	ctx := context.Background()
	e, err := setUp(ctx, o, stdout)
	if e != nil {
		defer e.tearDown(o.keep, stdout)
		// Interrupted, it still stops what it started and removes the cgroup.
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
		defer signal.Stop(sigs)
		go func() {
			if _, ok := <-sigs; ok {
				e.tearDown(o.keep, stdout)
				os.Exit(2)
			}
		}()
	}
	if err != nil {
		fmt.Fprintf(stderr, "agentload: %v\n", err)
		if e != nil {
			e.dumpLog(stderr)
		}
		return 2
	}
	status, err := measure(ctx, e, o, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "agentload: %v\n", err)
		e.dumpLog(stderr)
		return 2
	}
	if status == 1 {
		e.dumpLog(stderr)
	}
	return status
}

// snapshot is what is read of the agent between phases.
type snapshot struct {
	cpu          time.Duration
	selfCPU      time.Duration // agentload's own (the load generator)
	machine      time.Duration // every process's, benchstat.MachineBusy
	mem          benchstat.Memory
	standInCalls int64
	standInConns int64   // connections the agent opened to the stand-in
	backendCalls float64 // the agent's podiam_agent_backend_calls_total
	cacheHits    float64
	// With -cgroup: the agent's cgroup and how much of its executable is in
	// the page cache.
	cg  cgroupMemory
	exe pageCache
}

func (e *env) snapshot(ctx context.Context) (snapshot, error) {
	var s snapshot
	var err error
	pid := e.agent.Pid()
	if s.cpu, err = benchstat.ProcessCPU(pid); err != nil {
		return s, err
	}
	if s.selfCPU, err = benchstat.ProcessCPU(os.Getpid()); err != nil {
		return s, err
	}
	if s.machine, err = benchstat.MachineBusy(); err != nil {
		return s, err
	}
	if s.mem, err = benchstat.ProcessMemory(pid); err != nil {
		return s, err
	}
	s.standInCalls = e.standIn.calls.Load()
	s.standInConns = e.standIn.conns.Load()
	m, err := benchstat.Scrape(ctx, e.metricsURL)
	if err != nil {
		return s, fmt.Errorf("reading the agent's metrics: %w", err)
	}
	s.backendCalls = m.Sum("podiam_agent_backend_calls_total")
	s.cacheHits = m.Sum("podiam_agent_cache_hits_total")
	if e.cg != nil {
		if s.cg, err = e.cg.read(); err != nil {
			return s, err
		}
		if s.exe, err = filePageCache(e.exe); err != nil {
			return s, err
		}
	}
	return s, nil
}

// writeMemory prints what a snapshot read of the agent's memory.
func (e *env) writeMemory(out io.Writer, when string, s snapshot) {
	fmt.Fprintf(out, "%s: %s\n", when, s.mem)
	if e.cg != nil {
		fmt.Fprintf(out, "%s: cgroup %s; executable in the page cache %s\n", when, s.cg, s.exe)
	}
}

// measure runs the phases and prints what they measured; it returns the
// exit status.
func measure(ctx context.Context, e *env, o options, out io.Writer) (int, error) {
	reqs := make([][]byte, len(e.tokens))
	for i, t := range e.tokens {
		reqs[i] = buildRequest(e.agentAddr, t)
	}
	if la, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Fprintf(out, "load average before the phases: %s", la)
	}
	s0, err := e.snapshot(ctx)
	if err != nil {
		return 2, err
	}
	fmt.Fprintf(out, "\nagent CPU at start %.2fs\n", s0.cpu.Seconds())
	e.writeMemory(out, "agent started", s0)

	cold := askOnce(ctx, e.agentAddr, reqs, o.coldConns)
	s1, err := e.snapshot(ctx)
	if err != nil {
		return 2, err
	}
	coldCalls := s1.standInCalls - s0.standInCalls
	at := "all at once"
	if o.coldConns > 0 && o.coldConns < o.pods {
		at = fmt.Sprintf("%d at a time", o.coldConns)
	}
	fmt.Fprintf(out, "\ncold: %d pods asked once, %s: %d with credentials, %d failed, last answer after %s\n",
		o.pods, at, cold.ok, o.pods-cold.ok, benchstat.FormatDuration(cold.wall))
	if cold.throttled > 0 {
		fmt.Fprintf(out, "cold: %d pods answered 429 first (the node's limit on new tokens to verify), %d such answers in all, retried\n",
			cold.throttledPods, cold.throttled)
	}
	cold.errs.Write(out, "cold")
	fmt.Fprintf(out, "cold: backend calls: %d at the stand-in (want %d, %d refused) on %d connections, %.0f by the agent's metrics; agent CPU %.2fs\n",
		coldCalls, o.pods, e.standIn.refused.Load(), s1.standInConns-s0.standInConns, s1.backendCalls-s0.backendCalls, (s1.cpu - s0.cpu).Seconds())
	e.writeMemory(out, fmt.Sprintf("after the %d pods", o.pods), s1)

	var prof *benchstat.Profile
	if o.perf != "" {
		if prof, err = benchstat.StartProfile(e.agent.Pid(), o.perf); err != nil {
			return 2, err
		}
	}
	// The warm-up's CPU is not counted: read the agent's at its end.
	var sw snapshot
	warmRead := make(chan error, 1)
	go func() {
		time.Sleep(o.warmup)
		var err error
		sw, err = e.snapshot(ctx)
		warmRead <- err
	}()
	load, err := runLoad(ctx, e.agentAddr, reqs, o.conns, o.warmup, o.dur)
	if prof != nil {
		prof.Finish(out, "podiam agent during the load")
	}
	if err != nil {
		return 2, err
	}
	if err := <-warmRead; err != nil {
		return 2, err
	}
	s2, err := e.snapshot(ctx)
	if err != nil {
		return 2, err
	}
	lat := benchstat.Summarize(load.latencies)
	rps := 0.0
	if load.elapsed > 0 {
		rps = float64(lat.Count) / load.elapsed.Seconds()
	}
	answered := lat.Count + load.errs.Total()
	cpu := s2.cpu - sw.cpu
	fmt.Fprintf(out, "\nload: %d keep-alive connections round the %d pods' tokens, %v warm-up then %v\n", o.conns, o.pods, o.warmup, o.dur)
	fmt.Fprintf(out, "load: %d answers, %d with credentials, %d failed, %d reconnects, %.3fs\n",
		answered, lat.Count, load.errs.Total(), load.redials, load.elapsed.Seconds())
	load.errs.Write(out, "load")
	fmt.Fprintf(out, "load: %.0f req/s; latency min %s p50 %s p90 %s p99 %s p99.9 %s max %s\n", rps,
		f(lat.Min), f(lat.P50), f(lat.P90), f(lat.P99), f(lat.P999), f(lat.Max))
	perReq := time.Duration(0)
	if answered > 0 {
		perReq = cpu / time.Duration(answered)
	}
	fmt.Fprintf(out, "load: agent CPU %.2fs over %.2fs (%.0f %% of a core), %s per request; load generator %.2fs; whole machine %.2fs of %.2fs (2 cores)\n",
		cpu.Seconds(), load.elapsed.Seconds(), 100*cpu.Seconds()/max(load.elapsed.Seconds(), 1e-9), f(perReq),
		(s2.selfCPU - sw.selfCPU).Seconds(), (s2.machine - sw.machine).Seconds(), 2*load.elapsed.Seconds())
	loadCalls := s2.standInCalls - s1.standInCalls
	fmt.Fprintf(out, "load: backend calls: %d at the stand-in (want 0), %.0f by the agent's metrics; cache hits %.0f\n",
		loadCalls, s2.backendCalls-s1.backendCalls, s2.cacheHits-s1.cacheHits)
	e.writeMemory(out, "after the load", s2)
	if o.idle > 0 {
		time.Sleep(o.idle)
		s3, err := e.snapshot(ctx)
		if err != nil {
			return 2, err
		}
		e.writeMemory(out, fmt.Sprintf("after %v idle", o.idle), s3)
	}

	var missed []string
	if rps < o.minRPS {
		missed = append(missed, fmt.Sprintf("%.0f req/s < %.0f", rps, o.minRPS))
	}
	if lat.P99 > o.maxP99 {
		missed = append(missed, fmt.Sprintf("p99 %s > %s", f(lat.P99), f(o.maxP99)))
	}
	if peak := float64(s2.mem.Peak) / (1 << 20); peak > o.maxRSSMiB {
		missed = append(missed, fmt.Sprintf("VmHWM %.1f MiB > %.0f MiB", peak, o.maxRSSMiB))
	}
	switch {
	case cold.ok != o.pods || load.errs.Total() > 0 || coldCalls != int64(o.pods) || loadCalls != 0:
		fmt.Fprintln(out, "FAIL: a request failed or the backend calls are not one per pod")
		return 1, nil
	case len(missed) > 0:
		fmt.Fprintf(out, "MISSED: %s\n", strings.Join(missed, "; "))
		return 3, nil
	default:
		fmt.Fprintf(out, "PASS: %.0f req/s (>= %.0f), p99 %s (< %s), one backend call per pod, VmHWM %s (< %.0f MiB)\n",
			rps, o.minRPS, f(lat.P99), f(o.maxP99), benchstat.MiB(s2.mem.Peak), o.maxRSSMiB)
		return 0, nil
	}
}

func f(d time.Duration) string { return benchstat.FormatDuration(d) }
