package e2e

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/podiam/podiam/test/testutil"
)

// TestManifests renders both kustomize overlays and applies every object to
// the API server with a server-side dry run, then checks the settings the
// webhook depends on.
func TestManifests(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 2*time.Minute)
	dyn, err := dynamic.NewForConfig(cluster.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	// cert-manager is not installed in the test cluster: its real CRDs
	// (chart.ForeignCRDs) make the API server check the overlay's Issuer and
	// Certificate against their schemas.
	serveKinds(t, ctx, dyn, renderOverlay(t, "cert-manager"))
	// podiam-system exists for real (TestMain created it): a dry-run create of
	// namespaced objects needs their namespace.
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(client.Discovery()))

	for _, overlay := range []string{"cert-manager", "self-managed"} {
		t.Run(overlay, func(t *testing.T) {
			objs := renderOverlay(t, overlay)
			kinds := map[string]int{}
			for _, u := range objs {
				kinds[u.GetKind()]++
				gvk := u.GroupVersionKind()
				// Discovery can lag behind a new CRD: refresh until it is there.
				var m *meta.RESTMapping
				testutil.Eventually(t, 15*time.Second, 200*time.Millisecond, "a REST mapping for "+gvk.String(), func() (bool, string) {
					var err error
					if m, err = mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
						mapper.Reset()
						return false, err.Error()
					}
					return true, ""
				})
				var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
				if m.Scope.Name() == meta.RESTScopeNameNamespace {
					if u.GetNamespace() == "" {
						t.Errorf("%s %s: namespaced but rendered without a namespace", gvk.Kind, u.GetName())
						continue
					}
					ri = dyn.Resource(m.Resource).Namespace(u.GetNamespace())
				}
				_, err = ri.Apply(ctx, u.GetName(), u, metav1.ApplyOptions{FieldManager: "podiam-e2e", Force: true, DryRun: []string{metav1.DryRunAll}})
				if err != nil {
					t.Errorf("server-side dry-run apply of %s %s/%s: %v", gvk.Kind, u.GetNamespace(), u.GetName(), err)
				}
			}
			for _, k := range []string{"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
				"ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "MutatingWebhookConfiguration"} {
				if kinds[k] == 0 {
					t.Errorf("rendered overlay has no %s (kinds %v)", k, kinds)
				}
			}
			checkRendered(t, overlay, objs)
		})
	}
}

// renderOverlay runs kustomize (the library kubectl uses) on the module's
// deploy/overlays/<overlay>.
func renderOverlay(t *testing.T, overlay string) []*unstructured.Unstructured {
	t.Helper()
	root, err := testutil.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "deploy", "overlays", overlay)
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var out []*unstructured.Unstructured
	for _, r := range rm.Resources() {
		// Through JSON, so that numbers are int64 and float64 as in an
		// object read from the API (kyaml's map has ints, which DeepCopy
		// refuses).
		b, err := r.MarshalJSON()
		if err != nil {
			t.Fatalf("%s: %v", r.CurId(), err)
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(b); err != nil {
			t.Fatalf("%s: %v", r.CurId(), err)
		}
		out = append(out, u)
	}
	if len(out) == 0 {
		t.Fatalf("kustomize build %s: no objects", dir)
	}
	return out
}

func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string, into any) {
	t.Helper()
	for _, u := range objs {
		if u.GetKind() == kind && u.GetName() == name {
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into); err != nil {
				t.Fatalf("%s %s: %v", kind, name, err)
			}
			return
		}
	}
	t.Fatalf("rendered manifests have no %s %s", kind, name)
}

// checkRendered checks what the webhook relies on in the rendered objects.
func checkRendered(t *testing.T, overlay string, objs []*unstructured.Unstructured) {
	t.Helper()
	var dep appsv1.Deployment
	find(t, objs, "Deployment", "podiam-webhook", &dep)
	if dep.Namespace != systemNamespace {
		t.Errorf("Deployment namespace %q, want %s", dep.Namespace, systemNamespace)
	}
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 2 {
		t.Errorf("Deployment replicas %v, want 2", deref(dep.Spec.Replicas))
	}
	if dep.Spec.Template.Labels[skipLabel] == "" {
		t.Errorf("the webhook's own pods lack the %s label (the webhook would depend on itself)", skipLabel)
	}
	c := dep.Spec.Template.Spec.Containers[0]
	if p := c.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" {
		t.Errorf("readinessProbe %+v, want httpGet /readyz", p)
	}
	if p := c.LivenessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" {
		t.Errorf("livenessProbe %+v, want httpGet /healthz", p)
	}
	args := strings.Join(c.Args, " ")
	switch overlay {
	case "self-managed":
		for _, want := range []string{"--cert-mode=self-managed", "--cert-secret-name=podiam-webhook-tls", "--webhook-config-name=podiam-webhook"} {
			if !slices.Contains(c.Args, want) {
				t.Errorf("args %q lack %s", args, want)
			}
		}
		// RBAC names what the flags name.
		var role rbacv1.Role
		find(t, objs, "Role", "podiam-webhook-certs", &role)
		ok := false
		for _, r := range role.Rules {
			if slices.Contains(r.Resources, "secrets") && slices.Contains(r.ResourceNames, "podiam-webhook-tls") &&
				slices.Contains(r.Verbs, "get") && slices.Contains(r.Verbs, "update") {
				ok = true
			}
		}
		if !ok {
			t.Errorf("Role podiam-webhook-certs does not allow get/update of Secret podiam-webhook-tls: %+v", role.Rules)
		}
	case "cert-manager":
		mounted := false
		for _, m := range c.VolumeMounts {
			mounted = mounted || (m.MountPath == "/etc/webhook/certs" && m.ReadOnly)
		}
		if !mounted {
			t.Errorf("certificate not mounted read-only at /etc/webhook/certs (the --tls-cert default): %+v", c.VolumeMounts)
		}
	}
	// Only the self-managed overlay may write the webhook configuration: with
	// cert-manager, cainjector writes the caBundle and podiam needs no access.
	patchOK := false
	for _, u := range objs {
		if u.GetKind() != "ClusterRole" {
			continue
		}
		var cr rbacv1.ClusterRole
		find(t, objs, "ClusterRole", u.GetName(), &cr)
		for _, r := range cr.Rules {
			if slices.Contains(r.Resources, "mutatingwebhookconfigurations") && slices.Contains(r.ResourceNames, "podiam-webhook") && slices.Contains(r.Verbs, "patch") {
				patchOK = true
			}
		}
	}
	if want := overlay == "self-managed"; patchOK != want {
		t.Errorf("a ClusterRole can patch MutatingWebhookConfiguration podiam-webhook: %v, want %v", patchOK, want)
	}

	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	find(t, objs, "MutatingWebhookConfiguration", "podiam-webhook", &mwc)
	if len(mwc.Webhooks) != 1 {
		t.Fatalf("%d webhooks, want 1", len(mwc.Webhooks))
	}
	wh := mwc.Webhooks[0]
	for _, f := range []struct {
		name      string
		got, want any
	}{
		{"admissionReviewVersions", fmt.Sprint(wh.AdmissionReviewVersions), "[v1]"},
		{"sideEffects", deref(wh.SideEffects), admissionregistrationv1.SideEffectClassNone},
		{"reinvocationPolicy", deref(wh.ReinvocationPolicy), admissionregistrationv1.IfNeededReinvocationPolicy},
		{"failurePolicy", deref(wh.FailurePolicy), admissionregistrationv1.Ignore},
		{"timeoutSeconds set", wh.TimeoutSeconds != nil && *wh.TimeoutSeconds > 0 && *wh.TimeoutSeconds <= 30, true},
		{"service", fmt.Sprint(wh.ClientConfig.Service != nil && wh.ClientConfig.Service.Name == "podiam-webhook" &&
			wh.ClientConfig.Service.Namespace == systemNamespace), "true"},
	} {
		if f.got != f.want {
			t.Errorf("webhook %s = %v, want %v", f.name, f.got, f.want)
		}
	}
	sel := wh.ObjectSelector
	if sel == nil || len(sel.MatchExpressions) != 1 || sel.MatchExpressions[0].Key != skipLabel ||
		sel.MatchExpressions[0].Operator != metav1.LabelSelectorOpDoesNotExist {
		t.Errorf("objectSelector %+v, want %s DoesNotExist", sel, skipLabel)
	}
	if overlay == "cert-manager" && mwc.Annotations["cert-manager.io/inject-ca-from"] != systemNamespace+"/podiam-webhook" {
		t.Errorf("annotations %v: want cert-manager.io/inject-ca-from=%s/podiam-webhook", mwc.Annotations, systemNamespace)
	}
}
