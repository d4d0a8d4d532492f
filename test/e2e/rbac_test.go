package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/podiam/podiam/test/harness"
	"github.com/podiam/podiam/test/testutil"
)

// TestWebhookRunsWithShippedRBAC runs the webhook as the ServiceAccount of the
// self-managed overlay, authenticated by a bearer token only and authorized by
// nothing but the RBAC objects the overlay ships, with the overlay's flags: it
// must start, write its certificate and caBundle, read the ConfigMap and
// ServiceAccounts (cached and looked up directly), and mutate pods without one
// request being forbidden. A negative control removes one shipped RoleBinding
// and shows the same token then no longer suffices.
//
// The shipped objects are created in rbacSystemNS instead of podiam-system:
// the shared webhook and TestConfigMapMapping own the ConfigMap
// pod-identity-webhook there. The cluster-scoped objects keep their names
// (TestManifests only dry-runs them), and so does the webhook configuration,
// because the ClusterRole names it in resourceNames.
func TestWebhookRunsWithShippedRBAC(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 2*time.Minute)
	var (
		rbacSystemNS = testutil.UniqueName("e2e-rbac-system") // the webhook's --namespace
		ns           = testutil.UniqueName("e2e-rbac")        // the pods'
	)
	const (
		saName    = "podiam-webhook"
		annRole   = "arn:aws:iam::111122223333:role/rbac-annotated"
		mapRole   = "arn:aws:iam::111122223333:role/rbac-mapped"
		freshRole = "arn:aws:iam::111122223333:role/rbac-fresh"
	)
	objs := renderOverlay(t, "self-managed")

	// The overlay's own flags, minus those the harness sets (ports, namespace).
	var dep appsv1.Deployment
	find(t, objs, "Deployment", "podiam-webhook", &dep)
	var args []string
	flag := func(name string) string {
		for _, a := range dep.Spec.Template.Spec.Containers[0].Args {
			if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
				return v
			}
		}
		t.Fatalf("the rendered Deployment has no --%s", name)
		return ""
	}
	for _, a := range dep.Spec.Template.Spec.Containers[0].Args {
		if a == "webhook" || strings.HasPrefix(a, "--port=") || strings.HasPrefix(a, "--metrics-port=") || strings.HasPrefix(a, "--namespace=") {
			continue
		}
		if strings.Contains(a, "$(") {
			t.Fatalf("rendered arg %q needs the pod's environment", a)
		}
		args = append(args, a)
	}
	cfgName, secretName := flag("webhook-config-name"), flag("cert-secret-name")
	if !slices.Contains(args, "--watch-config-map") {
		t.Fatalf("rendered args %q lack --watch-config-map", args)
	}

	// 1. The shipped Namespace, ServiceAccount and RBAC, for real, moved to
	// rbacSystemNS; the ConfigMap with a mapping for ns/mapped.
	dyn, err := dynamic.NewForConfig(cluster.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(client.Discovery()))
	kinds := map[string]bool{"Namespace": true, "ServiceAccount": true, "ClusterRole": true, "ClusterRoleBinding": true, "Role": true, "RoleBinding": true}
	created := map[string]int{}
	var cm *unstructured.Unstructured
	for _, u := range objs {
		kind := u.GetKind()
		if kind == "ConfigMap" && u.GetName() == "pod-identity-webhook" {
			cm = u.DeepCopy()
			continue
		}
		if !kinds[kind] {
			continue
		}
		u = u.DeepCopy()
		if kind == "Namespace" {
			u.SetName(rbacSystemNS)
		} else if u.GetNamespace() != "" {
			u.SetNamespace(rbacSystemNS)
		}
		if kind == "RoleBinding" || kind == "ClusterRoleBinding" {
			rebindServiceAccount(t, u, systemNamespace, saName, rbacSystemNS)
		}
		createOrReplace(t, ctx, dyn, mapper, u)
		created[kind]++
	}
	for k := range kinds {
		if created[k] == 0 {
			t.Fatalf("the self-managed overlay rendered no %s (created %v)", k, created)
		}
	}
	if cm == nil {
		t.Fatal("the self-managed overlay rendered no ConfigMap pod-identity-webhook")
	}
	newNamespace(t, ctx, ns, map[string]string{isolatedLabel: ns})
	newServiceAccount(t, ctx, ns, "annotated", map[string]string{annoRoleARN: annRole})
	newServiceAccount(t, ctx, ns, "mapped", nil)
	mapping, err := json.Marshal(map[string]any{ns + "/mapped": map[string]any{"RoleARN": mapRole}})
	if err != nil {
		t.Fatal(err)
	}
	cm.SetNamespace(rbacSystemNS)
	if err := unstructured.SetNestedField(cm.Object, string(mapping), "data", "config"); err != nil {
		t.Fatal(err)
	}
	createOrReplace(t, ctx, dyn, mapper, cm)

	// 2. A kubeconfig with nothing but a bearer token of the ServiceAccount.
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig-token")
	tokenClient := writeTokenKubeconfig(t, ctx, rbacSystemNS, saName, kubeconfig)

	// What the webhook does is allowed, and waiting for it covers the RBAC
	// authorizer's propagation delay; neighbouring requests are denied.
	sa := func(verb string) authorizationv1.ResourceAttributes {
		return authorizationv1.ResourceAttributes{Verb: verb, Resource: "serviceaccounts"} // all namespaces
	}
	cmAttr := func(verb, ns, name string) authorizationv1.ResourceAttributes {
		return authorizationv1.ResourceAttributes{Verb: verb, Resource: "configmaps", Namespace: ns, Name: name}
	}
	secretAttr := func(verb, ns, name string) authorizationv1.ResourceAttributes {
		return authorizationv1.ResourceAttributes{Verb: verb, Resource: "secrets", Namespace: ns, Name: name}
	}
	mwcAttr := func(verb, name string) authorizationv1.ResourceAttributes {
		return authorizationv1.ResourceAttributes{Verb: verb, Group: "admissionregistration.k8s.io", Resource: "mutatingwebhookconfigurations", Name: name}
	}
	piaAttr := func(verb string) authorizationv1.ResourceAttributes {
		return authorizationv1.ResourceAttributes{Verb: verb, Group: "podiam.dev", Resource: "podidentityassociations"} // all namespaces
	}
	allowed := []authorizationv1.ResourceAttributes{
		sa("get"), sa("list"), sa("watch"), piaAttr("list"), piaAttr("watch"),
		cmAttr("list", rbacSystemNS, "pod-identity-webhook"), cmAttr("watch", rbacSystemNS, "pod-identity-webhook"),
		secretAttr("create", rbacSystemNS, ""),
		secretAttr("get", rbacSystemNS, secretName), secretAttr("update", rbacSystemNS, secretName), secretAttr("delete", rbacSystemNS, secretName),
		mwcAttr("get", cfgName), mwcAttr("patch", cfgName),
	}
	denied := []authorizationv1.ResourceAttributes{
		secretAttr("list", "", ""), secretAttr("get", rbacSystemNS, "other"), secretAttr("list", rbacSystemNS, ""),
		secretAttr("create", ns, ""), secretAttr("get", ns, secretName),
		cmAttr("list", rbacSystemNS, ""), cmAttr("get", rbacSystemNS, "other"), cmAttr("get", ns, "pod-identity-webhook"),
		mwcAttr("patch", sharedWebhookName), mwcAttr("get", sharedWebhookName), mwcAttr("list", ""), mwcAttr("create", ""), mwcAttr("delete", cfgName),
		sa("update"), sa("patch"), {Verb: "create", Resource: "serviceaccounts", Subresource: "token", Namespace: ns, Name: "annotated"},
		{Verb: "create", Resource: "pods", Namespace: ns},
		piaAttr("create"), piaAttr("update"), piaAttr("delete"), {Verb: "update", Group: "podiam.dev", Resource: "podidentityassociations", Subresource: "status", Namespace: ns},
	}
	waitAccess(t, ctx, tokenClient, allowed, true, "the token to be allowed what the webhook does")
	for _, a := range denied {
		if ok, reason := accessAllowed(ctx, tokenClient, a); ok {
			t.Errorf("the shipped RBAC allows %s (%s): broader than the webhook needs", attrString(a), reason)
		}
	}

	// 3. The registration the RBAC names, without a caBundle, then the webhook.
	ports, err := testutil.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	opts := harness.WebhookOptions{
		Binary: podiamBin, Kubeconfig: kubeconfig, Namespace: rbacSystemNS, Dir: dir,
		SelfManaged: true, Port: ports[0], MetricsPort: ports[1], Args: args,
	}
	registerIsolated(t, ctx, ns, harness.Registration{
		Name: cfgName, URL: fmt.Sprintf("https://127.0.0.1:%d/mutate", opts.Port), FailurePolicy: admissionregistrationv1.Fail,
	})
	mwcs := client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	begin := time.Now()
	w := startWebhook(t, ctx, "shipped-RBAC", opts)
	t.Logf("webhook with the shipped RBAC ready in %v", time.Since(begin).Round(time.Millisecond))

	// 4. podiam created the Secret and wrote its CA into the caBundle.
	testutil.Eventually(t, 15*time.Second, 100*time.Millisecond, "podiam to write the caBundle", func() (bool, string) {
		cfg, err := mwcs.Get(ctx, cfgName, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		s, err := client.CoreV1().Secrets(rbacSystemNS).Get(ctx, secretName, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		ca := cfgCABundle(cfg)
		return len(ca) > 0 && bytes.Equal(ca, s.Data["ca.crt"]) && len(s.Data["tls.crt"]) > 0, fmt.Sprintf("caBundle %d bytes", len(ca))
	})

	// A pod of an annotated ServiceAccount (from the cache); the registration
	// takes effect asynchronously.
	testutil.Eventually(t, 20*time.Second, 100*time.Millisecond, "a pod of "+ns+"/annotated to get "+annRole, func() (bool, string) {
		p, err := client.CoreV1().Pods(ns).Create(ctx, simplePod("annotated"), metav1.CreateOptions{})
		if err != nil {
			return false, err.Error()
		}
		return roleOf(p) == annRole, "role " + roleOf(p)
	})
	// A pod of a ServiceAccount mapped by the ConfigMap only.
	if got := roleOf(createPod(t, ctx, client, ns, simplePod("mapped"))); got != mapRole {
		t.Errorf("pod of %s/mapped (ConfigMap mapping): role %q, want %q", ns, got, mapRole)
	}
	// Pods of ServiceAccounts created a moment before: the cache misses them
	// and the webhook GETs them, unless its watch wins the race, which it
	// mostly does (measured: about 1 miss in 60 attempts of ~30 ms); repeat
	// until one was looked up directly.
	lookups := func(result string) float64 {
		text, err := w.Metrics(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return metricSum(text, "podiam_webhook_serviceaccount_lookups_total", `source="api"`, `result="`+result+`"`)
	}
	before := lookups("found")
	i := 0
	testutil.Eventually(t, 30*time.Second, 0, "a ServiceAccount looked up in the API server", func() (bool, string) {
		i++
		name := fmt.Sprintf("fresh-%d", i)
		newServiceAccount(t, ctx, ns, name, map[string]string{annoRoleARN: freshRole})
		if got := roleOf(createPod(t, ctx, client, ns, simplePod(name))); got != freshRole {
			t.Fatalf("pod of %s/%s created right after its ServiceAccount: role %q, want %q", ns, name, got, freshRole)
		}
		return lookups("found") > before, fmt.Sprintf("%d pods, all served from the cache", i)
	})
	t.Logf("direct ServiceAccount lookup exercised after %d attempt(s)", i)
	if n := lookups("error"); n != 0 {
		t.Errorf("%v direct ServiceAccount lookups failed", n)
	}
	for _, word := range []string{"forbidden", "unauthorized"} {
		if logs := strings.ToLower(w.Logs()); strings.Contains(logs, word) {
			t.Errorf("the webhook logged %q:\n%s", word, grepLines(w.Logs(), word))
		}
	}
	if t.Failed() {
		return
	}

	// 5. Negative control: without the RoleBinding of the ConfigMap, the same
	// token no longer gets a fresh process ready, and it says why.
	w.Stop()
	if err := dyn.Resource(schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"}).Namespace(rbacSystemNS).Delete(ctx, "podiam-webhook", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitAccess(t, ctx, tokenClient, []authorizationv1.ResourceAttributes{cmAttr("list", rbacSystemNS, "pod-identity-webhook")}, false,
		"list of the ConfigMap to be denied after deleting RoleBinding podiam-webhook")
	negCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	neg := opts
	neg.Port, neg.MetricsPort, neg.Dir = 0, 0, t.TempDir()
	w2, err := harness.StartWebhook(negCtx, neg)
	if err == nil {
		w2.Stop()
		t.Fatal("negative control: the webhook became ready without the ConfigMap RoleBinding; the test cannot tell missing RBAC")
	}
	if msg := strings.ToLower(err.Error()); !strings.Contains(msg, "forbidden") || !strings.Contains(msg, "configmaps") {
		t.Errorf("negative control: the webhook did not become ready, but did not log a forbidden ConfigMap request:\n%v", err)
	}
}

// rebindServiceAccount moves the ServiceAccount subjects of binding u from
// saNS/saName to namespace ns, and fails t if u binds another ServiceAccount:
// a rendered binding must name the ServiceAccount it ships with.
func rebindServiceAccount(t *testing.T, u *unstructured.Unstructured, saNS, saName, ns string) {
	t.Helper()
	subjects, _, _ := unstructured.NestedSlice(u.Object, "subjects")
	for _, s := range subjects {
		if m, ok := s.(map[string]any); ok && m["kind"] == "ServiceAccount" {
			if m["name"] != saName || m["namespace"] != saNS {
				t.Fatalf("%s %s binds ServiceAccount %v/%v, want %s/%s", u.GetKind(), u.GetName(), m["namespace"], m["name"], saNS, saName)
			}
			m["namespace"] = ns
		}
	}
	if err := unstructured.SetNestedSlice(u.Object, subjects, "subjects"); err != nil {
		t.Fatal(err)
	}
}

// writeTokenKubeconfig writes, at path, a kubeconfig of the shared API
// server that authenticates as ServiceAccount ns/saName by a bearer token (an
// hour's TokenRequest token) and nothing else, and returns a client built
// from that file.
func writeTokenKubeconfig(t *testing.T, ctx context.Context, ns, saName, path string) kubernetes.Interface {
	t.Helper()
	tr, err := client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, saName,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: new(int64(3600))}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s/%s: %v", ns, saName, err)
	}
	cs, err := kubernetes.NewForConfig(writeBearerKubeconfig(t, path, tr.Status.Token))
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// writeBearerKubeconfig writes, at path, a kubeconfig of the shared API
// server that authenticates by token and nothing else, and returns the
// config read back from the file.
func writeBearerKubeconfig(t *testing.T, path, token string) *rest.Config {
	t.Helper()
	err := harness.WriteKubeconfig(path, &rest.Config{Host: cluster.URL(), BearerToken: token,
		TLSClientConfig: rest.TLSClientConfig{CAData: cluster.CACertPEM()}})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.CertData) != 0 || len(cfg.KeyData) != 0 || cfg.BearerToken == "" {
		t.Fatalf("the kubeconfig %s must authenticate by bearer token only", path)
	}
	return cfg
}

// createOrReplace creates u, or replaces the existing object of its name.
// Cluster-scoped objects are deleted when the test ends.
func createOrReplace(t *testing.T, ctx context.Context, dyn dynamic.Interface, mapper meta.ResettableRESTMapper, u *unstructured.Unstructured) {
	t.Helper()
	gvk := u.GroupVersionKind()
	m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		t.Fatalf("REST mapping for %s: %v", gvk, err)
	}
	ri := dynamic.ResourceInterface(dyn.Resource(m.Resource))
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		ri = dyn.Resource(m.Resource).Namespace(u.GetNamespace())
	}
	_, err = ri.Create(ctx, u, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) && gvk.Kind != "Namespace" {
		var cur *unstructured.Unstructured
		if cur, err = ri.Get(ctx, u.GetName(), metav1.GetOptions{}); err == nil {
			u.SetResourceVersion(cur.GetResourceVersion())
			_, err = ri.Update(ctx, u, metav1.UpdateOptions{})
		}
	} else if apierrors.IsAlreadyExists(err) {
		err = nil
	}
	if err != nil {
		t.Fatalf("creating %s %s/%s: %v", gvk.Kind, u.GetNamespace(), u.GetName(), err)
	}
	if m.Scope.Name() != meta.RESTScopeNameNamespace && gvk.Kind != "Namespace" {
		name := u.GetName()
		t.Cleanup(func() { _ = ri.Delete(context.Background(), name, metav1.DeleteOptions{}) })
	}
}

// waitAccess polls SelfSubjectAccessReviews of cs until every attribute set
// is allowed (want true) or denied (want false).
func waitAccess(t *testing.T, ctx context.Context, cs kubernetes.Interface, attrs []authorizationv1.ResourceAttributes, want bool, what string) {
	t.Helper()
	testutil.Eventually(t, 15*time.Second, 100*time.Millisecond, what, func() (bool, string) {
		for _, a := range attrs {
			if ok, reason := accessAllowed(ctx, cs, a); ok != want {
				return false, fmt.Sprintf("%s: allowed %v (%s)", attrString(a), ok, reason)
			}
		}
		return true, ""
	})
}

// accessAllowed asks the API server whether cs's user may do a.
func accessAllowed(ctx context.Context, cs kubernetes.Interface, a authorizationv1.ResourceAttributes) (bool, string) {
	r, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &a}}, metav1.CreateOptions{})
	if err != nil {
		return false, "SelfSubjectAccessReview: " + err.Error()
	}
	return r.Status.Allowed, r.Status.Reason + r.Status.EvaluationError
}

func attrString(a authorizationv1.ResourceAttributes) string {
	res := a.Resource
	if a.Group != "" {
		res += "." + a.Group
	}
	if a.Subresource != "" {
		res += "/" + a.Subresource
	}
	where := "all namespaces"
	if a.Namespace != "" {
		where = "namespace " + a.Namespace
	}
	name := ""
	if a.Name != "" {
		name = " " + a.Name
	}
	return fmt.Sprintf("%s %s%s in %s", a.Verb, res, name, where)
}

// grepLines returns the lines of s that contain word, ignoring case.
func grepLines(s, word string) string {
	var out []string
	for line := range strings.Lines(s) {
		if strings.Contains(strings.ToLower(line), word) {
			out = append(out, strings.TrimRight(line, "\n"))
		}
	}
	return strings.Join(out, "\n")
}
