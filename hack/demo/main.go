// Command demo is `make demo`: it starts a real control plane (etcd and
// kube-apiserver from bin/), runs `podiam webhook` with a self-managed
// certificate, creates a ServiceAccount with a role annotation and a pod, and
// prints what the pod got. Then the issuer side: it publishes the cluster's
// OIDC documents, serves them over HTTPS, verifies the pod's token against
// what is served as AWS would, writes the role's trust policy and checks the
// pod against it; `podiam sts` exchanges the pod's token for a session. Last,
// Pod Identity: a PodIdentityAssociation, a pod the webhook gives Pod
// Identity, and the pod's application (a child process running this binary)
// getting the role's session from `podiam agent` through the AWS SDK's
// container credential provider, the agent asking `podiam auth`; the agent
// refuses the token of a pod on another node. It stops everything before it
// exits.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
	jose "github.com/go-jose/go-jose/v4"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/podiam/podiam/hack/internal/kubefixture"
	"github.com/podiam/podiam/internal/oidc"
	"github.com/podiam/podiam/test/harness"
	"github.com/podiam/podiam/test/testcluster"
	"github.com/podiam/podiam/test/testutil"
)

const (
	webhookNamespace = "podiam-system"
	appNamespace     = "demo"
	account          = "111122223333"
	roleARN          = "arn:aws:iam::" + account + ":role/demo-app"
	configName       = "podiam-webhook"
)

func main() {
	if os.Getenv(podAppMarker) != "" {
		os.Exit(podAppMain())
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "podiam-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	fmt.Println("podiam demo")
	bin, err := harness.BuildPodiam(ctx, dir)
	if err != nil {
		return err
	}
	ports, err := testutil.FreePorts(3)
	if err != nil {
		return err
	}
	// The issuer is served by `podiam oidc serve` on loopback, as a cluster
	// that hosts its own issuer would; AWS would need a public host.
	issuer := fmt.Sprintf("https://127.0.0.1:%d/demo", ports[2])
	cluster, err := testcluster.Start(ctx, testcluster.Options{IssuerURL: issuer})
	if err != nil {
		return err
	}
	defer cluster.Stop()
	fmt.Printf("  control plane   etcd + kube-apiserver at %s, ready in %s\n", cluster.URL(), cluster.StartupTime().Round(100*time.Millisecond))

	client, err := kubernetes.NewForConfig(cluster.RESTConfig())
	if err != nil {
		return err
	}
	for _, ns := range []string{webhookNamespace, appNamespace} {
		if err := cluster.EnsureNamespace(ctx, ns, nil); err != nil {
			return err
		}
	}
	// Before the webhook starts: it looks for the CRD at start-up, and
	// later only every 30 s.
	if err := kubefixture.InstallCRD(ctx, cluster.RESTConfig(), "podiam-demo"); err != nil {
		return err
	}
	url := fmt.Sprintf("https://127.0.0.1:%d/mutate", ports[0])
	// Registered without a caBundle: podiam writes its own CA into it.
	if err := harness.Register(ctx, client, harness.Registration{Name: configName, URL: url,
		SkipLabel: "eks.amazonaws.com/skip-pod-identity-webhook"}); err != nil {
		return err
	}
	wh, err := harness.StartWebhook(ctx, harness.WebhookOptions{
		Binary: bin, Kubeconfig: cluster.Kubeconfig(), Namespace: webhookNamespace, SelfManaged: true, Dir: dir,
		Port: ports[0], MetricsPort: ports[1], Args: []string{"--webhook-config-name=" + configName},
	})
	if err != nil {
		return err
	}
	defer wh.Stop()
	if err := waitCABundle(ctx, client); err != nil {
		return fmt.Errorf("%w\nwebhook logs:\n%s", err, wh.Logs())
	}
	fmt.Printf("  webhook         podiam webhook at %s, own CA written into the caBundle of %s\n", url, configName)

	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: appNamespace,
		Annotations: map[string]string{"eks.amazonaws.com/role-arn": roleARN}}}
	if _, err := client.CoreV1().ServiceAccounts(appNamespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		return err
	}
	fmt.Printf("  ServiceAccount  %s/app  eks.amazonaws.com/role-arn: %s\n", appNamespace, roleARN)

	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: appNamespace},
		Spec: corev1.PodSpec{ServiceAccountName: "app", Containers: []corev1.Container{{Name: "app", Image: "public.ecr.aws/aws-cli/aws-cli"}}}}
	created, err := client.CoreV1().Pods(appNamespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("creating pod: %w\nwebhook logs:\n%s", err, wh.Logs())
	}
	fmt.Printf("  Pod             %s/app got:\n", appNamespace)
	for _, e := range created.Spec.Containers[0].Env {
		fmt.Printf("    env    %s=%s\n", e.Name, e.Value)
	}
	var tokenVol *corev1.ServiceAccountTokenProjection
	for _, v := range created.Spec.Volumes {
		if v.Name == "aws-iam-token" && v.Projected != nil && len(v.Projected.Sources) > 0 {
			tokenVol = v.Projected.Sources[0].ServiceAccountToken
			fmt.Printf("    volume %s: projected ServiceAccount token, audience %s, %ds, file %s\n",
				v.Name, tokenVol.Audience, *tokenVol.ExpirationSeconds, tokenVol.Path)
		}
	}
	for _, m := range created.Spec.Containers[0].VolumeMounts {
		if m.Name == "aws-iam-token" {
			fmt.Printf("    mount  %s at %s (read-only: %v)\n", m.Name, m.MountPath, m.ReadOnly)
		}
	}
	if tokenVol == nil {
		return fmt.Errorf("the pod got no token volume\nwebhook logs:\n%s", wh.Logs())
	}

	// What the kubelet would write into the volume: a token bound to the pod.
	tr, err := client.CoreV1().ServiceAccounts(appNamespace).CreateToken(ctx, "app", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{tokenVol.Audience}, ExpirationSeconds: tokenVol.ExpirationSeconds,
			BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: created.Name, UID: created.UID}},
	}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	_, claims, err := cluster.VerifyToken(tr.Status.Token)
	if err != nil {
		return err
	}
	fmt.Printf("  token           signature verified with the cluster's key; claims:\n")
	if claims.Kubernetes.Pod == nil {
		return errors.New("the token is not bound to the pod")
	}
	fmt.Printf("    iss %v\n    sub %v\n    aud %v\n    exp in %s\n    pod %v\n", claims.Iss, claims.Sub, claims.Aud,
		time.Until(time.Unix(claims.Exp, 0)).Round(time.Minute), claims.Kubernetes.Pod.Name)

	if err := issuerSide(ctx, bin, dir, cluster, issuer, ports[2], tr.Status.Token); err != nil {
		return err
	}
	fmt.Println("  done: stopping everything")
	return nil
}

// issuerSide publishes the cluster's issuer, serves it, verifies the pod's
// token against the served documents, and writes and checks a trust policy.
func issuerSide(ctx context.Context, bin, dir string, cluster *testcluster.Cluster, issuer string, port int, token string) error {
	podiam := func(args ...string) (harness.Result, error) {
		res, err := harness.RunPodiam(ctx, bin, nil, args...)
		if err == nil && res.ExitCode > 1 { // 1 is policy check's "denied"
			err = fmt.Errorf("podiam %s: exit %d\n%s", strings.Join(args, " "), res.ExitCode, res.Stderr)
		}
		return res, err
	}
	site := filepath.Join(dir, "issuer")
	if _, err := podiam("oidc", "publish", "--kubeconfig", cluster.Kubeconfig(), "--issuer", issuer, "--to", site, "--no-register-hints"); err != nil {
		return err
	}
	fmt.Printf("  oidc publish    the cluster's discovery document and JWKS, read from kube-apiserver, into %s\n", site)

	tlsDir := filepath.Join(dir, "issuer-tls")
	if err := os.Mkdir(tlsDir, 0o700); err != nil {
		return err
	}
	caPEM, err := harness.WriteServingCert(tlsDir)
	if err != nil {
		return err
	}
	caFile := filepath.Join(tlsDir, "ca.crt")
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		return err
	}
	var serveLogs testutil.SyncBuffer
	serve, err := harness.StartPodiam(bin, &serveLogs, nil, "oidc", "serve", "--dir", site, "--address", "127.0.0.1",
		"--port", strconv.Itoa(port), "--tls-cert", filepath.Join(tlsDir, "tls.crt"), "--tls-key", filepath.Join(tlsDir, "tls.key"))
	if err != nil {
		return err
	}
	defer serve.Stop()

	// What AWS STS does with the token: fetch the discovery document, then
	// the JWKS it names, and verify the signature with the key of its kid.
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: harness.TLSClientConfig(caPEM)}}
	var disc oidc.Discovery
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		return getJSON(ctx, hc, issuer+"/"+oidc.DiscoveryPath, &disc) == nil, nil
	})
	if err != nil {
		return fmt.Errorf("fetching the served discovery document: %w\n%s", err, serveLogs.String())
	}
	var keys jose.JSONWebKeySet
	if err := getJSON(ctx, hc, disc.JWKSURI, &keys); err != nil {
		return err
	}
	jws, err := jose.ParseSigned(token, []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.ES384, jose.ES512})
	if err != nil {
		return err
	}
	kid := jws.Signatures[0].Header.KeyID
	found := keys.Key(kid)
	if len(found) == 0 {
		return fmt.Errorf("no key %q in the served JWKS", kid)
	}
	if _, err := jws.Verify(found[0]); err != nil {
		return fmt.Errorf("the pod's token does not verify against the served JWKS: %w", err)
	}
	fmt.Printf("  oidc serve      %s serves them over HTTPS; the pod's token verifies against the\n"+
		"                  JWKS its discovery document names (key %s…), as AWS STS checks it\n", issuer, kid[:8])

	thumb, err := podiam("oidc", "thumbprint", "--ca-file", caFile, issuer)
	if err != nil {
		return err
	}
	fmt.Printf("  oidc thumbprint %s", thumb.Stdout)

	trust, err := podiam("policy", "trust", "--account", "111122223333", "--issuer", issuer, "--serviceaccount", appNamespace+"/app")
	if err != nil {
		return err
	}
	trustFile := filepath.Join(dir, "trust.json")
	if err := os.WriteFile(trustFile, []byte(trust.Stdout), 0o600); err != nil {
		return err
	}
	fmt.Printf("  policy trust    the role's trust policy for %s/app:\n%s", appNamespace, indent(trust.Stdout, "    "))
	check, err := podiam("policy", "check", "--kubeconfig", cluster.Kubeconfig(), "--pod", appNamespace+"/app", "--trust-policy", trustFile)
	if err != nil {
		return err
	}
	if check.ExitCode != 0 {
		return fmt.Errorf("policy check denied the pod its own trust policy:\n%s", check.Stdout)
	}
	fmt.Printf("  policy check    pod %s/app against it: %s\n", appNamespace, lastLine(check.Stdout))

	other, err := podiam("policy", "trust", "--account", "111122223333", "--issuer", issuer, "--serviceaccount", appNamespace+"/reports")
	if err != nil {
		return err
	}
	otherFile := filepath.Join(dir, "trust-reports.json")
	if err := os.WriteFile(otherFile, []byte(other.Stdout), 0o600); err != nil {
		return err
	}
	denied, err := podiam("policy", "check", "--kubeconfig", cluster.Kubeconfig(), "--pod", appNamespace+"/app", "--trust-policy", otherFile)
	if err != nil {
		return err
	}
	if denied.ExitCode != 1 {
		return fmt.Errorf("policy check allowed the pod a trust policy for another ServiceAccount:\n%s", denied.Stdout)
	}
	fmt.Printf("  policy check    the same pod against a role for %s/reports, what AWS would only call\n"+
		"                  \"Not authorized to perform sts:AssumeRoleWithWebIdentity\":\n%s", appNamespace, indent(denied.Stdout, "    "))

	return stsSide(ctx, bin, dir, cluster, issuer, caFile, trustFile, token)
}

// stsSide runs `podiam sts` with the cluster as its OIDC provider and the
// role of the trust policy, exchanges the pod's token with the AWS SDK's web
// identity provider, calls GetCallerIdentity with the session, and shows a
// denial: AWS's answer, and podiam's reason from its log. Then Pod Identity,
// with the same podiam sts.
func stsSide(ctx context.Context, bin, dir string, cluster *testcluster.Cluster, issuer, caFile, trustFile, token string) error {
	config := fmt.Sprintf("accounts:\n- id: %q\n  oidcProviders:\n  - url: %s\n    clientIDs: [sts.amazonaws.com]\n    caFile: %s\n"+
		"  roles:\n  - name: demo-app\n    trustPolicyFile: %s\n", account, issuer, caFile, trustFile)
	configFile := filepath.Join(dir, "sts.yaml")
	if err := os.WriteFile(configFile, []byte(config), 0o600); err != nil {
		return err
	}
	ports, err := testutil.FreePorts(1)
	if err != nil {
		return err
	}
	var logs testutil.SyncBuffer
	proc, err := harness.StartPodiam(bin, &logs, nil, "sts", "--config", configFile, "--port", strconv.Itoa(ports[0]), "--metrics-port", "0")
	if err != nil {
		return err
	}
	defer proc.Stop()
	endpoint := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	fmt.Printf("  podiam sts      %s: account %s, the cluster as its OIDC provider, role demo-app\n", endpoint, account)

	client := sts.New(sts.Options{Region: "eu-west-1", BaseEndpoint: aws.String(endpoint)})
	webIdentity := func(tokenFile string) aws.CredentialsProvider {
		return aws.NewCredentialsCache(stscreds.NewWebIdentityRoleProvider(client, roleARN, stscreds.IdentityTokenFile(tokenFile),
			func(o *stscreds.WebIdentityRoleOptions) { o.RoleSessionName = "demo" }))
	}
	appToken := filepath.Join(dir, "app.token")
	if err := os.WriteFile(appToken, []byte(token), 0o600); err != nil {
		return err
	}
	// What the pod's SDK does with AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE.
	signed := sts.New(sts.Options{Region: "eu-west-1", BaseEndpoint: aws.String(endpoint), Credentials: webIdentity(appToken)})
	var id *sts.GetCallerIdentityOutput
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		id, err = signed.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		return err == nil, nil
	})
	if err != nil {
		return fmt.Errorf("GetCallerIdentity with the pod's web identity: %w\n%s", err, logs.String())
	}
	fmt.Printf("  AWS SDK         the pod's token → AssumeRoleWithWebIdentity → GetCallerIdentity signed with the session:\n"+
		"                  %s\n", aws.ToString(id.Arn))

	// A ServiceAccount the trust policy does not name.
	client2, err := cluster.Clientset()
	if err != nil {
		return err
	}
	if _, err := client2.CoreV1().ServiceAccounts(appNamespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "reports"}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	tr, err := client2.CoreV1().ServiceAccounts(appNamespace).CreateToken(ctx, "reports", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"sts.amazonaws.com"}}}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	otherToken := filepath.Join(dir, "reports.token")
	if err := os.WriteFile(otherToken, []byte(tr.Status.Token), 0o600); err != nil {
		return err
	}
	_, err = webIdentity(otherToken).Retrieve(ctx)
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) {
		return fmt.Errorf("a token of %s/reports was not denied: %v", appNamespace, err)
	}
	fmt.Printf("  denied          %s/reports's token, as AWS answers: %s: %s\n", appNamespace, apiErr.ErrorCode(), apiErr.ErrorMessage())
	var reason string
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		reason = denialReason(logs.String(), "system:serviceaccount:"+appNamespace+":reports")
		return reason != "", nil
	})
	if err != nil {
		return fmt.Errorf("no denial in the log of podiam sts:\n%s", logs.String())
	}
	fmt.Printf("                  and why, from podiam sts's log:\n%s", indent(reason, "    "))
	return podIdentitySide(ctx, bin, dir, cluster, stsServer{endpoint: endpoint, configFile: configFile, config: config, logs: &logs})
}

// denialReason returns the reason and the explanation of the AccessDenied in a
// JSON log whose token was subject's: the log also holds other denials (the
// SDK's retries, a probe before the keys were published), whose reasons would
// explain something else.
func denialReason(logs, subject string) string {
	for _, line := range strings.Split(logs, "\n") {
		var entry struct{ Msg, Code, Sub, Reason, Explanation string }
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == "denied" && entry.Code == "AccessDenied" && entry.Sub == subject {
			return entry.Reason + "\n" + entry.Explanation
		}
	}
	return ""
}

func getJSON(ctx context.Context, hc *http.Client, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func indent(s, prefix string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		if line != "" {
			b.WriteString(prefix)
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

func waitCABundle(ctx context.Context, client kubernetes.Interface) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		cfg, err := client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, configName, metav1.GetOptions{})
		if err == nil && len(cfg.Webhooks) > 0 && len(cfg.Webhooks[0].ClientConfig.CABundle) > 0 {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("podiam did not write the caBundle within 30s")
}
