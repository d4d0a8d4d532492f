package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podiam/podiam/api/v1alpha1"
	"github.com/podiam/podiam/hack/internal/kubefixture"
	"github.com/podiam/podiam/internal/inject"
	"github.com/podiam/podiam/test/harness"
	"github.com/podiam/podiam/test/testcluster"
	"github.com/podiam/podiam/test/testutil"
)

// Names of the Pod Identity part.
const (
	// clusterName is podiam auth's --cluster-name: agents name it in the
	// request path, and sessions are named eks-<cluster>-<pod>-<uuid>.
	clusterName = "demo"
	region      = "eu-west-1"
	// webSA is the ServiceAccount with a PodIdentityAssociation; its role
	// is webRole.
	webSA   = "web"
	webRole = "demo-web"
	// The agents' ServiceAccount: podiam auth's default --agent-service-account.
	agentNamespace = "podiam-system"
	agentSA        = "podiam-agent"
	// nodeA runs the pod and the agent; nodeA's agent refuses the token of a
	// pod on nodeB.
	nodeA, nodeB = "node-a", "node-b"
	// authUser is the podiam sts user whose keys podiam auth holds: the
	// principal the pod roles trust. The keys exist in podiam sts only.
	authUser   = "podiam-auth"
	authKeyID  = "AKIAPODIAMAUTHDEMO01"
	authSecret = "cG9kaWFtLWF1dGgtZGVtby1zZWNyZXQta2V5LTAx"
)

// authUserARN is podiam auth's principal.
const authUserARN = "arn:aws:iam::" + account + ":user/" + authUser

// stsServer is the demo's running `podiam sts`: its endpoint, its config
// file and what was written into it, and its log.
type stsServer struct {
	endpoint, configFile, config string
	logs                         *testutil.SyncBuffer
}

// authServer is the demo's running `podiam auth`.
type authServer struct {
	proc     *harness.Process
	logs     *testutil.SyncBuffer
	endpoint string
	// caFile holds the CA of podiam auth's serving certificate, which the
	// agent trusts.
	caFile string
}

// podIdentitySide is Pod Identity end to end: a PodIdentityAssociation, a
// pod the webhook gives Pod Identity, the role's trust policy added to
// podiam sts, `podiam auth`, and `podiam agent` for node-a with podiam auth
// as its backend. The pod's application (a child process with the pod's
// environment) gets the role's session through the AWS SDK's container
// credential provider; the agent's and podiam auth's log lines show each
// hop. Last, the token of a pod on node-b, which node-a's agent refuses
// itself.
func podIdentitySide(ctx context.Context, bin, dir string, cluster *testcluster.Cluster, st stsServer) error {
	client, err := cluster.Clientset()
	if err != nil {
		return err
	}
	if err := associate(ctx, cluster.RESTConfig(), client); err != nil {
		return err
	}
	pod, projection, err := podIdentityPod(ctx, client)
	if err != nil {
		return err
	}
	// What the kubelet would write into the pod's eks-pod-identity-token volume.
	podToken, err := kubefixture.BoundToken(ctx, client, pod, projection.Audience)
	if err != nil {
		return err
	}
	podTokenFile := filepath.Join(dir, projection.Path)
	if err := os.WriteFile(podTokenFile, []byte(podToken), 0o600); err != nil {
		return err
	}
	if err := addPodIdentityRole(ctx, bin, dir, st); err != nil {
		return err
	}
	auth, err := startAuth(ctx, bin, dir, cluster, st.endpoint)
	if err != nil {
		return err
	}
	defer auth.proc.Stop()
	agentTokenFile, err := agentToken(ctx, client, dir, nodeA)
	if err != nil {
		return err
	}
	agent, err := startAgent(ctx, bin, dir, cluster, auth, nodeA, agentTokenFile)
	if err != nil {
		return err
	}
	defer agent.proc.Stop()

	env := podAppEnv(pod, agent.url(), podTokenFile, st.endpoint, dir)
	fmt.Printf("  pod's app       a child process with pod %s/%s's env (the agent's address and the token's file are this machine's):\n",
		appNamespace, pod.Name)
	for _, kv := range env {
		if strings.HasPrefix(kv, inject.EnvContainerCredsURI+"=") || strings.HasPrefix(kv, inject.EnvContainerCredsToken+"=") {
			fmt.Printf("    env    %s\n", kv)
		}
	}
	got, err := runPodApp(ctx, env)
	if err != nil {
		return fmt.Errorf("%w\npodiam agent's log:\n%s\npodiam auth's log:\n%s", err, agent.logs.String(), auth.logs.String())
	}
	fmt.Printf("                  config.LoadDefaultConfig: the SDK's %s got credentials of account %s\n"+
		"                  from the agent; GetCallerIdentity signed with them:\n                  %s\n", got.Source, got.AccountID, got.ARN)

	issued, err := waitLogLine(ctx, agent.logs, "credentials issued", "podiam agent")
	if err != nil {
		return err
	}
	fmt.Printf("  1 SDK → agent   the agent checked the pod's token itself (signature, audience, node %s), had no credentials\n"+
		"                  cached for the pod and asked podiam auth, with its own token; its log line:\n    %s\n", nodeA, issued)
	audit, err := waitLogLine(ctx, auth.logs, "issued credentials", "podiam auth")
	if err != nil {
		return err
	}
	fmt.Printf("  2 agent → auth  podiam auth checked both tokens (same node), found the association and assumed %s\n"+
		"                  from podiam sts with EKS's session tags; its audit line (no token, no key):\n    %s\n", webRole, audit)

	return refuseOtherNode(ctx, client, agent, projection.Audience)
}

// refuseOtherNode sends node-a's agent the token (with audience, as
// projected) of a pod on node-b, as a pod that stole it could: the agent
// refuses it with 403 before any call to podiam auth, which its backend-call
// metric shows.
func refuseOtherNode(ctx context.Context, client kubernetes.Interface, agent *agentServer, audience string) error {
	calls, err := agent.backendCalls(ctx)
	if err != nil {
		return err
	}
	pod, err := kubefixture.CreatePod(ctx, client, appNamespace, "web-b", webSA, nodeB)
	if err != nil {
		return err
	}
	token, err := kubefixture.BoundToken(ctx, client, pod, audience)
	if err != nil {
		return err
	}
	status, message, err := agent.get(ctx, token)
	if err != nil {
		return err
	}
	if status != http.StatusForbidden {
		return fmt.Errorf("node-a's agent answered %d to a token of a pod on %s, want 403: %s", status, nodeB, message)
	}
	after, err := agent.backendCalls(ctx)
	if err != nil {
		return err
	}
	if after != calls {
		return fmt.Errorf("node-a's agent called podiam auth for a token of a pod on %s (%v calls, before %v)", nodeB, after, calls)
	}
	fmt.Printf("  denied          pod %s/%s's token (it runs on %s) sent to %s's agent: %d %s, from the agent itself\n"+
		"                  (its calls to podiam auth: still %v):\n                  %s\n",
		appNamespace, pod.Name, nodeB, nodeA, status, http.StatusText(status), after, message)
	return nil
}

// associate creates the ServiceAccount web, without annotations, and its
// PodIdentityAssociation.
func associate(ctx context.Context, cfg *rest.Config, client kubernetes.Interface) error {
	if err := kubefixture.CreateServiceAccount(ctx, client, appNamespace, webSA); err != nil {
		return err
	}
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	pias, err := ctrlclient.New(cfg, ctrlclient.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	pia := &v1alpha1.PodIdentityAssociation{ObjectMeta: metav1.ObjectMeta{Name: webSA, Namespace: appNamespace},
		Spec: v1alpha1.PodIdentityAssociationSpec{ServiceAccount: webSA, RoleARN: roleOf(webRole)}}
	if err := pias.Create(ctx, pia); err != nil {
		return fmt.Errorf("creating PodIdentityAssociation %s/%s: %w", appNamespace, webSA, err)
	}
	fmt.Printf("  association     PodIdentityAssociation %s/%s (CRD from deploy/crd): ServiceAccount %s → %s\n",
		appNamespace, pia.Name, webSA, pia.Spec.RoleARN)
	return nil
}

// podIdentityPod creates pod web of ServiceAccount web on node-a (set in
// spec.nodeName: nothing schedules or runs it) and prints the Pod Identity
// the webhook gave it. It returns the pod and its token volume's projection.
func podIdentityPod(ctx context.Context, client kubernetes.Interface) (*corev1.Pod, *corev1.ServiceAccountTokenProjection, error) {
	pods := client.CoreV1().Pods(appNamespace)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: appNamespace},
		Spec: corev1.PodSpec{ServiceAccountName: webSA, NodeName: nodeA,
			Containers: []corev1.Container{{Name: "web", Image: "public.ecr.aws/aws-cli/aws-cli"}}}}
	// The webhook learns of the association through a watch, a moment after
	// it was created: dry runs (the webhook has no side effects) until it has.
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 15*time.Second, true, func(ctx context.Context) (bool, error) {
		got, err := pods.Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return false, err
		}
		return podIdentityProjection(got) != nil, nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("the webhook gave pod %s/web no Pod Identity: %w", appNamespace, err)
	}
	created, err := pods.Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("creating pod %s/web: %w", appNamespace, err)
	}
	projection := podIdentityProjection(created)
	if projection == nil {
		return nil, nil, fmt.Errorf("pod %s/web was created without Pod Identity", appNamespace)
	}
	fmt.Printf("  Pod             %s/web on %s got, for its ServiceAccount's association (the webhook follows them by default):\n",
		appNamespace, nodeA)
	for _, e := range created.Spec.Containers[0].Env {
		fmt.Printf("    env    %s=%s\n", e.Name, e.Value)
	}
	fmt.Printf("    volume eks-pod-identity-token: projected ServiceAccount token, audience %s, %ds\n",
		projection.Audience, *projection.ExpirationSeconds)
	return created, projection, nil
}

// podIdentityProjection returns the token projection of pod's
// eks-pod-identity-token volume, nil if it has none.
func podIdentityProjection(pod *corev1.Pod) *corev1.ServiceAccountTokenProjection {
	for _, v := range pod.Spec.Volumes {
		if v.Name == "eks-pod-identity-token" && v.Projected != nil {
			for _, s := range v.Projected.Sources {
				if s.ServiceAccountToken != nil {
					return s.ServiceAccountToken
				}
			}
		}
	}
	return nil
}

// addPodIdentityRole writes the role's trust policy with `podiam policy
// trust --pod-identity`, adds the role and podiam auth's user to podiam
// sts's config, and waits until podiam sts has re-read it.
func addPodIdentityRole(ctx context.Context, bin, dir string, st stsServer) error {
	args := []string{"policy", "trust", "--pod-identity", "--principal", authUserARN, "--serviceaccount", appNamespace + "/" + webSA}
	trust, err := harness.RunPodiam(ctx, bin, nil, args...)
	if err == nil && trust.ExitCode != 0 {
		err = fmt.Errorf("podiam %s: exit %d\n%s", strings.Join(args, " "), trust.ExitCode, trust.Stderr)
	}
	if err != nil {
		return err
	}
	trustFile := filepath.Join(dir, "trust-"+webRole+".json")
	if err := os.WriteFile(trustFile, []byte(trust.Stdout), 0o600); err != nil {
		return err
	}
	fmt.Printf("  policy trust    --pod-identity --principal %s --serviceaccount %s/%s:\n"+
		"                  the role trusts podiam auth, for that ServiceAccount's session tags only:\n%s",
		authUserARN, appNamespace, webSA, indent(trust.Stdout, "    "))

	// The demo's config ends with the account's roles: one more, then the user.
	config := st.config + fmt.Sprintf("  - name: %s\n    trustPolicyFile: %s\n"+
		"  users:\n  - name: %s\n    accessKeyId: %s\n    secretAccessKey: %s\n", webRole, trustFile, authUser, authKeyID, authSecret)
	loaded := strings.Count(st.logs.String(), `"msg":"loaded sts config"`)
	// Replaced by rename, so that podiam sts never reads half a file.
	tmp := st.configFile + ".new"
	if err := os.WriteFile(tmp, []byte(config), 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, st.configFile); err != nil {
		return err
	}
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return strings.Count(st.logs.String(), `"msg":"loaded sts config"`) > loaded, nil
	})
	if err != nil {
		return fmt.Errorf("podiam sts did not re-read its config: %w\n%s", err, st.logs.String())
	}
	fmt.Printf("  podiam sts      re-read its config on the change: role %s, user %s (podiam auth's keys)\n", webRole, authUser)
	return nil
}

// startAuth starts `podiam auth` with a serving certificate from a CA the
// demo makes, the keys of podiam sts's user and podiam sts as its STS, and
// waits until it is ready.
func startAuth(ctx context.Context, bin, dir string, cluster *testcluster.Cluster, stsEndpoint string) (*authServer, error) {
	tlsDir := filepath.Join(dir, "auth-tls")
	if err := os.Mkdir(tlsDir, 0o700); err != nil {
		return nil, err
	}
	caPEM, err := harness.WriteServingCert(tlsDir)
	if err != nil {
		return nil, err
	}
	caFile := filepath.Join(tlsDir, "ca.crt")
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		return nil, err
	}
	ports, err := testutil.FreePorts(2)
	if err != nil {
		return nil, err
	}
	env := []string{
		"AWS_ACCESS_KEY_ID=" + authKeyID, "AWS_SECRET_ACCESS_KEY=" + authSecret, "AWS_SESSION_TOKEN=",
		"AWS_REGION=" + region, "AWS_ENDPOINT_URL_STS=" + stsEndpoint,
		// Nothing of the machine's own AWS set-up.
		"AWS_CONFIG_FILE=" + filepath.Join(dir, "no-aws-config"), "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(dir, "no-aws-credentials"),
		"AWS_PROFILE=", "AWS_EC2_METADATA_DISABLED=true",
	}
	a := &authServer{logs: new(testutil.SyncBuffer), endpoint: fmt.Sprintf("https://127.0.0.1:%d", ports[0]), caFile: caFile}
	a.proc, err = harness.StartPodiam(bin, a.logs, env, "auth", "--kubeconfig", cluster.Kubeconfig(),
		"--port", strconv.Itoa(ports[0]), "--metrics-port", strconv.Itoa(ports[1]),
		"--tls-cert", filepath.Join(tlsDir, "tls.crt"), "--tls-key", filepath.Join(tlsDir, "tls.key"),
		"--cluster-name", clusterName, "--cluster-arn", "arn:aws:eks:"+region+":"+account+":cluster/"+clusterName,
		"--shutdown-delay", "0s")
	if err != nil {
		return nil, err
	}
	readyz := fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[1])
	if err := kubefixture.WaitReady(ctx, a.proc, readyz, "podiam auth", 30*time.Second); err != nil {
		a.proc.Stop()
		return nil, fmt.Errorf("%w\n%s", err, a.logs.String())
	}
	fmt.Printf("  podiam auth     %s: cluster %s, TLS from the demo's CA, podiam sts's user %s as its AWS identity\n",
		a.endpoint, clusterName, authUser)
	return a, nil
}

// agentToken creates the agent's pod on node (and its ServiceAccount), and
// writes the agent's token (audience podiam-auth, bound to the pod) into a
// file, as the kubelet projects it; it returns the file's path.
func agentToken(ctx context.Context, client kubernetes.Interface, dir, node string) (string, error) {
	if err := kubefixture.CreateServiceAccount(ctx, client, agentNamespace, agentSA); err != nil {
		return "", err
	}
	pod, err := kubefixture.CreatePod(ctx, client, agentNamespace, agentSA+"-"+node, agentSA, node)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "agent-"+node+".token")
	if err := kubefixture.WriteBoundToken(ctx, client, pod, "podiam-auth", path); err != nil {
		return "", err
	}
	return path, nil
}

// waitLogLine waits for the first line of who's JSON log whose message is
// msg, and returns it.
func waitLogLine(ctx context.Context, logs *testutil.SyncBuffer, msg, who string) (string, error) {
	var line string
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		line = logLine(logs.String(), msg)
		return line != "", nil
	})
	if err != nil {
		return "", fmt.Errorf("no %q line in %s's log:\n%s", msg, who, logs.String())
	}
	return line, nil
}

// logLine returns the first line of a JSON log whose message is msg.
func logLine(logs, msg string) string {
	for _, line := range strings.Split(logs, "\n") {
		var entry struct{ Msg string }
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == msg {
			return line
		}
	}
	return ""
}

// roleOf is the ARN of the demo account's role name.
func roleOf(name string) string { return "arn:aws:iam::" + account + ":role/" + name }
