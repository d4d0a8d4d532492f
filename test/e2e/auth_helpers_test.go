package e2e

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podiam/podiam/api/v1alpha1"
	"github.com/podiam/podiam/internal/eksauth"
	"github.com/podiam/podiam/test/harness"
	"github.com/podiam/podiam/test/testutil"
)

// Values of the `podiam sts` account and user that `podiam auth` runs as in
// the auth tests.
const (
	authAccount   = "111122223333"
	authUser      = "podiam-auth"
	authKeyID     = "AKIAPODIAMAUTHE2E001"
	authSecretKey = "cG9kaWFtLWF1dGgtc2VjcmV0LWtleS1mb3ItZTJl"
	authRegion    = "eu-west-1"
	// authCluster is the --cluster-name of every podiam auth the tests start.
	// Each one writes the status of every association in the cluster; with
	// one cluster name (and region and account) they all compute the same
	// status.externalId instead of overwriting each other's.
	authCluster = "e2e"
	// agentSA is the agent's ServiceAccount, in the fixture's agent namespace.
	agentSA = "podiam-agent"
)

// authUserARN is the principal `podiam auth` assumes roles as, with the
// user's static keys.
const authUserARN = "arn:aws:iam::" + authAccount + ":user/" + authUser

// authIRSARole is the role `podiam auth` gets its own credentials from with
// IRSA (authFixtureOptions.irsa), as deploy/auth's IRSA annotation names it.
const authIRSARole = "podiam-auth"

// authRoleARN is the ARN of a role of the test account.
func authRoleARN(name string) string { return "arn:aws:iam::" + authAccount + ":role/" + name }

// stsRole is a role of the `podiam sts` config: its trust policy as JSON.
type stsRole struct {
	name, trust string
}

// podIdentityTrust is the trust policy `podiam policy trust --pod-identity`
// writes for the broker's principal (f.principal), with extra flags
// (--serviceaccount NS/NAME, --external-id ID).
func (f *authFixture) podIdentityTrust(flags ...string) string {
	f.t.Helper()
	return podiamOutput(f.t, f.ctx, append([]string{"policy", "trust", "--pod-identity", "--principal", f.principal}, flags...)...)
}

// authFixture is one `podiam sts` and one `podiam auth` process for a test,
// against the shared cluster, with the namespaces, agent pods and tokens the
// requests need. Every name is unique to the test.
type authFixture struct {
	t   *testing.T
	ctx context.Context
	dir string

	// ns is the applications' namespace, otherNS a second one, agentNS the
	// agent's and systemNS podiam auth's own (--namespace).
	ns, otherNS, agentNS, systemNS string
	// clusterName is --cluster-name.
	clusterName string
	// principal is podiam auth's own identity as the roles' trust policies
	// name it: the user authUserARN, or with IRSA the role authIRSARole.
	principal string
	// webIdentityToken is, with IRSA, the file of podiam auth's ServiceAccount
	// token for STS (AWS_WEB_IDENTITY_TOKEN_FILE); empty without.
	webIdentityToken string
	// roleMaxSession is every role's maxSessionDuration (0: STS's default).
	roleMaxSession time.Duration

	stsPort, stsMetricsPort int
	stsProc                 *harness.Process
	stsLogs                 *testutil.SyncBuffer

	authPort, authMetricsPort int
	authProc                  *harness.Process
	authLogs                  *testutil.SyncBuffer
	// authTLS trusts podiam auth's serving certificate; httpClient uses it.
	authTLS    *tls.Config
	httpClient *http.Client
	// authCA is the PEM of the CA that authTLS trusts, for clients that
	// read it from a file (an agent's --auth-ca-file).
	authCA []byte
	// kubeconfig is podiam auth's: the shipped RBAC's ServiceAccount token.
	kubeconfig string

	pias ctrlclient.Client
	// agentTokens are the agent's token files by node name.
	agentTokens map[string]string
	// secrets are strings that must never appear in either process's log.
	secrets []string
}

// authFixtureOptions configure newAuthFixture.
type authFixtureOptions struct {
	// roles returns the roles of the STS account: a function of the
	// fixture, because trust policies name its namespaces.
	roles func(f *authFixture) []stsRole
	// nodes get one agent pod each.
	nodes []string
	// irsa gives podiam auth its own AWS credentials from IRSA instead of
	// the user's static keys: a token of its ServiceAccount (audience
	// sts.amazonaws.com) for role authIRSARole, which trusts that
	// ServiceAccount of the cluster's issuer; podiam sts registers the
	// cluster as OIDC provider, reading its keys from the API server. The
	// roles then trust authIRSARole (podIdentityTrust).
	irsa bool
	// roleMaxSession is the maxSessionDuration of every role (0: STS's
	// default, an hour).
	roleMaxSession time.Duration
}

// newAuthFixture creates the namespaces, the agent's ServiceAccount with one
// pod per node and their tokens, the shipped RBAC of deploy/auth (in
// systemNS), starts `podiam sts` with the roles and the broker user, and
// returns; call startAuth once the associations exist.
func newAuthFixture(t *testing.T, ctx context.Context, o authFixtureOptions) *authFixture {
	t.Helper()
	installAssociationCRD(t)
	name := testutil.UniqueName("e2e-auth")
	f := &authFixture{
		t: t, ctx: ctx, dir: t.TempDir(),
		ns: name, otherNS: name + "-other", agentNS: name + "-agent", systemNS: name + "-system",
		clusterName:    authCluster,
		principal:      authUserARN,
		roleMaxSession: o.roleMaxSession,
		pias:           associationClient(t),
		agentTokens:    map[string]string{},
		secrets:        []string{authSecretKey},
	}
	for _, n := range []string{f.ns, f.otherNS, f.agentNS, f.systemNS} {
		newNamespace(t, ctx, n, nil)
	}
	newServiceAccount(t, ctx, f.agentNS, agentSA, nil)
	for _, node := range o.nodes {
		pod := f.createPod(f.agentNS, agentSA, "agent-"+node, node)
		f.agentTokens[node] = f.writeToken("agent-"+node, f.token(f.agentNS, agentSA, pod, "podiam-auth"))
	}
	f.kubeconfig = f.applyShippedRBAC()
	roles := []stsRole(nil)
	if o.irsa {
		// What the webhook would project into podiam auth's pod for the
		// IRSA annotation of deploy/auth's ServiceAccount.
		f.principal = authRoleARN(authIRSARole)
		f.webIdentityToken = f.writeToken("podiam-auth-irsa", f.token(f.systemNS, authSAName, nil, "sts.amazonaws.com"))
		roles = append(roles, stsRole{authIRSARole, podiamOutput(t, ctx, "policy", "trust", "--account", authAccount,
			"--issuer", cluster.IssuerURL(), "--serviceaccount", f.systemNS+"/"+authSAName)})
	}
	f.startSTS(append(roles, o.roles(f)...))
	return f
}

// createPod creates a pod of ServiceAccount sa named name on node (set in
// spec.nodeName: there is no scheduler or kubelet; the API server stores
// the pod as if it had been scheduled there).
func (f *authFixture) createPod(ns, sa, name, node string) *corev1.Pod {
	f.t.Helper()
	p := simplePod(sa)
	p.GenerateName, p.Name = "", name
	p.Spec.NodeName = node
	return createPod(f.t, f.ctx, client, ns, p)
}

// token requests a token of ns/sa with audience aud from the TokenRequest
// API, bound to pod when pod is not nil, as a projected volume gets it.
func (f *authFixture) token(ns, sa string, pod *corev1.Pod, aud string) string {
	f.t.Helper()
	tok := requestToken(f.t, f.ctx, ns, sa, pod, aud, 3600)
	f.secrets = append(f.secrets, tok)
	return tok
}

// requestToken returns a TokenRequest token of ns/sa with audience aud (the
// API server's when ""), lifetime seconds, bound to pod when pod is not nil.
func requestToken(t *testing.T, ctx context.Context, ns, sa string, pod *corev1.Pod, aud string, seconds int64) string {
	t.Helper()
	spec := authenticationv1.TokenRequestSpec{ExpirationSeconds: &seconds}
	if aud != "" {
		spec.Audiences = []string{aud}
	}
	if pod != nil {
		spec.BoundObjectRef = &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}
	}
	tr, err := client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{Spec: spec}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s/%s: %v", ns, sa, err)
	}
	return tr.Status.Token
}

// writeToken writes a token into a file, as the kubelet projects it, and
// returns the path.
func (f *authFixture) writeToken(name, token string) string {
	f.t.Helper()
	path := filepath.Join(f.dir, name+".token")
	if err := os.WriteFile(path, []byte(token), 0o600); err != nil {
		f.t.Fatal(err)
	}
	return path
}

// associate creates a PodIdentityAssociation in ns and returns it as stored.
func (f *authFixture) associate(ns, name string, spec v1alpha1.PodIdentityAssociationSpec) *v1alpha1.PodIdentityAssociation {
	f.t.Helper()
	p := &v1alpha1.PodIdentityAssociation{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}
	if err := f.pias.Create(f.ctx, p); err != nil {
		f.t.Fatalf("creating association %s/%s: %v", ns, name, err)
	}
	return p
}

// startSTS writes the STS config (one account: the roles and the broker
// user; with IRSA the cluster as OIDC provider, its keys read from the API
// server) and starts `podiam sts`.
func (f *authFixture) startSTS(roles []stsRole) {
	f.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "accounts:\n- id: %q\n", authAccount)
	if f.webIdentityToken != "" {
		fmt.Fprintf(&b, "  oidcProviders:\n  - url: %s\n    clientIDs: [sts.amazonaws.com]\n    kubeconfig: %s\n",
			cluster.IssuerURL(), cluster.Kubeconfig())
	}
	b.WriteString("  roles:\n")
	for _, r := range roles {
		file := filepath.Join(f.dir, "trust-"+r.name+".json")
		if err := os.WriteFile(file, []byte(r.trust), 0o600); err != nil {
			f.t.Fatal(err)
		}
		fmt.Fprintf(&b, "  - name: %s\n    trustPolicyFile: %s\n", r.name, file)
		if f.roleMaxSession > 0 {
			fmt.Fprintf(&b, "    maxSessionDuration: %d\n", int64(f.roleMaxSession/time.Second))
		}
	}
	fmt.Fprintf(&b, "  users:\n  - name: %s\n    accessKeyId: %s\n    secretAccessKey: %s\n", authUser, authKeyID, authSecretKey)
	config := filepath.Join(f.dir, "sts.yaml")
	if err := os.WriteFile(config, []byte(b.String()), 0o600); err != nil {
		f.t.Fatal(err)
	}
	ports, err := testutil.FreePorts(2)
	if err != nil {
		f.t.Fatal(err)
	}
	f.stsPort, f.stsMetricsPort = ports[0], ports[1]
	f.stsProc, f.stsLogs = startPodiam(f.t, "sts", "--config", config, "--address", "127.0.0.1",
		"--port", strconv.Itoa(f.stsPort), "--metrics-port", strconv.Itoa(f.stsMetricsPort), "--log-format", "json")
	f.waitHTTP(fmt.Sprintf("http://127.0.0.1:%d/healthz", f.stsMetricsPort), f.stsProc, f.stsLogs, "podiam sts")
}

// stsURL is the STS endpoint.
func (f *authFixture) stsURL() string { return fmt.Sprintf("http://127.0.0.1:%d", f.stsPort) }

// applyShippedRBAC creates the ServiceAccount and RBAC objects of
// deploy/auth in systemNS (shipAuthRBAC), waits until the RBAC authorizer
// allows what podiam auth does, and returns a kubeconfig holding nothing but
// a token of that ServiceAccount: podiam auth runs with the shipped RBAC
// only.
func (f *authFixture) applyShippedRBAC() string {
	t, ctx := f.t, f.ctx
	t.Helper()
	tokenClient, kubeconfig := shipAuthRBAC(t, ctx, f.systemNS)
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	f.secrets = append(f.secrets, cfg.BearerToken)
	// The RBAC authorizer learns of new bindings asynchronously.
	waitAccess(t, ctx, tokenClient, []authorizationv1.ResourceAttributes{
		{Verb: "get", Resource: "pods", Namespace: f.ns},
		{Verb: "list", Group: "podiam.dev", Resource: "podidentityassociations"},
		{Verb: "watch", Group: "podiam.dev", Resource: "podidentityassociations"},
		{Verb: "update", Group: "podiam.dev", Resource: "podidentityassociations", Subresource: "status", Namespace: f.ns},
	}, true, "the shipped RBAC to allow what podiam auth does")
	return kubeconfig
}

// startAuth starts `podiam auth` as the shipped RBAC's ServiceAccount, with
// the broker user's keys (or IRSA) and `podiam sts` as its STS, and extra
// flags, and waits for /readyz.
func (f *authFixture) startAuth(selfManaged bool, extra ...string) {
	t := f.t
	t.Helper()
	ports, err := testutil.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	f.authPort, f.authMetricsPort = ports[0], ports[1]
	args := []string{"auth",
		"--kubeconfig=" + f.kubeconfig,
		"--namespace=" + f.systemNS,
		"--address=127.0.0.1",
		"--port=" + strconv.Itoa(f.authPort),
		"--metrics-port=" + strconv.Itoa(f.authMetricsPort),
		"--cluster-name=" + f.clusterName,
		"--cluster-arn=" + f.clusterARN(),
		"--agent-service-account=" + f.agentNS + "/" + agentSA,
		"--log-format=json",
		"--shutdown-delay=0s",
		"--shutdown-timeout=5s",
	}
	args = append(args, extra...)
	if selfManaged {
		args = append(args, "--cert-mode=self-managed", "--cert-extra-names=127.0.0.1")
	} else {
		caPEM, err := harness.WriteServingCert(f.dir)
		if err != nil {
			t.Fatal(err)
		}
		f.authTLS, f.authCA = harness.TLSClientConfig(caPEM), caPEM
		args = append(args, "--tls-cert="+filepath.Join(f.dir, "tls.crt"), "--tls-key="+filepath.Join(f.dir, "tls.key"))
	}
	env := []string{
		"AWS_REGION=" + authRegion,
		"AWS_ENDPOINT_URL_STS=" + f.stsURL(),
		// Nothing of the machine's own AWS set-up (the SDK ignores empty
		// variables; of duplicates, exec keeps the last).
		"AWS_CONFIG_FILE=" + filepath.Join(f.dir, "no-aws-config"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(f.dir, "no-aws-credentials"),
		"AWS_PROFILE=", "AWS_SESSION_TOKEN=", "AWS_EC2_METADATA_DISABLED=true",
		"AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=", "AWS_ROLE_ARN=", "AWS_WEB_IDENTITY_TOKEN_FILE=",
	}
	if f.webIdentityToken != "" {
		// As the webhook injects IRSA into a pod.
		env = append(env, "AWS_ROLE_ARN="+f.principal, "AWS_WEB_IDENTITY_TOKEN_FILE="+f.webIdentityToken)
	} else {
		env = append(env, "AWS_ACCESS_KEY_ID="+authKeyID, "AWS_SECRET_ACCESS_KEY="+authSecretKey)
	}
	f.authLogs = new(testutil.SyncBuffer)
	f.authProc, err = harness.StartPodiam(podiamBin, f.authLogs, env, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.authProc.Stop()
		// Under `go test -race` the suite runs a -race binary, which reports
		// races in its output rather than failing anything.
		for who, logs := range map[string]string{"podiam auth": f.authLogs.String(), "podiam sts": f.stsLogs.String()} {
			if strings.Contains(logs, "WARNING: DATA RACE") {
				t.Errorf("%s reported a data race:\n%s", who, tail(logs, 16<<10))
			}
		}
		if t.Failed() {
			t.Logf("podiam auth output:\n%s", tail(f.authLogs.String(), 16<<10))
			t.Logf("podiam sts output:\n%s", tail(f.stsLogs.String(), 8<<10))
		}
	})
	f.waitHTTP(fmt.Sprintf("http://127.0.0.1:%d/readyz", f.authMetricsPort), f.authProc, f.authLogs, "podiam auth")
	if selfManaged {
		f.authCA = f.publishedCA()
		f.authTLS = harness.TLSClientConfig(f.authCA)
	}
	tr := &http.Transport{TLSClientConfig: f.authTLS}
	t.Cleanup(tr.CloseIdleConnections)
	f.httpClient = &http.Client{Timeout: 30 * time.Second, Transport: tr}
}

// clusterARN is --cluster-arn: an EKS cluster ARN of the test account, so
// that the external id's account is the account of the roles.
func (f *authFixture) clusterARN() string {
	return "arn:aws:eks:" + authRegion + ":" + authAccount + ":cluster/" + f.clusterName
}

// publishedCA waits for the CA bundle podiam auth publishes for agents in
// self-managed mode (ConfigMap podiam-auth-ca, key ca.crt) and returns it.
func (f *authFixture) publishedCA() []byte {
	f.t.Helper()
	var ca []byte
	testutil.Eventually(f.t, 20*time.Second, 100*time.Millisecond, "ConfigMap "+f.systemNS+"/podiam-auth-ca with ca.crt", func() (bool, string) {
		cm, err := client.CoreV1().ConfigMaps(f.systemNS).Get(f.ctx, "podiam-auth-ca", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		ca = []byte(cm.Data["ca.crt"])
		return len(ca) > 0, fmt.Sprintf("%d data keys, no ca.crt", len(cm.Data))
	})
	return ca
}

// waitHTTP polls url until it answers 200; it fails t at once if proc exits.
func (f *authFixture) waitHTTP(url string, proc *harness.Process, logs *testutil.SyncBuffer, what string) {
	f.t.Helper()
	testutil.Eventually(f.t, 60*time.Second, 50*time.Millisecond, what+" to be ready", func() (bool, string) {
		select {
		case <-proc.Exited():
			f.t.Fatalf("%s exited with status %d:\n%s", what, proc.ExitCode(), tail(logs.String(), 8<<10))
		default:
		}
		status, err := getStatus(f.ctx, url)
		return status == http.StatusOK, fmt.Sprint(status, err)
	})
}

// getStatus is the HTTP status of a GET of url.
func getStatus(ctx context.Context, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// metrics returns a process's /metrics text.
func (f *authFixture) metrics(port int) string {
	f.t.Helper()
	req, _ := http.NewRequestWithContext(f.ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/metrics", port), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatalf("GET /metrics on port %d: %v", port, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	return string(b)
}

// stsAssumeRoleCalls is the number of AssumeRole calls podiam sts answered.
func (f *authFixture) stsAssumeRoleCalls() float64 {
	return metricSum(f.metrics(f.stsMetricsPort), "podiam_sts_calls_total", `action="AssumeRole"`)
}

// authMetric sums one metric of podiam auth.
func (f *authFixture) authMetric(metric string, labels ...string) float64 {
	return metricSum(f.metrics(f.authMetricsPort), metric, labels...)
}

// agentClient is the agent's client of podiam auth, sending the agent
// token of node as BearerTokenFile does (no token when node is "").
func (f *authFixture) agentClient(node string) *eksauth.Client {
	f.t.Helper()
	c := &eksauth.Client{Endpoint: fmt.Sprintf("https://127.0.0.1:%d", f.authPort), HTTPClient: f.httpClient}
	if node != "" {
		path, ok := f.agentTokens[node]
		if !ok {
			f.t.Fatalf("no agent on node %q", node)
		}
		c.Auth = &eksauth.BearerTokenFile{Path: path}
	}
	return c
}

// clientWithToken is the agent's client sending token as its own.
func (f *authFixture) clientWithToken(name, token string) *eksauth.Client {
	c := f.agentClient("")
	c.Auth = &eksauth.BearerTokenFile{Path: f.writeToken(name, token)}
	return c
}

// assume calls AssumeRoleForPodIdentity for the fixture's cluster.
func (f *authFixture) assume(c *eksauth.Client, podToken string) (*eksauth.Output, error) {
	return c.AssumeRoleForPodIdentity(f.ctx, f.clusterName, podToken)
}

// remember adds the secrets of an answer to those checked in the logs.
func (f *authFixture) remember(out *eksauth.Output) {
	if out != nil {
		f.secrets = append(f.secrets, out.Credentials.SecretAccessKey, out.Credentials.SessionToken)
	}
}

// stsWith is a client of podiam sts signing with creds.
func (f *authFixture) stsWith(creds eksauth.Credentials) *sts.Client {
	return sts.New(sts.Options{Region: authRegion, BaseEndpoint: aws.String(f.stsURL()), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider(creds.AccessKeyID, creds.SecretAccessKey, creds.SessionToken)})
}

// callerARN signs GetCallerIdentity with creds at podiam sts.
func (f *authFixture) callerARN(creds eksauth.Credentials) string {
	f.t.Helper()
	out, err := f.stsWith(creds).GetCallerIdentity(f.ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		f.t.Fatalf("GetCallerIdentity with the issued credentials: %v", err)
	}
	return aws.ToString(out.Arn)
}

// assumeRoleWith assumes role at podiam sts with creds, as the application
// holding them would; the new credentials join the secrets checked in the
// logs.
func (f *authFixture) assumeRoleWith(creds eksauth.Credentials, role string) error {
	out, err := f.stsWith(creds).AssumeRole(f.ctx, &sts.AssumeRoleInput{RoleArn: aws.String(role), RoleSessionName: aws.String("probe")})
	if err != nil {
		return fmt.Errorf("AssumeRole %s: %w", role, err)
	}
	f.secrets = append(f.secrets, aws.ToString(out.Credentials.SecretAccessKey), aws.ToString(out.Credentials.SessionToken))
	return nil
}

// checkLogsClean fails t if a token, a secret key or a session token is in
// the logs of podiam auth or podiam sts. A token's signature alone is
// looked for too (a log could cut the token elsewhere).
func (f *authFixture) checkLogsClean() {
	f.t.Helper()
	logs := map[string]string{"podiam auth": f.authLogs.String(), "podiam sts": f.stsLogs.String()}
	for _, s := range f.secrets {
		needles := []string{s}
		if parts := strings.Split(s, "."); len(parts) == 3 {
			needles = append(needles, parts[2])
		}
		for who, text := range logs {
			for _, n := range needles {
				if n != "" && strings.Contains(text, n) {
					f.t.Errorf("%s logged a secret (%d characters, starting %.8q…)", who, len(n), n)
				}
			}
		}
	}
}

// auditLines returns the "issued credentials" lines of podiam auth's JSON
// log, decoded.
func (f *authFixture) auditLines() []map[string]any {
	var out []map[string]any
	for line := range strings.Lines(f.authLogs.String()) {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "issued credentials" {
			out = append(out, m)
		}
	}
	return out
}

// condition returns the condition of type typ of association ns/name.
func (f *authFixture) condition(ns, name, typ string) (*metav1.Condition, *v1alpha1.PodIdentityAssociation) {
	f.t.Helper()
	var p v1alpha1.PodIdentityAssociation
	if err := f.pias.Get(f.ctx, ctrlclient.ObjectKey{Namespace: ns, Name: name}, &p); err != nil {
		f.t.Fatalf("get association %s/%s: %v", ns, name, err)
	}
	return meta.FindStatusCondition(p.Status.Conditions, typ), &p
}

// waitReadyCondition waits until association ns/name has Ready = status.
func (f *authFixture) waitReadyCondition(ns, name string, status metav1.ConditionStatus) *metav1.Condition {
	f.t.Helper()
	var c *metav1.Condition
	testutil.Eventually(f.t, 15*time.Second, 100*time.Millisecond, fmt.Sprintf("association %s/%s Ready=%s", ns, name, status), func() (bool, string) {
		var p *v1alpha1.PodIdentityAssociation
		c, p = f.condition(ns, name, v1alpha1.ConditionReady)
		return c != nil && c.Status == status, fmt.Sprintf("status %+v", p.Status)
	})
	return c
}

// wantAuthError checks that err is the eksauth error code with its status.
func wantAuthError(err error, code string, status int) string {
	var e *eksauth.Error
	switch {
	case err == nil:
		return fmt.Sprintf("got credentials, want %s (HTTP %d)", code, status)
	case !errors.As(err, &e):
		return fmt.Sprintf("error %v, want %s (HTTP %d)", err, code, status)
	case e.Code != code || e.HTTPStatus() != status:
		return fmt.Sprintf("got %s (HTTP %d) %q, want %s (HTTP %d)", e.Code, e.HTTPStatus(), e.Message, code, status)
	}
	return ""
}

// jwtParts decodes a compact JWS's header and claims, without checking it.
func jwtParts(t *testing.T, token string) (header, claims map[string]any) {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	for i, into := range []*map[string]any{&header, &claims} {
		raw, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, into); err != nil {
			t.Fatal(err)
		}
	}
	return header, claims
}

// withClaims returns a copy of claims with changes set in it (claims itself
// is left alone), for tokens kube-apiserver would not issue.
func withClaims(claims, changes map[string]any) map[string]any {
	c := maps.Clone(claims)
	maps.Copy(c, changes)
	return c
}

// signJWT signs header and claims with key (RS256), as kube-apiserver does.
func signJWT(t *testing.T, header, claims map[string]any, key *rsa.PrivateKey) string {
	t.Helper()
	var segs []string
	for _, v := range []map[string]any{header, claims} {
		raw, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		segs = append(segs, base64.RawURLEncoding.EncodeToString(raw))
	}
	input := strings.Join(segs, ".")
	digest := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// newRSAKey is a fresh RSA key: a signer the cluster does not know.
func newRSAKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
