package e2e

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/aws-sdk-go-v2/service/sts/types"
	"github.com/aws/smithy-go"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podiam/podiam/test/harness"
	"github.com/podiam/podiam/test/testcluster"
	"github.com/podiam/podiam/test/testutil"
)

// TestSTSChain is IRSA end to end without AWS: a token from the TokenRequest
// API, bound to a pod, is exchanged by the AWS SDK's web identity provider at
// `podiam sts`, which fetches the issuer's keys from `podiam oidc serve`
// (documents published by `podiam oidc publish`) and evaluates a trust
// policy written by `podiam policy trust`; the session's credentials then
// sign GetCallerIdentity, which names the assumed role. A token of a
// ServiceAccount the policy does not name is denied as AWS denies it, with
// the reason in podiam's log.
func TestSTSChain(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 3*time.Minute)
	ports, err := testutil.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	issuer := fmt.Sprintf("https://127.0.0.1:%d/sts-chain", ports[0])
	c := testcluster.StartForTest(t, testcluster.Options{IssuerURL: issuer})
	tmp := t.TempDir()

	// The issuer: published from the cluster, served over HTTPS.
	site := filepath.Join(tmp, "issuer")
	podiamOutput(t, ctx, "oidc", "publish", "--issuer", issuer, "--kubeconfig", c.Kubeconfig(), "--to", site, "--no-register-hints")
	caPEM, err := harness.WriteServingCert(tmp)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(tmp, "issuer-ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	serve, _ := startPodiam(t, "oidc", "serve", "--dir", site, "--address", "127.0.0.1", "--port", strconv.Itoa(ports[0]),
		"--tls-cert", filepath.Join(tmp, "tls.crt"), "--tls-key", filepath.Join(tmp, "tls.key"))
	defer serve.Stop()

	// The STS: one account, the cluster as its OIDC provider, a role whose
	// trust policy names sts-app/app.
	const account = "111122223333"
	ns := testutil.UniqueName("sts-app")
	trust := podiamOutput(t, ctx, "policy", "trust", "--account", account, "--issuer", issuer, "--serviceaccount", ns+"/app")
	trustFile := filepath.Join(tmp, "trust.json")
	if err := os.WriteFile(trustFile, []byte(trust), 0o600); err != nil {
		t.Fatal(err)
	}
	// A second account takes the same cluster's keys from its API server
	// (kubeconfig), as in the README's CI recipe: no publishing needed.
	const kubeAccount = "444455556666"
	kubeTrustFile := filepath.Join(tmp, "trust-kube.json")
	kubeTrust := podiamOutput(t, ctx, "policy", "trust", "--account", kubeAccount, "--issuer", issuer, "--serviceaccount", ns+"/app")
	if err := os.WriteFile(kubeTrustFile, []byte(kubeTrust), 0o600); err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf(`accounts:
- id: "%s"
  oidcProviders:
  - url: %s
    clientIDs: [sts.amazonaws.com]
    caFile: %s
  roles:
  - name: app
    trustPolicyFile: %s
- id: "%s"
  oidcProviders:
  - url: %s
    clientIDs: [sts.amazonaws.com]
    kubeconfig: %s
  roles:
  - name: app
    trustPolicyFile: %s
`, account, issuer, caFile, trustFile, kubeAccount, issuer, c.Kubeconfig(), kubeTrustFile)
	configFile := filepath.Join(tmp, "sts.yaml")
	if err := os.WriteFile(configFile, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	stsProc, stsLogs := startPodiam(t, "sts", "--config", configFile, "--address", "127.0.0.1",
		"--port", strconv.Itoa(ports[1]), "--metrics-port", "0", "--log-format", "text")
	defer stsProc.Stop()
	endpoint := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	client := sts.New(sts.Options{Region: "eu-west-1", BaseEndpoint: aws.String(endpoint)})

	// The pod and the tokens kubelet would write into its volume.
	if err := c.EnsureNamespace(ctx, ns, nil); err != nil {
		t.Fatal(err)
	}
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	for _, sa := range []string{"app", "other"} {
		if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	token := func(sa string) string {
		t.Helper()
		pod, err := cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: sa},
			Spec:       corev1.PodSpec{ServiceAccountName: sa, Containers: []corev1.Container{{Name: "app", Image: "app"}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
			Audiences:      []string{"sts.amazonaws.com"},
			BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(tmp, sa+".token")
		if err := os.WriteFile(file, []byte(tr.Status.Token), 0o600); err != nil {
			t.Fatal(err)
		}
		return file
	}
	roleARN := "arn:aws:iam::" + account + ":role/app"
	webIdentityFor := func(role, tokenFile string) *stscreds.WebIdentityRoleProvider {
		return stscreds.NewWebIdentityRoleProvider(client, role, stscreds.IdentityTokenFile(tokenFile),
			func(o *stscreds.WebIdentityRoleOptions) { o.RoleSessionName = "e2e-session" })
	}
	webIdentity := func(tokenFile string) *stscreds.WebIdentityRoleProvider { return webIdentityFor(roleARN, tokenFile) }

	appToken := token("app")
	var creds aws.Credentials
	testutil.Eventually(t, 30*time.Second, 200*time.Millisecond, "podiam sts to hand out credentials", func() (bool, string) {
		creds, err = webIdentity(appToken).Retrieve(ctx)
		return err == nil, fmt.Sprint(err)
	})
	if !strings.HasPrefix(creds.AccessKeyID, "ASIA") || creds.SessionToken == "" || !creds.CanExpire {
		t.Errorf("credentials: key id %q, session token set %v, expire %v", creds.AccessKeyID, creds.SessionToken != "", creds.CanExpire)
	}
	signed := sts.New(sts.Options{Region: "eu-west-1", BaseEndpoint: aws.String(endpoint),
		Credentials: aws.NewCredentialsCache(webIdentity(appToken))})
	id, err := signed.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatalf("GetCallerIdentity with the session: %v\n%s", err, stsLogs.String())
	}
	if want := "arn:aws:sts::" + account + ":assumed-role/app/e2e-session"; aws.ToString(id.Arn) != want || aws.ToString(id.Account) != account {
		t.Errorf("GetCallerIdentity: arn %q account %q, want %q and %q", aws.ToString(id.Arn), aws.ToString(id.Account), want, account)
	}

	// The same token for the account whose provider reads the API server.
	kubeCreds, err := webIdentityFor("arn:aws:iam::"+kubeAccount+":role/app", appToken).Retrieve(ctx)
	if err != nil || !strings.HasPrefix(kubeCreds.AccessKeyID, "ASIA") {
		t.Errorf("web identity with the kubeconfig provider: key id %q, %v", kubeCreds.AccessKeyID, err)
	}

	// Another ServiceAccount of the same cluster: AWS's answer on the wire,
	// the reason in the log.
	_, err = webIdentity(token("other")).Retrieve(ctx)
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode() != "AccessDenied" || apiErr.ErrorMessage() != "Not authorized to perform sts:AssumeRoleWithWebIdentity" {
		t.Fatalf("token of %s/other: %v, want AccessDenied", ns, err)
	}
	testutil.Eventually(t, 5*time.Second, 50*time.Millisecond, "the denial's reason in the log", func() (bool, string) {
		logs := stsLogs.String()
		return strings.Contains(logs, "system:serviceaccount:"+ns+":other") && strings.Contains(logs, "system:serviceaccount:"+ns+":app"), logs
	})
}

// TestSTSSessionsSurviveRestart stops the real `podiam sts` binary and starts it
// again on the same port: with the same --state-key-file, a session issued before
// the restart still signs GetCallerIdentity; with another key file it is refused
// as AWS refuses credentials it does not know.
func TestSTSSessionsSurviveRestart(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, time.Minute)
	const (
		account   = "111122223333"
		keyID     = "AKIAEXAMPLEEXAMPLE01"
		secretKey = "c2VjcmV0LW9mLXRoZS1jaS11c2VyLWZvci10ZXN0cw"
	)
	tmp := t.TempDir()
	configFile := filepath.Join(tmp, "sts.yaml")
	config := `accounts:
- id: "` + account + `"
  roles:
  - name: deploy
    trustPolicy: {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
      "Principal": {"AWS": "arn:aws:iam::` + account + `:user/ci"}, "Action": "sts:AssumeRole"}]}
  users:
  - name: ci
    accessKeyId: ` + keyID + `
    secretAccessKey: ` + secretKey + `
`
	if err := os.WriteFile(configFile, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	ports, err := testutil.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	endpoint := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	start := func(stateKey string) *harness.Process {
		t.Helper()
		p, logs := startPodiam(t, "sts", "--config", configFile, "--port", strconv.Itoa(ports[0]), "--metrics-port", "0",
			"--state-key-file", stateKey, "--log-format", "text")
		client := sts.New(sts.Options{Region: "us-east-1", BaseEndpoint: aws.String(endpoint),
			Credentials: credentials.NewStaticCredentialsProvider(keyID, secretKey, "")})
		testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, "podiam sts to answer", func() (bool, string) {
			_, err := client.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
			return err == nil, fmt.Sprint(err, "\n", logs.String())
		})
		return p
	}
	callerARN := func(c *types.Credentials) (string, error) {
		client := sts.New(sts.Options{Region: "us-east-1", BaseEndpoint: aws.String(endpoint), RetryMaxAttempts: 1,
			Credentials: credentials.NewStaticCredentialsProvider(*c.AccessKeyId, *c.SecretAccessKey, *c.SessionToken)})
		out, err := client.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		if err != nil {
			return "", err
		}
		return aws.ToString(out.Arn), nil
	}

	stateKey := filepath.Join(tmp, "state.key") // created by the first start
	first := start(stateKey)
	user := sts.New(sts.Options{Region: "us-east-1", BaseEndpoint: aws.String(endpoint),
		Credentials: credentials.NewStaticCredentialsProvider(keyID, secretKey, "")})
	out, err := user.AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String("arn:aws:iam::" + account + ":role/deploy"),
		RoleSessionName: aws.String("before-restart")})
	if err != nil {
		t.Fatal(err)
	}
	first.Stop()

	tests := []struct {
		name     string
		stateKey string
		wantCode string // empty: the session is accepted
	}{
		{name: "same state key file", stateKey: stateKey},
		{name: "another state key file", stateKey: filepath.Join(tmp, "other.key"), wantCode: "InvalidClientTokenId"},
	}
	for _, tt := range tests {
		p := start(tt.stateKey)
		arn, err := callerARN(out.Credentials)
		var apiErr smithy.APIError
		switch {
		case tt.wantCode == "" && err != nil:
			t.Errorf("%s: GetCallerIdentity with the session issued before the restart: %v", tt.name, err)
		case tt.wantCode == "" && arn != "arn:aws:sts::"+account+":assumed-role/deploy/before-restart":
			t.Errorf("%s: Arn = %q", tt.name, arn)
		case tt.wantCode != "" && (!errors.As(err, &apiErr) || apiErr.ErrorCode() != tt.wantCode):
			t.Errorf("%s: GetCallerIdentity = %v, want %s", tt.name, err, tt.wantCode)
		}
		p.Stop()
	}
}
