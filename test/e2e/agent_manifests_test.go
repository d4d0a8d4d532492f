package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/podiam/podiam/internal/eksauth"
	"github.com/podiam/podiam/test/testutil"
)

// The names deploy/agent ships.
const (
	agentDaemonSetName = "podiam-agent"
	agentSAName        = "podiam-agent"
	agentClusterRole   = "podiam-agent"
)

// agentVariant is one kustomization of deploy/agent.
type agentVariant struct {
	name      string
	dir       string // renderOverlay's argument
	namespace string
	backend   string // its --backend
}

var agentVariants = []agentVariant{
	// With podiam auth: in podiam auth's namespace, to mount its CA ConfigMap.
	{name: "podiam", dir: "../agent/podiam", namespace: systemNamespace, backend: "podiam"},
	// In place of Amazon's agent, where Amazon's runs.
	{name: "eks", dir: "../agent/eks", namespace: "kube-system", backend: "eks"},
}

// TestAgentManifests renders both variants of deploy/agent, applies every
// object to the API server with a server-side dry run, and checks what the
// agent relies on: a DaemonSet on the node's network on every node, the node
// name from the downward API, Amazon's ports and probes, a hardened container,
// the backend's token and CA, and RBAC limited to watching pods.
func TestAgentManifests(t *testing.T) {
	t.Parallel()
	for _, v := range agentVariants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			ctx := ctxFor(t, 2*time.Minute)
			objs := renderOverlay(t, v.dir)
			kinds := dryRunApply(t, ctx, objs, v.namespace)
			// Nothing else: the namespace and the CRD belong to others
			// (kube-system, deploy/auth).
			want := map[string]int{"ServiceAccount": 1, "ClusterRole": 1, "ClusterRoleBinding": 2, "DaemonSet": 1}
			if fmt.Sprint(kinds) != fmt.Sprint(want) {
				t.Errorf("deploy/agent/%s kinds %v, want %v", v.name, kinds, want)
			}

			var ds appsv1.DaemonSet
			find(t, objs, "DaemonSet", agentDaemonSetName, &ds)
			flags := checkAgentDaemonSet(t, &ds)
			if flags["--backend"] != v.backend {
				t.Errorf("--backend=%q, want %s", flags["--backend"], v.backend)
			}
			if v.backend == "podiam" {
				checkAgentPodiamBackend(t, &ds, flags)
			} else {
				for name := range flags {
					if strings.HasPrefix(name, "--auth-") {
						t.Errorf("%s in the %s variant: a flag of --backend=podiam", name, v.name)
					}
				}
			}

			var sa corev1.ServiceAccount
			find(t, objs, "ServiceAccount", agentSAName, &sa)
			var role rbacv1.ClusterRole
			find(t, objs, "ClusterRole", agentClusterRole, &role)
			wantRules := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list", "watch"}}}
			if fmt.Sprint(role.Rules) != fmt.Sprint(wantRules) {
				t.Errorf("ClusterRole %s rules %+v, want only %+v", agentClusterRole, role.Rules, wantRules)
			}
			// Both bindings name the variant's ServiceAccount: one to the
			// role above, one to the cluster's keys and issuer.
			bound := map[string]bool{}
			for _, u := range objs {
				if u.GetKind() != "ClusterRoleBinding" {
					continue
				}
				var b rbacv1.ClusterRoleBinding
				find(t, []*unstructured.Unstructured{u}, u.GetKind(), u.GetName(), &b)
				want := []rbacv1.Subject{{Kind: "ServiceAccount", Name: agentSAName, Namespace: v.namespace}}
				if !slices.Equal(b.Subjects, want) {
					t.Errorf("ClusterRoleBinding %s subjects %+v, want %+v", b.Name, b.Subjects, want)
				}
				bound[b.RoleRef.Kind+"/"+b.RoleRef.Name] = true
			}
			for _, r := range []string{"ClusterRole/" + agentClusterRole, "ClusterRole/system:service-account-issuer-discovery"} {
				if !bound[r] {
					t.Errorf("no ClusterRoleBinding of %s (bound: %v)", r, bound)
				}
			}
		})
	}
}

// checkAgentDaemonSet checks the agent's DaemonSet as rendered (both
// variants) and returns the agent's flags by name.
func checkAgentDaemonSet(t *testing.T, ds *appsv1.DaemonSet) map[string]string {
	t.Helper()
	spec := ds.Spec.Template.Spec
	if !spec.HostNetwork || spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("hostNetwork %v, dnsPolicy %q: want the node's network and cluster DNS (ClusterFirstWithHostNet)", spec.HostNetwork, spec.DNSPolicy)
	}
	if spec.ServiceAccountName != agentSAName {
		t.Errorf("serviceAccountName %q, want %s", spec.ServiceAccountName, agentSAName)
	}
	if spec.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName %q, want system-node-critical", spec.PriorityClassName)
	}
	// Every node, whatever its taints.
	if !slices.ContainsFunc(spec.Tolerations, func(tol corev1.Toleration) bool {
		return tol.Operator == corev1.TolerationOpExists && tol.Key == "" && tol.Effect == ""
	}) {
		t.Errorf("tolerations %+v: want one with operator Exists and no key or effect", spec.Tolerations)
	}
	if u := ds.Spec.UpdateStrategy; u.Type != appsv1.RollingUpdateDaemonSetStrategyType || u.RollingUpdate == nil ||
		u.RollingUpdate.MaxUnavailable == nil || *u.RollingUpdate.MaxUnavailable != intstr.FromString("10%") ||
		u.RollingUpdate.MaxSurge != nil && u.RollingUpdate.MaxSurge.IntValue() != 0 {
		t.Errorf("updateStrategy %+v, want RollingUpdate with maxUnavailable 10%% and no surge (port 80)", u)
	}
	if !selects(ds.Spec.Selector.MatchLabels, ds.Spec.Template.Labels) {
		t.Errorf("selector %v does not select the pods (%v)", ds.Spec.Selector.MatchLabels, ds.Spec.Template.Labels)
	}

	// The init container adds the link-local addresses: NET_ADMIN, nothing more.
	if len(spec.InitContainers) != 1 {
		t.Fatalf("%d init containers, want 1 (podiam agent init)", len(spec.InitContainers))
	}
	ic := spec.InitContainers[0]
	if !slices.Equal(ic.Args, []string{"agent", "init"}) {
		t.Errorf("init container args %q, want [agent init]", ic.Args)
	}
	checkCapabilities(t, "init container", ic.SecurityContext, "NET_ADMIN")

	c, flags := containerFlags(t, &spec, "agent")
	// The node's name from the downward API.
	if flags["--node-name"] != "$(NODE_NAME)" {
		t.Errorf("--node-name=%q, want $(NODE_NAME)", flags["--node-name"])
	}
	i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "NODE_NAME" })
	if i < 0 || c.Env[i].ValueFrom == nil || c.Env[i].ValueFrom.FieldRef == nil || c.Env[i].ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
		t.Errorf("env %+v: want NODE_NAME from the downward API's spec.nodeName", c.Env)
	}
	if !eksauth.ValidClusterName(flags["--cluster-name"]) {
		t.Errorf("--cluster-name=%q: want a valid placeholder", flags["--cluster-name"])
	}
	// Amazon's link-local addresses, its defaults: no flag moves them.
	for _, name := range []string{"--listen", "--bind-hosts", "-b"} {
		if v, ok := flags[name]; ok {
			t.Errorf("%s=%q: the endpoint must stay on the SDKs' link-local addresses (the defaults)", name, v)
		}
	}
	// Amazon's ports, and the container's ports (host ports too, with
	// hostNetwork) match the flags.
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	for _, p := range []struct {
		flag, port string
		amazon     int32
	}{{"--port", "credentials", 80}, {"--probe-port", "probes", 2703}, {"--metrics-port", "metrics", 2705}} {
		if flags[p.flag] != strconv.Itoa(int(p.amazon)) || ports[p.port] != p.amazon {
			t.Errorf("%s=%s, container port %s %d: want both %d (Amazon's)", p.flag, flags[p.flag], p.port, ports[p.port], p.amazon)
		}
	}
	// The probe port listens on localhost: the kubelet must ask there.
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"readinessProbe", c.ReadinessProbe, "/readyz"}, {"livenessProbe", c.LivenessProbe, "/healthz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path ||
			p.probe.HTTPGet.Port != intstr.FromString("probes") || p.probe.HTTPGet.Host != "localhost" {
			t.Errorf("%s %+v, want httpGet %s on localhost, port probes", p.name, p.probe, p.path)
		}
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v: want a CPU request and a memory limit", c.Resources)
	}
	checkCapabilities(t, "container", c.SecurityContext, "NET_BIND_SERVICE")
	checkShutdownGrace(t, &spec, flags, "0s", "20s") // the flags' defaults
	return flags
}

// checkCapabilities checks a hardened container's securityContext: all
// capabilities dropped but the one it needs, no privilege, no escalation, a
// read-only root filesystem.
func checkCapabilities(t *testing.T, what string, sc *corev1.SecurityContext, capability corev1.Capability) {
	t.Helper()
	if sc == nil || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) ||
		!slices.Equal(sc.Capabilities.Add, []corev1.Capability{capability}) ||
		sc.Privileged != nil && *sc.Privileged ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("%s securityContext %+v: want every capability dropped but %s, unprivileged, no privilege escalation, read-only root", what, sc, capability)
	}
}

// checkAgentPodiamBackend checks the podiam variant's backend flags: each
// file flag names a file of the right volume, the token's audience is the one
// podiam auth expects by default, the CA is podiam auth's ConfigMap.
func checkAgentPodiamBackend(t *testing.T, ds *appsv1.DaemonSet, flags map[string]string) {
	t.Helper()
	if u := flags["--auth-url"]; !strings.HasPrefix(u, "https://") {
		t.Errorf("--auth-url=%q, want https://", u)
	}
	c := ds.Spec.Template.Spec.Containers[0]
	// volumeOf returns the volume that holds file, and the path inside it.
	volumeOf := func(file string) (*corev1.Volume, string) {
		for _, m := range c.VolumeMounts {
			rel, err := filepath.Rel(m.MountPath, file)
			if err != nil || strings.HasPrefix(rel, "..") || m.SubPath != "" {
				continue // a subPath mount never sees the kubelet's updates
			}
			for i, v := range ds.Spec.Template.Spec.Volumes {
				if v.Name == m.Name {
					return &ds.Spec.Template.Spec.Volumes[i], rel
				}
			}
		}
		return nil, ""
	}

	defaults := podiamAuthDefaults(t)
	v, rel := volumeOf(flags["--auth-token-file"])
	ok := false
	if v != nil && v.Projected != nil {
		for _, s := range v.Projected.Sources {
			ok = ok || s.ServiceAccountToken != nil && s.ServiceAccountToken.Path == rel &&
				s.ServiceAccountToken.Audience == defaults["--agent-audience"]
		}
	}
	if !ok {
		t.Errorf("--auth-token-file=%q is not a projected ServiceAccount token of audience %q (podiam auth's --agent-audience) in a mounted volume: %+v",
			flags["--auth-token-file"], defaults["--agent-audience"], v)
	}
	v, rel = volumeOf(flags["--auth-ca-file"])
	ok = v != nil && v.ConfigMap != nil && v.ConfigMap.Name == authCAConfigMap && (v.ConfigMap.Optional == nil || !*v.ConfigMap.Optional)
	if ok && len(v.ConfigMap.Items) > 0 {
		ok = slices.Contains(v.ConfigMap.Items, corev1.KeyToPath{Key: "ca.crt", Path: rel})
	} else {
		ok = ok && rel == "ca.crt"
	}
	if !ok {
		t.Errorf("--auth-ca-file=%q is not the key ca.crt of ConfigMap %s in a mounted volume: %+v", flags["--auth-ca-file"], authCAConfigMap, v)
	}
}

// podiamAuthDefaults returns the defaults of podiam auth's --agent-* flags,
// as its --help prints them.
func podiamAuthDefaults(t *testing.T) map[string]string {
	t.Helper()
	out, err := exec.Command(podiamBin, "auth", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("podiam auth --help: %v\n%s", err, out)
	}
	defaults := map[string]string{}
	for _, name := range []string{"--agent-service-account", "--agent-audience"} {
		m := regexp.MustCompile(regexp.QuoteMeta(name) + ` string .*\(default "([^"]+)"\)`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("podiam auth --help prints no default of %s:\n%s", name, out)
		}
		defaults[name] = string(m[1])
	}
	return defaults
}

// TestAgentManifestsMatchAuth checks that deploy/agent/podiam and deploy/auth
// agree: podiam auth accepts the agent's ServiceAccount and its token's
// audience, the agent calls podiam auth's Service and mounts its CA
// ConfigMap from podiam auth's namespace.
func TestAgentManifestsMatchAuth(t *testing.T) {
	t.Parallel()
	authObjs := renderOverlay(t, "../auth")
	var dep appsv1.Deployment
	find(t, authObjs, "Deployment", authDeploymentName, &dep)
	authFlags := podiamAuthDefaults(t)
	for _, a := range dep.Spec.Template.Spec.Containers[0].Args[1:] {
		if name, value, ok := strings.Cut(a, "="); ok {
			authFlags[name] = value
		}
	}
	var svc corev1.Service
	find(t, authObjs, "Service", "podiam-auth", &svc)

	v := agentVariants[0]
	objs := renderOverlay(t, v.dir)
	var ds appsv1.DaemonSet
	find(t, objs, "DaemonSet", agentDaemonSetName, &ds)
	flags := map[string]string{}
	for _, a := range ds.Spec.Template.Spec.Containers[0].Args[1:] {
		name, value, _ := strings.Cut(a, "=")
		flags[name] = value
	}

	if want := ds.Namespace + "/" + ds.Spec.Template.Spec.ServiceAccountName; authFlags["--agent-service-account"] != want {
		t.Errorf("deploy/auth's --agent-service-account is %q, deploy/agent/podiam's ServiceAccount %s: podiam auth would refuse the agent",
			authFlags["--agent-service-account"], want)
	}
	// The CA ConfigMap is podiam auth's, which a pod can mount only in its
	// own namespace.
	if ds.Namespace != dep.Namespace || authFlags["--ca-configmap"] != authCAConfigMap {
		t.Errorf("the agent in %s mounts ConfigMap %s; podiam auth publishes %q in %s", ds.Namespace, authCAConfigMap, authFlags["--ca-configmap"], dep.Namespace)
	}
	aud := ""
	for _, vol := range ds.Spec.Template.Spec.Volumes {
		if vol.Projected != nil {
			for _, s := range vol.Projected.Sources {
				if s.ServiceAccountToken != nil {
					aud = s.ServiceAccountToken.Audience
				}
			}
		}
	}
	if aud != authFlags["--agent-audience"] {
		t.Errorf("the agent's token has audience %q, podiam auth wants %q", aud, authFlags["--agent-audience"])
	}
	// https://<Service>.<namespace>.svc on the Service's port.
	host := svc.Name + "." + dep.Namespace + ".svc"
	if len(svc.Spec.Ports) != 1 {
		t.Fatalf("Service ports %+v, want one", svc.Spec.Ports)
	}
	want := "https://" + host
	if p := svc.Spec.Ports[0].Port; p != 443 {
		want += ":" + strconv.Itoa(int(p))
	}
	if flags["--auth-url"] != want {
		t.Errorf("--auth-url=%q, want %s (deploy/auth's Service)", flags["--auth-url"], want)
	}
	if flags["--cluster-name"] != authFlags["--cluster-name"] {
		t.Errorf("--cluster-name placeholders differ: agent %q, podiam auth %q", flags["--cluster-name"], authFlags["--cluster-name"])
	}
	// podiam auth's certificate names the Service (--service-name).
	if name := authFlags["--service-name"]; name != svc.Name {
		t.Errorf("podiam auth's --service-name=%q, its Service %s: the certificate would not name %s", name, svc.Name, host)
	}
}

// TestAgentShippedRBAC asks the API server, as each variant's ServiceAccount
// with its shipped RBAC, for what the agent does (allowed) and for its
// neighbours (denied).
func TestAgentShippedRBAC(t *testing.T) {
	t.Parallel()
	for _, v := range agentVariants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			ctx := ctxFor(t, time.Minute)
			ns := testutil.UniqueName("e2e-agentrbac-" + v.name)
			other := testutil.UniqueName("e2e-agentrbac-apps") // a namespace of applications
			newNamespace(t, ctx, ns, nil)
			cs, _ := shipRBAC(t, ctx, v.dir, v.namespace, agentSAName, ns)

			res := func(verb, resource, ns string) authorizationv1.ResourceAttributes {
				return authorizationv1.ResourceAttributes{Verb: verb, Resource: resource, Namespace: ns}
			}
			// The informer lists and watches every namespace (its field
			// selector spec.nodeName is not something RBAC can check).
			allowed := []authorizationv1.ResourceAttributes{res("list", "pods", ""), res("watch", "pods", "")}
			denied := []authorizationv1.ResourceAttributes{
				res("create", "pods", other), res("update", "pods", other), res("patch", "pods", other), res("delete", "pods", other),
				{Verb: "create", Resource: "pods", Subresource: "exec", Namespace: other},
				{Verb: "create", Resource: "pods", Subresource: "eviction", Namespace: other},
				{Verb: "update", Resource: "pods", Subresource: "status", Namespace: other},
				res("get", "secrets", ns), res("list", "secrets", ""), res("get", "secrets", other),
				res("get", "configmaps", ns), res("list", "configmaps", ""),
				{Verb: "list", Group: "podiam.dev", Resource: "podidentityassociations"},
				{Verb: "get", Group: "podiam.dev", Resource: "podidentityassociations", Namespace: other},
				{Verb: "create", Resource: "serviceaccounts", Subresource: "token", Namespace: other, Name: "default"},
				res("get", "nodes", ""), res("list", "serviceaccounts", ""),
			}
			waitAccess(t, ctx, cs, allowed, true, "the shipped RBAC to allow what podiam agent does")
			for _, a := range denied {
				if ok, reason := accessAllowed(ctx, cs, a); ok {
					t.Errorf("the shipped RBAC allows %s (%s): broader than podiam agent needs", attrString(a), reason)
				}
			}
			// The cluster's keys and issuer, to verify pod tokens.
			for _, path := range []string{"/openid/v1/jwks", "/.well-known/openid-configuration"} {
				r, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
					Spec: authorizationv1.SelfSubjectAccessReviewSpec{NonResourceAttributes: &authorizationv1.NonResourceAttributes{Verb: "get", Path: path}},
				}, metav1.CreateOptions{})
				if err != nil {
					t.Fatalf("SelfSubjectAccessReview of get %s: %v", path, err)
				}
				if !r.Status.Allowed {
					t.Errorf("the agent may not get %s (%s)", path, r.Status.Reason)
				}
			}
		})
	}
}
