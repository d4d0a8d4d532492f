package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podiam/podiam/test/testutil"
)

// TestConfigMapMapping: the kOps-style ConfigMap maps ServiceAccounts to roles;
// updates (including glob keys) apply without a restart; a malformed update
// keeps the last good mapping and is counted; deleting it clears the mapping.
func TestConfigMapMapping(t *testing.T) {
	t.Parallel()
	logsOnFailure(t, "shared", shared)
	ctx := ctxFor(t, 2*time.Minute)
	const (
		role1    = "arn:aws:iam::111122223333:role/mapped-v1"
		role2    = "arn:aws:iam::111122223333:role/mapped-v2"
		teamRole = "arn:aws:iam::111122223333:role/team-app"
		annRole  = "arn:aws:iam::111122223333:role/from-annotation"
	)
	ns := testutil.UniqueName("e2e-configmap")
	newNamespace(t, ctx, ns, nil)
	teamNS := testutil.UniqueName("team-e2e-payments") // matched by the glob key team-*/app
	newNamespace(t, ctx, teamNS, nil)
	newServiceAccount(t, ctx, ns, "mapped", nil)
	newServiceAccount(t, ctx, ns, "annotated", map[string]string{annoRoleARN: annRole})
	newServiceAccount(t, ctx, teamNS, "app", nil)

	cms := client.CoreV1().ConfigMaps(systemNamespace)
	mapping := func(m map[string]any) map[string]string {
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return map[string]string{"config": string(b)}
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "pod-identity-webhook", Namespace: systemNamespace},
		Data: mapping(map[string]any{
			ns + "/mapped":    map[string]any{"RoleARN": role1, "UseRegionalSTS": true, "TokenExpiration": 7200, "Audience": "sts.example.com"},
			ns + "/annotated": map[string]any{"RoleARN": role1},
		})}
	cm, err := cms.Create(ctx, cm, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create ConfigMap: %v", err)
	}
	t.Cleanup(func() { _ = cms.Delete(context.Background(), cm.Name, metav1.DeleteOptions{}) })

	// waitRole creates pods of ns/sa until one gets role ("" = not injected).
	waitRole := func(ns, sa, role string) *corev1.Pod {
		t.Helper()
		var got *corev1.Pod
		testutil.Eventually(t, 20*time.Second, 100*time.Millisecond, fmt.Sprintf("a pod of %s/%s with role %q", ns, sa, role), func() (bool, string) {
			got = createPod(t, ctx, client, ns, simplePod(sa))
			return roleOf(got) == role, "role " + roleOf(got)
		})
		return got
	}

	got := waitRole(ns, "mapped", role1)
	checkIRSA(t, got, irsaExpect{role: role1, regional: true, audience: "sts.example.com", expiration: 7200}, "app")
	// The annotation wins over the mapping.
	got = createPod(t, ctx, client, ns, simplePod("annotated"))
	checkIRSA(t, got, irsaExpect{role: annRole, expiration: 86400}, "app")
	// Not mapped yet.
	got = createPod(t, ctx, client, teamNS, simplePod("app"))
	checkIRSA(t, got, irsaExpect{}) // nothing

	// Update: a new role and a glob key, picked up without a restart.
	cm.Data = mapping(map[string]any{
		ns + "/mapped": map[string]any{"RoleARN": role2},
		"team-*/app":   map[string]any{"RoleARN": teamRole},
	})
	if cm, err = cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update ConfigMap: %v", err)
	}
	got = waitRole(ns, "mapped", role2)
	checkIRSA(t, got, irsaExpect{role: role2, expiration: 86400}, "app")
	got = waitRole(teamNS, "app", teamRole)
	checkIRSA(t, got, irsaExpect{role: teamRole, expiration: 86400}, "app")

	// A malformed update: counted, and the last good mapping stays.
	errorsBefore := webhookMetric(t, ctx, "podiam_webhook_config_reloads_total", `result="error"`, `source="configmap"`)
	cm.Data = map[string]string{"config": `{"` + ns + `/mapped": {"RoleARN": "arn:aws:iam::111122223333:role/broken"`}
	if cm, err = cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update ConfigMap: %v", err)
	}
	testutil.Eventually(t, 20*time.Second, 100*time.Millisecond, "the reload error to be counted", func() (bool, string) {
		n := webhookMetric(t, ctx, "podiam_webhook_config_reloads_total", `result="error"`, `source="configmap"`)
		return n > errorsBefore, fmt.Sprintf("errors %v (before %v)", n, errorsBefore)
	})
	// A key without "/" is malformed too.
	errorsBefore = webhookMetric(t, ctx, "podiam_webhook_config_reloads_total", `result="error"`, `source="configmap"`)
	cm.Data = mapping(map[string]any{"no-slash": map[string]any{"RoleARN": "arn:aws:iam::111122223333:role/broken"}})
	if cm, err = cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update ConfigMap: %v", err)
	}
	testutil.Eventually(t, 20*time.Second, 100*time.Millisecond, "the second reload error to be counted", func() (bool, string) {
		n := webhookMetric(t, ctx, "podiam_webhook_config_reloads_total", `result="error"`, `source="configmap"`)
		return n > errorsBefore, fmt.Sprintf("errors %v (before %v)", n, errorsBefore)
	})
	for range 3 {
		if got := createPod(t, ctx, client, ns, simplePod("mapped")); roleOf(got) != role2 {
			t.Fatalf("after a malformed ConfigMap: role %q, want the last good %q", roleOf(got), role2)
		}
		if got := createPod(t, ctx, client, teamNS, simplePod("app")); roleOf(got) != teamRole {
			t.Fatalf("after a malformed ConfigMap: role %q, want the last good %q", roleOf(got), teamRole)
		}
	}

	// Deleting the ConfigMap clears the mapping.
	if err := cms.Delete(ctx, cm.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitRole(ns, "mapped", "")
	got = waitRole(teamNS, "app", "")
	checkIRSA(t, got, irsaExpect{})
}

// TestContainerCredentialsFile: the watched file turns Pod Identity on for a
// ServiceAccount, ahead of IRSA; a malformed file keeps the last good set.
func TestContainerCredentialsFile(t *testing.T) {
	t.Parallel()
	logsOnFailure(t, "shared", shared)
	ctx := ctxFor(t, 2*time.Minute)
	const role = "arn:aws:iam::111122223333:role/irsa-too"
	ns := testutil.UniqueName("e2e-podidentity")
	newNamespace(t, ctx, ns, nil)
	newServiceAccount(t, ctx, ns, "pi", map[string]string{annoRoleARN: role}) // Pod Identity wins
	newServiceAccount(t, ctx, ns, "other", nil)

	write := func(content string) {
		t.Helper()
		tmp := filepath.Join(filepath.Dir(ccFile), ".config.json.tmp")
		if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, ccFile); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = os.Remove(ccFile) })
	isPI := func(p *corev1.Pod) bool {
		return envMap(t, &p.Spec.Containers[0])["AWS_CONTAINER_CREDENTIALS_FULL_URI"] != ""
	}
	waitPI := func(sa string, want bool) *corev1.Pod {
		t.Helper()
		var got *corev1.Pod
		testutil.Eventually(t, 20*time.Second, 100*time.Millisecond, fmt.Sprintf("a pod of %s with Pod Identity %v", sa, want), func() (bool, string) {
			got = createPod(t, ctx, client, ns, simplePod(sa))
			return isPI(got) == want, fmt.Sprint(awsEnv(&got.Spec.Containers[0]))
		})
		return got
	}

	write(`{"identities":[{"namespace":"` + ns + `","serviceAccount":"pi"}]}`)
	got := waitPI("pi", true)
	c := &got.Spec.Containers[0]
	wantEnv := []string{"AWS_DEFAULT_REGION=" + region, "AWS_REGION=" + region,
		"AWS_CONTAINER_CREDENTIALS_FULL_URI=" + piFullURI, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=" + piTokenFile}
	if g := awsEnv(c); fmt.Sprint(g) != fmt.Sprint(wantEnv) {
		t.Errorf("AWS env:\n got %q\nwant %q", g, wantEnv)
	}
	if m := mountsNamed(c, piVolume); len(m) != 1 || m[0].MountPath != piMountPath || !m[0].ReadOnly {
		t.Errorf("mounts of %s: %+v, want one readOnly at %s", piVolume, m, piMountPath)
	}
	if m := mountsNamed(c, irsaVolume); len(m) != 0 {
		t.Errorf("Pod Identity pod also mounts %s: %+v", irsaVolume, m)
	}
	tok := tokenSource(t, got, piVolume)
	if tok.Audience != piAudience || tok.Path != "eks-pod-identity-token" || deref(tok.ExpirationSeconds) != int64(86400) {
		t.Errorf("token projection = {%q %q %v}, want {%q eks-pod-identity-token 86400}", tok.Audience, tok.Path, deref(tok.ExpirationSeconds), piAudience)
	}
	if got.Labels[piLabel] != "enabled" {
		t.Errorf("labels %v: want %s=enabled", got.Labels, piLabel)
	}
	if got := createPod(t, ctx, client, ns, simplePod("other")); isPI(got) || got.Labels[piLabel] != "" {
		t.Errorf("ServiceAccount not in the file got Pod Identity: %v %v", awsEnv(&got.Spec.Containers[0]), got.Labels)
	}

	// Malformed: counted, last good set kept.
	errorsBefore := webhookMetric(t, ctx, "podiam_webhook_config_reloads_total", `result="error"`, `source="container-credentials"`)
	write(`{"identities":[{"namespace":`)
	testutil.Eventually(t, 20*time.Second, 100*time.Millisecond, "the reload error to be counted", func() (bool, string) {
		n := webhookMetric(t, ctx, "podiam_webhook_config_reloads_total", `result="error"`, `source="container-credentials"`)
		return n > errorsBefore, fmt.Sprintf("errors %v (before %v)", n, errorsBefore)
	})
	if got := createPod(t, ctx, client, ns, simplePod("pi")); !isPI(got) {
		t.Errorf("after a malformed file: Pod Identity lost: %v", awsEnv(&got.Spec.Containers[0]))
	}

	// An empty set: the ServiceAccount falls back to IRSA.
	write(`{"identities":[]}`)
	got = waitPI("pi", false)
	checkIRSA(t, got, irsaExpect{role: role, expiration: 86400}, "app")
	if got.Labels[piLabel] != "" {
		t.Errorf("IRSA pod labelled %s", piLabel)
	}
}
