package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/podiam/podiam/hack/internal/kubefixture"
	"github.com/podiam/podiam/internal/eksauth"
	"github.com/podiam/podiam/test/harness"
	"github.com/podiam/podiam/test/testcluster"
	"github.com/podiam/podiam/test/testutil"
)

// The emulated account, region, cluster and node.
const (
	accountID   = "111122223333"
	region      = "us-east-1"
	clusterName = "bench"
	nodeName    = "node-0"
	appsNS      = "apps"
	// The node's AWS credentials: made up, the stand-in checks only that
	// requests are signed.
	nodeKeyID  = "AKIAPODIAMAGENTBENCH1"
	nodeSecret = "cG9kaWFtLWFnZW50LWJlbmNoLXNlY3JldC1rZXktMDE"
	// setupWorkers bounds concurrent API requests while creating objects.
	setupWorkers = 32
)

// env is everything a run sets up.
type env struct {
	dir     string
	cluster *testcluster.Cluster
	standIn *eksAuthStandIn
	agent   *harness.Process
	// agentLog is the agent's output (JSON logs).
	agentLog string
	// agentAddr is the agent's credentials endpoint, host:port.
	agentAddr  string
	metricsURL string
	// tokens are the app pods' tokens (audience pods.eks.amazonaws.com).
	tokens []string
	// cg is the agent's memory cgroup (-cgroup), exe its executable.
	cg   *memCgroup
	exe  string
	done sync.Once
}

// setUp starts the control plane and the stand-in, creates the node, the
// ServiceAccounts and the pods, gets every pod's token and starts the agent.
// It returns the env even on error, for the logs and the tear-down.
func setUp(ctx context.Context, o options, out io.Writer) (*env, error) {
	begin := time.Now()
	step := func(what string) { fmt.Fprintf(out, "setup %6.1fs  %s\n", time.Since(begin).Seconds(), what) }
	dir, err := os.MkdirTemp("", "podiam-agentload-")
	if err != nil {
		return nil, err
	}
	e := &env{dir: dir}
	if e.cluster, err = testcluster.Start(ctx, testcluster.Options{}); err != nil {
		return e, err
	}
	step("control plane up")
	cfg := e.cluster.RESTConfig()
	cfg.QPS, cfg.Burst = 5000, 5000
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return e, err
	}
	if e.tokens, err = createPods(ctx, client, e.cluster, o); err != nil {
		return e, err
	}
	step(fmt.Sprintf("node %s, %d ServiceAccounts, %d pods on the node and their tokens", nodeName, o.serviceAccounts, o.pods))
	if e.standIn, err = startStandIn(clusterName); err != nil {
		return e, err
	}
	e.exe = o.podiam
	if o.cgroup {
		if e.cg, err = newMemCgroup(o.cgroupParent, o.cgroupLimit); err != nil {
			return e, err
		}
		step("memory cgroup " + e.cg.dir)
	}
	if o.evict {
		left, err := evictPageCache(e.exe)
		if err != nil {
			return e, err
		}
		if left.Resident > 0 {
			return e, fmt.Errorf("%s: %s still in the page cache after POSIX_FADV_DONTNEED (does a running process map it?)", e.exe, left)
		}
		step(fmt.Sprintf("%s evicted from the page cache (%s left)", e.exe, left))
	} else if pc, err := filePageCache(e.exe); err == nil {
		step(fmt.Sprintf("%s in the page cache: %s", e.exe, pc))
	}
	if err := e.startAgent(ctx, o); err != nil {
		return e, err
	}
	step("podiam agent ready (keys fetched, pods synced)")
	return e, nil
}

// createPods creates the node, the ServiceAccounts and the pods (pod i runs
// as ServiceAccount i mod serviceAccounts, spec.nodeName set: nothing
// schedules or runs it) and returns each pod's token from the TokenRequest
// API, bound to the pod, as the kubelet projects it.
func createPods(ctx context.Context, client kubernetes.Interface, c *testcluster.Cluster, o options) ([]string, error) {
	if err := kubefixture.CreateNode(ctx, client, nodeName); err != nil {
		return nil, err
	}
	if err := c.EnsureNamespace(ctx, appsNS, nil); err != nil {
		return nil, err
	}
	saName := func(s int) string { return fmt.Sprintf("app-%03d", s) }
	if err := kubefixture.Parallel(o.serviceAccounts, setupWorkers, func(s int) error {
		return kubefixture.CreateServiceAccount(ctx, client, appsNS, saName(s))
	}); err != nil {
		return nil, err
	}
	tokens := make([]string, o.pods)
	err := kubefixture.Parallel(o.pods, setupWorkers, func(i int) error {
		pod, err := kubefixture.CreatePod(ctx, client, appsNS, fmt.Sprintf("pod-%04d", i), saName(i%o.serviceAccounts), nodeName)
		if err != nil {
			return err
		}
		tokens[i], err = kubefixture.BoundToken(ctx, client, pod, eksauth.Audience)
		return err
	})
	return tokens, err
}

// startAgent starts `podiam agent --backend=eks` on loopback (pinned to
// o.agentCPUs with taskset), signing with made-up node credentials and
// pointed at the stand-in by AWS_ENDPOINT_URL_EKS_AUTH, and waits for
// /readyz.
func (e *env) startAgent(ctx context.Context, o options) error {
	ports, err := testutil.FreePorts(3)
	if err != nil {
		return err
	}
	e.agentAddr = "127.0.0.1:" + strconv.Itoa(ports[0])
	e.metricsURL = fmt.Sprintf("http://127.0.0.1:%d/metrics", ports[2])
	e.agentLog = filepath.Join(e.dir, "agent.log")
	args := []string{"agent",
		"--backend=eks",
		"--kubeconfig=" + e.cluster.Kubeconfig(),
		"--node-name=" + nodeName,
		"--cluster-name=" + clusterName,
		"--listen=" + e.agentAddr,
		"--probe-port=" + strconv.Itoa(ports[1]),
		"--metrics-address=127.0.0.1",
		"--metrics-port=" + strconv.Itoa(ports[2]),
		// The load asks each pod many times a second: the per-pod limit
		// (10/s by default) would answer 429, which is not what is measured.
		"--pod-rate-limit=0",
		"--log-format=json", "--log-level=info",
		"--shutdown-delay=0s", "--shutdown-timeout=5s",
	}
	args = append(args, o.agentArgs...)
	bin := o.podiam
	if o.agentCPUs != "" {
		// taskset execs podiam: same pid, and GOMAXPROCS follows the affinity.
		args = append([]string{"-c", o.agentCPUs, o.podiam}, args...)
		bin = "taskset"
	}
	if e.cg != nil {
		bin, args = e.cg.wrap(bin, args)
	}
	environ := []string{
		"AWS_ACCESS_KEY_ID=" + nodeKeyID, "AWS_SECRET_ACCESS_KEY=" + nodeSecret, "AWS_SESSION_TOKEN=",
		"AWS_REGION=" + region, "AWS_ENDPOINT_URL_EKS_AUTH=" + e.standIn.url,
		// Nothing of the machine's own AWS set-up may leak in.
		"AWS_CONFIG_FILE=" + filepath.Join(e.dir, "no-aws-config"), "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(e.dir, "no-aws-credentials"),
		"AWS_PROFILE=", "AWS_ENDPOINT_URL=", "AWS_EC2_METADATA_DISABLED=true", "NODE_NAME=",
	}
	environ = append(environ, o.agentEnv...)
	if e.agent, err = kubefixture.StartLogged(bin, e.agentLog, environ, args...); err != nil {
		return err
	}
	return kubefixture.WaitReady(ctx, e.agent, fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[1]), "podiam agent", time.Minute)
}

// tearDown stops the agent, removes its cgroup, stops the stand-in and the
// control plane; only once, whether the run ended or was interrupted.
func (e *env) tearDown(keep bool, out io.Writer) {
	e.done.Do(func() { e.stop(keep, out) })
}

func (e *env) stop(keep bool, out io.Writer) {
	if e.agent != nil {
		e.agent.Stop()
	}
	if e.cg != nil {
		if err := e.cg.remove(); err != nil {
			fmt.Fprintf(out, "agentload: %v\n", err)
		}
	}
	if e.standIn != nil {
		e.standIn.stop()
	}
	if e.cluster != nil {
		_ = e.cluster.Stop()
	}
	if keep {
		fmt.Fprintf(out, "work directory kept: %s\n", e.dir)
		return
	}
	_ = os.RemoveAll(e.dir)
}

// dumpLog writes the end of the agent's log.
func (e *env) dumpLog(w io.Writer) { kubefixture.WriteLogTail(w, "podiam agent", e.agentLog) }
