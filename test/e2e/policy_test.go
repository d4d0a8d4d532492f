package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podiam/podiam/internal/oidc"
	"github.com/podiam/podiam/test/testutil"
)

// TestPolicyCheckPod: `podiam policy check --pod` reads a pod the webhook
// mutated (its ServiceAccount, the audience of its token volume, its role) and
// the cluster's issuer, and decides against trust policies that `podiam
// policy trust` wrote: allowed (exit 0) for the pod's ServiceAccount and
// audience, denied (exit 1) with the expected and actual values otherwise.
func TestPolicyCheckPod(t *testing.T) {
	t.Parallel()
	logsOnFailure(t, "shared", shared)
	ctx := ctxFor(t, time.Minute)
	ns := testutil.UniqueName("e2e-policy")
	newNamespace(t, ctx, ns, nil)
	const (
		account  = "111122223333"
		role     = "arn:aws:iam::" + account + ":role/app"
		audience = "sts.example.com"
	)
	newServiceAccount(t, ctx, ns, "app", map[string]string{annoRoleARN: role, annoAudience: audience})
	pod := createPod(t, ctx, client, ns, simplePod("app"))
	if got := tokenSource(t, pod, irsaVolume).Audience; got != audience || roleOf(pod) != role {
		t.Fatalf("the webhook did not mutate pod %s as expected: audience %q, role %q", pod.Name, got, roleOf(pod))
	}
	issuer := cluster.IssuerURL()
	dir := t.TempDir()
	trust := func(name string, args ...string) string {
		t.Helper()
		out, errOut, code := runPodiamEnv(t, ctx, nil, append([]string{"policy", "trust", "--account", account, "--issuer", issuer}, args...)...)
		if code != 0 {
			t.Fatalf("policy trust %q: exit %d: %s", args, code, errOut)
		}
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(out), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	hostPath := oidc.HostPath(issuer)
	own := "system:serviceaccount:" + ns + ":app"
	other := "system:serviceaccount:" + ns + ":other"

	for _, tc := range []struct {
		name   string
		policy string
		want   int
		output []string
	}{
		{"own ServiceAccount", trust("own.json", "--serviceaccount", ns+"/app", "--audience", audience), 0,
			[]string{"ALLOWED", role, own, hostPath + ":aud = " + audience}},
		{"another ServiceAccount", trust("other.json", "--serviceaccount", ns+"/other", "--audience", audience), 1,
			[]string{"DENIED", own, other}},
		{"the default audience", trust("default-aud.json", "--serviceaccount", ns+"/app"), 1,
			[]string{"DENIED", `"sts.amazonaws.com"`, `"` + audience + `"`}},
		{"every ServiceAccount of the namespace", trust("wildcard.json", "--serviceaccount", ns+"/*", "--audience", audience), 0,
			[]string{"ALLOWED"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := runPodiamEnv(t, ctx, nil, "policy", "check", "--trust-policy", tc.policy,
				"--pod", ns+"/"+pod.Name, "--kubeconfig", cluster.Kubeconfig())
			if code != tc.want {
				doc, _ := os.ReadFile(tc.policy)
				t.Fatalf("exit %d, want %d\npolicy:\n%s\nstdout:\n%s\nstderr:\n%s", code, tc.want, doc, out, errOut)
			}
			for _, w := range tc.output {
				if !strings.Contains(out, w) {
					t.Errorf("output does not contain %q:\n%s", w, out)
				}
			}
		})
	}

	// A pod that does not exist is no answer (2), not a denial.
	_, errOut, code := runPodiamEnv(t, ctx, nil, "policy", "check", "--trust-policy", filepath.Join(dir, "own.json"),
		"--pod", ns+"/missing", "--kubeconfig", cluster.Kubeconfig())
	if code != 2 || !strings.Contains(errOut, "missing") {
		t.Fatalf("missing pod: exit %d, stderr %q; want 2 naming the pod", code, errOut)
	}
}
