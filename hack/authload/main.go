// Command authload measures `podiam auth` as issue 9 states its speed target:
// 1,000 pods spread over 10 nodes ask for credentials at once, with the real
// `podiam sts` as STS, and all must have them within 5 s; one STS call per
// (association, pod), however many callers ask at once.
//
// Everything is real except the kubelets: it starts etcd and kube-apiserver
// (test/testcluster, binaries from `make tools`), installs the
// PodIdentityAssociation CRD (deploy/crd), creates -nodes Node objects, one
// agent pod per node (podiam-system/podiam-agent, spec.nodeName set: nothing
// schedules or runs them) and -pods app pods spread evenly over the nodes and
// over -serviceaccounts ServiceAccounts, each with one association and its own
// role. The role's trust policy is what `podiam policy trust --pod-identity
// --principal <podiam auth's user>` writes, and `podiam sts` is configured with
// those roles and with an IAM user whose static keys `podiam auth` gets from
// the SDK's default chain (AWS_ENDPOINT_URL_STS points it at `podiam sts`).
//
// Every token comes from the TokenRequest API before anything is measured,
// bound to its pod: the agents' with audience podiam-auth (written to files,
// read per call as an agent reads its projected token), the apps' with
// audience pods.eks.amazonaws.com. Each agent is one internal/eksauth Client
// with its bearer token file and its own HTTP/1.1 connection pool, as one
// agent process per node would be.
//
// Rounds, one after the other; every request of a round waits on one barrier
// and they are released together:
//
//   - cold: every app pod once, from its node's agent; the credential cache is
//     empty, so `podiam sts` must count one AssumeRole per pod;
//   - warm: the same again: every answer from the cache, no AssumeRole;
//   - same-pod: -same callers ask for one pod not asked for before, at once:
//     one AssumeRole.
//
// For each round it prints the wall time from the release to the last answer,
// latency percentiles, errors by EKS Auth code, the AssumeRole calls counted
// by `podiam sts` (its /metrics), `podiam auth`'s own counters, new TLS
// connections, the pod GETs and status writes kube-apiserver counted, the CPU
// time each process and the whole machine used (everything shares its cores),
// and how many answers had come every 500 ms. With -perf it records podiam
// auth with `perf record -g` during the cold round.
//
// Exit status: 0 all answered with credentials, the AssumeRole counts as
// expected and the cold round within -max-wall; 1 a request failed or a count
// differs; 2 setup error; 3 no failure but the cold round took longer than
// -max-wall.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/podiam/podiam/hack/internal/benchstat"
)

// options are authload's flags.
type options struct {
	podiam          string
	pods            int
	nodes           int
	serviceAccounts int
	namespaces      int
	same            int
	maxWall         time.Duration
	maxConns        int
	timeout         time.Duration
	authArgs        string
	perf            string
	keep            bool
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("authload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.podiam, "podiam", "bin/podiam", "the podiam binary to run as podiam sts and podiam auth")
	fs.IntVar(&o.pods, "pods", 1000, "app pods, each asking once per round")
	fs.IntVar(&o.nodes, "nodes", 10, "nodes (one agent each); pods are spread evenly over them")
	fs.IntVar(&o.serviceAccounts, "serviceaccounts", 100, "ServiceAccounts, each with one association and one role; pods are spread evenly over them")
	fs.IntVar(&o.namespaces, "namespaces", 10, "namespaces the ServiceAccounts are spread over")
	fs.IntVar(&o.same, "same", 20, "callers of the same-pod round")
	fs.DurationVar(&o.maxWall, "max-wall", 5*time.Second, "target for the cold round: exit 3 when its last answer comes later")
	fs.IntVar(&o.maxConns, "max-conns", 0, "connections per agent to podiam auth (0: as many as concurrent requests, Go's default)")
	fs.DurationVar(&o.timeout, "timeout", 60*time.Second, "per-request timeout")
	fs.StringVar(&o.authArgs, "auth-args", "", "extra flags for podiam auth, space-separated (e.g. \"--node-burst 1000\")")
	fs.StringVar(&o.perf, "perf", "", "record podiam auth's CPU with \"perf record -g\" during the cold round into this file")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (logs, configs, tokens) and print its path")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 || o.pods < 1 || o.nodes < 1 || o.serviceAccounts < 1 || o.namespaces < 1 ||
		o.serviceAccounts < o.namespaces || o.same < 1 || o.pods%o.nodes != 0 {
		fmt.Fprintln(stderr, "authload: need -pods a multiple of -nodes, -serviceaccounts >= -namespaces >= 1, -same >= 1 and no arguments")
		fs.Usage()
		return 2
	}

	ctx := context.Background()
	env, err := setUp(ctx, o, stdout)
	if env != nil {
		defer env.tearDown(o.keep, stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "authload: %v\n", err)
		if env != nil {
			env.dumpLogs(stderr)
		}
		return 2
	}

	// The machine is shared: what else ran says how far to trust the wall times.
	if la, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Fprintf(stdout, "load average before the rounds: %s", la)
	}
	rounds := []roundSpec{
		{name: "cold", calls: env.allPods(), wantAssumeRole: o.pods},
		{name: "warm", calls: env.allPods(), wantAssumeRole: 0},
		{name: "same-pod", calls: env.samePod(o.same), wantAssumeRole: 1},
	}
	var results []*roundResult
	for i, spec := range rounds {
		var prof *benchstat.Profile
		if i == 0 && o.perf != "" {
			if prof, err = benchstat.StartProfile(env.auth.Pid(), o.perf); err != nil {
				fmt.Fprintf(stderr, "authload: %v\n", err)
				return 2
			}
		}
		res, err := env.fire(ctx, spec, o.timeout)
		if prof != nil {
			prof.Finish(stdout, "podiam auth during the cold round")
		}
		if err != nil {
			fmt.Fprintf(stderr, "authload: round %s: %v\n", spec.name, err)
			env.dumpLogs(stderr)
			return 2
		}
		results = append(results, res)
	}
	writeTable(stdout, results)

	status := 0
	for _, r := range results {
		if r.errs.Total() > 0 || r.assumeRole != float64(r.spec.wantAssumeRole) {
			status = 1
		}
	}
	switch {
	case status != 0:
		fmt.Fprintln(stdout, "FAIL: a request failed or `podiam sts` counted other AssumeRole calls than expected")
		env.dumpLogs(stderr)
	case results[0].wall > o.maxWall:
		fmt.Fprintf(stdout, "FAIL: cold round %v > %v\n", results[0].wall.Round(time.Millisecond), o.maxWall)
		status = 3
	default:
		fmt.Fprintf(stdout, "PASS: %d pods on %d nodes had credentials %v after asking at once (target %v)\n",
			o.pods, o.nodes, results[0].wall.Round(time.Millisecond), o.maxWall)
	}
	return status
}
