package e2e

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podiam/podiam/api/v1alpha1"
	"github.com/podiam/podiam/test/harness"
	"github.com/podiam/podiam/test/testutil"
)

// TestAssociationGivesPodIdentity runs a webhook of its own (association
// watching is on by default; no container-credentials file) for an isolated
// namespace: a pod whose ServiceAccount has a PodIdentityAssociation gets Pod
// Identity, even over a role annotation (Pod Identity first); a ServiceAccount
// without one gets nothing, nor does one whose association is in another
// namespace; once the association is deleted, new pods get nothing.
func TestAssociationGivesPodIdentity(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 2*time.Minute)
	// Installed before the webhook starts, so that it lists associations at
	// once instead of looking for the CRD every 30 s. Never deleted: other
	// tests share it.
	installAssociationCRD(t)
	pias := associationClient(t)

	name := testutil.UniqueName("e2e-assoc")
	ns, otherNS := name, name+"-other"
	newNamespace(t, ctx, ns, map[string]string{isolatedLabel: name})
	newNamespace(t, ctx, otherNS, nil)
	w := startWebhook(t, ctx, name, harness.WebhookOptions{Binary: podiamBin, Kubeconfig: cluster.Kubeconfig(), Namespace: ns, Dir: t.TempDir()})
	registerIsolated(t, ctx, name, harness.Registration{Name: name, URL: w.URL(), CABundle: w.CABundle})
	if err := waitActive(ctx, ns); err != nil {
		t.Fatal(err)
	}
	newServiceAccount(t, ctx, ns, "app", nil)
	newServiceAccount(t, ctx, ns, "annotated", map[string]string{annoRoleARN: "arn:aws:iam::111122223333:role/irsa"})
	newServiceAccount(t, ctx, ns, "plain", nil)
	newServiceAccount(t, ctx, ns, "elsewhere", nil)
	newServiceAccount(t, ctx, ns, "marker", nil)

	create := func(namespace, sa, role string) *v1alpha1.PodIdentityAssociation {
		p := &v1alpha1.PodIdentityAssociation{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: sa + "-assoc"},
			Spec:       v1alpha1.PodIdentityAssociationSpec{ServiceAccount: sa, RoleARN: "arn:aws:iam::111122223333:role/" + role},
		}
		if err := pias.Create(ctx, p); err != nil {
			t.Fatalf("creating association %s/%s: %v", namespace, p.Name, err)
		}
		return p
	}
	appAssoc := create(ns, "app", "app")
	create(ns, "annotated", "annotated")
	create(otherNS, "elsewhere", "elsewhere") // names ns's "elsewhere" by name only

	isPI := func(p *corev1.Pod) bool {
		return envMap(t, &p.Spec.Containers[0])["AWS_CONTAINER_CREDENTIALS_FULL_URI"] == piFullURI
	}
	// waitPI polls with server-side dry-run pods (which go through the
	// webhook but are not stored) until the webhook's view of the
	// associations gives want, then creates a real pod and returns it.
	waitPI := func(sa string, want bool) *corev1.Pod {
		t.Helper()
		testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, fmt.Sprintf("pod of %s: Pod Identity %v", sa, want), func() (bool, string) {
			p, err := client.CoreV1().Pods(ns).Create(ctx, simplePod(sa), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			if err != nil {
				return false, err.Error()
			}
			return isPI(p) == want, fmt.Sprint(awsEnv(&p.Spec.Containers[0]))
		})
		return createPod(t, ctx, client, ns, simplePod(sa))
	}
	checkPI := func(p *corev1.Pod) {
		t.Helper()
		c := &p.Spec.Containers[0]
		wantEnv := []string{"AWS_CONTAINER_CREDENTIALS_FULL_URI=" + piFullURI, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=" + piTokenFile}
		if g := awsEnv(c); fmt.Sprint(g) != fmt.Sprint(wantEnv) {
			t.Errorf("pod of %s: AWS env\n got %q\nwant %q", p.Spec.ServiceAccountName, g, wantEnv)
		}
		if m := mountsNamed(c, piVolume); len(m) != 1 || m[0].MountPath != piMountPath || !m[0].ReadOnly {
			t.Errorf("pod of %s: mounts of %s: %+v, want one readOnly at %s", p.Spec.ServiceAccountName, piVolume, m, piMountPath)
		}
		if tok := tokenSource(t, p, piVolume); tok.Audience != piAudience || tok.Path != "eks-pod-identity-token" {
			t.Errorf("pod of %s: token projection {%q %q}, want {%q eks-pod-identity-token}", p.Spec.ServiceAccountName, tok.Audience, tok.Path, piAudience)
		}
		if p.Labels[piLabel] != "enabled" {
			t.Errorf("pod of %s: labels %v, want %s=enabled", p.Spec.ServiceAccountName, p.Labels, piLabel)
		}
		if v := volumesNamed(p, irsaVolume); len(v) != 0 {
			t.Errorf("pod of %s: also has the IRSA volume", p.Spec.ServiceAccountName)
		}
	}
	checkNone := func(p *corev1.Pod) {
		t.Helper()
		if g := awsEnv(&p.Spec.Containers[0]); len(g) != 0 || len(volumesNamed(p, piVolume)) != 0 || len(volumesNamed(p, irsaVolume)) != 0 || p.Labels[piLabel] != "" {
			t.Errorf("pod of %s got an identity: env %q, volumes %v, labels %v", p.Spec.ServiceAccountName, g, volumeNames(p), p.Labels)
		}
	}

	checkPI(waitPI("app", true))
	checkPI(waitPI("annotated", true)) // Pod Identity first, the role annotation notwithstanding
	checkNone(createPod(t, ctx, client, ns, simplePod("plain")))
	// Watch events arrive in order: once a marker created after the other
	// namespace's association is seen, that one has been seen too.
	create(ns, "marker", "marker")
	waitPI("marker", true)
	checkNone(createPod(t, ctx, client, ns, simplePod("elsewhere")))

	if err := pias.Delete(ctx, appAssoc); err != nil {
		t.Fatalf("deleting association: %v", err)
	}
	checkNone(waitPI("app", false))
}
