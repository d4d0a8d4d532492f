package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podiam/podiam/api/v1alpha1"
	"github.com/podiam/podiam/internal/eksauth"
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
	agentNamespace = "kube-system"
	agentSA        = "podiam-agent"
	// nodeA runs the pod and its agent; nodeB's agent is refused the pod.
	nodeA, nodeB = "node-a", "node-b"
	// authUser is the podiam sts user whose keys podiam auth holds: the
	// principal the pod roles trust. The keys exist in podiam sts only.
	authUser   = "podiam-auth"
	authKeyID  = "AKIAPODIAMAUTHDEMO01"
	authSecret = "cG9kaWFtLWF1dGgtZGVtby1zZWNyZXQta2V5LTAx"
)

// authUserARN is podiam auth's principal.
const authUserARN = "arn:aws:iam::" + account + ":user/" + authUser

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

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
	// http trusts podiam auth's serving certificate, as an agent does.
	http *http.Client
}

// podIdentitySide is Pod Identity end to end: a PodIdentityAssociation, a
// pod the webhook gives Pod Identity, the role's trust policy added to
// podiam sts, `podiam auth`, and the call a node agent makes, answered with
// the role's session; then the same pod's token from another node, refused,
// and podiam auth's audit line.
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
	podToken, err := boundToken(ctx, client, pod, projection.Audience)
	if err != nil {
		return err
	}
	if err := addPodIdentityRole(ctx, bin, dir, st); err != nil {
		return err
	}
	auth, err := startAuth(ctx, bin, dir, cluster, st.endpoint)
	if err != nil {
		return err
	}
	defer auth.stop()
	agents := map[string]*eksauth.Client{}
	for _, node := range []string{nodeA, nodeB} {
		if agents[node], err = agentClient(ctx, client, dir, node, auth); err != nil {
			return err
		}
	}
	fmt.Printf("  agents          %s/%s pods on %s and %s, each with a token bound to it (audience podiam-auth);\n"+
		"                  the node agent, `podiam agent`, is next: here internal/eksauth's Client calls as it will\n",
		agentNamespace, agentSA, nodeA, nodeB)

	out, err := agents[nodeA].AssumeRoleForPodIdentity(ctx, clusterName, podToken)
	if err != nil {
		return fmt.Errorf("AssumeRoleForPodIdentity for %s/%s: %w\npodiam auth's log:\n%s", appNamespace, pod.Name, err, auth.logs.String())
	}
	fmt.Printf("  EKS Auth        %s's agent sends pod %s/%s's token (audience %s) to podiam auth:\n"+
		"    subject          %s/%s\n    association      %s (id %s)\n    assumedRoleUser  %s\n                     id %s\n"+
		"    credentials      expire in %s\n",
		nodeA, appNamespace, pod.Name, projection.Audience, out.Subject.Namespace, out.Subject.ServiceAccount,
		out.PodIdentityAssociation.AssociationArn, out.PodIdentityAssociation.AssociationID,
		out.AssumedRoleUser.Arn, out.AssumedRoleUser.AssumeRoleID, time.Until(out.Credentials.Expiration).Round(time.Minute))
	if err := callerIdentity(ctx, st, out.Credentials); err != nil {
		return err
	}

	_, err = agents[nodeB].AssumeRoleForPodIdentity(ctx, clusterName, podToken)
	var refused *eksauth.Error
	if !errors.As(err, &refused) || refused.Code != eksauth.CodeAccessDenied {
		return fmt.Errorf("the pod's token sent by %s's agent: %v, want %s", nodeB, err, eksauth.CodeAccessDenied)
	}
	fmt.Printf("  denied          the same token sent by %s's agent: %s:\n                  %s\n", nodeB, refused.Code, refused.Message)

	line, err := waitAuditLine(ctx, auth.logs)
	if err != nil {
		return err
	}
	fmt.Printf("  audit           podiam auth's log line for the issuance (no token, no key):\n    %s\n", line)
	return nil
}

// installAssociationCRD applies deploy/crd's PodIdentityAssociation CRD
// (server-side apply) and waits until it is established.
func installAssociationCRD(ctx context.Context, cfg *rest.Config) error {
	root, err := testutil.ModuleRoot()
	if err != nil {
		return err
	}
	path := filepath.Join(root, "deploy/crd/podiam.dev_podidentityassociations.yaml")
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	crd := &unstructured.Unstructured{}
	if err := utilyaml.NewYAMLOrJSONDecoder(f, 4096).Decode(&crd.Object); err != nil {
		return fmt.Errorf("decoding %s: %w", path, err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	crds := dyn.Resource(crdGVR)
	if _, err := crds.Apply(ctx, crd.GetName(), crd, metav1.ApplyOptions{FieldManager: "podiam-demo", Force: true}); err != nil {
		return fmt.Errorf("applying CRD %s: %w", crd.GetName(), err)
	}
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		got, err := crds.Get(ctx, crd.GetName(), metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
		for _, c := range conds {
			if m, _ := c.(map[string]any); m["type"] == "Established" && m["status"] == "True" {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("CRD %s not established: %w", crd.GetName(), err)
	}
	return nil
}

// associate creates the ServiceAccount web, without annotations, and its
// PodIdentityAssociation.
func associate(ctx context.Context, cfg *rest.Config, client kubernetes.Interface) error {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: webSA, Namespace: appNamespace}}
	if _, err := client.CoreV1().ServiceAccounts(appNamespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
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

// boundToken asks the TokenRequest API for a token of pod's ServiceAccount
// with audience, bound to the pod, as the kubelet projects it.
func boundToken(ctx context.Context, client kubernetes.Interface, pod *corev1.Pod, audience string) (string, error) {
	tr, err := client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, pod.Spec.ServiceAccountName, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{audience},
			BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("TokenRequest for pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return tr.Status.Token, nil
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
	a := &authServer{logs: new(testutil.SyncBuffer), endpoint: fmt.Sprintf("https://127.0.0.1:%d", ports[0]),
		http: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: harness.TLSClientConfig(caPEM)}}}
	a.proc, err = harness.StartPodiam(bin, a.logs, env, "auth", "--kubeconfig", cluster.Kubeconfig(),
		"--port", strconv.Itoa(ports[0]), "--metrics-port", strconv.Itoa(ports[1]),
		"--tls-cert", filepath.Join(tlsDir, "tls.crt"), "--tls-key", filepath.Join(tlsDir, "tls.key"),
		"--cluster-name", clusterName, "--cluster-arn", "arn:aws:eks:"+region+":"+account+":cluster/"+clusterName,
		"--shutdown-delay", "0s")
	if err != nil {
		return nil, err
	}
	readyz := fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[1])
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		select {
		case <-a.proc.Exited():
			return false, fmt.Errorf("podiam auth exited with status %d", a.proc.ExitCode())
		default:
		}
		return httpOK(ctx, readyz), nil
	})
	if err != nil {
		a.stop()
		return nil, fmt.Errorf("podiam auth not ready: %w\n%s", err, a.logs.String())
	}
	fmt.Printf("  podiam auth     %s: cluster %s, TLS from the demo's CA, podiam sts's user %s as its AWS identity\n",
		a.endpoint, clusterName, authUser)
	return a, nil
}

func (a *authServer) stop() {
	a.http.CloseIdleConnections()
	a.proc.Stop()
}

// httpOK reports whether GET url answers 200.
func httpOK(ctx context.Context, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode == http.StatusOK
}

// agentClient creates the agent's pod on node (and its ServiceAccount, the
// first time), writes the agent's token (audience podiam-auth, bound to the
// pod) into a file as the kubelet projects it, and returns the client the
// agent calls podiam auth with.
func agentClient(ctx context.Context, client kubernetes.Interface, dir, node string, auth *authServer) (*eksauth.Client, error) {
	sas := client.CoreV1().ServiceAccounts(agentNamespace)
	if _, err := sas.Get(ctx, agentSA, metav1.GetOptions{}); err != nil {
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: agentSA, Namespace: agentNamespace}}
		if _, err := sas.Create(ctx, sa, metav1.CreateOptions{}); err != nil {
			return nil, fmt.Errorf("creating ServiceAccount %s/%s: %w", agentNamespace, agentSA, err)
		}
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: agentSA + "-" + node, Namespace: agentNamespace},
		Spec: corev1.PodSpec{ServiceAccountName: agentSA, NodeName: node,
			Containers: []corev1.Container{{Name: "agent", Image: "ghcr.io/podiam/podiam"}}}}
	created, err := client.CoreV1().Pods(agentNamespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("creating pod %s/%s: %w", agentNamespace, pod.Name, err)
	}
	token, err := boundToken(ctx, client, created, "podiam-auth")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "agent-"+node+".token")
	if err := os.WriteFile(path, []byte(token), 0o600); err != nil {
		return nil, err
	}
	return &eksauth.Client{Endpoint: auth.endpoint, HTTPClient: auth.http, Auth: &eksauth.BearerTokenFile{Path: path}}, nil
}

// callerIdentity signs GetCallerIdentity with the issued credentials, as the
// pod's AWS SDK would, and prints the session it names.
func callerIdentity(ctx context.Context, st stsServer, creds eksauth.Credentials) error {
	client := sts.New(sts.Options{Region: region, BaseEndpoint: aws.String(st.endpoint),
		Credentials: credentials.NewStaticCredentialsProvider(creds.AccessKeyID, creds.SecretAccessKey, creds.SessionToken)})
	id, err := client.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		return fmt.Errorf("GetCallerIdentity with the credentials of podiam auth: %w\n%s", err, st.logs.String())
	}
	fmt.Printf("  AWS SDK         GetCallerIdentity signed with those credentials, the session EKS would name:\n"+
		"                  %s\n", aws.ToString(id.Arn))
	return nil
}

// waitAuditLine waits for podiam auth's audit line and returns it.
func waitAuditLine(ctx context.Context, logs *testutil.SyncBuffer) (string, error) {
	var line string
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		line = auditLine(logs.String())
		return line != "", nil
	})
	if err != nil {
		return "", fmt.Errorf("no audit line in podiam auth's log:\n%s", logs.String())
	}
	return line, nil
}

// auditLine returns the first "issued credentials" line of a JSON log.
func auditLine(logs string) string {
	for _, line := range strings.Split(logs, "\n") {
		var entry struct{ Msg string }
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == "issued credentials" {
			return line
		}
	}
	return ""
}

// roleOf is the ARN of the demo account's role name.
func roleOf(name string) string { return "arn:aws:iam::" + account + ":role/" + name }
