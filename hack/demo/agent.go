package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	corev1 "k8s.io/api/core/v1"

	"github.com/podiam/podiam/hack/internal/benchstat"
	"github.com/podiam/podiam/hack/internal/kubefixture"
	"github.com/podiam/podiam/internal/inject"
	"github.com/podiam/podiam/test/harness"
	"github.com/podiam/podiam/test/testcluster"
	"github.com/podiam/podiam/test/testutil"
)

// podAppMarker, set in the environment, makes the demo's binary the pod's
// application (podAppMain) instead of the demo.
const podAppMarker = "PODIAM_DEMO_POD_APP"

// backendCallsMetric counts the agent's calls to its backend, podiam auth.
const backendCallsMetric = "podiam_agent_backend_calls_total"

// agentServer is the demo's running `podiam agent`.
type agentServer struct {
	proc *harness.Process
	logs *testutil.SyncBuffer
	// addr is the credentials endpoint's host:port; metrics serves /metrics.
	addr, metrics string
}

// startAgent starts `podiam agent` for node on loopback, with podiam auth as
// its backend and tokenFile (the token of the agent's pod on node) as its
// identity, and waits until it is ready.
func startAgent(ctx context.Context, bin, dir string, cluster *testcluster.Cluster, auth *authServer, node, tokenFile string) (*agentServer, error) {
	ports, err := testutil.FreePorts(3)
	if err != nil {
		return nil, err
	}
	a := &agentServer{logs: new(testutil.SyncBuffer), addr: "127.0.0.1:" + strconv.Itoa(ports[0]),
		metrics: fmt.Sprintf("http://127.0.0.1:%d/metrics", ports[2])}
	// With --backend=podiam the agent holds no AWS credentials: nothing of
	// the machine's own AWS set-up reaches it.
	env := []string{
		"AWS_CONFIG_FILE=" + filepath.Join(dir, "no-aws-config"), "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(dir, "no-aws-credentials"),
		"AWS_PROFILE=", "AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=", "AWS_SESSION_TOKEN=", "AWS_EC2_METADATA_DISABLED=true", "NODE_NAME=",
	}
	a.proc, err = harness.StartPodiam(bin, a.logs, env, "agent",
		"--backend=podiam", "--auth-url="+auth.endpoint, "--auth-ca-file="+auth.caFile, "--auth-token-file="+tokenFile,
		"--kubeconfig="+cluster.Kubeconfig(), "--node-name="+node, "--cluster-name="+clusterName,
		"--listen="+a.addr, "--probe-port="+strconv.Itoa(ports[1]),
		"--metrics-address=127.0.0.1", "--metrics-port="+strconv.Itoa(ports[2]),
		"--log-format=json", "--shutdown-delay=0s")
	if err != nil {
		return nil, err
	}
	readyz := fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[1])
	if err := kubefixture.WaitReady(ctx, a.proc, readyz, "podiam agent", 30*time.Second); err != nil {
		a.proc.Stop()
		return nil, fmt.Errorf("%w\n%s", err, a.logs.String())
	}
	fmt.Printf("  podiam agent    %s's agent at %s (on a node: 169.254.170.23:80), backend podiam auth;\n"+
		"                  its identity: pod %s/%s-%s's token (audience podiam-auth), from a file as projected\n",
		node, a.url(), agentNamespace, agentSA, node)
	return a, nil
}

// url is the credentials endpoint, as AWS_CONTAINER_CREDENTIALS_FULL_URI
// names it.
func (a *agentServer) url() string { return "http://" + a.addr + "/v1/credentials" }

// get sends the agent a token as a pod's SDK does, and returns the answer's
// status and body (the reason of a refusal, in plain text).
func (a *agentServer) get(ctx context.Context, token string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.url(), nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Authorization", token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("GET %s: %w", a.url(), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return 0, "", fmt.Errorf("reading the answer of %s: %w", a.url(), err)
	}
	return resp.StatusCode, strings.TrimSpace(string(body)), nil
}

// backendCalls is how many calls the agent has made to podiam auth.
func (a *agentServer) backendCalls(ctx context.Context) (float64, error) {
	m, err := benchstat.Scrape(ctx, a.metrics)
	if err != nil {
		return 0, err
	}
	return m.Sum(backendCallsMetric), nil
}

// podAppEnv is the environment of the pod's application: the machine's,
// without any AWS_ variable, then the pod's container env as the webhook
// injected it, with the agent's link-local address replaced by agentURL and
// the token's mount path by tokenFile, then podiam sts as the STS endpoint.
// Nothing of the machine's own AWS set-up reaches the SDK.
func podAppEnv(pod *corev1.Pod, agentURL, tokenFile, stsEndpoint, dir string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, podAppMarker+"=") {
			env = append(env, kv)
		}
	}
	env = append(env, podAppMarker+"=1", "AWS_REGION="+region, "AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE="+filepath.Join(dir, "no-aws-config"), "AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(dir, "no-aws-credentials"))
	for _, e := range pod.Spec.Containers[0].Env {
		value := e.Value
		switch e.Name {
		case inject.EnvContainerCredsURI:
			value = agentURL
		case inject.EnvContainerCredsToken:
			value = tokenFile
		}
		env = append(env, e.Name+"="+value)
	}
	return append(env, "AWS_ENDPOINT_URL_STS="+stsEndpoint)
}

// podAppResult is what the pod's application prints: where its credentials
// came from and who they are.
type podAppResult struct {
	// Source is the SDK's name of the credentials provider.
	Source    string
	AccountID string
	// ARN is GetCallerIdentity's answer.
	ARN string
}

// runPodApp runs the pod's application, this binary with podAppMarker in
// env, and returns what it printed. A child process, so that the SDK reads
// its settings from the environment, as in the pod, without the demo
// changing its own.
func runPodApp(ctx context.Context, env []string) (podAppResult, error) {
	self, err := os.Executable()
	if err != nil {
		return podAppResult{}, fmt.Errorf("finding the demo's binary: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, self)
	cmd.Env, cmd.Stdout, cmd.Stderr = env, &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return podAppResult{}, fmt.Errorf("the pod's application: %w\n%s", err, stderr.String())
	}
	var res podAppResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return podAppResult{}, fmt.Errorf("the pod's application printed %q: %w", stdout.String(), err)
	}
	return res, nil
}

// podAppMain is the pod's application: the AWS SDK for Go v2's default
// configuration, whose credential chain finds AWS_CONTAINER_CREDENTIALS_FULL_URI
// and AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE and so asks the node agent, and
// GetCallerIdentity signed with those credentials. It prints a podAppResult
// (never the credentials) and returns the exit status.
func podAppMain() int {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loading the AWS SDK's configuration:", err)
		return 1
	}
	// Credentials first, for their source; GetCallerIdentity then uses the
	// SDK's cached copy, with no second request to the agent.
	creds, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "getting credentials:", err)
		return 1
	}
	id, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "GetCallerIdentity:", err)
		return 1
	}
	out, err := json.Marshal(podAppResult{Source: creds.Source, AccountID: creds.AccountID, ARN: aws.ToString(id.Arn)})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(string(out))
	return 0
}
