package main

import (
	"bytes"
	"context"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podiam/podiam/internal/podrequest"
	"github.com/podiam/podiam/internal/policy"
	"github.com/podiam/podiam/test/testcluster"
	"github.com/podiam/podiam/test/testutil"
)

const (
	chkAccount = "111122223333"
	chkIssuer  = "https://oidc.example.com/id/ABC123"
	chkBroker  = "arn:aws:iam::111122223333:role/podiam-broker"
)

// runPodiam runs the command line args through the root command, as main
// does, and returns stdout, stderr and the exit code main would use.
func runPodiam(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRootCommand()
	root.SetArgs(args)
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&errOut)
	err := root.Execute()
	if err != nil && err.Error() != "" {
		errOut.WriteString(err.Error())
	}
	return out.String(), errOut.String(), exitCode(err)
}

// writeTrust runs `podiam policy trust` with args and stores the policy in a
// file of t's temporary directory.
func writeTrust(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := runPodiam(t, "", append([]string{"policy", "trust"}, args...)...)
	if code != 0 {
		t.Fatalf("policy trust %q: exit %d: %s", args, code, errOut)
	}
	f := filepath.Join(t.TempDir(), "trust.json")
	if err := os.WriteFile(f, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// trustCase is a `policy trust` invocation and what it means, for the rule
// the decisions are checked against.
type trustCase struct {
	name        string
	args        []string
	podIdentity bool
	aud         string   // the pinned audience; "" pins none (kOps)
	principal   string   // Pod Identity: the AWS principal; "" for the EKS service
	sas         []string // NAMESPACE/NAME patterns; none: any (Pod Identity only)
}

// checkCase is a `policy check` request.
type checkCase struct {
	name      string
	action    string // "" for IRSA
	sa        string
	issuer    string // IRSA
	account   string // IRSA
	aud       string // IRSA
	principal string // Pod Identity
	tags      []string
}

// with returns c changed by f.
func (c checkCase) with(f func(*checkCase)) checkCase {
	f(&c)
	return c
}

func (c checkCase) args(policyFile string) []string {
	a := []string{"policy", "check", "--trust-policy", policyFile, "--serviceaccount", c.sa}
	if c.action == policy.ActionAssumeRole {
		a = append(a, "--action", c.action)
		if c.principal != "" {
			a = append(a, "--principal", c.principal)
		}
		for _, kv := range c.tags {
			a = append(a, "--tag", kv)
		}
		return a
	}
	return append(a, "--issuer", c.issuer, "--account", c.account, "--audience", c.aud)
}

// allowedByRule is the decision IAM must reach, worked out from what the
// trust policy was asked to allow, not from podiam's output.
func allowedByRule(tc trustCase, c checkCase) bool {
	if tc.podIdentity != (c.action == policy.ActionAssumeRole) {
		return false // the policy allows the other action only
	}
	if !tc.podIdentity {
		return c.issuer == chkIssuer && c.account == chkAccount &&
			(tc.aud == "" || c.aud == tc.aud) && matchesAny(tc.sas, c.sa)
	}
	if c.principal != tc.principal {
		return false
	}
	if len(tc.sas) == 0 {
		return true
	}
	// The session tags decide, and --tag overrides the ServiceAccount's.
	ns, name, _ := strings.Cut(c.sa, "/")
	for _, kv := range c.tags {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case policy.TagNamespace:
			ns = v
		case policy.TagServiceAccount:
			name = v
		}
	}
	return matchesAny(tc.sas, ns+"/"+name)
}

// matchesAny matches NAMESPACE/NAME against patterns part by part; IAM's *
// and ? mean what path.Match's do in names without "/" or "[".
func matchesAny(patterns []string, sa string) bool {
	ns, name, _ := strings.Cut(sa, "/")
	for _, p := range patterns {
		pns, pname, _ := strings.Cut(p, "/")
		okNS, _ := path.Match(pns, ns)
		okName, _ := path.Match(pname, name)
		if okNS && okName {
			return true
		}
	}
	return false
}

// TestPolicyCheckAgreesWithTrust writes policies with `policy trust` and
// checks requests against them with `policy check`: every decision (exit
// code) must be the one the rule gives.
func TestPolicyCheckAgreesWithTrust(t *testing.T) {
	irsa := []string{"--account", chkAccount, "--issuer", chkIssuer}
	trusts := []trustCase{
		{name: "eksctl", args: append([]string{"--serviceaccount", "default/app"}, irsa...), aud: policy.DefaultAudience, sas: []string{"default/app"}},
		{name: "kops", args: append([]string{"--style", "kops", "--serviceaccount", "default/app"}, irsa...), sas: []string{"default/app"}},
		{name: "audience", args: append([]string{"--audience", "api.example.com", "--serviceaccount", "default/app"}, irsa...), aud: "api.example.com", sas: []string{"default/app"}},
		{name: "wildcard namespace", args: append([]string{"--serviceaccount", "team-*/app"}, irsa...), aud: policy.DefaultAudience, sas: []string{"team-*/app"}},
		{name: "several", args: append([]string{"--serviceaccount", "apps/web", "--serviceaccount", "batch/worker"}, irsa...), aud: policy.DefaultAudience, sas: []string{"apps/web", "batch/worker"}},
		{name: "several mixed", args: append([]string{"--serviceaccount", "apps/web", "--serviceaccount", "batch/job-?"}, irsa...), aud: policy.DefaultAudience, sas: []string{"apps/web", "batch/job-?"}},
		{name: "pod identity", args: []string{"--pod-identity"}, podIdentity: true},
		{name: "pod identity sa", args: []string{"--pod-identity", "--serviceaccount", "apps/web"}, podIdentity: true, sas: []string{"apps/web"}},
		{name: "pod identity namespaces", args: []string{"--pod-identity", "--serviceaccount", "ns1/sa1", "--serviceaccount", "ns2/sa2"}, podIdentity: true, sas: []string{"ns1/sa1", "ns2/sa2"}},
		{name: "pod identity broker", args: []string{"--pod-identity", "--principal", chkBroker, "--serviceaccount", "apps/*"}, podIdentity: true, principal: chkBroker, sas: []string{"apps/*"}},
	}
	web := func(name, sa string) checkCase {
		return checkCase{name: name, sa: sa, issuer: chkIssuer, account: chkAccount, aud: policy.DefaultAudience}
	}
	pi := func(name, sa string, tags ...string) checkCase {
		return checkCase{name: name, action: policy.ActionAssumeRole, sa: sa, tags: tags}
	}
	checks := []checkCase{
		web("right sa", "default/app"),
		web("wrong namespace", "other/app"),
		web("wrong name", "default/other"),
		web("wildcard match", "team-a/app"),
		web("wildcard wrong name", "team-a/web"),
		web("first of several", "apps/web"),
		web("second of several", "batch/worker"),
		web("pattern of several", "batch/job-7"),
		web("cross pair", "apps/worker"),
		web("wrong audience", "default/app").with(func(c *checkCase) { c.aud = "api.example.com" }),
		web("kops audience", "default/app").with(func(c *checkCase) { c.aud = policy.KOpsAudience }),
		web("wrong issuer", "default/app").with(func(c *checkCase) { c.issuer = "https://oidc.example.com/id/OTHER" }),
		web("wrong account", "default/app").with(func(c *checkCase) { c.account = "444455556666" }),
		pi("pi right sa", "apps/web"),
		pi("pi other sa", "apps/other"),
		pi("pi first namespace", "ns1/sa1"),
		pi("pi second namespace", "ns2/sa2"),
		pi("pi cross pair", "ns1/sa2"),
		pi("pi cluster tags", "apps/web", "eks-cluster-name=prod", "eks-cluster-arn=arn:aws:eks:eu-west-1:111122223333:cluster/prod"),
		pi("pi other sa's tags", "apps/other", "kubernetes-service-account=web"),
		pi("pi tags of another namespace", "apps/web", "kubernetes-namespace=ns1"),
		pi("pi broker", "apps/web").with(func(c *checkCase) { c.principal = chkBroker }),
		pi("pi other principal", "apps/web").with(func(c *checkCase) { c.principal = "arn:aws:iam::444455556666:role/intruder" }),
	}
	allowed, denied := 0, 0
	for _, tc := range trusts {
		file := writeTrust(t, tc.args...)
		for _, c := range checks {
			t.Run(tc.name+"/"+c.name, func(t *testing.T) {
				out, errOut, code := runPodiam(t, "", c.args(file)...)
				want := exitDenied
				if allowedByRule(tc, c) {
					want = exitAllowed
				}
				if code != want {
					doc, _ := os.ReadFile(file)
					t.Fatalf("exit %d, want %d\npolicy:\n%s\nstdout:\n%s\nstderr:\n%s", code, want, doc, out, errOut)
				}
				if want == exitAllowed {
					allowed++
				} else {
					denied++
				}
			})
		}
	}
	// The matrix must exercise both outcomes a fair number of times.
	if allowed < 20 || denied < 20 {
		t.Errorf("%d allowed and %d denied cases; the matrix lost its balance", allowed, denied)
	}
}

// TestPolicyCheckExplains: a denial names the statement's expected value and
// the request's actual one.
func TestPolicyCheckExplains(t *testing.T) {
	irsaFile := writeTrust(t, "--account", chkAccount, "--issuer", chkIssuer, "--serviceaccount", "default/app")
	piFile := writeTrust(t, "--pod-identity", "--serviceaccount", "apps/web")
	cnFile := writeTrust(t, "--partition", "aws-cn", "--account", chkAccount, "--issuer", chkIssuer, "--serviceaccount", "default/app")
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"wrong sa", []string{"--trust-policy", irsaFile, "--issuer", chkIssuer, "--account", chkAccount, "--serviceaccount", "default/other"},
			[]string{"system:serviceaccount:default:app", "system:serviceaccount:default:other", "DENIED"}},
		{"wrong audience", []string{"--trust-policy", irsaFile, "--issuer", chkIssuer, "--account", chkAccount, "--serviceaccount", "default/app", "--audience", "amazonaws.com"},
			[]string{"sts.amazonaws.com", "amazonaws.com", "oidc.example.com/id/ABC123:aud"}},
		{"wrong issuer", []string{"--trust-policy", irsaFile, "--issuer", "https://other.example.com", "--account", chkAccount, "--serviceaccount", "default/app"},
			[]string{"oidc-provider/oidc.example.com/id/ABC123", "oidc-provider/other.example.com"}},
		{"other partition", []string{"--trust-policy", cnFile, "--issuer", chkIssuer, "--account", chkAccount, "--serviceaccount", "default/app"},
			[]string{"arn:aws-cn:iam::111122223333:oidc-provider/", "arn:aws:iam::111122223333:oidc-provider/"}},
		{"pod identity wrong sa", []string{"--trust-policy", piFile, "--action", "sts:AssumeRole", "--serviceaccount", "apps/other"},
			[]string{"aws:RequestTag/kubernetes-service-account", "web", "other"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := runPodiam(t, "", append([]string{"policy", "check"}, tc.args...)...)
			if code != exitDenied {
				t.Fatalf("exit %d, want %d; stdout:\n%s\nstderr:\n%s", code, exitDenied, out, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output does not contain %q:\n%s", w, out)
				}
			}
		})
	}
}

// TestPolicyCheckTagSession: IAM refuses AssumeRole with session tags unless
// the policy also allows sts:TagSession, so check must deny it too.
func TestPolicyCheckTagSession(t *testing.T) {
	dir := t.TempDir()
	write := func(name, doc string) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	noTag := write("no-tag.json", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow",
		"Principal":{"Service":"pods.eks.amazonaws.com"},"Action":"sts:AssumeRole"}]}`)
	both := write("both.json", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow",
		"Principal":{"Service":"pods.eks.amazonaws.com"},"Action":["sts:AssumeRole","sts:TagSession"]}]}`)
	out, _, code := runPodiam(t, "", "policy", "check", "--trust-policy", noTag, "--action", "sts:AssumeRole", "--serviceaccount", "apps/web")
	if code != exitDenied || !strings.Contains(out, "sts:TagSession") {
		t.Fatalf("without sts:TagSession: exit %d, want %d and the output naming sts:TagSession:\n%s", code, exitDenied, out)
	}
	if out, _, code := runPodiam(t, "", "policy", "check", "--trust-policy", both, "--action", "sts:AssumeRole", "--serviceaccount", "apps/web"); code != exitAllowed {
		t.Fatalf("with sts:TagSession: exit %d, want %d:\n%s", code, exitAllowed, out)
	}
}

// TestPolicyCheckExitCodes: 0 allowed, 1 denied, 2 when no answer can be given.
func TestPolicyCheckExitCodes(t *testing.T) {
	good := writeTrust(t, "--account", chkAccount, "--issuer", chkIssuer, "--serviceaccount", "default/app")
	cn := writeTrust(t, "--partition", "aws-cn", "--account", chkAccount, "--issuer", chkIssuer, "--serviceaccount", "default/app")
	dir := t.TempDir()
	write := func(name, doc string) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	notJSON := write("not.json", "Version: 2012-10-17\n")
	unknownOp := write("op.json", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Federated":"arn:aws:iam::111122223333:oidc-provider/oidc.example.com/id/ABC123"},
		"Action":"sts:AssumeRoleWithWebIdentity","Condition":{"StringEqualz":{"oidc.example.com/id/ABC123:sub":"system:serviceaccount:default:app"}}}]}`)
	req := []string{"--issuer", chkIssuer, "--account", chkAccount, "--serviceaccount", "default/app"}
	policyDoc, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		stdin   string
		args    []string
		want    int
		wantErr string // in stderr
	}{
		{name: "allowed", args: append([]string{"--trust-policy", good}, req...), want: exitAllowed},
		{name: "allowed from stdin", stdin: string(policyDoc), args: append([]string{"--trust-policy", "-"}, req...), want: exitAllowed},
		// A policy is read whole up to 1 MiB and refused beyond, never
		// truncated into a different (or unparsable) document.
		{name: "1 MiB from stdin", stdin: padTo(string(policyDoc), 1<<20), args: append([]string{"--trust-policy", "-"}, req...), want: exitAllowed},
		{name: "over 1 MiB from stdin", stdin: padTo(string(policyDoc), 1<<20+1), args: append([]string{"--trust-policy", "-"}, req...), want: exitNoAnswer, wantErr: "larger than 1 MiB"},
		{name: "1 MiB file", args: append([]string{"--trust-policy", write("1mib.json", padTo(string(policyDoc), 1<<20))}, req...), want: exitAllowed},
		{name: "over 1 MiB file", args: append([]string{"--trust-policy", write("big.json", padTo(string(policyDoc), 1<<20+1))}, req...), want: exitNoAnswer, wantErr: "big.json is larger than 1 MiB"},
		{name: "allowed in another partition", args: append([]string{"--trust-policy", cn, "--partition", "aws-cn"}, req...), want: exitAllowed},
		{name: "denied", args: []string{"--trust-policy", good, "--issuer", chkIssuer, "--account", chkAccount, "--serviceaccount", "default/b"}, want: exitDenied},
		{name: "no policy flag", args: req, want: exitNoAnswer, wantErr: "--trust-policy is required"},
		{name: "missing file", args: append([]string{"--trust-policy", filepath.Join(dir, "nope.json")}, req...), want: exitNoAnswer, wantErr: "nope.json"},
		{name: "not json", args: append([]string{"--trust-policy", notJSON}, req...), want: exitNoAnswer, wantErr: "not.json"},
		{name: "unknown operator", args: append([]string{"--trust-policy", unknownOp}, req...), want: exitNoAnswer, wantErr: "StringEqualz"},
		{name: "unknown flag", args: append([]string{"--trust-policy", good, "--nope"}, req...), want: exitNoAnswer, wantErr: "--nope"},
		{name: "argument", args: append([]string{"--trust-policy", good, "extra"}, req...), want: exitNoAnswer, wantErr: "extra"},
		{name: "no requester", args: []string{"--trust-policy", good, "--issuer", chkIssuer, "--account", chkAccount}, want: exitNoAnswer, wantErr: "exactly one of"},
		{name: "both requesters", args: append([]string{"--trust-policy", good, "--pod", "a/b"}, req...), want: exitNoAnswer, wantErr: "exactly one of"},
		// The request's own checks are podrequest's (requests_test.go);
		// one per kind of request shows that its errors are no answer.
		{name: "bad serviceaccount", args: []string{"--trust-policy", good, "--issuer", chkIssuer, "--account", chkAccount, "--serviceaccount", "app"}, want: exitNoAnswer, wantErr: "NAMESPACE/NAME"},
		{name: "bad action", args: append([]string{"--trust-policy", good, "--action", "sts:GetCallerIdentity"}, req...), want: exitNoAnswer, wantErr: "sts:GetCallerIdentity"},
		{name: "no account", args: []string{"--trust-policy", good, "--issuer", chkIssuer, "--serviceaccount", "default/app"}, want: exitNoAnswer, wantErr: "--account"},
		{name: "no issuer", args: []string{"--trust-policy", good, "--account", chkAccount, "--serviceaccount", "default/app"}, want: exitNoAnswer, wantErr: "--issuer"},
		{name: "bad tag", args: []string{"--trust-policy", good, "--action", "sts:AssumeRole", "--serviceaccount", "a/b", "--tag", "novalue"}, want: exitNoAnswer, wantErr: "KEY=VALUE"},
		{name: "kubeconfig without pod", args: append([]string{"--trust-policy", good, "--kubeconfig", "k"}, req...), want: exitNoAnswer, wantErr: "--kubeconfig is for --pod"},
		{name: "bad pod", args: []string{"--trust-policy", good, "--pod", "just-a-name"}, want: exitNoAnswer, wantErr: "NAMESPACE/NAME"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := runPodiam(t, tc.stdin, append([]string{"policy", "check"}, tc.args...)...)
			if code != tc.want {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.want, out, errOut)
			}
			if !strings.Contains(errOut, tc.wantErr) {
				t.Errorf("stderr %q does not contain %q", errOut, tc.wantErr)
			}
			if tc.want == exitDenied && errOut != "" {
				t.Errorf("a denial is explained on stdout; stderr got %q", errOut)
			}
		})
	}
}

// padTo appends spaces (JSON whitespace) to doc up to n bytes.
func padTo(doc string, n int) string { return doc + strings.Repeat(" ", n-len(doc)) }

// TestPolicyCheckAudienceList: a token's aud may be a list; repeated
// --audience flags put every value in the request, so that a ForAnyValue /
// ForAllValues condition sees them all.
func TestPolicyCheckAudienceList(t *testing.T) {
	const hp = "oidc.example.com/id/ABC123"
	f := filepath.Join(t.TempDir(), "any-aud.json")
	doc := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow",
		"Principal":{"Federated":"arn:aws:iam::111122223333:oidc-provider/` + hp + `"},
		"Action":"sts:AssumeRoleWithWebIdentity",
		"Condition":{"ForAnyValue:StringEquals":{"` + hp + `:aud":"api.example.com"},
			"ForAllValues:StringLike":{"` + hp + `:aud":["api.example.com","sts.amazonaws.com"]}}}]}`
	if err := os.WriteFile(f, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		audiences []string
		want      int
		output    string
	}{
		{"both", []string{"sts.amazonaws.com", "api.example.com"}, exitAllowed, hp + ":aud = sts.amazonaws.com, api.example.com\n"},
		{"the wanted one alone", []string{"api.example.com"}, exitAllowed, hp + ":aud = api.example.com\n"},
		{"without the wanted one", []string{"sts.amazonaws.com"}, exitDenied, hp + ":aud = sts.amazonaws.com\n"},
		{"one not allowed", []string{"api.example.com", "other.example.com"}, exitDenied, hp + ":aud = api.example.com, other.example.com\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"policy", "check", "--trust-policy", f, "--issuer", chkIssuer, "--account", chkAccount, "--serviceaccount", "default/app"}
			for _, a := range tc.audiences {
				args = append(args, "--audience", a)
			}
			out, errOut, code := runPodiam(t, "", args...)
			if code != tc.want {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.want, out, errOut)
			}
			if !strings.Contains(out, tc.output) {
				t.Errorf("output does not show the request's audiences %q:\n%s", tc.output, out)
			}
		})
	}
}

// TestPolicyCheckPodPartition: with --pod, the provider is in the partition
// of the pod's role (AWS_ROLE_ARN) unless --partition says otherwise, so that
// the trust policy of an aws-cn or aws-us-gov role is allowed, and an aws one
// is not. The pods are created the way the webhook mutates them; the check
// reads them, and the cluster's issuer, from a real API server.
func TestPolicyCheckPodPartition(t *testing.T) {
	c := testcluster.StartForTest(t, testcluster.Options{IssuerURL: chkIssuer})
	client, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	ns := testutil.UniqueName("policy-check")
	if err := c.EnsureNamespace(ctx, ns, nil); err != nil {
		t.Fatal(err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: ns}}
	if _, err := client.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, partition := range []string{"aws", "aws-cn", "aws-us-gov"} {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: partition, Namespace: ns}, Spec: corev1.PodSpec{
			ServiceAccountName: "app",
			Volumes: []corev1.Volume{{Name: podrequest.IRSAVolumeName, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
				Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Audience: policy.DefaultAudience, Path: "token"}}}}}}},
			Containers: []corev1.Container{{Name: "app", Image: "app", Env: []corev1.EnvVar{
				{Name: podrequest.RoleARNEnv, Value: "arn:" + partition + ":iam::" + chkAccount + ":role/app"}}}},
		}}
		if _, err := client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	trust := map[string]string{}
	for _, partition := range []string{"aws", "aws-cn", "aws-us-gov"} {
		trust[partition] = writeTrust(t, "--partition", partition, "--account", chkAccount, "--issuer", chkIssuer, "--serviceaccount", ns+"/app")
	}
	for _, tc := range []struct {
		name, pod, policy string
		flags             []string
		want              int
		provider          string // in the output
	}{
		{"aws-cn role, aws-cn policy", "aws-cn", "aws-cn", nil, exitAllowed, "arn:aws-cn:iam::" + chkAccount + ":oidc-provider/"},
		{"aws-us-gov role, aws-us-gov policy", "aws-us-gov", "aws-us-gov", nil, exitAllowed, "arn:aws-us-gov:iam::" + chkAccount + ":oidc-provider/"},
		{"aws role, aws policy", "aws", "aws", nil, exitAllowed, "arn:aws:iam::" + chkAccount + ":oidc-provider/"},
		{"aws-cn role, aws policy", "aws-cn", "aws", nil, exitDenied, "arn:aws-cn:iam::" + chkAccount + ":oidc-provider/"},
		{"aws role, aws-us-gov policy", "aws", "aws-us-gov", nil, exitDenied, "arn:aws:iam::" + chkAccount + ":oidc-provider/"},
		{"--partition wins over the role's", "aws-cn", "aws-us-gov", []string{"--partition", "aws-us-gov"}, exitAllowed, "arn:aws-us-gov:iam::" + chkAccount + ":oidc-provider/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"policy", "check", "--trust-policy", trust[tc.policy], "--pod", ns + "/" + tc.pod, "--kubeconfig", c.Kubeconfig()}, tc.flags...)
			out, errOut, code := runPodiam(t, "", args...)
			if code != tc.want {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.want, out, errOut)
			}
			if !strings.Contains(out, "by Federated "+tc.provider) {
				t.Errorf("the request is not by %s…:\n%s", tc.provider, out)
			}
		})
	}
}
