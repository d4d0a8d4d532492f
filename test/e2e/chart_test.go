package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/util/retry"

	"github.com/podiam/podiam/api/v1alpha1"
	"github.com/podiam/podiam/internal/eksauth"
	"github.com/podiam/podiam/test/chart"
	"github.com/podiam/podiam/test/fakes3"
	"github.com/podiam/podiam/test/harness"
	"github.com/podiam/podiam/test/testutil"
)

// The components of the chart, as the workload that runs each.
var (
	chartWebhook     = componentSpec{command: []string{"webhook"}, flags: []string{"--cert-mode=self-managed"}}
	chartAuth        = componentSpec{command: []string{"auth"}}
	chartAgentPodiam = componentSpec{command: []string{"agent"}, flags: []string{"--backend=podiam"}}
	chartAgentEKS    = componentSpec{command: []string{"agent"}, flags: []string{"--backend=eks"}}
	chartIssuerSync  = componentSpec{command: []string{"oidc", "publish"}}
	chartSTS         = componentSpec{command: []string{"sts"}}
)

// TestChartDryRun renders the chart for every values combination of its
// tests (test/chart's Variants), as `helm install podiam -n podiam-system`
// would, and applies every object to the API server with a server-side dry
// run and strict field validation: each one must be accepted, with no field
// that its schema lacks. Kinds of other projects (cert-manager's, the
// Prometheus operator's) get those projects' own CRDs first
// (chart.ForeignCRDs), so that they are checked against their real schemas.
func TestChartDryRun(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 2*time.Minute)
	dyn, err := dynamic.NewForConfig(cluster.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	variants := chart.Variants()
	if len(variants) == 0 {
		t.Fatal("test/chart has no variants")
	}
	for _, v := range variants {
		t.Run(v.Name, func(t *testing.T) {
			t.Parallel()
			manifest, err := chart.Render(v.Values)
			if err != nil {
				t.Fatalf("rendering: %v", err)
			}
			objs, err := chart.Objects(manifest)
			if err != nil {
				t.Fatal(err)
			}
			if len(objs) == 0 {
				t.Fatal("the rendering has no objects")
			}
			serveKinds(t, ctx, dyn, objs)
			ns := chart.ReleaseNamespace
			if o, _ := v.Values["namespaceOverride"].(string); o != "" {
				ns = o
			}
			kinds := dryRunStrict(t, ctx, dyn, objs, ns)
			t.Logf("%d objects accepted by a dry run: %v", len(objs), kinds)
		})
	}
}

// serveKinds makes the API server serve every kind of objs that is not a
// built-in one: the association CRD (the project's, applied for real: it
// is the same for every test) and the other projects' kinds, from their
// real CRDs (installForeignCRD). It then waits until discovery lists them.
func serveKinds(t *testing.T, ctx context.Context, dyn dynamic.Interface, objs []*unstructured.Unstructured) {
	t.Helper()
	crds, err := chart.ForeignCRDs()
	if err != nil {
		t.Fatal(err)
	}
	done := map[string]bool{}
	for _, u := range objs {
		gvk := u.GroupVersionKind()
		if crd, ok := chart.CRDFor(crds, gvk.Group, gvk.Version, gvk.Kind); ok {
			if !done[crd.GetName()] {
				installForeignCRD(t, ctx, dyn, crd, u)
				done[crd.GetName()] = true
			}
			continue
		}
		switch {
		case served(gvk):
			continue
		case gvk.Group == v1alpha1.GroupVersion.Group:
			installAssociationCRD(t)
		default:
			t.Fatalf("the chart renders %s, of no CRD the tests know", gvk)
		}
		testutil.Eventually(t, 15*time.Second, 100*time.Millisecond, "discovery to list "+gvk.String(), func() bool { return served(gvk) })
	}
}

// TestChartComponents installs the chart's components, each in a release of
// its own, and runs each as a process with the arguments and the
// ServiceAccount tokens of its rendered pod, under nothing but the rendered
// RBAC (chartInstall.run says what is changed to run outside a pod): each
// must do its work.
func TestChartComponents(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		run  func(t *testing.T)
	}{
		{"webhook", testChartWebhook},
		{"auth and agent", testChartAuthAgent},
		{"agent eks", testChartAgentEKS},
		{"issuer sync", testChartIssuerSync},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t)
		})
	}
}

// testChartWebhook runs the webhook with self-managed certificates: it
// becomes ready, creates its Secret, and writes its CA into the caBundle of
// the rendered webhook configuration, which the rendered RBAC allows by the
// names the rendered flags use. The certificate names the rendered Service.
func testChartWebhook(t *testing.T) {
	ctx := ctxFor(t, 90*time.Second)
	ci := installChart(t, ctx, "wh", valuesFor(t, chartWebhook))
	w := ci.workload(chartWebhook)
	// Its certificate also names 127.0.0.1, where the API server calls it
	// below instead of its Service.
	p := ci.run(w, ci.createPod(w, "node-"+ci.release), runOptions{flags: map[string]string{"--cert-extra-names": "127.0.0.1"}})

	secretName, cfgName, svcName := p.flag(t, "--cert-secret-name"), p.flag(t, "--webhook-config-name"), p.flag(t, "--service-name")
	var svc corev1.Service
	ci.find("Service", svcName, &svc) // the flag names the rendered Service
	var tlsCrt []byte
	testutil.Eventually(t, 20*time.Second, 100*time.Millisecond, "the webhook to write its Secret and the caBundle", func() (bool, string) {
		cfg, err := client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, cfgName, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		s, err := client.CoreV1().Secrets(ci.namespace).Get(ctx, secretName, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		tlsCrt = s.Data["tls.crt"]
		for _, h := range cfg.Webhooks {
			if len(s.Data["ca.crt"]) == 0 || !bytes.Equal(h.ClientConfig.CABundle, s.Data["ca.crt"]) {
				return false, fmt.Sprintf("webhook %s: caBundle %d bytes, the Secret's ca.crt %d", h.Name, len(h.ClientConfig.CABundle), len(s.Data["ca.crt"]))
			}
		}
		return len(cfg.Webhooks) > 0 && len(tlsCrt) > 0, fmt.Sprintf("%d webhooks, tls.crt %d bytes", len(cfg.Webhooks), len(tlsCrt))
	})
	var cfg admissionregistrationv1.MutatingWebhookConfiguration
	ci.find("MutatingWebhookConfiguration", cfgName, &cfg)
	host := svcName + "." + ci.namespace + ".svc"
	for _, h := range cfg.Webhooks {
		if s := h.ClientConfig.Service; s == nil || s.Name != svcName || s.Namespace != ci.namespace {
			t.Errorf("webhook %s calls %+v, want Service %s/%s", h.Name, s, ci.namespace, svcName)
		}
	}
	if leaf := parseCerts(t, tlsCrt)[0]; !slices.Contains(leaf.DNSNames, host) {
		t.Errorf("the serving certificate names %q, not the Service's %s", leaf.DNSNames, host)
	}

	// The API server calls the webhook at its loopback port, keeping the
	// caBundle it wrote, for the namespaces of the release's label
	// (installChart): a pod of an annotated ServiceAccount gets its role,
	// which the webhook reads under the rendered RBAC.
	mwcs := client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := mwcs.Get(ctx, cfgName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for i := range cur.Webhooks {
			cc := &cur.Webhooks[i].ClientConfig
			url := "https://127.0.0.1:" + p.flag(t, "--port")
			if cc.Service != nil && cc.Service.Path != nil {
				url += *cc.Service.Path
			}
			cc.URL, cc.Service = &url, nil
		}
		_, err = mwcs.Update(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("pointing %s at 127.0.0.1: %v", cfgName, err)
	}
	const role = "arn:aws:iam::111122223333:role/chart-webhook"
	ns := ci.release + "-pods"
	newNamespace(t, ctx, ns, map[string]string{isolatedLabel: ci.release})
	newServiceAccount(t, ctx, ns, "app", map[string]string{annoRoleARN: role})
	testutil.Eventually(t, 20*time.Second, 100*time.Millisecond, "a pod of "+ns+"/app to get "+role, func() (bool, string) {
		pod, err := client.CoreV1().Pods(ns).Create(ctx, simplePod("app"), metav1.CreateOptions{})
		if err != nil {
			return false, err.Error()
		}
		return roleOf(pod) == role, "role " + roleOf(pod)
	})
	ci.checkLogs(p)
}

// testChartAuthAgent runs podiam sts, podiam auth and the agent (podiam
// backend) of one release: an application's pod gets credentials of its
// association's role from the agent, which signs GetCallerIdentity at the
// release's podiam sts, and podiam auth writes the association's status.
func testChartAuthAgent(t *testing.T) {
	ctx := ctxFor(t, 90*time.Second)
	installAssociationCRD(t)
	appNS := testutil.UniqueName("podiam-chart-apps")
	newNamespace(t, ctx, appNS, nil)
	f := &authFixture{t: t, ctx: ctx, dir: t.TempDir(), ns: appNS, clusterName: authCluster, principal: authUserARN,
		pias: associationClient(t), agentTokens: map[string]string{}, secrets: []string{authSecretKey}}
	var trust map[string]any
	if err := json.Unmarshal([]byte(f.podIdentityTrust("--serviceaccount", appNS+"/app")), &trust); err != nil {
		t.Fatalf("the trust policy: %v", err)
	}
	const stsTLSSecret = "sts-tls" // the operator's, for the Service's name (here 127.0.0.1)
	values := mergeValues(valuesFor(t, chartAuth, chartAgentPodiam, chartSTS), map[string]any{
		// The cluster name and ARN of every podiam auth of the tests (see
		// authCluster): each writes the status of every association.
		"auth":  map[string]any{"clusterName": authCluster, "clusterArn": "arn:aws:eks:" + authRegion + ":" + authAccount + ":cluster/" + authCluster},
		"agent": map[string]any{"clusterName": authCluster},
		// The account of the roles, with podiam auth's user.
		"sts": map[string]any{"tlsSecretName": stsTLSSecret, "config": map[string]any{"accounts": []any{map[string]any{
			"id":    authAccount,
			"roles": []any{map[string]any{"name": "app", "trustPolicy": trust}},
			"users": []any{map[string]any{"name": authUser, "accessKeyId": authKeyID, "secretAccessKey": authSecretKey}},
		}}}},
	})
	ci := installChart(t, ctx, "auth", values)
	f.systemNS, f.agentNS = ci.namespace, ci.namespace
	stsCA := ci.createTLSSecret(stsTLSSecret)
	newServiceAccount(t, ctx, appNS, "app", nil)
	f.associate(appNS, "app", v1alpha1.PodIdentityAssociationSpec{ServiceAccount: "app", RoleARN: authRoleARN("app")})
	node := "node-" + ci.release

	stsW := ci.workload(chartSTS)
	stsProc := ci.run(stsW, ci.createPod(stsW, node), runOptions{})
	f.stsLogs = stsProc.logs
	stsURL := "https://127.0.0.1:" + stsProc.flag(t, "--port")

	// podiam auth's own AWS credentials (IRSA or a Secret in a cluster):
	// the STS user's keys, and podiam sts's CA; its certificate also names
	// 127.0.0.1, where the agent reaches it instead of its Service.
	authW := ci.workload(chartAuth)
	auth := ci.run(authW, ci.createPod(authW, node), runOptions{
		flags: map[string]string{"--cert-extra-names": "127.0.0.1"},
		env: []string{"AWS_ENDPOINT_URL_STS=" + stsURL, "AWS_CA_BUNDLE=" + stsCA,
			"AWS_ACCESS_KEY_ID=" + authKeyID, "AWS_SECRET_ACCESS_KEY=" + authSecretKey},
	})
	f.authLogs = auth.logs
	agentW := ci.workload(chartAgentPodiam)
	agent := ci.run(agentW, ci.createPod(agentW, node), runOptions{
		flags: map[string]string{"--auth-url": "https://127.0.0.1:" + auth.flag(t, "--port")},
	})
	a := &agentProc{f: f, node: node, proc: agent.proc, logs: agent.logs,
		port: agent.listenPort(t), metricsPort: atoi(t, agent.flag(t, "--metrics-port"))}

	// An application's pod of the node, with its Pod Identity token.
	pod := f.createPod(appNS, "app", "app", node)
	tokenFile := f.writeToken("app", f.token(appNS, "app", pod, eksauth.Audience))
	p := a.provider(tokenFile)
	creds, err := f.retrieve(p)
	if err != nil {
		t.Fatalf("credentials from the agent: %v", err)
	}
	tr := &http.Transport{TLSClientConfig: harness.TLSClientConfig(readFile(t, stsCA))}
	t.Cleanup(tr.CloseIdleConnections)
	stsClient := sts.New(sts.Options{Region: authRegion, BaseEndpoint: aws.String(stsURL), RetryMaxAttempts: 1,
		HTTPClient: &http.Client{Transport: tr, Timeout: 10 * time.Second}, Credentials: aws.NewCredentialsCache(p)})
	id, err := stsClient.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatalf("GetCallerIdentity with the agent's credentials (%s): %v", creds.AccessKeyID, err)
	}
	if arn := aws.ToString(id.Arn); !strings.HasPrefix(arn, "arn:aws:sts::"+authAccount+":assumed-role/app/eks-"+authCluster+"-app-") {
		t.Errorf("GetCallerIdentity: %q, want a session of role app for pod app", arn)
	}

	// The association's status, written under the rendered RBAC's status
	// rule. Every podiam auth running in the shared API server writes the
	// status of every association, so Ready=True alone could be another's
	// write: only this one learnt the outcome of its STS call, and it must
	// have written it itself, with none of its writes refused.
	f.waitReadyCondition(appNS, "app", metav1.ConditionTrue)
	metricsPort := atoi(t, auth.flag(t, "--metrics-port"))
	testutil.Eventually(t, 10*time.Second, 100*time.Millisecond, "podiam auth to count its own status write", func() (bool, string) {
		text := f.metrics(metricsPort)
		ok, forbidden := metricSum(text, "podiam_auth_status_writes_total", `result="ok"`), metricSum(text, "podiam_auth_status_writes_total", `result="Forbidden"`)
		if forbidden != 0 {
			t.Fatalf("podiam auth's status writes were forbidden %v times", forbidden)
		}
		return ok >= 1, fmt.Sprintf("podiam_auth_status_writes_total{result=\"ok\"} = %v", ok)
	})
	a.checkLogsClean()
	for _, p := range []*chartProcess{stsProc, auth, agent} {
		ci.checkLogs(p)
	}
}

// testChartAgentEKS runs the agent with the EKS backend, against a stand-in
// EKS Auth endpoint: it becomes ready (its pod informer and the cluster's
// keys synced under the rendered RBAC) and serves a pod of its node the
// credentials that EKS Auth answers to its call, signed with the node's
// credentials.
func testChartAgentEKS(t *testing.T) {
	ctx := ctxFor(t, 60*time.Second)
	const nodeKeyID = "AKIAPODIAMNODEE2E001"
	appNS := testutil.UniqueName("podiam-eks-apps")
	want := eksauth.Credentials{AccessKeyID: "ASIAPODIAMCHARTE2E01", SecretAccessKey: "chart-e2e-secret",
		SessionToken: "chart-e2e-session", Expiration: time.Now().Add(time.Hour).Truncate(time.Second)}
	var calls atomic.Int32
	eks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		cluster, in, e := eksauth.DecodeRequest(r)
		switch {
		case e != nil:
			eksauth.WriteError(w, e)
		case cluster != authCluster || !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 Credential="+nodeKeyID+"/"):
			eksauth.WriteError(w, eksauth.NewError(eksauth.CodeAccessDenied, "cluster %q, not signed with the node's key", cluster))
		case in.Token == "":
			eksauth.WriteError(w, eksauth.NewError(eksauth.CodeInvalidToken, "no token"))
		default:
			eksauth.WriteResponse(w, &eksauth.Output{Subject: eksauth.Subject{Namespace: appNS, ServiceAccount: "app"},
				Audience: eksauth.Audience, Credentials: want})
		}
	}))
	t.Cleanup(eks.Close)
	values := mergeValues(valuesFor(t, chartAgentEKS), map[string]any{
		"agent": map[string]any{"clusterName": authCluster, "eks": map[string]any{"endpoint": eks.URL}},
	})
	ci := installChart(t, ctx, "eks", values)
	w := ci.workload(chartAgentEKS)
	node := "node-" + ci.release
	// The node's AWS credentials (the instance profile on EKS).
	p := ci.run(w, ci.createPod(w, node), runOptions{
		env: []string{"AWS_REGION=" + authRegion, "AWS_ACCESS_KEY_ID=" + nodeKeyID, "AWS_SECRET_ACCESS_KEY=node-secret"},
	})

	newNamespace(t, ctx, appNS, nil)
	newServiceAccount(t, ctx, appNS, "app", nil)
	f := &authFixture{t: t, ctx: ctx, dir: t.TempDir(), ns: appNS}
	pod := f.createPod(appNS, "app", "app", node)
	a := &agentProc{f: f, node: node, port: p.listenPort(t)}
	got, err := f.retrieve(a.provider(f.writeToken("app", f.token(appNS, "app", pod, eksauth.Audience))))
	if err != nil {
		t.Fatalf("credentials from the agent (%d calls to EKS Auth): %v", calls.Load(), err)
	}
	if got.AccessKeyID != want.AccessKeyID || got.SessionToken != want.SessionToken || !got.Expires.Equal(want.Expiration) {
		t.Errorf("credentials %s expiring %v, want EKS Auth's %s expiring %v", got.AccessKeyID, got.Expires, want.AccessKeyID, want.Expiration)
	}
	ci.checkLogs(p)
}

// testChartIssuerSync runs the issuer sync against an in-process S3 (as an
// S3-compatible server, through the chart's values): it publishes the
// cluster's documents, read from the API server under the rendered RBAC.
func testChartIssuerSync(t *testing.T) {
	ctx := ctxFor(t, 60*time.Second)
	fake := fakes3.Start(t, "issuer-chart")
	values := mergeValues(valuesFor(t, chartIssuerSync), map[string]any{
		"issuerSync": map[string]any{
			"issuer": cluster.IssuerURL(), "to": "s3://issuer-chart/cluster", "region": fakes3.Region,
			"extraArgs": []any{"--s3-path-style"},
			"extraEnv":  []any{map[string]any{"name": "AWS_ENDPOINT_URL_S3", "value": fake.URL}},
		},
	})
	ci := installChart(t, ctx, "sync", values)
	w := ci.workload(chartIssuerSync)
	// The bucket's credentials (IRSA through the webhook in a cluster).
	p := ci.run(w, ci.createPod(w, "node-"+ci.release), runOptions{
		env: []string{"AWS_ACCESS_KEY_ID=" + fakes3.AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + fakes3.SecretAccessKey},
	})
	var puts []string
	testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, "the sync to publish both documents", func() (bool, string) {
		select {
		case <-p.proc.Exited():
			t.Fatalf("podiam oidc publish exited with status %d", p.proc.ExitCode())
		default:
		}
		for _, r := range fake.Puts() {
			puts = append(puts, r.Path)
		}
		want := []string{"/issuer-chart/cluster/.well-known/openid-configuration", "/issuer-chart/cluster/openid/v1/jwks"}
		return !slices.ContainsFunc(want, func(w string) bool { return !slices.Contains(puts, w) }), fmt.Sprint(puts)
	})
	ci.checkLogs(p)
}

// flag returns the value of flag name as the process was started.
func (p *chartProcess) flag(t *testing.T, name string) string {
	t.Helper()
	for _, a := range p.args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	t.Fatalf("podiam %s was started without %s: %q", p.command, name, p.args)
	return ""
}

// listenPort is the agent's credentials port (its --listen).
func (p *chartProcess) listenPort(t *testing.T) int {
	t.Helper()
	_, port, _ := strings.Cut(p.flag(t, "--listen"), "127.0.0.1:")
	return atoi(t, port)
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return n
}
