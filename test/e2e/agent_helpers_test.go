package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/endpointcreds"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/podiam/podiam/test/harness"
	"github.com/podiam/podiam/test/testutil"
)

// agentProc is one `podiam agent` process of a test, on loopback, with
// podiam auth as its backend: the fixture's agent pod of its node is the
// agent's identity (--auth-token-file).
type agentProc struct {
	f    *authFixture
	node string
	// port serves /v1/credentials; probePort /healthz and /readyz;
	// metricsPort /metrics.
	port, probePort, metricsPort int
	proc                         *harness.Process
	logs                         *testutil.SyncBuffer
}

// startAgent starts `podiam agent` for node, with podiam auth (started
// before, startAuth) as its backend and extra flags, and waits for
// /readyz. It listens on 127.0.0.1 only and stops when t ends.
func (f *authFixture) startAgent(node string, extra ...string) *agentProc {
	t := f.t
	t.Helper()
	token, ok := f.agentTokens[node]
	if !ok {
		t.Fatalf("no agent pod on node %q (authFixtureOptions.nodes)", node)
	}
	caFile := filepath.Join(f.dir, "podiam-auth-ca.crt")
	if err := os.WriteFile(caFile, f.authCA, 0o600); err != nil {
		t.Fatal(err)
	}
	ports, err := testutil.FreePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	a := &agentProc{f: f, node: node, port: ports[0], probePort: ports[1], metricsPort: ports[2], logs: new(testutil.SyncBuffer)}
	args := []string{"agent",
		"--backend=podiam",
		fmt.Sprintf("--auth-url=https://127.0.0.1:%d", f.authPort),
		"--auth-ca-file=" + caFile,
		"--auth-token-file=" + token,
		"--kubeconfig=" + cluster.Kubeconfig(),
		"--node-name=" + node,
		"--cluster-name=" + f.clusterName,
		"--listen=" + a.addr(),
		"--probe-port=" + strconv.Itoa(a.probePort),
		"--metrics-address=127.0.0.1",
		"--metrics-port=" + strconv.Itoa(a.metricsPort),
		// The tests make a few backend calls within a second; Amazon's
		// default of 3 per second would only slow them down.
		"--max-service-qps=100",
		// Debug: the cache hits' lines must not leak secrets either.
		"--log-format=json", "--log-level=debug",
		"--shutdown-delay=0s", "--shutdown-timeout=5s",
	}
	args = append(args, extra...)
	// The agent holds no AWS credentials with --backend=podiam: nothing of
	// the machine's own AWS set-up reaches it.
	env := []string{
		"AWS_CONFIG_FILE=" + filepath.Join(f.dir, "no-aws-config"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(f.dir, "no-aws-credentials"),
		"AWS_PROFILE=", "AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=", "AWS_SESSION_TOKEN=",
		"AWS_ROLE_ARN=", "AWS_WEB_IDENTITY_TOKEN_FILE=", "AWS_EC2_METADATA_DISABLED=true", "NODE_NAME=",
	}
	a.proc, err = harness.StartPodiam(podiamBin, a.logs, env, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		a.proc.Stop()
		if logs := a.logs.String(); strings.Contains(logs, "WARNING: DATA RACE") {
			t.Errorf("podiam agent reported a data race:\n%s", tail(logs, 16<<10))
		}
		if t.Failed() {
			t.Logf("podiam agent (%s) output:\n%s", node, tail(a.logs.String(), 16<<10))
		}
	})
	f.waitHTTP(fmt.Sprintf("http://127.0.0.1:%d/readyz", a.probePort), a.proc, a.logs, "podiam agent")
	return a
}

// addr is the agent's listen address, host:port.
func (a *agentProc) addr() string { return "127.0.0.1:" + strconv.Itoa(a.port) }

// url is the credentials endpoint, as AWS_CONTAINER_CREDENTIALS_FULL_URI
// names it.
func (a *agentProc) url() string { return "http://" + a.addr() + "/v1/credentials" }

// agentAnswer is an HTTP answer of the agent.
type agentAnswer struct {
	status      int
	contentType string
	body        string
}

// get sends GET /v1/credentials with token as the raw Authorization header
// (none when token is ""), and host as the Host header (the listen address
// when ""), and returns the answer.
func (a *agentProc) get(token, host string) agentAnswer {
	a.f.t.Helper()
	req, err := http.NewRequestWithContext(a.f.ctx, http.MethodGet, a.url(), nil)
	if err != nil {
		a.f.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	if host != "" {
		req.Host = host
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.f.t.Fatalf("GET %s: %v", a.url(), err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		a.f.t.Fatalf("reading the answer of %s: %v", a.url(), err)
	}
	return agentAnswer{status: resp.StatusCode, contentType: resp.Header.Get("Content-Type"), body: string(b)}
}

// metric sums one metric of the agent.
func (a *agentProc) metric(metric string, labels ...string) float64 {
	return metricSum(a.f.metrics(a.metricsPort), metric, labels...)
}

// backendCalls is the agent's backend calls with result (any when "").
func (a *agentProc) backendCalls(result string) float64 {
	if result == "" {
		return a.metric("podiam_agent_backend_calls_total")
	}
	return a.metric("podiam_agent_backend_calls_total", `result="`+result+`"`)
}

// provider is the AWS SDK for Go v2's container credential provider for the
// agent, set up as config.LoadDefaultConfig sets it up from
// AWS_CONTAINER_CREDENTIALS_FULL_URI and
// AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE (the token file read again on every
// retrieval), without the process environment, so that tests run in
// parallel. Each Retrieve is one request to the agent; wrap it in
// aws.NewCredentialsCache for the SDK's own caching.
func (a *agentProc) provider(tokenFile string) *endpointcreds.Provider {
	return endpointcreds.New(a.url(), func(o *endpointcreds.Options) {
		o.AuthorizationTokenProvider = endpointcreds.TokenProviderFunc(func() (string, error) {
			b, err := os.ReadFile(tokenFile)
			if err != nil {
				return "", fmt.Errorf("reading the authorization token file: %w", err)
			}
			return string(b), nil
		})
	})
}

// stsClient is a client of podiam sts whose credentials come from p through
// the SDK's credentials cache, as an application's would.
func (f *authFixture) stsClient(p aws.CredentialsProvider) *sts.Client {
	return sts.New(sts.Options{Region: authRegion, BaseEndpoint: aws.String(f.stsURL()), RetryMaxAttempts: 1,
		Credentials: aws.NewCredentialsCache(p, func(o *aws.CredentialsCacheOptions) { o.ExpiryWindow = 5 * time.Minute })})
}

// retrieve gets credentials from p and adds them to the secrets checked in
// the logs.
func (f *authFixture) retrieve(p aws.CredentialsProvider) (aws.Credentials, error) {
	creds, err := p.Retrieve(f.ctx)
	if err == nil {
		f.secrets = append(f.secrets, creds.SecretAccessKey, creds.SessionToken)
	}
	return creds, err
}

// checkLogsClean fails t if a token, a secret key or a session token is in
// the agent's log, or in podiam auth's or podiam sts's.
func (a *agentProc) checkLogsClean() {
	a.f.t.Helper()
	a.f.checkLogsClean()
	logs := a.logs.String()
	for _, s := range a.f.secrets {
		needles := []string{s}
		if parts := strings.Split(s, "."); len(parts) == 3 {
			needles = append(needles, parts[2]) // a token's signature
		}
		for _, n := range needles {
			if n != "" && strings.Contains(logs, n) {
				a.f.t.Errorf("podiam agent logged a secret (%d characters, starting %.8q…)", len(n), n)
			}
		}
	}
}

// waitMetric waits until the agent's metric (summed over labels) is want.
func (a *agentProc) waitMetric(want float64, metric string, labels ...string) {
	a.f.t.Helper()
	testutil.Eventually(a.f.t, 10*time.Second, 50*time.Millisecond, fmt.Sprintf("agent metric %s%v = %v", metric, labels, want), func() (bool, string) {
		got := a.metric(metric, labels...)
		return got == want, fmt.Sprint(got)
	})
}

// issuanceLines counts the agent's Info lines for credentials it got from
// the backend for pod (they name its expiration).
func (a *agentProc) issuanceLines(pod string) int {
	n := 0
	for _, m := range a.logLinesOf("INFO", pod) {
		if m["expiration"] != nil {
			n++
		}
	}
	return n
}

// logLines counts the agent's JSON log lines at level about pod.
func (a *agentProc) logLines(level, pod string) int { return len(a.logLinesOf(level, pod)) }

// logLinesOf returns the agent's JSON log lines at level about pod, decoded.
func (a *agentProc) logLinesOf(level, pod string) []map[string]any {
	var out []map[string]any
	for line := range strings.Lines(a.logs.String()) {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["level"] == level && m["pod"] == pod {
			out = append(out, m)
		}
	}
	return out
}
