package e2e

import (
	"context"
	"fmt"
	"maps"
	"math"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"github.com/podiam/podiam/internal/certs"
	"github.com/podiam/podiam/test/chart"
	"github.com/podiam/podiam/test/harness"
	"github.com/podiam/podiam/test/testutil"
)

// chartObjects renders the chart with values as release name in namespace
// and parses the objects.
func chartObjects(t *testing.T, name, namespace string, values map[string]any) []*unstructured.Unstructured {
	t.Helper()
	manifest, err := chart.RenderRelease(name, namespace, values)
	if err != nil {
		t.Fatalf("rendering the chart as release %s in %s: %v", name, namespace, err)
	}
	objs, err := chart.Objects(manifest)
	if err != nil {
		t.Fatalf("parsing the chart's rendering: %v", err)
	}
	return objs
}

// mergeValues returns a deep merge of values, later maps winning; the
// arguments are left alone.
func mergeValues(values ...map[string]any) map[string]any {
	out := map[string]any{}
	for _, v := range values {
		for k, x := range v {
			if m, ok := x.(map[string]any); ok {
				if prev, ok := out[k].(map[string]any); ok {
					out[k] = mergeValues(prev, m)
					continue
				}
				x = mergeValues(m)
			}
			out[k] = x
		}
	}
	return out
}

// workload is a Deployment or DaemonSet of a rendering: the kind, the name
// and the pod template.
type workload struct {
	kind, name string
	template   corev1.PodTemplateSpec
}

// workloads returns the rendering's Deployments and DaemonSets.
func workloads(t *testing.T, objs []*unstructured.Unstructured) []workload {
	t.Helper()
	var out []workload
	for _, u := range objs {
		w := workload{kind: u.GetKind(), name: u.GetName()}
		switch u.GetKind() {
		case "Deployment":
			var d appsv1.Deployment
			fromUnstructured(t, u, &d)
			w.template = d.Spec.Template
		case "DaemonSet":
			var d appsv1.DaemonSet
			fromUnstructured(t, u, &d)
			w.template = d.Spec.Template
		default:
			continue
		}
		out = append(out, w)
	}
	return out
}

func fromUnstructured(t *testing.T, u *unstructured.Unstructured, into any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into); err != nil {
		t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
	}
}

// runs reports whether the workload's first container runs the podiam
// subcommand command (its leading args) with every flag of flags
// ("--name=value", or "--name" for a flag of any value).
func (w workload) runs(command []string, flags ...string) bool {
	cs := w.template.Spec.Containers
	if len(cs) == 0 || len(cs[0].Args) < len(command) || !slices.Equal(cs[0].Args[:len(command)], command) {
		return false
	}
	for _, f := range flags {
		if !slices.ContainsFunc(cs[0].Args, func(a string) bool { return a == f || strings.HasPrefix(a, f+"=") }) {
			return false
		}
	}
	return true
}

// componentSpec names a component of the chart by what its workload runs:
// the podiam subcommand and some of its flags.
type componentSpec struct {
	command []string
	flags   []string
}

// find returns the rendering's workload of the component, if there is one.
func (c componentSpec) find(t *testing.T, objs []*unstructured.Unstructured) (workload, bool) {
	t.Helper()
	for _, w := range workloads(t, objs) {
		if w.runs(c.command, c.flags...) {
			return w, true
		}
	}
	return workload{}, false
}

// valuesFor returns the values of the first variant of the chart's tests
// whose rendering has every component, so that they run together as one
// release. Variants that do not render are passed over: TestChartDryRun
// reports them.
func valuesFor(t *testing.T, components ...componentSpec) map[string]any {
	t.Helper()
	for _, v := range chart.Variants() {
		manifest, err := chart.Render(v.Values)
		if err != nil {
			continue
		}
		objs, err := chart.Objects(manifest)
		if err != nil {
			continue
		}
		if !slices.ContainsFunc(components, func(c componentSpec) bool { _, ok := c.find(t, objs); return !ok }) {
			return v.Values
		}
	}
	t.Fatalf("no variant of the chart's tests renders all of %+v", components)
	return nil
}

// chartInstall is a release of the chart installed for one test into the
// shared API server, under a name and in a namespace of its own, with what
// its components need from the API server created for real: ServiceAccounts,
// RBAC, ConfigMaps, Secrets, the webhook configuration. Workloads are not:
// without a kubelet nothing would run their pods. The components run as
// processes instead (run).
type chartInstall struct {
	t   *testing.T
	ctx context.Context
	dir string
	// release is the release name, namespace the release namespace.
	release, namespace string
	objs               []*unstructured.Unstructured
	// tokens are the ServiceAccount tokens given to the processes.
	tokens []string
	// endpoints are where the rendered Services lead (chart.Wiring).
	endpoints []chart.Endpoint
	dyn       dynamic.Interface
	mapper    meta.ResettableRESTMapper
}

// installedKinds are the kinds installChart creates.
var installedKinds = map[string]bool{
	"Namespace": true, "ServiceAccount": true, "Secret": true, "ConfigMap": true,
	"ClusterRole": true, "ClusterRoleBinding": true, "Role": true, "RoleBinding": true,
	"MutatingWebhookConfiguration": true,
}

// installChart renders values as a new release, named after prefix and
// unique, in a namespace of the same name, and creates the objects of
// installedKinds (cluster-scoped ones are deleted when the test ends) and
// the association CRD if the rendering has it. Every
// MutatingWebhookConfiguration is limited to the namespaces labelled
// isolatedLabel=<release> (the shared registration skips them): the
// rendered one names a Service that nothing serves, and must not get in the
// way of other tests' pods. It then waits until the RBAC authorizer allows
// each ServiceAccount of the release what the rendered rules grant it.
func installChart(t *testing.T, ctx context.Context, prefix string, values map[string]any) *chartInstall {
	t.Helper()
	name := testutil.UniqueName("podiam-" + prefix)
	ci := &chartInstall{t: t, ctx: ctx, dir: t.TempDir(), release: name, namespace: name}
	// A variant's namespaceOverride (the EKS agent's kube-system) would
	// share a namespace with other tests. The metrics Services (with the
	// ServiceMonitors, which are not installed) are rendered so that run
	// checks where they lead too.
	ci.objs = chartObjects(t, name, name, mergeValues(values, map[string]any{"namespaceOverride": "", "serviceMonitor": map[string]any{"enabled": true}}))
	var err error
	if ci.endpoints, err = chart.Wiring(ci.objs); err != nil {
		t.Fatalf("release %s: %v", name, err)
	}
	if ci.dyn, err = dynamic.NewForConfig(cluster.RESTConfig()); err != nil {
		t.Fatal(err)
	}
	ci.mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(client.Discovery()))
	newNamespace(t, ctx, name, nil)
	for _, u := range ci.objs {
		switch kind := u.GetKind(); {
		case kind == "CustomResourceDefinition":
			// Cluster-wide and shared by every test: the project's one
			// (TestChartDryRun applies the rendered one).
			if u.GetName() != "podidentityassociations.podiam.dev" {
				t.Fatalf("the chart renders an unknown CRD %s", u.GetName())
			}
			installAssociationCRD(t)
		case kind == "Namespace" && u.GetName() != name:
			t.Fatalf("the chart renders Namespace %s, not the release's", u.GetName())
		case installedKinds[kind]:
			u = u.DeepCopy()
			if kind == "MutatingWebhookConfiguration" {
				isolateWebhooks(t, u, name)
			}
			createOrReplace(t, ctx, ci.dyn, ci.mapper, u)
		}
	}
	ci.waitRBAC()
	return ci
}

// isolateWebhooks adds isolatedLabel=label to the namespaceSelector of
// every webhook of configuration u, keeping what is rendered, which the
// test's namespaces must then satisfy too.
func isolateWebhooks(t *testing.T, u *unstructured.Unstructured, label string) {
	t.Helper()
	hooks, _, _ := unstructured.NestedSlice(u.Object, "webhooks")
	for _, h := range hooks {
		if err := unstructured.SetNestedField(h.(map[string]any), label, "namespaceSelector", "matchLabels", isolatedLabel); err != nil {
			t.Fatalf("webhook %v: the namespaceSelector: %v", h.(map[string]any)["name"], err)
		}
	}
	if err := unstructured.SetNestedSlice(u.Object, hooks, "webhooks"); err != nil {
		t.Fatal(err)
	}
}

// workload returns the release's workload of component c.
func (ci *chartInstall) workload(c componentSpec) workload {
	ci.t.Helper()
	w, ok := c.find(ci.t, ci.objs)
	if !ok {
		ci.t.Fatalf("release %s has no workload running podiam %s with %v", ci.release, strings.Join(c.command, " "), c.flags)
	}
	return w
}

// find decodes the rendered object of kind and name into into.
func (ci *chartInstall) find(kind, name string, into any) {
	ci.t.Helper()
	find(ci.t, ci.objs, kind, name, into)
}

// saClient is a client authenticated as ServiceAccount name of the release
// by a bearer token only.
func (ci *chartInstall) saClient(name string) kubernetes.Interface {
	ci.t.Helper()
	return writeTokenKubeconfig(ci.t, ci.ctx, ci.namespace, name, filepath.Join(ci.dir, "kubeconfig-sa-"+name))
}

// waitRBAC waits until each ServiceAccount of the release may do what the
// rendered Roles and ClusterRoles bound to it grant (resource rules; the
// RBAC authorizer learns of new bindings asynchronously).
func (ci *chartInstall) waitRBAC() {
	t := ci.t
	t.Helper()
	grants := map[string][]authorizationv1.ResourceAttributes{} // by ServiceAccount
	for _, u := range ci.objs {
		var subjects []rbacv1.Subject
		var ref rbacv1.RoleRef
		ns := ""
		switch u.GetKind() {
		case "RoleBinding":
			var b rbacv1.RoleBinding
			fromUnstructured(t, u, &b)
			subjects, ref, ns = b.Subjects, b.RoleRef, b.Namespace
		case "ClusterRoleBinding":
			var b rbacv1.ClusterRoleBinding
			fromUnstructured(t, u, &b)
			subjects, ref = b.Subjects, b.RoleRef
		default:
			continue
		}
		rules, rendered := ci.rules(ref.Kind, ref.Name)
		if !rendered {
			continue // a built-in role (issuer discovery: non-resource URLs)
		}
		for _, s := range subjects {
			if s.Kind != "ServiceAccount" || s.Namespace != ci.namespace {
				t.Fatalf("%s %s binds %s %s/%s, not a ServiceAccount of the release's namespace %s", u.GetKind(), u.GetName(), s.Kind, s.Namespace, s.Name, ci.namespace)
			}
			grants[s.Name] = append(grants[s.Name], ruleAttributes(rules, ns)...)
		}
	}
	for _, sa := range slices.Sorted(maps.Keys(grants)) {
		waitAccess(t, ci.ctx, ci.saClient(sa), grants[sa], true, "the rendered RBAC of ServiceAccount "+sa+" to be in effect")
	}
}

// rules returns the rules of the rendered Role or ClusterRole name, and
// whether the chart renders it.
func (ci *chartInstall) rules(kind, name string) ([]rbacv1.PolicyRule, bool) {
	for _, u := range ci.objs {
		if u.GetKind() != kind || u.GetName() != name {
			continue
		}
		if kind == "Role" {
			var r rbacv1.Role
			fromUnstructured(ci.t, u, &r)
			return r.Rules, true
		}
		var r rbacv1.ClusterRole
		fromUnstructured(ci.t, u, &r)
		return r.Rules, true
	}
	return nil, false
}

// ruleAttributes lists every request the resource rules allow, in namespace
// ns (all namespaces when "").
func ruleAttributes(rules []rbacv1.PolicyRule, ns string) []authorizationv1.ResourceAttributes {
	var out []authorizationv1.ResourceAttributes
	for _, r := range rules {
		names := r.ResourceNames
		if len(names) == 0 {
			names = []string{""}
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				res, sub, _ := strings.Cut(res, "/")
				for _, v := range r.Verbs {
					for _, n := range names {
						out = append(out, authorizationv1.ResourceAttributes{Namespace: ns, Verb: v, Group: g, Resource: res, Subresource: sub, Name: n})
					}
				}
			}
		}
	}
	return out
}

// createTLSSecret creates the kubernetes.io/tls Secret name in the
// release's namespace, a serving certificate for 127.0.0.1, as an operator
// provides one the chart names, and returns the file of its CA.
func (ci *chartInstall) createTLSSecret(name string) string {
	t := ci.t
	t.Helper()
	b, err := harness.LoopbackBundle()
	if err != nil {
		t.Fatal(err)
	}
	data, err := b.Encode()
	if err != nil {
		t.Fatal(err)
	}
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ci.namespace}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: data[certs.KeyTLSCert], corev1.TLSPrivateKeyKey: data[certs.KeyTLSKey]}}
	if _, err := client.CoreV1().Secrets(ci.namespace).Create(ci.ctx, s, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating Secret %s/%s: %v", ci.namespace, name, err)
	}
	path := filepath.Join(ci.dir, name+"-ca.crt")
	if err := os.WriteFile(path, data[certs.KeyCACert], 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// createPod creates a pod of workload w's pod template on node, as its
// controller and the scheduler would (nothing runs it), and returns it as
// stored. Its ServiceAccount tokens are bound to it, as a kubelet's are.
func (ci *chartInstall) createPod(w workload, node string) *corev1.Pod {
	ci.t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: w.name + "-", Namespace: ci.namespace,
			Labels: w.template.Labels, Annotations: w.template.Annotations},
		Spec: *w.template.Spec.DeepCopy(),
	}
	p.Spec.NodeName = node
	return createPod(ci.t, ci.ctx, client, ci.namespace, p)
}

// token returns a TokenRequest token of the pod's ServiceAccount bound to
// the pod, as the kubelet projects it: audience aud (the API server's when
// ""), lifetime seconds.
func (ci *chartInstall) token(pod *corev1.Pod, aud string, seconds int64) string {
	ci.t.Helper()
	tok := requestToken(ci.t, ci.ctx, pod.Namespace, pod.Spec.ServiceAccountName, pod, aud, seconds)
	ci.tokens = append(ci.tokens, tok)
	return tok
}

// runOptions are what a component's process gets beyond its rendered pod.
type runOptions struct {
	// flags set flags ("--name" to value) in place of the rendered ones, or
	// in addition: what cannot work outside the pod (a Service's address).
	flags map[string]string
	// env is added to the pod's environment: what the pod would get from
	// elsewhere (AWS credentials, endpoints of stand-ins).
	env []string
}

// chartProcess is a component of a release running as a process.
type chartProcess struct {
	// command is the podiam subcommand, args the arguments as run.
	command string
	args    []string
	proc    *harness.Process
	logs    *testutil.SyncBuffer
	// ports are the loopback ports by rendered container port number.
	ports map[int32]int
	// readyURL is the rendered readiness probe's URL ("" if none).
	readyURL string
}

// subcommands say, by podiam subcommand, which flags are its listening
// ports; which address flags keep it on loopback (a value of "" removes
// the flag); of those, the ones whose rendered value (or podiam's default,
// given here, when not rendered) must let other pods in, since a Service
// or Prometheus reaches the port through them (listen); and whether it
// takes the in-cluster config's stand-in as --kubeconfig (podiam sts reads
// the API server only for an OIDC provider of its config, with the
// config's kubeconfig).
var subcommands = map[string]struct {
	ports      []string
	addresses  map[string]string
	listen     map[string]string
	kubeconfig bool
}{
	"webhook": {ports: []string{"--port", "--metrics-port"}, addresses: map[string]string{"--address": "127.0.0.1"},
		listen: map[string]string{"--address": ""}, kubeconfig: true},
	"auth": {ports: []string{"--port", "--metrics-port"}, addresses: map[string]string{"--address": "127.0.0.1"},
		listen: map[string]string{"--address": ""}, kubeconfig: true},
	// The link-local --bind-hosts are the node's, for its pods only.
	"agent": {ports: []string{"--port", "--probe-port", "--metrics-port"}, addresses: map[string]string{
		"--metrics-address": "127.0.0.1", "--bind-hosts": "", "-b": ""}, listen: map[string]string{"--metrics-address": "0.0.0.0"}, kubeconfig: true},
	"sts": {ports: []string{"--port", "--metrics-port"}, addresses: map[string]string{"--address": "127.0.0.1", "--metrics-address": "127.0.0.1"},
		listen: map[string]string{"--address": "127.0.0.1", "--metrics-address": "127.0.0.1"}},
	"oidc": {kubeconfig: true},
}

// envRef matches a $(VAR) reference of a container's args or env.
var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// run starts the first container of workload w as a process, as pod (created
// from w, createPod) would run it, and waits until its rendered readiness
// probe answers 200. From the pod template it takes the args and the env and
// keeps every flag, but for what cannot work outside a pod:
//   - listening ports move to free loopback ports (subcommands), and so do
//     the probes;
//   - files of mounted volumes become files of a directory of the test with
//     the same contents: projected ServiceAccount tokens from the TokenRequest
//     API (the rendered audience and lifetime, bound to pod), ConfigMaps and
//     Secrets read from the API server (waiting for them to exist);
//   - the in-cluster config becomes --kubeconfig, with a token of the pod's
//     ServiceAccount bound to pod, as the kubelet mounts it;
//   - the downward API's fields become the pod's values;
//   - the environment is the pod's alone, with PATH, a HOME that does not
//     exist (the image has none) and a TMPDIR that cannot be written to
//     when the root filesystem is read-only and no volume is mounted at
//     /tmp, plus the test's stand-ins (o.env).
//
// Before it starts the process it checks what the rewrites would hide: an
// address flag that would keep a Service's port on the pod's loopback
// (listen), and every Service port of the release that leads to this
// workload (chart.Wiring) must lead to a port that a rendered flag listens
// on, which the process is then dialled at. A ConfigMap or Secret key that
// is missing and not optional fails the test, as the kubelet would not
// start the container.
//
// Init containers are not run (the agent's adds link-local addresses, which
// needs NET_ADMIN). The process is killed when the test ends.
func (ci *chartInstall) run(w workload, pod *corev1.Pod, o runOptions) *chartProcess {
	t := ci.t
	t.Helper()
	spec := &w.template.Spec
	if len(spec.Containers) == 0 || len(spec.Containers[0].Args) == 0 {
		t.Fatalf("%s %s: no container args", w.kind, w.name)
	}
	c := spec.Containers[0]
	p := &chartProcess{command: c.Args[0], ports: map[int32]int{}}
	lf, ok := subcommands[p.command]
	if !ok {
		t.Fatalf("%s %s runs podiam %s: unknown subcommand", w.kind, w.name, p.command)
	}
	dir := filepath.Join(ci.dir, pod.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}

	env := ci.podEnv(pod, &c)
	expand := func(s string) string {
		return envRef.ReplaceAllStringFunc(s, func(ref string) string {
			if v, ok := env[ref[2:len(ref)-1]]; ok {
				return v
			}
			return ref
		})
	}
	mounts := ci.mounts(pod, spec, &c, dir)

	// Ports: every rendered port flag and every container port.
	free, err := testutil.FreePorts(len(lf.ports) + len(c.Ports))
	if err != nil {
		t.Fatal(err)
	}
	for _, cp := range c.Ports {
		p.ports[cp.ContainerPort], free = free[0], free[1:]
	}
	set := map[string]string{}
	for _, f := range lf.ports {
		set[f], free = strconv.Itoa(free[0]), free[1:]
	}
	listen := maps.Clone(lf.listen) // the rendered listen addresses, unexpanded
	rendered := map[string]int32{}  // the rendered port flags
	var args []string
	for _, a := range c.Args[1:] {
		if name, value, ok := strings.Cut(a, "="); ok {
			if _, ok := listen[name]; ok {
				listen[name] = value
			}
		}
		name, value, hasValue := strings.Cut(expand(a), "=")
		if n, err := strconv.Atoi(value); err == nil && hasValue && slices.Contains(lf.ports, name) {
			rendered[name] = int32(n)
			if port, ok := p.ports[int32(n)]; ok {
				set[name] = strconv.Itoa(port) // the container port's, which the probes name
			}
		}
		_, port := set[name]
		_, address := lf.addresses[name]
		_, given := o.flags[name]
		switch {
		case port || address || given:
		case hasValue:
			args = append(args, name+"="+mounts.path(value))
		default:
			args = append(args, name)
		}
	}
	if p.command == "agent" {
		// --listen replaces --port and the link-local --bind-hosts.
		args = append(args, "--listen=127.0.0.1:"+set["--port"])
		delete(set, "--port")
	}
	if p.command == "oidc" && len(c.Args) > 1 {
		p.command = "oidc " + c.Args[1]
	}
	for _, m := range []map[string]string{set, lf.addresses, o.flags} {
		for _, name := range slices.Sorted(maps.Keys(m)) {
			if m[name] != "" {
				args = append(args, name+"="+m[name])
			}
		}
	}
	if lf.kubeconfig {
		args = append(args, "--kubeconfig="+ci.inClusterConfig(pod, dir))
	}
	p.args = append([]string{c.Args[0]}, args...)

	// What the rewrites of addresses and ports would hide.
	for _, name := range slices.Sorted(maps.Keys(listen)) {
		if !podReachable(listen[name], &c) {
			t.Errorf("podiam %s: %s=%q (rendered, or podiam's default) would listen where no other pod reaches it: want every interface or the pod's IP", p.command, name, listen[name])
		}
	}
	endpoints := ci.endpointsOf(w)
	for _, ep := range endpoints {
		if ep.Container != c.Name || !slices.Contains(slices.Collect(maps.Values(rendered)), ep.ContainerPort) {
			t.Fatalf("podiam %s: %v, a port on which no rendered flag of container %s listens (%v)", p.command, ep, c.Name, rendered)
		}
	}

	// The environment: the pod's alone (paths moved), then the test's; none
	// of the machine's. No instance metadata here: a pod would reach its
	// node's.
	procEnv := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + filepath.Join(dir, "no-home"),
		"TMPDIR=" + ci.tmpDir(&c, mounts, dir), "AWS_EC2_METADATA_DISABLED=true"}
	for _, e := range c.Env {
		procEnv = append(procEnv, e.Name+"="+mounts.path(env[e.Name]))
	}
	procEnv = append(procEnv, o.env...)

	p.readyURL = p.probeURL(t, &c, c.ReadinessProbe)
	liveURL := p.probeURL(t, &c, c.LivenessProbe)

	p.logs = new(testutil.SyncBuffer)
	p.proc, err = harness.StartPodiamEnv(podiamBin, p.logs, procEnv, p.args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.proc.Kill()
		if strings.Contains(p.logs.String(), "WARNING: DATA RACE") {
			t.Errorf("podiam %s reported a data race:\n%s", p.command, tail(p.logs.String(), 16<<10))
		}
		if t.Failed() {
			t.Logf("podiam %s, run as %q:\n%s", p.command, p.args, tail(p.logs.String(), 16<<10))
		}
	})
	if p.readyURL != "" {
		p.waitReady(t, ci.ctx)
	}
	if liveURL != "" {
		if status, err := getStatus(ci.ctx, liveURL); status != 200 {
			t.Errorf("podiam %s: the liveness probe %s answers %d %v", p.command, liveURL, status, err)
		}
	}
	for _, ep := range endpoints {
		addr := "127.0.0.1:" + strconv.Itoa(p.ports[ep.ContainerPort])
		testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, fmt.Sprintf("podiam %s to accept connections of %v", p.command, ep), func() (bool, string) {
			conn, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				conn.Close()
			}
			return err == nil, fmt.Sprint(err)
		})
	}
	if len(endpoints) > 0 {
		t.Logf("podiam %s accepts connections for %v", p.command, endpoints)
	}
	return p
}

// podReachable reports whether listen address value (unexpanded) of
// container c lets other pods in: every interface, or the pod's IP (a
// variable of the downward API's status.podIP, or status.hostIP on the
// node's network).
func podReachable(value string, c *corev1.Container) bool {
	switch value {
	case "", "0.0.0.0", "::", "[::]":
		return true
	}
	m := envRef.FindStringSubmatch(value)
	if m == nil || m[0] != value {
		return false
	}
	i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == m[1] })
	if i < 0 || c.Env[i].ValueFrom == nil || c.Env[i].ValueFrom.FieldRef == nil {
		return false
	}
	return slices.Contains([]string{"status.podIP", "status.hostIP"}, c.Env[i].ValueFrom.FieldRef.FieldPath)
}

// endpointsOf returns the release's Service ports that lead to workload w.
func (ci *chartInstall) endpointsOf(w workload) []chart.Endpoint {
	var out []chart.Endpoint
	for _, ep := range ci.endpoints {
		if ep.Kind == w.kind && ep.Workload == w.name {
			out = append(out, ep)
		}
	}
	return out
}

// tmpDir is the process's TMPDIR: the copy of the volume mounted at /tmp,
// if any; else, when container c's root filesystem is read-only, a path
// under a regular file, where nothing can be created (even by root, which
// permissions would not stop); else a writable directory.
func (ci *chartInstall) tmpDir(c *corev1.Container, mounts *volumeMounts, dir string) string {
	t := ci.t
	t.Helper()
	if slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == "/tmp" }) {
		return mounts.path("/tmp")
	}
	if sc := c.SecurityContext; sc != nil && sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem {
		root := filepath.Join(dir, "read-only-root")
		if err := os.WriteFile(root, nil, 0o400); err != nil {
			t.Fatal(err)
		}
		return filepath.Join(root, "tmp")
	}
	tmp := filepath.Join(dir, "tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	return tmp
}

// probeURL is the URL of container c's HTTP probe pr on loopback ("" when
// pr is nil). Its port must be one the process listens on, by a flag.
func (p *chartProcess) probeURL(t *testing.T, c *corev1.Container, pr *corev1.Probe) string {
	t.Helper()
	if pr == nil {
		return ""
	}
	if pr.HTTPGet == nil {
		t.Fatalf("podiam %s: probe %+v is not an HTTP GET", p.command, pr)
	}
	number := pr.HTTPGet.Port.IntVal
	if name := pr.HTTPGet.Port.StrVal; name != "" {
		i := slices.IndexFunc(c.Ports, func(cp corev1.ContainerPort) bool { return cp.Name == name })
		if i < 0 {
			t.Fatalf("podiam %s: the probe's port %q is no container port", p.command, name)
		}
		number = c.Ports[i].ContainerPort
	}
	port, ok := p.ports[number]
	if !ok || !slices.ContainsFunc(p.args, func(a string) bool {
		return strings.HasSuffix(a, "="+strconv.Itoa(port)) || strings.HasSuffix(a, ":"+strconv.Itoa(port))
	}) {
		t.Fatalf("podiam %s: the probe's port %d is no port that a rendered flag listens on (%q)", p.command, number, c.Args)
	}
	return fmt.Sprintf("http://127.0.0.1:%d%s", port, pr.HTTPGet.Path)
}

// waitReady polls the readiness probe until it answers 200; it fails t at
// once if the process exits.
func (p *chartProcess) waitReady(t *testing.T, ctx context.Context) {
	t.Helper()
	begin := time.Now()
	testutil.Eventually(t, 30*time.Second, 50*time.Millisecond, "podiam "+p.command+" to be ready", func() (bool, string) {
		select {
		case <-p.proc.Exited():
			t.Fatalf("podiam %s exited with status %d:\n%s", p.command, p.proc.ExitCode(), tail(p.logs.String(), 8<<10))
		default:
		}
		status, err := getStatus(ctx, p.readyURL)
		return status == 200, fmt.Sprint(status, err)
	})
	t.Logf("podiam %s ready in %v", p.command, time.Since(begin).Round(time.Millisecond))
}

// checkLogs fails t if the process logged a refusal of the API server (the
// rendered RBAC must allow all it does) or one of the release's
// ServiceAccount tokens (or a token's signature alone).
func (ci *chartInstall) checkLogs(p *chartProcess) {
	t := ci.t
	t.Helper()
	logs := p.logs.String()
	for _, word := range []string{"forbidden", "unauthorized"} {
		if strings.Contains(strings.ToLower(logs), word) {
			t.Errorf("podiam %s logged %q:\n%s", p.command, word, grepLines(logs, word))
		}
	}
	for _, token := range ci.tokens {
		if sig := token[strings.LastIndexByte(token, '.')+1:]; strings.Contains(logs, sig) {
			t.Errorf("podiam %s logged a ServiceAccount token (%d characters)", p.command, len(token))
		}
	}
}

// podEnv resolves the container's environment as the kubelet would for
// pod: literal values (with $(VAR) references to earlier variables), the
// downward API, ConfigMap and Secret keys, resource limits.
func (ci *chartInstall) podEnv(pod *corev1.Pod, c *corev1.Container) map[string]string {
	t := ci.t
	t.Helper()
	env := map[string]string{}
	if len(c.EnvFrom) > 0 {
		t.Fatalf("container %s: envFrom is not supported here", c.Name)
	}
	for _, e := range c.Env {
		switch src := e.ValueFrom; {
		case src == nil:
			env[e.Name] = envRef.ReplaceAllStringFunc(e.Value, func(ref string) string {
				if v, ok := env[ref[2:len(ref)-1]]; ok {
					return v
				}
				return ref
			})
		case src.FieldRef != nil:
			fields := map[string]string{
				"metadata.name": pod.Name, "metadata.namespace": pod.Namespace, "metadata.uid": string(pod.UID),
				"spec.nodeName": pod.Spec.NodeName, "spec.serviceAccountName": pod.Spec.ServiceAccountName,
				"status.podIP": "127.0.0.1", "status.hostIP": "127.0.0.1",
			}
			v, ok := fields[src.FieldRef.FieldPath]
			if !ok {
				t.Fatalf("env %s: field %s is not supported here", e.Name, src.FieldRef.FieldPath)
			}
			env[e.Name] = v
		case src.ResourceFieldRef != nil:
			env[e.Name] = resourceValue(t, c, src.ResourceFieldRef)
		case src.ConfigMapKeyRef != nil:
			ref, optional := src.ConfigMapKeyRef, ptrTrue(src.ConfigMapKeyRef.Optional)
			env[e.Name] = ci.key("ConfigMap", ref.Name, ref.Key, optional, ci.configMapData(ref.Name, optional))
		case src.SecretKeyRef != nil:
			ref, optional := src.SecretKeyRef, ptrTrue(src.SecretKeyRef.Optional)
			env[e.Name] = ci.key("Secret", ref.Name, ref.Key, optional, ci.secretData(ref.Name, optional))
		default:
			t.Fatalf("env %s: source %+v is not supported here", e.Name, src)
		}
	}
	return env
}

func ptrTrue(b *bool) bool { return b != nil && *b }

// key returns key of the data of ConfigMap or Secret name ("" when it is
// missing and optional). A key that is missing and not optional fails the
// test: the kubelet would not start the container.
func (ci *chartInstall) key(kind, name, key string, optional bool, data map[string]string) string {
	ci.t.Helper()
	v, ok := data[key]
	if !ok && !optional {
		ci.t.Fatalf("%s %s/%s has no key %q, which the pod needs: the kubelet would not start it", kind, ci.namespace, name, key)
	}
	return v
}

// resourceValue is a resourceFieldRef's value, as the kubelet computes it:
// the quantity divided by the divisor, rounded up.
func resourceValue(t *testing.T, c *corev1.Container, ref *corev1.ResourceFieldSelector) string {
	t.Helper()
	kind, name, _ := strings.Cut(ref.Resource, ".")
	list := c.Resources.Limits
	if kind == "requests" {
		list = c.Resources.Requests
	}
	q, ok := list[corev1.ResourceName(name)]
	if !ok {
		t.Fatalf("resourceFieldRef %s: the container sets none", ref.Resource)
	}
	div := ref.Divisor
	if div.IsZero() {
		div = resource.MustParse("1")
	}
	return strconv.FormatInt(int64(math.Ceil(q.AsApproximateFloat64()/div.AsApproximateFloat64())), 10)
}

// configMapData waits for ConfigMap name of the release's namespace (unless
// optional) and returns its data.
func (ci *chartInstall) configMapData(name string, optional bool) map[string]string {
	ci.t.Helper()
	var data map[string]string
	ci.waitObject("ConfigMap "+name, optional, func() error {
		cm, err := client.CoreV1().ConfigMaps(ci.namespace).Get(ci.ctx, name, metav1.GetOptions{})
		if err == nil {
			data = cm.Data
		}
		return err
	})
	return data
}

// secretData waits for Secret name of the release's namespace (unless
// optional) and returns its data.
func (ci *chartInstall) secretData(name string, optional bool) map[string]string {
	ci.t.Helper()
	data := map[string]string{}
	ci.waitObject("Secret "+name, optional, func() error {
		s, err := client.CoreV1().Secrets(ci.namespace).Get(ci.ctx, name, metav1.GetOptions{})
		if err == nil {
			for k, v := range s.Data {
				data[k] = string(v)
			}
		}
		return err
	})
	return data
}

// waitObject waits until get finds the object; an optional one that is not
// there is taken as empty at once.
func (ci *chartInstall) waitObject(what string, optional bool, get func() error) {
	ci.t.Helper()
	testutil.Eventually(ci.t, 20*time.Second, 100*time.Millisecond, what+" to exist", func() (bool, string) {
		err := get()
		if apierrors.IsNotFound(err) && optional {
			return true, ""
		}
		return err == nil, fmt.Sprint(err)
	})
}

// volumeMounts maps the container's mount paths to directories of the test
// that hold the volumes' files.
type volumeMounts struct {
	ci    *chartInstall
	pod   *corev1.Pod
	spec  *corev1.PodSpec
	c     *corev1.Container
	dir   string
	local map[string]string // mount path → directory, once written
}

func (ci *chartInstall) mounts(pod *corev1.Pod, spec *corev1.PodSpec, c *corev1.Container, dir string) *volumeMounts {
	return &volumeMounts{ci: ci, pod: pod, spec: spec, c: c, dir: dir, local: map[string]string{}}
}

// path returns value with a mounted volume's path replaced by the test's
// copy, which it writes the first time.
func (vm *volumeMounts) path(value string) string {
	for _, m := range vm.c.VolumeMounts {
		rest, ok := strings.CutPrefix(value, m.MountPath)
		if !ok || rest != "" && !strings.HasPrefix(rest, "/") {
			continue
		}
		local, ok := vm.local[m.MountPath]
		if !ok {
			local = filepath.Join(vm.dir, "volume-"+m.Name)
			vm.write(m.Name, local)
			if m.SubPath != "" {
				local = filepath.Join(local, m.SubPath)
			}
			vm.local[m.MountPath] = local
		}
		return local + rest
	}
	return value
}

// write writes the files of volume name into dir.
func (vm *volumeMounts) write(name, dir string) {
	t, ci := vm.ci.t, vm.ci
	t.Helper()
	i := slices.IndexFunc(vm.spec.Volumes, func(v corev1.Volume) bool { return v.Name == name })
	if i < 0 {
		t.Fatalf("volume %s is mounted but not declared", name)
	}
	v := vm.spec.Volumes[i]
	files := map[string]string{}
	// keys copies the items of a ConfigMap's or Secret's data (all of it
	// without items); a missing key is skipped only when optional.
	keys := func(kind, source string, optional bool, data map[string]string, items []corev1.KeyToPath) {
		if len(items) == 0 {
			maps.Copy(files, data)
			return
		}
		for _, it := range items {
			if _, ok := data[it.Key]; ok || !optional {
				files[it.Path] = ci.key(kind, source, it.Key, optional, data)
			}
		}
	}
	switch {
	case v.ConfigMap != nil:
		optional := ptrTrue(v.ConfigMap.Optional)
		keys("ConfigMap", v.ConfigMap.Name, optional, ci.configMapData(v.ConfigMap.Name, optional), v.ConfigMap.Items)
	case v.Secret != nil:
		optional := ptrTrue(v.Secret.Optional)
		keys("Secret", v.Secret.SecretName, optional, ci.secretData(v.Secret.SecretName, optional), v.Secret.Items)
	case v.EmptyDir != nil:
	case v.Projected != nil:
		for _, s := range v.Projected.Sources {
			switch {
			case s.ServiceAccountToken != nil:
				seconds := int64(3600)
				if s.ServiceAccountToken.ExpirationSeconds != nil {
					seconds = *s.ServiceAccountToken.ExpirationSeconds
				}
				files[s.ServiceAccountToken.Path] = ci.token(vm.pod, s.ServiceAccountToken.Audience, seconds)
			case s.ConfigMap != nil:
				optional := ptrTrue(s.ConfigMap.Optional)
				keys("ConfigMap", s.ConfigMap.Name, optional, ci.configMapData(s.ConfigMap.Name, optional), s.ConfigMap.Items)
			case s.Secret != nil:
				optional := ptrTrue(s.Secret.Optional)
				keys("Secret", s.Secret.Name, optional, ci.secretData(s.Secret.Name, optional), s.Secret.Items)
			default:
				t.Fatalf("volume %s: projected source %+v is not supported here", name, s)
			}
		}
	default:
		t.Fatalf("volume %s: source %+v is not supported here", name, v.VolumeSource)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for p, content := range files {
		path := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// inClusterConfig writes the kubeconfig that stands in for the in-cluster
// config of pod: the API server and its CA, and a token of the pod's
// ServiceAccount bound to the pod with the kubelet's lifetime (3607 s), as
// the kube-api-access volume holds. A pod that mounts no such token has no
// in-cluster config.
func (ci *chartInstall) inClusterConfig(pod *corev1.Pod, dir string) string {
	t := ci.t
	t.Helper()
	if a := pod.Spec.AutomountServiceAccountToken; a != nil && !*a {
		t.Fatalf("pod %s does not mount its ServiceAccount token: no in-cluster config", pod.Name)
	}
	path := filepath.Join(dir, "in-cluster.kubeconfig")
	writeBearerKubeconfig(t, path, ci.token(pod, "", 3607))
	return path
}

// foreignCRDs serializes installForeignCRD: parallel dry runs install the
// same CRDs.
var foreignCRDs sync.Mutex

// foreignCRDSource marks a CRD that installForeignCRD installed from
// chart.ForeignCRDs, and which file set: another test may have created a
// schema-less stand-in of the same name first.
const foreignCRDSource = "podiam.dev/e2e-crd-source"

// installForeignCRD makes the API server serve another project's kind from
// its real CRD crd (replacing a stand-in of the same name, which accepts
// anything) and waits until the API server checks objects against its
// schema: until a strict dry run of sample, an object of that kind, with a
// field the schema lacks is refused.
func installForeignCRD(t *testing.T, ctx context.Context, dyn dynamic.Interface, crd, sample *unstructured.Unstructured) {
	t.Helper()
	foreignCRDs.Lock()
	defer foreignCRDs.Unlock()
	want := crd.DeepCopy()
	want.SetAnnotations(map[string]string{foreignCRDSource: "test/chart/testdata/crds"})
	crds := dyn.Resource(crdGVR)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := crds.Get(ctx, want.GetName(), metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			_, err = crds.Create(ctx, want, metav1.CreateOptions{})
			return err
		case err != nil:
			return err
		case cur.GetAnnotations()[foreignCRDSource] == want.GetAnnotations()[foreignCRDSource]:
			return nil
		}
		want.SetResourceVersion(cur.GetResourceVersion())
		_, err = crds.Update(ctx, want, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("installing CRD %s: %v", want.GetName(), err)
	}
	waitCRDEstablished(t, ctx, dyn, want.GetName())

	probe := sample.DeepCopy()
	if err := unstructured.SetNestedField(probe.Object, "x", "spec", "podiamUnknownField"); err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(client.Discovery()))
	testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, "the API server to check "+sample.GetKind()+" against CRD "+want.GetName(), func() (bool, string) {
		mapper.Reset()
		err := applyStrict(ctx, dyn, mapper, probe)
		return err != nil && strings.Contains(err.Error(), "podiamUnknownField"), fmt.Sprintf("a strict dry run of a field the schema lacks: %v", err)
	})
}

// dryRunStrict applies every object of objs with a server-side dry run and
// strict field validation (a field the schema lacks is an error, not a
// warning) and returns how many objects of each kind it applied. Namespaced
// objects must be in namespace.
func dryRunStrict(t *testing.T, ctx context.Context, dyn dynamic.Interface, objs []*unstructured.Unstructured, namespace string) map[string]int {
	t.Helper()
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(client.Discovery()))
	kinds := map[string]int{}
	for _, u := range objs {
		kinds[u.GetKind()]++
		if ns := u.GetNamespace(); ns != "" && ns != namespace {
			t.Errorf("%s %s: namespace %q, want %s", u.GetKind(), u.GetName(), ns, namespace)
			continue
		}
		if err := applyStrict(ctx, dyn, mapper, u); err != nil {
			t.Errorf("server-side dry-run apply of %s %s/%s: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
	}
	return kinds
}

// applyStrict applies u with a server-side dry run and strict field
// validation.
func applyStrict(ctx context.Context, dyn dynamic.Interface, mapper meta.RESTMapper, u *unstructured.Unstructured) error {
	gvk := u.GroupVersionKind()
	m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return fmt.Errorf("mapping %s: %w", gvk, err)
	}
	var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		ri = dyn.Resource(m.Resource).Namespace(u.GetNamespace())
	}
	data, err := u.MarshalJSON()
	if err != nil {
		return err
	}
	_, err = ri.Patch(ctx, u.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{FieldManager: "podiam-e2e",
		Force: ptr.To(true), DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict"})
	return err
}

// served reports whether the API server serves gvk.
func served(gvk schema.GroupVersionKind) bool {
	list, err := client.Discovery().ServerResourcesForGroupVersion(gvk.GroupVersion().String())
	if err != nil {
		return false
	}
	return slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Kind == gvk.Kind })
}
