package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podiam/podiam/api/v1alpha1"
	"github.com/podiam/podiam/hack/internal/kubefixture"
	"github.com/podiam/podiam/internal/eksauth"
	"github.com/podiam/podiam/test/harness"
	"github.com/podiam/podiam/test/testcluster"
	"github.com/podiam/podiam/test/testutil"
)

// Names of the emulated AWS account and of the cluster.
const (
	accountID   = "111122223333"
	region      = "us-east-1"
	clusterName = "bench"
	// brokerUser is the IAM user whose static keys `podiam auth` holds; the
	// roles trust it. The keys are made up: they exist in `podiam sts` only.
	brokerUser   = "podiam-auth"
	brokerKeyID  = "AKIAPODIAMAUTHBENCH01"
	brokerSecret = "cG9kaWFtLWF1dGgtYmVuY2gtc2VjcmV0LWtleS0wMQ"
	// The agents' ServiceAccount: `podiam auth`'s default --agent-service-account.
	agentNamespace = "podiam-system"
	agentSA        = "podiam-agent"
	// setupWorkers bounds concurrent API requests while creating objects.
	setupWorkers = 32
)

// call is one request of a round: a pod's token, sent by its node's agent.
type call struct {
	agent int
	token string
}

// proc is a process whose CPU time is reported.
type proc struct {
	name string
	pid  int
}

// env is everything a run sets up.
type env struct {
	dir     string
	cluster *testcluster.Cluster
	sts     *harness.Process
	auth    *harness.Process
	stsLog  string
	authLog string

	stsAddr, authAddr string

	stsMetricsURL, authMetricsURL string
	kube                          kubernetes.Interface // for kube-apiserver's /metrics
	procs                         []proc

	agents   []*eksauth.Client
	newConns atomic.Int64

	pods []call // one per app pod, in creation order
	same call   // the pod of the same-pod round
}

// Names of the objects: ServiceAccount s (with its association and role)
// is app-<s> in namespace apps-<s mod namespaces>; node n is node-<n>.
func nsName(i int) string                 { return fmt.Sprintf("apps-%02d", i) }
func saName(s int) string                 { return fmt.Sprintf("app-%03d", s) }
func saNamespace(o options, s int) string { return nsName(s % o.namespaces) }
func nodeName(n int) string               { return fmt.Sprintf("node-%02d", n) }

// setUp starts the control plane, creates the objects, gets every token and
// starts `podiam sts` and `podiam auth`. It returns the env even on error,
// for the logs and the tear-down.
func setUp(ctx context.Context, o options, out io.Writer) (*env, error) {
	step := stepper(out)
	dir, err := os.MkdirTemp("", "podiam-authload-")
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
	k := &kube{ctx: ctx, cfg: cfg}
	if k.client, err = kubernetes.NewForConfig(cfg); err != nil {
		return e, err
	}
	e.kube = k.client
	if err := kubefixture.InstallCRD(ctx, cfg, "authload"); err != nil {
		return e, err
	}
	step("CRD established")

	tokenFiles, err := e.createAgents(k, o)
	if err != nil {
		return e, err
	}
	step(fmt.Sprintf("%d nodes, %d agent pods and their tokens", o.nodes, o.nodes))
	start := time.Now()
	if err := e.createApps(k, o); err != nil {
		return e, err
	}
	step(fmt.Sprintf("%d ServiceAccounts with an association each, %d app pods and their tokens (%v)",
		o.serviceAccounts, o.pods+1, time.Since(start).Round(time.Millisecond)))

	if err := e.startSTS(ctx, o); err != nil {
		return e, err
	}
	step("podiam sts ready")
	if err := e.startAuth(ctx, o); err != nil {
		return e, err
	}
	step("podiam auth ready")

	// One client per agent, each with its own connection pool, big enough to
	// keep every connection of a round for the next.
	ca, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return e, err
	}
	tlsCfg := harness.TLSClientConfig(ca)
	for n := range o.nodes {
		tr := &http.Transport{
			TLSClientConfig:     tlsCfg.Clone(),
			MaxIdleConnsPerHost: o.pods + o.same,
			MaxConnsPerHost:     o.maxConns,
			IdleConnTimeout:     5 * time.Minute,
			TLSHandshakeTimeout: o.timeout,
		}
		e.agents = append(e.agents, &eksauth.Client{
			Endpoint:   "https://" + e.authAddr,
			HTTPClient: &http.Client{Transport: tr, Timeout: o.timeout},
			Auth:       &eksauth.BearerTokenFile{Path: tokenFiles[n]},
		})
	}
	e.procs = append([]proc{{"podiam-auth", e.auth.Pid()}, {"podiam-sts", e.sts.Pid()}}, controlPlane()...)
	e.procs = append(e.procs, proc{"authload", os.Getpid()})
	return e, nil
}

// kube creates the objects of a run.
type kube struct {
	ctx    context.Context
	cfg    *rest.Config
	client kubernetes.Interface
}

// createAgents creates the nodes and one agent pod on each, and writes each
// agent's token (audience podiam-auth) to a file, as the kubelet projects
// it. It returns the files, by node.
func (e *env) createAgents(k *kube, o options) ([]string, error) {
	if err := e.cluster.EnsureNamespace(k.ctx, agentNamespace, nil); err != nil {
		return nil, err
	}
	if err := kubefixture.CreateServiceAccount(k.ctx, k.client, agentNamespace, agentSA); err != nil {
		return nil, err
	}
	files := make([]string, o.nodes)
	err := kubefixture.Parallel(o.nodes, setupWorkers, func(n int) error {
		if err := kubefixture.CreateNode(k.ctx, k.client, nodeName(n)); err != nil {
			return err
		}
		pod, err := kubefixture.CreatePod(k.ctx, k.client, agentNamespace, "podiam-agent-"+nodeName(n), agentSA, nodeName(n))
		if err != nil {
			return err
		}
		files[n] = filepath.Join(e.dir, "agent-"+nodeName(n)+".token")
		return kubefixture.WriteBoundToken(k.ctx, k.client, pod, "podiam-auth", files[n])
	})
	return files, err
}

// createApps creates the ServiceAccounts, their associations, the app pods
// and their tokens (audience pods.eks.amazonaws.com). Pod i runs on node
// i/(pods/nodes) as ServiceAccount i%serviceAccounts, so every node has
// pods/nodes pods and each ServiceAccount's pods are on several nodes. Then
// the pod of the same-pod round, on the first node.
func (e *env) createApps(k *kube, o options) error {
	for i := range o.namespaces {
		if err := e.cluster.EnsureNamespace(k.ctx, nsName(i), nil); err != nil {
			return err
		}
	}
	if err := kubefixture.Parallel(o.serviceAccounts, setupWorkers, func(s int) error {
		return kubefixture.CreateServiceAccount(k.ctx, k.client, saNamespace(o, s), saName(s))
	}); err != nil {
		return err
	}
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	cc, err := ctrlclient.New(k.cfg, ctrlclient.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	if err := kubefixture.Parallel(o.serviceAccounts, setupWorkers, func(s int) error {
		return cc.Create(k.ctx, &v1alpha1.PodIdentityAssociation{
			ObjectMeta: metav1.ObjectMeta{Name: saName(s), Namespace: saNamespace(o, s)},
			Spec:       v1alpha1.PodIdentityAssociationSpec{ServiceAccount: saName(s), RoleARN: roleARN(saName(s))},
		})
	}); err != nil {
		return fmt.Errorf("creating associations: %w", err)
	}
	appPod := func(s, node int, name string) (call, error) {
		ns := saNamespace(o, s)
		pod, err := kubefixture.CreatePod(k.ctx, k.client, ns, name, saName(s), nodeName(node))
		if err != nil {
			return call{}, err
		}
		tok, err := kubefixture.BoundToken(k.ctx, k.client, pod, eksauth.Audience)
		return call{agent: node, token: tok}, err
	}
	e.pods = make([]call, o.pods)
	perNode := o.pods / o.nodes
	if err := kubefixture.Parallel(o.pods, setupWorkers, func(i int) (err error) {
		e.pods[i], err = appPod(i%o.serviceAccounts, i/perNode, fmt.Sprintf("pod-%04d", i))
		return err
	}); err != nil {
		return err
	}
	e.same, err = appPod(0, 0, "pod-same")
	return err
}

// roleARN is the role of ServiceAccount sa's association.
func roleARN(sa string) string { return "arn:aws:iam::" + accountID + ":role/" + sa }

// startSTS writes the trust policies and the config of `podiam sts` and starts it.
func (e *env) startSTS(ctx context.Context, o options) error {
	principal := "arn:aws:iam::" + accountID + ":user/" + brokerUser
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "accounts:\n- id: %q\n  users:\n  - name: %s\n    accessKeyId: %s\n    secretAccessKey: %s\n  roles:\n",
		accountID, brokerUser, brokerKeyID, brokerSecret)
	for s := range o.serviceAccounts {
		res, err := harness.RunPodiam(ctx, o.podiam, nil, "policy", "trust", "--pod-identity",
			"--principal", principal, "--serviceaccount", saNamespace(o, s)+"/"+saName(s))
		if err != nil {
			return err
		}
		if res.ExitCode != 0 {
			return fmt.Errorf("podiam policy trust: exit %d: %s", res.ExitCode, res.Stderr)
		}
		file := filepath.Join(e.dir, "trust-"+saName(s)+".json")
		if err := os.WriteFile(file, []byte(res.Stdout), 0o600); err != nil {
			return err
		}
		fmt.Fprintf(&cfg, "  - name: %s\n    trustPolicyFile: %s\n", saName(s), file)
	}
	config := filepath.Join(e.dir, "sts.yaml")
	if err := os.WriteFile(config, []byte(cfg.String()), 0o600); err != nil {
		return err
	}
	ports, err := testutil.FreePorts(2)
	if err != nil {
		return err
	}
	e.stsAddr = fmt.Sprintf("127.0.0.1:%d", ports[0])
	e.stsMetricsURL = fmt.Sprintf("http://127.0.0.1:%d/metrics", ports[1])
	e.stsLog = filepath.Join(e.dir, "sts.log")
	if e.sts, err = kubefixture.StartLogged(o.podiam, e.stsLog, nil, "sts", "--config", config,
		"--port", strconv.Itoa(ports[0]), "--metrics-port", strconv.Itoa(ports[1]),
		"--state-key-file", filepath.Join(e.dir, "state.key")); err != nil {
		return err
	}
	return kubefixture.WaitReady(ctx, e.sts, strings.Replace(e.stsMetricsURL, "/metrics", "/healthz", 1), "podiam sts", time.Minute)
}

// startAuth starts `podiam auth` with a loopback serving certificate, the
// broker's static keys in its environment, and `podiam sts` as its STS.
func (e *env) startAuth(ctx context.Context, o options) error {
	ca, err := harness.WriteServingCert(e.dir)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(e.dir, "ca.crt"), ca, 0o600); err != nil {
		return err
	}
	ports, err := testutil.FreePorts(2)
	if err != nil {
		return err
	}
	e.authAddr = fmt.Sprintf("127.0.0.1:%d", ports[0])
	e.authMetricsURL = fmt.Sprintf("http://127.0.0.1:%d/metrics", ports[1])
	e.authLog = filepath.Join(e.dir, "auth.log")
	args := []string{"auth",
		"--port", strconv.Itoa(ports[0]), "--metrics-port", strconv.Itoa(ports[1]),
		"--tls-cert", filepath.Join(e.dir, "tls.crt"), "--tls-key", filepath.Join(e.dir, "tls.key"),
		"--kubeconfig", e.cluster.Kubeconfig(), "--cluster-name", clusterName,
		"--shutdown-delay", "0s"}
	args = append(args, strings.Fields(o.authArgs)...)
	environ := []string{
		"AWS_ACCESS_KEY_ID=" + brokerKeyID, "AWS_SECRET_ACCESS_KEY=" + brokerSecret, "AWS_SESSION_TOKEN=",
		"AWS_REGION=" + region, "AWS_ENDPOINT_URL_STS=http://" + e.stsAddr,
		// Nothing of the machine's own AWS set-up may leak in.
		"AWS_CONFIG_FILE=" + filepath.Join(e.dir, "aws-config"), "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(e.dir, "aws-credentials"),
		"AWS_PROFILE=", "AWS_EC2_METADATA_DISABLED=true",
	}
	if e.auth, err = kubefixture.StartLogged(o.podiam, e.authLog, environ, args...); err != nil {
		return err
	}
	return kubefixture.WaitReady(ctx, e.auth, strings.Replace(e.authMetricsURL, "/metrics", "/readyz", 1), "podiam auth", time.Minute)
}

// stepper prints each set-up step with the time since the first.
func stepper(out io.Writer) func(string) {
	begin := time.Now()
	return func(what string) {
		fmt.Fprintf(out, "setup %6.1fs  %s\n", time.Since(begin).Seconds(), what)
	}
}

// allPods is one call per app pod.
func (e *env) allPods() []call { return e.pods }

// samePod is n calls for the same pod.
func (e *env) samePod(n int) []call {
	calls := make([]call, n)
	for i := range calls {
		calls[i] = e.same
	}
	return calls
}

// controlPlane finds etcd and kube-apiserver among this process's children
// (envtest starts them), for their CPU time.
func controlPlane() []proc {
	var out []proc
	entries, _ := os.ReadDir("/proc")
	self := os.Getpid()
	for _, d := range entries {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		open, closing := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
		if open < 0 || closing < open {
			continue
		}
		comm := string(stat[open+1 : closing])
		fields := strings.Fields(string(stat[closing+1:]))
		if len(fields) < 2 || fields[1] != strconv.Itoa(self) {
			continue
		}
		if comm == "kube-apiserver" || comm == "etcd" {
			out = append(out, proc{comm, pid})
		}
	}
	return out
}

// tearDown stops the processes and the control plane.
func (e *env) tearDown(keep bool, out io.Writer) {
	for _, p := range []*harness.Process{e.auth, e.sts} {
		if p != nil {
			p.Stop()
		}
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

// dumpLogs writes the end of each process's log.
func (e *env) dumpLogs(w io.Writer) {
	kubefixture.WriteLogTail(w, "podiam auth", e.authLog)
	kubefixture.WriteLogTail(w, "podiam sts", e.stsLog)
}
