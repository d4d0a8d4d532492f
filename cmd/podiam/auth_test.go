package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/yaml"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/podiam/podiam/internal/eksauth"
)

// parseAuthFlags parses args as `podiam auth` does and validates them.
func parseAuthFlags(t *testing.T, args ...string) (*authFlags, authValidated, error) {
	t.Helper()
	cmd, f := authCommand()
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatalf("parsing %q: %v", args, err)
	}
	v, err := validateAuthFlags(f)
	return f, v, err
}

// Each bad value fails with an error that names its flag and says why.
func TestValidateAuthFlagsRejects(t *testing.T) {
	const name = "--cluster-name=prod"
	tests := []struct {
		args []string
		want string
	}{
		{nil, "--cluster-name is required"},
		{[]string{"--cluster-name=-prod"}, `--cluster-name="-prod"`},
		{[]string{"--cluster-name=my cluster"}, `--cluster-name="my cluster"`},
		{[]string{"--cluster-name=" + strings.Repeat("a", 101)}, "--cluster-name="},
		{[]string{name, "--cluster-arn=prod"}, `--cluster-arn="prod": not an ARN`},
		{[]string{name, "--cluster-arn=arn:aws:ecs:eu-west-1:111122223333:cluster/prod"}, `service "ecs", want eks`},
		{[]string{name, "--cluster-arn=arn:aws:eks::111122223333:cluster/prod"}, "no region"},
		{[]string{name, "--cluster-arn=arn:aws:eks:eu-west-1:1111:cluster/prod"}, `account "1111", want 12 digits`},
		{[]string{name, "--cluster-arn=arn:aws:eks:eu-west-1:111122223333:nodegroup/prod/ng/1"}, `resource "nodegroup/prod/ng/1", want cluster/<name>`},
		{[]string{name, "--cluster-arn=arn:aws:eks:eu-west-1:111122223333:cluster/staging"}, `--cluster-arn="arn:aws:eks:eu-west-1:111122223333:cluster/staging": names cluster "staging"`},
		{[]string{name, "--agent-service-account=podiam-agent"}, `--agent-service-account="podiam-agent": want NAMESPACE/NAME`},
		{[]string{name, "--agent-service-account=/podiam-agent"}, "want NAMESPACE/NAME"},
		{[]string{name, "--agent-service-account=kube-system/"}, "want NAMESPACE/NAME"},
		{[]string{name, "--agent-service-account=kube-system/a/b"}, "want NAMESPACE/NAME"},
		{[]string{name, "--agent-service-account=Kube_System/agent"}, `namespace "Kube_System" is not a valid namespace name`},
		{[]string{name, "--agent-service-account=kube-system/Agent!"}, `"Agent!" is not a valid ServiceAccount name`},
		{[]string{name, "--agent-audience="}, "--agent-audience must not be empty"},
		{[]string{name, "--node-rate-limit=0"}, "--node-rate-limit=0: want more than 0"},
		{[]string{name, "--node-rate-limit=-5"}, "--node-rate-limit=-5"},
		{[]string{name, "--node-rate-limit=NaN"}, "--node-rate-limit=NaN"},
		{[]string{name, "--node-burst=0"}, "--node-burst=0: want at least 1"},
		{[]string{name, "--session-duration=10m"}, "--session-duration=10m0s: want whole seconds from 15m to 12h"},
		{[]string{name, "--session-duration=13h"}, "--session-duration=13h0m0s"},
		{[]string{name, "--session-duration=1h0.5s"}, "--session-duration=1h0m0.5s"},
		{[]string{name, "--cert-mode=vault"}, `--cert-mode="vault": want file or self-managed`},
		{[]string{name, "--cert-mode=self-managed", "--namespace=Podiam"}, `--namespace="Podiam"`},
		{[]string{name, "--cert-mode=self-managed", "--tls-secret=a/b"}, `--tls-secret="a/b"`},
		{[]string{name, "--cert-mode=self-managed", "--ca-configmap=CA"}, `--ca-configmap="CA"`},
		{[]string{name, "--port=0"}, "--port=0: want 1 to 65535"},
		{[]string{name, "--metrics-port=70000"}, "--metrics-port=70000"},
		{[]string{name, "--port=9000", "--metrics-port=9000"}, "--metrics-port=9000: the same as --port"},
		{[]string{name, "--metrics-port=8443"}, "--metrics-port=8443: the same as --port"},
		{[]string{name, "--address=localhost"}, `--address="localhost": want an IP address`},
		{[]string{name, "--shutdown-delay=-1s"}, "--shutdown-delay=-1s"},
		{[]string{name, "--shutdown-timeout=-1s"}, "--shutdown-timeout=-1s"},
		{[]string{name, "--log-format=xml"}, `--log-format="xml"`},
		{[]string{name, "--log-level=loud"}, `--log-level="loud"`},
		{[]string{name, "--issuer= https://issuer"}, "leading or trailing spaces"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, _, err := parseAuthFlags(t, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// Every bad flag is reported at once, not one per start.
func TestValidateAuthFlagsReportsAll(t *testing.T) {
	_, _, err := parseAuthFlags(t, "--node-burst=0", "--port=0", "--agent-service-account=x")
	for _, want := range []string{"--cluster-name is required", "--node-burst=0", "--port=0", "--agent-service-account"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error = %v, want it to name %s", err, want)
		}
	}
}

func TestValidateAuthFlagsAccepts(t *testing.T) {
	tests := []struct {
		name                  string
		args                  []string
		wantRegion, wantAcct  string
		wantAgentNS, wantName string
		wantRate              rate.Limit
	}{
		{"defaults", []string{"--cluster-name=prod"}, "", "", "podiam-system", "podiam-agent", 50},
		{"cluster ARN", []string{"--cluster-name=prod", "--cluster-arn=arn:aws:eks:eu-west-1:111122223333:cluster/prod"},
			"eu-west-1", "111122223333", "podiam-system", "podiam-agent", 50},
		{"cluster ARN of another partition", []string{"--cluster-name=prod_1", "--cluster-arn=arn:aws-cn:eks:cn-north-1:111122223333:cluster/prod_1"},
			"cn-north-1", "111122223333", "podiam-system", "podiam-agent", 50},
		{"agent and rate", []string{"--cluster-name=p", "--agent-service-account=agents/node-agent", "--node-rate-limit=2.5",
			"--cert-mode=self-managed", "--session-duration=12h"}, "", "", "agents", "node-agent", 2.5},
		{"no rate limit", []string{"--cluster-name=p", "--node-rate-limit=+Inf"}, "", "", "podiam-system", "podiam-agent", rate.Inf},
		{"loopback, no metrics port", []string{"--cluster-name=p", "--address=127.0.0.1", "--metrics-port=0"}, "", "", "podiam-system", "podiam-agent", 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, v, err := parseAuthFlags(t, tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			if v.cluster.Region != tt.wantRegion || v.cluster.Account != tt.wantAcct {
				t.Errorf("region, account = %q, %q; want %q, %q", v.cluster.Region, v.cluster.Account, tt.wantRegion, tt.wantAcct)
			}
			if v.agentNamespace != tt.wantAgentNS || v.agentName != tt.wantName {
				t.Errorf("agent %s/%s, want %s/%s", v.agentNamespace, v.agentName, tt.wantAgentNS, tt.wantName)
			}
			if v.nodeRate != tt.wantRate {
				t.Errorf("node rate %v, want %v", v.nodeRate, tt.wantRate)
			}
		})
	}
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// A start-up step that keeps failing gives up after its time, or at once
// when podiam auth is stopped, saying which with what was tried and the last
// error.
func TestRetryWithin(t *testing.T) {
	fast := wait.Backoff{Duration: 20 * time.Millisecond, Factor: 1, Steps: 1 << 30}
	tests := []struct {
		name       string
		within     time.Duration
		cancelled  bool // the parent context ends (SIGTERM) after 100ms
		failures   int  // fn fails this often, then succeeds; -1: always
		want       string
		notWant    string
		minAttempt int32
	}{
		{"gives up", 200 * time.Millisecond, false, -1, "sts:GetCallerIdentity: still failing after 200ms: InvalidClientTokenId", "", 2},
		{"stopped", time.Minute, true, -1, "sts:GetCallerIdentity: stopped (context canceled) while failing: InvalidClientTokenId", "still failing", 2},
		{"no limit, stopped", 0, true, -1, "stopped (context canceled)", "still failing", 2},
		{"succeeds after failures", time.Minute, false, 3, "", "", 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancelled {
				time.AfterFunc(100*time.Millisecond, cancel)
			}
			var calls atomic.Int32
			start := time.Now()
			err := retryWithin(ctx, tt.within, fast, "sts:GetCallerIdentity", discard(), func(context.Context) error {
				if n := int(calls.Add(1)); tt.failures >= 0 && n > tt.failures {
					return nil
				}
				return errors.New("InvalidClientTokenId")
			})
			if tt.want == "" && err != nil {
				t.Fatalf("error = %v, want success", err)
			}
			if tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
			if tt.notWant != "" && strings.Contains(err.Error(), tt.notWant) {
				t.Errorf("error = %v, must not say %q", err, tt.notWant)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("returned after %v", d)
			}
			if calls.Load() < tt.minAttempt {
				t.Errorf("%d attempts, want at least %d", calls.Load(), tt.minAttempt)
			}
		})
	}
}

// The limits' refusals reach the agent in EKS Auth's format, with a code its
// SDK knows (and retries, for throttling).
func TestEKSAuthReject(t *testing.T) {
	tests := []struct {
		status   int
		wantCode string
	}{
		{http.StatusTooManyRequests, eksauth.CodeThrottling},
		{http.StatusRequestEntityTooLarge, eksauth.CodeInvalidRequest},
		{http.StatusForbidden, eksauth.CodeInvalidRequest},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.status), func(t *testing.T) {
			rec := httptest.NewRecorder()
			eksAuthReject(rec, tt.status, "refused")
			e := eksauth.DecodeError(rec.Code, rec.Header(), rec.Body.Bytes())
			if rec.Code != tt.status || rec.Header().Get("X-Amzn-Errortype") != tt.wantCode || e.Code != tt.wantCode || e.Message != "refused" {
				t.Errorf("%d %v %q, want %d %s", rec.Code, rec.Header(), rec.Body.String(), tt.status, tt.wantCode)
			}
		})
	}
}

// A bad --tls-cert or --tls-key fails start-up at once, naming the flag,
// before STS (retried for a minute) and the API server are asked anything.
func TestRunAuthBadCertFailsFirst(t *testing.T) {
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_REGION", "eu-west-1")
	t.Setenv("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:1")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "none"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	// Log to nowhere: runAuth installs its logger globally.
	t.Cleanup(func() { slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, nil))) })
	cert := filepath.Join(dir, "missing.crt")
	f, _, err := parseAuthFlags(t, "--cluster-name=prod", "--kubeconfig="+kubeconfig, "--log-level=error",
		"--tls-cert="+cert, "--tls-key="+filepath.Join(dir, "missing.key"), "--address=127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	err = runAuth(ctx, *f)
	if err == nil || !strings.HasPrefix(err.Error(), "--tls-cert="+cert) {
		t.Fatalf("error = %v, want it to start with --tls-cert=%s", err, cert)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("failed after %v, want at once", d)
	}
}

// --address is where both ports of podiam auth listen.
func TestAuthListensOnAddress(t *testing.T) {
	f, _, err := parseAuthFlags(t, "--cluster-name=prod", "--address=127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	// A free port for the metrics listener (0 would mean none).
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	metricsPort := free.Addr().(*net.TCPAddr).Port
	free.Close()
	ln, metricsLn, err := listenPorts(f.address, 0, metricsPort)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	defer metricsLn.Close()
	for _, l := range []net.Listener{ln, metricsLn} {
		if host, _, _ := net.SplitHostPort(l.Addr().String()); host != "127.0.0.1" {
			t.Errorf("listening on %s, want 127.0.0.1", l.Addr())
		}
	}
}

// The memory the TLS port's limits allow stays under deploy/auth's
// GOMEMLIMIT, with room for the process's own, and GOMEMLIMIT under the
// container's memory limit.
func TestAuthMemoryBoundFitsManifest(t *testing.T) {
	data, err := os.ReadFile("../../deploy/auth/manifests.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The rendering of the chart (make manifests): its one Deployment.
	var dep appsv1.Deployment
	for _, doc := range strings.Split(string(data), "\n---\n") {
		var d appsv1.Deployment
		if err := yaml.Unmarshal([]byte(doc), &d); err != nil {
			t.Fatal(err)
		}
		if d.Kind == "Deployment" {
			dep = d
		}
	}
	if dep.Name == "" {
		t.Fatal("deploy/auth/manifests.yaml has no Deployment")
	}
	c := dep.Spec.Template.Spec.Containers[0]
	var memLimit string
	for _, e := range c.Env {
		if e.Name == "GOMEMLIMIT" {
			memLimit = e.Value
		}
	}
	// GOMEMLIMIT's syntax: a number and B, KiB, MiB or GiB.
	mib, ok := strings.CutSuffix(memLimit, "MiB")
	n, err := strconv.ParseInt(mib, 10, 64)
	if !ok || err != nil {
		t.Fatalf("GOMEMLIMIT %q: want <n>MiB", memLimit)
	}
	const ownMemory = 50 << 20 // informer caches, keys, credential cache, runtime
	if goMemLimit := n << 20; authMemoryBound+ownMemory > goMemLimit {
		t.Errorf("the TLS port's limits allow %d MiB, plus %d MiB of the process's own: over GOMEMLIMIT %s",
			authMemoryBound>>20, ownMemory>>20, memLimit)
	}
	if limit := c.Resources.Limits.Memory(); limit.IsZero() || limit.Value() <= n<<20 {
		t.Errorf("memory limit %v, want it above GOMEMLIMIT %s", limit, memLimit)
	}
}

// The STS client's region: --region, else the SDK's, else --cluster-arn's.
func TestNewSTSClientRegion(t *testing.T) {
	dir := t.TempDir()
	// Nothing of the machine's own AWS set-up.
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "none"))
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	tests := []struct {
		name                 string
		env, flag, arn, want string
		wantErr              string
	}{
		{"flag wins", "eu-west-1", "us-west-2", "ap-south-1", "us-west-2", ""},
		{"SDK's", "eu-west-1", "", "ap-south-1", "eu-west-1", ""},
		{"ARN's", "", "", "ap-south-1", "ap-south-1", ""},
		{"none", "", "", "", "", "no AWS region"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("AWS_REGION", tt.env)
			c, region, err := newSTSClient(context.Background(), tt.flag, tt.arn)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if region != tt.want || c.Options().Region != tt.want {
				t.Errorf("region %q (client %q), want %q", region, c.Options().Region, tt.want)
			}
		})
	}
}

// The README's `podiam auth` flags section lists every flag of `podiam auth
// --help` with its default.
func TestREADMEListsEveryAuthFlag(t *testing.T) {
	checkREADMEFlagTable(t, "### `podiam auth` flags", newAuthCommand().Flags(), 20)
}

// readmeDefault is a flag's default as the README writes it: none for an
// empty value or list, and durations without zero units (1h0m0s is 1h).
func readmeDefault(v string) string {
	if v == "[]" {
		return ""
	}
	if _, err := time.ParseDuration(v); err == nil {
		if strings.HasSuffix(v, "m0s") {
			v = strings.TrimSuffix(v, "0s")
		}
		if strings.HasSuffix(v, "h0m") {
			v = strings.TrimSuffix(v, "0m")
		}
	}
	return v
}

func TestREADMEDefault(t *testing.T) {
	for in, want := range map[string]string{"1h0m0s": "1h", "5s": "5s", "20s": "20s", "1m30s": "1m30s", "2h30m0s": "2h30m",
		"10m0s": "10m", "[]": "", "": "", "8443": "8443", "0": "0", "podiam-auth": "podiam-auth"} {
		if got := readmeDefault(in); got != want {
			t.Errorf("readmeDefault(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestNewSTSClientRegionFromClusterARN: with IRSA credentials (as the chart's
// auth.roleArn gives) and no region but --cluster-arn's, the SDK's own
// AssumeRoleWithWebIdentity call goes to that region's STS, rather than
// failing with "Missing Region". The HTTP client answers in STS's place.
func TestNewSTSClientRegionFromClusterARN(t *testing.T) {
	var hosts []string
	stand := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		hosts = append(hosts, r.URL.Host)
		body := `<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
<AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>ASIAEXAMPLE</AccessKeyId>
<SecretAccessKey>secret</SecretAccessKey><SessionToken>token</SessionToken>
<Expiration>2099-01-01T00:00:00Z</Expiration></Credentials></AssumeRoleWithWebIdentityResult>
</AssumeRoleWithWebIdentityResponse>`
		return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"text/xml"}},
			Body: io.NopCloser(strings.NewReader(body)), Request: r}, nil
	})}
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte("a.b.c"), 0o600); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"AWS_REGION": "", "AWS_DEFAULT_REGION": "", "AWS_PROFILE": "", "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "",
		"AWS_ENDPOINT_URL": "", "AWS_ENDPOINT_URL_STS": "", "AWS_EC2_METADATA_DISABLED": "true", "AWS_CA_BUNDLE": "",
		"AWS_CONFIG_FILE": filepath.Join(t.TempDir(), "none"), "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(t.TempDir(), "none"),
		"AWS_ROLE_ARN": "arn:aws:iam::111122223333:role/podiam-auth", "AWS_WEB_IDENTITY_TOKEN_FILE": token,
	} {
		t.Setenv(k, v)
	}
	client, region, err := newSTSClient(context.Background(), "", "eu-west-1", config.WithHTTPClient(stand))
	if err != nil {
		t.Fatal(err)
	}
	if region != "eu-west-1" {
		t.Errorf("region %q, want eu-west-1 (the cluster ARN's)", region)
	}
	creds, err := client.Options().Credentials.Retrieve(context.Background())
	if err != nil {
		t.Fatalf("retrieving the IRSA credentials: %v", err)
	}
	if creds.AccessKeyID != "ASIAEXAMPLE" || len(hosts) != 1 || hosts[0] != "sts.eu-west-1.amazonaws.com" {
		t.Errorf("credentials %q from STS hosts %v, want ASIAEXAMPLE from sts.eu-west-1.amazonaws.com", creds.AccessKeyID, hosts)
	}
}

// roundTripFunc is an http.RoundTripper of a function.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
