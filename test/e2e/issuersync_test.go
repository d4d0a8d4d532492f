package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podiam/podiam/internal/oidc"
)

// TestIssuerSyncManifest renders deploy/issuer-sync, applies every object to
// the API server with a server-side dry run, and checks what the sync relies
// on: one replica running `podiam oidc publish --interval`, and a binding to a
// role that grants reading the two issuer documents and nothing else.
func TestIssuerSyncManifest(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, time.Minute)
	// renderOverlay resolves deploy/overlays/<name>: this names deploy/issuer-sync.
	objs := renderOverlay(t, "../issuer-sync")
	kinds := dryRunApply(t, ctx, objs, systemNamespace)
	for k, n := range map[string]int{"ServiceAccount": 1, "ClusterRoleBinding": 1, "Deployment": 1} {
		if kinds[k] != n {
			t.Errorf("%d %s objects, want %d (kinds %v)", kinds[k], k, n, kinds)
		}
	}
	if len(objs) != 3 {
		t.Errorf("%d objects (%v), want exactly the ServiceAccount, the binding and the Deployment", len(objs), kinds)
	}

	var dep appsv1.Deployment
	find(t, objs, "Deployment", "podiam-issuer-sync", &dep)
	checkIssuerSyncDeployment(t, &dep)

	var sa corev1.ServiceAccount
	find(t, objs, "ServiceAccount", "podiam-issuer-sync", &sa)
	if !strings.HasPrefix(sa.Annotations[annoRoleARN], "arn:aws:iam::") {
		t.Errorf("ServiceAccount annotations %v: want an IRSA role (%s)", sa.Annotations, annoRoleARN)
	}

	var crb rbacv1.ClusterRoleBinding
	find(t, objs, "ClusterRoleBinding", "podiam-issuer-sync", &crb)
	want := rbacv1.Subject{Kind: "ServiceAccount", Name: sa.Name, Namespace: systemNamespace}
	if len(crb.Subjects) != 1 || crb.Subjects[0] != want {
		t.Errorf("binding subjects %+v, want [%+v]", crb.Subjects, want)
	}
	checkDiscoveryOnlyRole(t, ctx, crb.RoleRef)
}

// checkIssuerSyncDeployment checks the sync's Deployment as rendered.
func checkIssuerSyncDeployment(t *testing.T, dep *appsv1.Deployment) {
	t.Helper()
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 1 {
		t.Errorf("replicas %v, want 1", deref(dep.Spec.Replicas))
	}
	spec := dep.Spec.Template.Spec
	if spec.ServiceAccountName != "podiam-issuer-sync" {
		t.Errorf("serviceAccountName %q, want podiam-issuer-sync", spec.ServiceAccountName)
	}
	// Its AWS credentials come from the webhook: its pods must not skip it.
	if _, skip := dep.Spec.Template.Labels[skipLabel]; skip {
		t.Errorf("pods labelled %s: the webhook would not give them their IRSA credentials", skipLabel)
	}
	c, flags := containerFlags(t, &spec, "oidc", "publish")
	if d, err := time.ParseDuration(flags["--interval"]); err != nil || d <= 0 {
		t.Errorf("--interval=%q, want a positive duration", flags["--interval"])
	}
	if err := oidc.ValidateIssuer(flags["--issuer"]); err != nil {
		t.Errorf("--issuer: %v", err)
	}
	if !strings.HasPrefix(flags["--to"], "s3://") {
		t.Errorf("--to=%q, want s3://bucket/prefix", flags["--to"])
	}
	if _, ok := flags["--allow-key-removal"]; ok {
		t.Error("--allow-key-removal shipped on: a wrong cluster would silently drop published keys")
	}
	checkHardened(t, &spec, &c)
}

// checkDiscoveryOnlyRole reads the bound ClusterRole from the API server
// (the built-in one is not in deploy/) and checks it allows only get on the
// two documents publish reads.
func checkDiscoveryOnlyRole(t *testing.T, ctx context.Context, ref rbacv1.RoleRef) {
	t.Helper()
	if ref.Kind != "ClusterRole" {
		t.Fatalf("roleRef %+v, want a ClusterRole", ref)
	}
	role, err := client.RbacV1().ClusterRoles().Get(ctx, ref.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the bound ClusterRole %s: %v", ref.Name, err)
	}
	var urls []string
	for _, r := range role.Rules {
		if len(r.APIGroups)+len(r.Resources)+len(r.ResourceNames) > 0 || !slices.Equal(r.Verbs, []string{"get"}) {
			t.Errorf("ClusterRole %s rule %+v grants more than get on non-resource URLs", ref.Name, r)
		}
		// The built-in role lists each URL with and without a trailing slash.
		for _, u := range r.NonResourceURLs {
			urls = append(urls, strings.TrimSuffix(u, "/"))
		}
	}
	slices.Sort(urls)
	urls = slices.Compact(urls)
	if want := []string{"/.well-known/openid-configuration", "/openid/v1/jwks"}; !slices.Equal(urls, want) {
		t.Errorf("ClusterRole %s grants %q, want exactly %q", ref.Name, urls, want)
	}
}
