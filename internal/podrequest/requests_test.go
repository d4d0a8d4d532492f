package podrequest

import (
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podiam/podiam/internal/policy"
)

const (
	testIssuer   = "https://oidc.example.com/id/ABC123"
	testHostPath = "oidc.example.com/id/ABC123"
	testAccount  = "111122223333"
)

// TestServiceAccountFacts: --serviceaccount names one ServiceAccount.
func TestServiceAccountFacts(t *testing.T) {
	for _, tc := range []struct {
		in, wantErr string
	}{
		{in: "apps/web"},
		{in: "web", wantErr: "--serviceaccount: "},
		{in: "apps/*", wantErr: "wildcards are for policy trust"},
		{in: "team-?/web", wantErr: "wildcards are for policy trust"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			f, err := ServiceAccountFacts(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			want := Facts{ServiceAccount: policy.ServiceAccount{Namespace: "apps", Name: "web"}}
			if err != nil || f != want {
				t.Fatalf("got %+v, %v; want %+v", f, err, want)
			}
		})
	}
}

// TestWebIdentityRequests: what the user says wins over what the pod says,
// which wins over the defaults; whatever the source, a wrong value is an
// error saying where it came from.
func TestWebIdentityRequests(t *testing.T) {
	sa := policy.ServiceAccount{Namespace: "apps", Name: "web"}
	flags := Overrides{Account: testAccount, Issuer: testIssuer}
	// pod is what Of and ReadForRequest give for an IRSA pod of role in
	// partition/account, with the cluster's issuer.
	pod := func(role string) Facts {
		f := Of(podWithRole(role), nil)
		f.Issuer = testIssuer
		return f
	}
	for _, tc := range []struct {
		name                  string
		facts                 Facts
		o                     Overrides
		wantProvider, wantErr string
		wantAudiences         []string
		wantSub               string
	}{
		{name: "flags only", facts: Facts{ServiceAccount: sa}, o: flags,
			wantProvider: "arn:aws:iam::111122223333:oidc-provider/" + testHostPath, wantAudiences: []string{policy.DefaultAudience}},
		{name: "partition flag", facts: Facts{ServiceAccount: sa}, o: with(flags, func(o *Overrides) { o.Partition = "aws-cn" }),
			wantProvider: "arn:aws-cn:iam::111122223333:oidc-provider/" + testHostPath, wantAudiences: []string{policy.DefaultAudience}},
		{name: "audience list", facts: Facts{ServiceAccount: sa}, o: with(flags, func(o *Overrides) { o.Audiences = []string{"sts.amazonaws.com", "api.example.com"} }),
			wantProvider: "arn:aws:iam::111122223333:oidc-provider/" + testHostPath, wantAudiences: []string{"sts.amazonaws.com", "api.example.com"}},

		// The role's account and partition: IAM keeps the provider beside the role.
		{name: "pod in aws", facts: pod("arn:aws:iam::444455556666:role/app"),
			wantProvider: "arn:aws:iam::444455556666:oidc-provider/" + testHostPath, wantAudiences: []string{"api.example.com"}},
		{name: "pod in aws-cn", facts: pod("arn:aws-cn:iam::444455556666:role/app"),
			wantProvider: "arn:aws-cn:iam::444455556666:oidc-provider/" + testHostPath, wantAudiences: []string{"api.example.com"}},
		{name: "pod in aws-us-gov", facts: pod("arn:aws-us-gov:iam::444455556666:role/app"),
			wantProvider: "arn:aws-us-gov:iam::444455556666:oidc-provider/" + testHostPath, wantAudiences: []string{"api.example.com"}},
		{name: "flags win over the pod", facts: pod("arn:aws-cn:iam::444455556666:role/app"),
			o:            Overrides{Partition: "aws-us-gov", Account: testAccount, Issuer: "https://other.example.com", Audiences: []string{"sts.amazonaws.com"}},
			wantProvider: "arn:aws-us-gov:iam::111122223333:oidc-provider/other.example.com", wantAudiences: []string{"sts.amazonaws.com"}},
		{name: "account flag keeps the role's partition", facts: pod("arn:aws-cn:iam::444455556666:role/app"), o: Overrides{Account: testAccount},
			wantProvider: "arn:aws-cn:iam::111122223333:oidc-provider/" + testHostPath, wantAudiences: []string{"api.example.com"}},
		{name: "pod without a role, account flag", facts: pod(""), o: Overrides{Account: testAccount},
			wantProvider: "arn:aws:iam::111122223333:oidc-provider/" + testHostPath, wantAudiences: []string{"api.example.com"}},

		{name: "no account", facts: Facts{ServiceAccount: sa}, o: Overrides{Issuer: testIssuer}, wantErr: "--account is required for IRSA"},
		{name: "pod without a role", facts: pod(""), wantErr: "--account is required: pod apps/app-1 has no AWS_ROLE_ARN"},
		{name: "pod whose role is not an ARN", facts: pod("app"), wantErr: `--account is required: the pod's AWS_ROLE_ARN "app" is not an ARN`},
		{name: "bad account flag", facts: Facts{ServiceAccount: sa}, o: with(flags, func(o *Overrides) { o.Account = "1234" }), wantErr: "--account: account \"1234\": want the 12 digits"},
		{name: "bad account of the role", facts: pod("arn:aws:iam::1234:role/app"), wantErr: "the pod's AWS_ROLE_ARN arn:aws:iam::1234:role/app: account \"1234\""},
		{name: "no issuer", facts: Facts{ServiceAccount: sa}, o: Overrides{Account: testAccount}, wantErr: "--issuer is required for IRSA"},
		{name: "http issuer", facts: Facts{ServiceAccount: sa}, o: with(flags, func(o *Overrides) { o.Issuer = "http://oidc.example.com" }), wantErr: "--issuer: "},
		{name: "bad cluster issuer", facts: with(pod("arn:aws:iam::444455556666:role/app"), func(f *Facts) { f.Issuer = "http://oidc.example.com" }), wantErr: "the cluster's issuer: "},
		{name: "bad partition flag", facts: Facts{ServiceAccount: sa}, o: with(flags, func(o *Overrides) { o.Partition = "gcp" }), wantErr: `--partition: partition "gcp"`},
		{name: "bad partition of the role", facts: pod("arn:gcp:iam::444455556666:role/app"), wantErr: `the pod's AWS_ROLE_ARN arn:gcp:iam::444455556666:role/app: partition "gcp"`},
		{name: "empty audience", facts: Facts{ServiceAccount: sa}, o: with(flags, func(o *Overrides) { o.Audiences = []string{""} }), wantErr: "--audience: empty"},
		{name: "tag", facts: Facts{ServiceAccount: sa}, o: with(flags, func(o *Overrides) { o.Tags = []string{"a=b"} }), wantErr: "--tag is for sts:AssumeRole"},
		{name: "principal", facts: Facts{ServiceAccount: sa}, o: with(flags, func(o *Overrides) { o.Principal = "arn:aws:iam::111122223333:role/broker" }), wantErr: "--principal is for sts:AssumeRole"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reqs, err := WebIdentityRequests(tc.facts, tc.o)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1", len(reqs))
			}
			r := reqs[0]
			hp := tc.wantProvider[strings.Index(tc.wantProvider, "oidc-provider/")+len("oidc-provider/"):]
			want := policy.Principal{Type: "Federated", ID: tc.wantProvider}
			if r.Action != policy.ActionAssumeRoleWithWebIdentity || r.Principal != want {
				t.Errorf("request %s by %+v, want %s by %+v", r.Action, r.Principal, policy.ActionAssumeRoleWithWebIdentity, want)
			}
			if got := r.Context[hp+":aud"]; !reflect.DeepEqual(got, tc.wantAudiences) {
				t.Errorf("%s:aud = %q, want %q", hp, got, tc.wantAudiences)
			}
			if got, want := r.Context[hp+":sub"], []string{tc.facts.ServiceAccount.Subject()}; !reflect.DeepEqual(got, want) {
				t.Errorf("%s:sub = %q, want %q", hp, got, want)
			}
		})
	}
}

// TestPodIdentityRequests: the session tags of the facts, --tag adding and
// overriding; the IRSA flags refused.
func TestPodIdentityRequests(t *testing.T) {
	const broker = "arn:aws:iam::111122223333:role/podiam-broker"
	svc := policy.Principal{Type: "Service", ID: policy.PodIdentityService}
	sa := Facts{ServiceAccount: policy.ServiceAccount{Namespace: "apps", Name: "web"}}
	pod := Facts{ServiceAccount: sa.ServiceAccount, PodName: "web-1", PodUID: "uid-1"}
	for _, tc := range []struct {
		name          string
		facts         Facts
		o             Overrides
		wantPrincipal policy.Principal
		wantTags      map[string]string
		wantErr       string
	}{
		{name: "ServiceAccount", facts: sa, wantPrincipal: svc,
			wantTags: map[string]string{"kubernetes-namespace": "apps", "kubernetes-service-account": "web"}},
		{name: "pod", facts: pod, wantPrincipal: svc,
			wantTags: map[string]string{"kubernetes-namespace": "apps", "kubernetes-service-account": "web", "kubernetes-pod-name": "web-1", "kubernetes-pod-uid": "uid-1"}},
		{name: "tags add and override", facts: sa, o: Overrides{Tags: []string{"eks-cluster-name=prod", "kubernetes-service-account=other", "empty="}}, wantPrincipal: svc,
			wantTags: map[string]string{"kubernetes-namespace": "apps", "kubernetes-service-account": "other", "eks-cluster-name": "prod", "empty": ""}},
		{name: "value with =", facts: sa, o: Overrides{Tags: []string{"k=a=b"}}, wantPrincipal: svc,
			wantTags: map[string]string{"kubernetes-namespace": "apps", "kubernetes-service-account": "web", "k": "a=b"}},
		{name: "principal", facts: sa, o: Overrides{Principal: broker}, wantPrincipal: policy.Principal{Type: "AWS", ID: broker},
			wantTags: map[string]string{"kubernetes-namespace": "apps", "kubernetes-service-account": "web"}},
		{name: "tag without =", facts: sa, o: Overrides{Tags: []string{"novalue"}}, wantErr: `--tag "novalue": want KEY=VALUE`},
		{name: "tag without key", facts: sa, o: Overrides{Tags: []string{"=v"}}, wantErr: `--tag "=v": want KEY=VALUE`},
		{name: "issuer", facts: sa, o: Overrides{Issuer: testIssuer}, wantErr: "are for IRSA"},
		{name: "account", facts: sa, o: Overrides{Account: testAccount}, wantErr: "are for IRSA"},
		{name: "partition", facts: sa, o: Overrides{Partition: "aws-cn"}, wantErr: "are for IRSA"},
		{name: "audience", facts: sa, o: Overrides{Audiences: []string{"sts.amazonaws.com"}}, wantErr: "are for IRSA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reqs, err := PodIdentityRequests(tc.facts, tc.o)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(reqs) != 2 || reqs[0].Action != policy.ActionAssumeRole || reqs[1].Action != policy.ActionTagSession {
				t.Fatalf("requests %+v, want %s and %s", reqs, policy.ActionAssumeRole, policy.ActionTagSession)
			}
			for _, r := range reqs {
				if r.Principal != tc.wantPrincipal {
					t.Errorf("%s: principal %+v, want %+v", r.Action, r.Principal, tc.wantPrincipal)
				}
				got := map[string]string{}
				for k, v := range r.Context {
					if tag, ok := strings.CutPrefix(k, "aws:RequestTag/"); ok && len(v) == 1 {
						got[tag] = v[0]
					}
				}
				if !reflect.DeepEqual(got, tc.wantTags) {
					t.Errorf("%s: tags %v, want %v", r.Action, got, tc.wantTags)
				}
			}
		})
	}
}

// TestRequests: --action wins over what the webhook gave the pod, which wins
// over IRSA, the default; an unknown action is an error naming it.
func TestRequests(t *testing.T) {
	sa := policy.ServiceAccount{Namespace: "apps", Name: "web"}
	irsaFlags := Overrides{Account: testAccount, Issuer: testIssuer}
	for _, tc := range []struct {
		name       string
		facts      Facts
		o          Overrides
		wantAction string
		wantErr    string
	}{
		{"default IRSA", Facts{ServiceAccount: sa}, irsaFlags, policy.ActionAssumeRoleWithWebIdentity, ""},
		{"the pod's Pod Identity", Facts{ServiceAccount: sa, Action: policy.ActionAssumeRole}, Overrides{}, policy.ActionAssumeRole, ""},
		{"flag over the pod's Pod Identity", Facts{ServiceAccount: sa, Action: policy.ActionAssumeRole}, with(irsaFlags, func(o *Overrides) { o.Action = policy.ActionAssumeRoleWithWebIdentity }), policy.ActionAssumeRoleWithWebIdentity, ""},
		{"flag over the pod's IRSA", Facts{ServiceAccount: sa, Action: policy.ActionAssumeRoleWithWebIdentity, Audience: "api.example.com"}, Overrides{Action: policy.ActionAssumeRole}, policy.ActionAssumeRole, ""},
		{"unknown action", Facts{ServiceAccount: sa}, with(irsaFlags, func(o *Overrides) { o.Action = "sts:GetCallerIdentity" }), "sts:GetCallerIdentity", `--action "sts:GetCallerIdentity": want`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Action(tc.facts, tc.o); got != tc.wantAction {
				t.Errorf("Action = %q, want %q", got, tc.wantAction)
			}
			reqs, err := Requests(tc.facts, tc.o)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if reqs[0].Action != tc.wantAction {
				t.Fatalf("first request %s, want %s", reqs[0].Action, tc.wantAction)
			}
		})
	}
}

// with returns v changed by f.
func with[T any](v T, f func(*T)) T {
	f(&v)
	return v
}

// podWithRole is pod apps/app-1 as the webhook mutates it for IRSA with
// audience api.example.com and role (none when "").
func podWithRole(role string) *corev1.Pod {
	c := corev1.Container{Name: "app"}
	if role != "" {
		c.Env = []corev1.EnvVar{{Name: RoleARNEnv, Value: role}}
	}
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "app-1", UID: "uid-1"}, Spec: corev1.PodSpec{
		ServiceAccountName: "app",
		Volumes:            []corev1.Volume{tokenVolume(IRSAVolumeName, "api.example.com")},
		Containers:         []corev1.Container{c},
	}}
}
