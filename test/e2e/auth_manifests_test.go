package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"

	"github.com/podiam/podiam/internal/eksauth"
	"github.com/podiam/podiam/test/harness"
	"github.com/podiam/podiam/test/testutil"
)

// The names deploy/auth ships.
const (
	authDeploymentName = "podiam-auth"
	authSAName         = "podiam-auth"
	authTLSSecret      = "podiam-auth-tls"
	authCAConfigMap    = "podiam-auth-ca"
)

// TestAuthManifests renders deploy/auth, applies every object to the API
// server with a server-side dry run, and checks what podiam auth relies on:
// two replicas spread over nodes, self-managed certificates whose Secret and
// ConfigMap the Role names, probes on the metrics port, a hardened container,
// a Service to the HTTPS port and a PodDisruptionBudget.
func TestAuthManifests(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 2*time.Minute)
	// renderOverlay resolves deploy/overlays/<name>: this names deploy/auth.
	objs := renderOverlay(t, "../auth")
	kinds := dryRunApply(t, ctx, objs, systemNamespace)
	for _, k := range []string{"CustomResourceDefinition", "Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
		"Role", "RoleBinding", "Deployment", "Service", "PodDisruptionBudget"} {
		if kinds[k] == 0 {
			t.Errorf("deploy/auth has no %s (kinds %v)", k, kinds)
		}
	}

	var dep appsv1.Deployment
	find(t, objs, "Deployment", authDeploymentName, &dep)
	args := checkAuthDeployment(t, &dep)

	var role rbacv1.Role
	find(t, objs, "Role", "podiam-auth-certs", &role)
	for _, named := range []struct{ resource, name string }{
		{"secrets", args["--tls-secret"]}, {"configmaps", args["--ca-configmap"]},
	} {
		ok := false
		for _, r := range role.Rules {
			ok = ok || slices.Contains(r.Resources, named.resource) && slices.Contains(r.ResourceNames, named.name) &&
				slices.Contains(r.Verbs, "get") && slices.Contains(r.Verbs, "update") && slices.Contains(r.Verbs, "watch")
		}
		if !ok {
			t.Errorf("Role podiam-auth-certs does not allow get/watch/update of %s %q (the flag's): %+v", named.resource, named.name, role.Rules)
		}
	}

	var svc corev1.Service
	find(t, objs, "Service", "podiam-auth", &svc)
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 443 || svc.Spec.Ports[0].TargetPort != intstr.FromString("https") {
		t.Errorf("Service ports %+v, want 443 to the container's https port", svc.Spec.Ports)
	}
	podLabels := dep.Spec.Template.Labels
	if !selects(svc.Spec.Selector, podLabels) {
		t.Errorf("Service selector %v does not select the pods (%v)", svc.Spec.Selector, podLabels)
	}
	var pdb policyv1.PodDisruptionBudget
	find(t, objs, "PodDisruptionBudget", "podiam-auth", &pdb)
	if pdb.Spec.MinAvailable == nil || *pdb.Spec.MinAvailable != intstr.FromInt32(1) {
		t.Errorf("PodDisruptionBudget minAvailable %v, want 1", deref(pdb.Spec.MinAvailable))
	}
	if pdb.Spec.Selector == nil || !selects(pdb.Spec.Selector.MatchLabels, podLabels) {
		t.Errorf("PodDisruptionBudget selector %+v does not select the pods (%v)", pdb.Spec.Selector, podLabels)
	}
	var sa corev1.ServiceAccount
	find(t, objs, "ServiceAccount", authSAName, &sa)
}

// dryRunApply applies every object to the API server with a server-side
// dry run (an error for each one refused, or namespaced outside namespace),
// and returns how many objects of each kind there are.
func dryRunApply(t *testing.T, ctx context.Context, objs []*unstructured.Unstructured, namespace string) map[string]int {
	t.Helper()
	dyn, err := dynamic.NewForConfig(cluster.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(client.Discovery()))
	kinds := map[string]int{}
	for _, u := range objs {
		kinds[u.GetKind()]++
		gvk := u.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatalf("%s: %v", gvk, err)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			if u.GetNamespace() != namespace {
				t.Errorf("%s %s: namespace %q, want %s", gvk.Kind, u.GetName(), u.GetNamespace(), namespace)
				continue
			}
			ri = dyn.Resource(m.Resource).Namespace(u.GetNamespace())
		}
		if _, err := ri.Apply(ctx, u.GetName(), u, metav1.ApplyOptions{FieldManager: "podiam-e2e", Force: true, DryRun: []string{metav1.DryRunAll}}); err != nil {
			t.Errorf("server-side dry-run apply of %s %s/%s: %v", gvk.Kind, u.GetNamespace(), u.GetName(), err)
		}
	}
	return kinds
}

// selects reports whether a non-empty selector matches labels.
func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// checkAuthDeployment checks podiam auth's Deployment as rendered and
// returns its flags by name.
func checkAuthDeployment(t *testing.T, dep *appsv1.Deployment) map[string]string {
	t.Helper()
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 2 {
		t.Errorf("replicas %v, want 2", deref(dep.Spec.Replicas))
	}
	spec := dep.Spec.Template.Spec
	if spec.ServiceAccountName != authSAName {
		t.Errorf("serviceAccountName %q, want %s", spec.ServiceAccountName, authSAName)
	}
	if len(spec.TopologySpreadConstraints) == 0 || spec.TopologySpreadConstraints[0].TopologyKey != "kubernetes.io/hostname" {
		t.Errorf("topologySpreadConstraints %+v: want the replicas spread over nodes", spec.TopologySpreadConstraints)
	}
	c, flags := containerFlags(t, &spec, "auth")
	for name, want := range map[string]string{
		"--cert-mode": "self-managed", "--tls-secret": authTLSSecret, "--ca-configmap": authCAConfigMap,
		"--service-name": "podiam-auth", "--namespace": "$(POD_NAMESPACE)",
	} {
		if flags[name] != want {
			t.Errorf("%s=%q, want %q", name, flags[name], want)
		}
	}
	if !eksauth.ValidClusterName(flags["--cluster-name"]) {
		t.Errorf("--cluster-name=%q: want a valid placeholder", flags["--cluster-name"])
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if strconv.Itoa(int(ports["https"])) != flags["--port"] || strconv.Itoa(int(ports["metrics"])) != flags["--metrics-port"] {
		t.Errorf("container ports %v do not match --port=%s and --metrics-port=%s", ports, flags["--port"], flags["--metrics-port"])
	}
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"readinessProbe", c.ReadinessProbe, "/readyz"}, {"livenessProbe", c.LivenessProbe, "/healthz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port != intstr.FromString("metrics") {
			t.Errorf("%s %+v, want httpGet %s on the metrics port", p.name, p.probe, p.path)
		}
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v: want a CPU request and a memory limit", c.Resources)
	}
	checkHardened(t, &spec, &c)
	// The kubelet kills the container after the grace period: it must cover
	// the time podiam auth keeps serving and then drains.
	checkShutdownGrace(t, &spec, flags, "5s", "20s") // the flags' defaults
	// No region placeholder: a region nobody set must fail start-up
	// ("no AWS region"), not send STS calls to a region picked for the example.
	for _, e := range c.Env {
		if e.Name == "AWS_REGION" || e.Name == "AWS_DEFAULT_REGION" {
			t.Errorf("env %s=%q: the region comes from --cluster-arn, --region or IRSA, not a placeholder", e.Name, e.Value)
		}
	}
	return flags
}

// containerFlags returns the pod's only container and the flags of its args
// (--name=value, by name), which must run the podiam subcommand named by
// command; a flag given twice is an error.
func containerFlags(t *testing.T, spec *corev1.PodSpec, command ...string) (corev1.Container, map[string]string) {
	t.Helper()
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(spec.Containers))
	}
	c := spec.Containers[0]
	if len(c.Args) < len(command) || !slices.Equal(c.Args[:len(command)], command) {
		t.Fatalf("args %q, want %s …", c.Args, strings.Join(command, " "))
	}
	flags := map[string]string{}
	for _, a := range c.Args[len(command):] {
		name, value, _ := strings.Cut(a, "=")
		if _, dup := flags[name]; dup {
			t.Errorf("%s given twice in %q", name, c.Args)
		}
		flags[name] = value
	}
	return c, flags
}

// checkHardened checks the securityContext of a pod that needs no
// capability: container c has a read-only root, no privilege escalation and
// every capability dropped; the pod runs as non-root.
func checkHardened(t *testing.T, spec *corev1.PodSpec, c *corev1.Container) {
	t.Helper()
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("container securityContext %+v: want read-only root, no privilege escalation, all capabilities dropped", sc)
	}
	if psc := spec.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Errorf("pod securityContext %+v: want runAsNonRoot", psc)
	}
}

// checkShutdownGrace checks that the pod's termination grace period covers
// --shutdown-delay + --shutdown-timeout as set in flags (delayDefault and
// timeoutDefault when absent): the kubelet kills the container after it.
func checkShutdownGrace(t *testing.T, spec *corev1.PodSpec, flags map[string]string, delayDefault, timeoutDefault string) {
	t.Helper()
	var shutdown time.Duration
	for name, def := range map[string]string{"--shutdown-delay": delayDefault, "--shutdown-timeout": timeoutDefault} {
		v, ok := flags[name]
		if !ok {
			v = def
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Errorf("%s=%q: %v", name, v, err)
		}
		shutdown += d
	}
	if g := spec.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second < shutdown {
		t.Errorf("terminationGracePeriodSeconds %v, want at least --shutdown-delay + --shutdown-timeout = %s", deref(g), shutdown)
	}
}

// shipAuthRBAC creates deploy/auth's ServiceAccount and RBAC for real (see
// shipRBAC).
func shipAuthRBAC(t *testing.T, ctx context.Context, ns string) (kubernetes.Interface, string) {
	t.Helper()
	return shipRBAC(t, ctx, "../auth", systemNamespace, authSAName, ns)
}

// shipRBAC creates the ServiceAccount saNS/saName and the RBAC of a rendered
// deploy directory (renderOverlay's argument) for real, the namespaced
// objects moved to ns and the cluster-scoped ones renamed after it (so tests
// and runs do not share them; deleted when the test ends), and returns a
// client and a kubeconfig that authenticate as that ServiceAccount by a
// bearer token only.
func shipRBAC(t *testing.T, ctx context.Context, dir, saNS, saName, ns string) (kubernetes.Interface, string) {
	t.Helper()
	dyn, err := dynamic.NewForConfig(cluster.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(client.Discovery()))
	suffix := "-" + ns
	kinds := map[string]bool{"ServiceAccount": true, "ClusterRole": true, "ClusterRoleBinding": true, "Role": true, "RoleBinding": true}
	for _, u := range renderOverlay(t, dir) {
		kind := u.GetKind()
		if !kinds[kind] {
			continue
		}
		u = u.DeepCopy()
		if kind == "ClusterRole" || kind == "ClusterRoleBinding" {
			u.SetName(u.GetName() + suffix)
		} else {
			u.SetNamespace(ns)
		}
		if kind == "RoleBinding" || kind == "ClusterRoleBinding" {
			rebindServiceAccount(t, u, saNS, saName, ns)
			// Our own ClusterRoles were renamed; the built-in ones keep theirs.
			kind, _, _ := unstructured.NestedString(u.Object, "roleRef", "kind")
			name, _, _ := unstructured.NestedString(u.Object, "roleRef", "name")
			if kind == "ClusterRole" && !strings.HasPrefix(name, "system:") {
				if err := unstructured.SetNestedField(u.Object, name+suffix, "roleRef", "name"); err != nil {
					t.Fatal(err)
				}
			}
		}
		createOrReplace(t, ctx, dyn, mapper, u)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig-"+saName)
	return writeTokenKubeconfig(t, ctx, ns, saName, kubeconfig), kubeconfig
}

// TestAuthShippedRBAC asks the API server, as deploy/auth's ServiceAccount,
// for each verb podiam auth needs (allowed), and for its neighbours (denied):
// the RBAC is enough and no broader.
func TestAuthShippedRBAC(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, time.Minute)
	sysNS := testutil.UniqueName("e2e-authrbac-system")
	other := testutil.UniqueName("e2e-authrbac-apps") // a namespace of applications
	newNamespace(t, ctx, sysNS, nil)
	cs, _ := shipAuthRBAC(t, ctx, sysNS)

	pod := func(verb, ns string) authorizationv1.ResourceAttributes {
		return authorizationv1.ResourceAttributes{Verb: verb, Resource: "pods", Namespace: ns}
	}
	pia := func(verb, ns, sub string) authorizationv1.ResourceAttributes {
		return authorizationv1.ResourceAttributes{Verb: verb, Group: "podiam.dev", Resource: "podidentityassociations", Namespace: ns, Subresource: sub}
	}
	core := func(verb, resource, ns, name string) authorizationv1.ResourceAttributes {
		return authorizationv1.ResourceAttributes{Verb: verb, Resource: resource, Namespace: ns, Name: name}
	}
	allowed := []authorizationv1.ResourceAttributes{
		pod("get", other), pod("get", ""),
		pia("get", other, ""), pia("list", "", ""), pia("watch", "", ""),
		pia("update", other, "status"),
		core("get", "secrets", sysNS, authTLSSecret), core("list", "secrets", sysNS, authTLSSecret),
		core("watch", "secrets", sysNS, authTLSSecret), core("update", "secrets", sysNS, authTLSSecret),
		core("delete", "secrets", sysNS, authTLSSecret), core("create", "secrets", sysNS, ""),
		core("get", "configmaps", sysNS, authCAConfigMap), core("list", "configmaps", sysNS, authCAConfigMap),
		core("watch", "configmaps", sysNS, authCAConfigMap), core("update", "configmaps", sysNS, authCAConfigMap),
		core("create", "configmaps", sysNS, ""),
	}
	denied := []authorizationv1.ResourceAttributes{
		pod("list", ""), pod("list", other), pod("watch", other), pod("create", other), pod("delete", other),
		pod("update", other), {Verb: "create", Resource: "pods", Subresource: "exec", Namespace: other},
		pia("create", other, ""), pia("update", other, ""), pia("patch", other, ""), pia("delete", other, ""),
		pia("patch", other, "status"), // podiam auth writes status with update only
		core("list", "secrets", "", ""), core("get", "secrets", other, authTLSSecret), core("list", "secrets", sysNS, ""),
		core("get", "secrets", sysNS, "other"), core("create", "secrets", other, ""),
		core("get", "configmaps", sysNS, "other"), core("list", "configmaps", sysNS, ""), core("update", "configmaps", other, authCAConfigMap),
		core("delete", "configmaps", sysNS, authCAConfigMap),
		{Verb: "create", Resource: "serviceaccounts", Subresource: "token", Namespace: other, Name: "default"},
		core("get", "nodes", "", ""), core("list", "serviceaccounts", "", ""),
	}
	// The RBAC authorizer learns of new bindings asynchronously: wait for
	// everything allowed, then nothing else may be.
	waitAccess(t, ctx, cs, allowed, true, "the shipped RBAC to allow what podiam auth does")
	for _, a := range denied {
		if ok, reason := accessAllowed(ctx, cs, a); ok {
			t.Errorf("the shipped RBAC allows %s (%s): broader than podiam auth needs", attrString(a), reason)
		}
	}
}

// TestAuthStartsWithShippedManifests runs `podiam auth` with the Deployment's
// flags, as the shipped ServiceAccount with nothing but the shipped RBAC:
// it becomes ready with its own certificate, publishes the CA in the
// ConfigMap, serves the EKS Auth API over TLS trusted through that CA, logs
// nothing forbidden, and exits cleanly on SIGTERM.
func TestAuthStartsWithShippedManifests(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 2*time.Minute)
	sysNS := testutil.UniqueName("e2e-authrun")
	newNamespace(t, ctx, sysNS, nil)
	cs, kubeconfig := shipAuthRBAC(t, ctx, sysNS)
	waitAccess(t, ctx, cs, []authorizationv1.ResourceAttributes{
		{Verb: "watch", Resource: "secrets", Namespace: sysNS, Name: authTLSSecret},
		{Verb: "create", Resource: "configmaps", Namespace: sysNS},
		{Verb: "list", Group: "podiam.dev", Resource: "podidentityassociations"},
	}, true, "the shipped RBAC to be in effect")

	var dep appsv1.Deployment
	find(t, renderOverlay(t, "../auth"), "Deployment", authDeploymentName, &dep)
	c := dep.Spec.Template.Spec.Containers[0]
	ports, err := testutil.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Args) == 0 || c.Args[0] != "auth" {
		t.Fatalf("rendered args %q, want auth …", c.Args)
	}
	args := []string{"auth", "--kubeconfig=" + kubeconfig, "--namespace=" + sysNS, "--address=127.0.0.1",
		"--port=" + strconv.Itoa(ports[0]), "--metrics-port=" + strconv.Itoa(ports[1]), "--shutdown-delay=0s", "--shutdown-timeout=5s"}
	for _, a := range c.Args[1:] {
		switch name, _, _ := strings.Cut(a, "="); name {
		case "--namespace", "--address", "--port", "--metrics-port", "--shutdown-delay", "--shutdown-timeout":
			continue // set above: the test's namespace, free ports
		case "--cluster-name":
			continue // authCluster, as every podiam auth of the tests (see there)
		}
		args = append(args, a)
	}
	// With the cluster's ARN podiam auth needs nothing of STS to start, and
	// is given nothing: no STS is running.
	args = append(args, "--cluster-name="+authCluster, "--cluster-arn=arn:aws:eks:"+authRegion+":"+authAccount+":cluster/"+authCluster)
	dir := t.TempDir()
	env := []string{
		"AWS_REGION=eu-west-1", "AWS_ENDPOINT_URL_STS=http://127.0.0.1:1",
		"AWS_ACCESS_KEY_ID=AKIAEXAMPLEUNUSED001", "AWS_SECRET_ACCESS_KEY=unused",
		"AWS_CONFIG_FILE=" + filepath.Join(dir, "none"), "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(dir, "none"),
		"AWS_PROFILE=", "AWS_EC2_METADATA_DISABLED=true",
	}
	logs := new(testutil.SyncBuffer)
	proc, err := harness.StartPodiam(podiamBin, logs, env, args...)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			proc.Kill()
		}
		if t.Failed() {
			t.Logf("podiam auth %q output:\n%s", args, tail(logs.String(), 16<<10))
		}
	})

	begin := time.Now()
	readyz := fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[1])
	testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, "podiam auth to be ready", func() (bool, string) {
		select {
		case <-proc.Exited():
			t.Fatalf("podiam auth exited with %d", proc.ExitCode())
		default:
		}
		code, body, err := authHTTPGet(ctx, http.DefaultClient, readyz)
		if err != nil {
			return false, err.Error()
		}
		return code == http.StatusOK, fmt.Sprintf("%d %s", code, body)
	})
	t.Logf("podiam auth ready in %v", time.Since(begin).Round(time.Millisecond))

	// The CA is published for the agents, equal to the Secret's.
	var ca []byte
	testutil.Eventually(t, 10*time.Second, 100*time.Millisecond, "ConfigMap "+authCAConfigMap+" to hold the Secret's CA", func() (bool, string) {
		cm, err := client.CoreV1().ConfigMaps(sysNS).Get(ctx, authCAConfigMap, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		s, err := client.CoreV1().Secrets(sysNS).Get(ctx, authTLSSecret, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		ca = []byte(cm.Data["ca.crt"])
		return len(ca) > 0 && bytes.Equal(ca, s.Data["ca.crt"]), fmt.Sprintf("ca.crt %d bytes", len(ca))
	})

	// An agent trusting that CA reaches the Service name's certificate.
	tlsCfg := harness.TLSClientConfig(ca)
	tlsCfg.ServerName = "podiam-auth." + sysNS + ".svc"
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}, Timeout: 10 * time.Second}
	t.Cleanup(hc.CloseIdleConnections)
	base := fmt.Sprintf("https://127.0.0.1:%d", ports[0])
	if code, body, err := authHTTPGet(ctx, hc, base+"/healthz"); err != nil || code != http.StatusOK {
		t.Errorf("GET /healthz over TLS: %d %q %v", code, body, err)
	}
	// The API is served under /clusters/, and nothing of the webhook's.
	if code, _, err := authHTTPGet(ctx, hc, base+"/mutate"); err != nil || code != http.StatusNotFound {
		t.Errorf("GET /mutate: %d %v, want 404", code, err)
	}
	resp, err := hc.Post(base+eksauth.Path(authCluster), "application/json", strings.NewReader(`{"token":"a.b.c"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// A refusal of the caller itself is 403 (a refusal of a pod is 400).
	if got := resp.Header.Get("X-Amzn-Errortype"); resp.StatusCode != http.StatusForbidden || got != eksauth.CodeAccessDenied {
		t.Errorf("a request without the agent's token: %d %s %s, want 403 %s", resp.StatusCode, got, body, eksauth.CodeAccessDenied)
	}
	// A body declared over EKS Auth's limit is refused unread, in EKS Auth's
	// format, so that the agent's SDK knows the error.
	big, err := http.NewRequestWithContext(ctx, http.MethodPost, base+eksauth.Path(authCluster), bytes.NewReader(make([]byte, 65<<10)))
	if err != nil {
		t.Fatal(err)
	}
	big.Header.Set("Content-Type", "application/json")
	if resp, err := hc.Do(big); err != nil {
		t.Errorf("a 65 KiB body: %v", err)
	} else {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got := resp.Header.Get("X-Amzn-Errortype"); resp.StatusCode != http.StatusRequestEntityTooLarge || got != eksauth.CodeInvalidRequest {
			t.Errorf("a 65 KiB body: %d %q %s, want 413 %s", resp.StatusCode, got, body, eksauth.CodeInvalidRequest)
		}
	}
	if conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", ports[0]), &tls.Config{RootCAs: tlsCfg.RootCAs, ServerName: "not-podiam-auth.example"}); err == nil {
		conn.Close()
		t.Error("the certificate verifies for a name that is not the Service's")
	}

	for _, word := range []string{"forbidden", "unauthorized"} {
		if l := strings.ToLower(logs.String()); strings.Contains(l, word) {
			t.Errorf("podiam auth logged %q:\n%s", word, grepLines(logs.String(), word))
		}
	}
	proc.Stop()
	stopped = true
	if code := proc.ExitCode(); code != 0 {
		t.Errorf("podiam auth exited with %d on SIGTERM, want 0", code)
	}
}

// authHTTPGet returns the status and body of a GET of url.
func authHTTPGet(ctx context.Context, c *http.Client, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(b), err
}
