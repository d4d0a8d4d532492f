package policy

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

func mustParse(t testing.TB, doc string) *Policy {
	t.Helper()
	p, err := Parse([]byte(doc))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return p
}

func mustParseFile(t testing.TB, name string) *Policy {
	t.Helper()
	doc, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return mustParse(t, string(doc))
}

// TestPrincipals follows IAM's Principal element: an account (id or :root)
// names every principal of the account, a role ARN names the role and its
// sessions, Federated and Service names compare exactly, "*" and
// {"AWS": "*"} name everyone.
func TestPrincipals(t *testing.T) {
	const acct = "111122223333"
	tests := []struct {
		name, principal string
		caller          Principal
		allowed         bool
	}{
		{"account id, role", `{"AWS":"111122223333"}`, Principal{"AWS", "arn:aws:iam::111122223333:role/app"}, true},
		{"account id, user", `{"AWS":"111122223333"}`, Principal{"AWS", "arn:aws:iam::111122223333:user/alice"}, true},
		{"account id, session", `{"AWS":"111122223333"}`, Principal{"AWS", "arn:aws:sts::111122223333:assumed-role/app/s1"}, true},
		{"account id, other account", `{"AWS":"111122223333"}`, Principal{"AWS", "arn:aws:iam::444455556666:role/app"}, false},
		{"root ARN, role", `{"AWS":"arn:aws:iam::111122223333:root"}`, Principal{"AWS", "arn:aws:iam::111122223333:role/app"}, true},
		{"root ARN, other account", `{"AWS":"arn:aws:iam::111122223333:root"}`, Principal{"AWS", "arn:aws:iam::444455556666:root"}, false},
		{"role ARN, same role", `{"AWS":"arn:aws:iam::111122223333:role/app"}`, Principal{"AWS", "arn:aws:iam::111122223333:role/app"}, true},
		{"role ARN, its session", `{"AWS":"arn:aws:iam::111122223333:role/app"}`, Principal{"AWS", "arn:aws:sts::111122223333:assumed-role/app/s1"}, true},
		{"role ARN with path, its session", `{"AWS":"arn:aws:iam::111122223333:role/team/app"}`, Principal{"AWS", "arn:aws:sts::111122223333:assumed-role/app/s1"}, true},
		{"role ARN, other role's session", `{"AWS":"arn:aws:iam::111122223333:role/app"}`, Principal{"AWS", "arn:aws:sts::111122223333:assumed-role/app2/s1"}, false},
		{"role ARN, same name other account", `{"AWS":"arn:aws:iam::111122223333:role/app"}`, Principal{"AWS", "arn:aws:sts::444455556666:assumed-role/app/s1"}, false},
		{"role ARN, other role", `{"AWS":"arn:aws:iam::111122223333:role/app"}`, Principal{"AWS", "arn:aws:iam::111122223333:role/admin"}, false},
		{"role ARN, user", `{"AWS":"arn:aws:iam::111122223333:role/app"}`, Principal{"AWS", "arn:aws:iam::111122223333:user/app"}, false},
		{"user ARN, account caller", `{"AWS":"arn:aws:iam::111122223333:user/alice"}`, Principal{"AWS", acct}, false},
		{"list of AWS principals", `{"AWS":["444455556666","arn:aws:iam::111122223333:role/app"]}`, Principal{"AWS", "arn:aws:iam::111122223333:role/app"}, true},
		{"Federated exact", `{"Federated":"arn:aws:iam::111122223333:oidc-provider/o.example.com"}`, Principal{"Federated", "arn:aws:iam::111122223333:oidc-provider/o.example.com"}, true},
		{"Federated other provider", `{"Federated":"arn:aws:iam::111122223333:oidc-provider/o.example.com"}`, Principal{"Federated", "arn:aws:iam::111122223333:oidc-provider/o.example.com/x"}, false},
		{"Federated is not AWS", `{"AWS":"111122223333"}`, Principal{"Federated", "arn:aws:iam::111122223333:oidc-provider/o.example.com"}, false},
		{"Service", `{"Service":"pods.eks.amazonaws.com"}`, Principal{"Service", "pods.eks.amazonaws.com"}, true},
		{"Service other", `{"Service":["ec2.amazonaws.com","eks.amazonaws.com"]}`, Principal{"Service", "pods.eks.amazonaws.com"}, false},
		{"wildcard", `"*"`, Principal{"Federated", "arn:aws:iam::111122223333:oidc-provider/o.example.com"}, true},
		{"AWS wildcard names everyone", `{"AWS":"*"}`, Principal{"Service", "pods.eks.amazonaws.com"}, true},
		// An account id is unique only within a partition.
		{"root ARN, same account in aws-cn", `{"AWS":"arn:aws:iam::111122223333:root"}`, Principal{"AWS", "arn:aws-cn:iam::111122223333:role/app"}, false},
		{"aws-cn root ARN, aws caller", `{"AWS":"arn:aws-cn:iam::111122223333:root"}`, Principal{"AWS", "arn:aws:sts::111122223333:assumed-role/app/s1"}, false},
		{"aws-cn root ARN, aws-cn caller", `{"AWS":"arn:aws-cn:iam::111122223333:root"}`, Principal{"AWS", "arn:aws-cn:iam::111122223333:role/app"}, true},
		{"account id, aws-us-gov caller", `{"AWS":"111122223333"}`, Principal{"AWS", "arn:aws-us-gov:iam::111122223333:role/app"}, true},
		{"root ARN, account id caller", `{"AWS":"arn:aws:iam::111122223333:root"}`, Principal{"AWS", acct}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustParse(t, `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":`+tt.principal+`,"Action":"sts:*"}]}`)
			d, err := p.Evaluate(Request{Action: "sts:AssumeRole", Principal: tt.caller})
			if err != nil {
				t.Fatal(err)
			}
			if d.Allowed != tt.allowed {
				t.Errorf("Allowed = %v, want %v\n%s", d.Allowed, tt.allowed, d.Explain())
			}
		})
	}
}

// TestActions: wildcards, case-insensitive names, NotAction.
func TestActions(t *testing.T) {
	tests := []struct {
		name, actions, action string
		allowed               bool
	}{
		{"exact", `"Action":"sts:AssumeRoleWithWebIdentity"`, "sts:AssumeRoleWithWebIdentity", true},
		{"case-insensitive", `"Action":"STS:assumerolewithwebidentity"`, "sts:AssumeRoleWithWebIdentity", true},
		{"AssumeRole is not AssumeRoleWithWebIdentity", `"Action":"sts:AssumeRole"`, "sts:AssumeRoleWithWebIdentity", false},
		{"star", `"Action":"sts:Assume*"`, "sts:AssumeRoleWithWebIdentity", true},
		{"all", `"Action":"*"`, "sts:TagSession", true},
		{"question mark", `"Action":"sts:AssumeRol?"`, "sts:AssumeRole", true},
		{"question mark is one character", `"Action":"sts:AssumeRol?"`, "sts:AssumeRoles", false},
		{"other service", `"Action":"s3:*"`, "sts:AssumeRole", false},
		{"list", `"Action":["sts:TagSession","sts:AssumeRole"]`, "sts:AssumeRole", true},
		{"NotAction excludes", `"NotAction":"sts:TagSession"`, "sts:TagSession", false},
		{"NotAction allows the rest", `"NotAction":"sts:TagSession"`, "sts:AssumeRole", true},
		{"NotAction wildcard", `"NotAction":["sts:Assume*"]`, "sts:AssumeRoleWithSAML", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustParse(t, `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":"*",`+tt.actions+`}}`)
			d, err := p.Evaluate(Request{Action: tt.action, Principal: caller})
			if err != nil {
				t.Fatal(err)
			}
			if d.Allowed != tt.allowed {
				t.Errorf("Allowed = %v, want %v", d.Allowed, tt.allowed)
			}
		})
	}
}

// TestEffects: an explicit Deny wins over any Allow, in any order; no
// matching Allow is an implicit deny.
func TestEffects(t *testing.T) {
	allow := `{"Sid":"A","Effect":"Allow","Principal":"*","Action":"sts:AssumeRole"}`
	deny := `{"Sid":"D","Effect":"Deny","Principal":"*","Action":"sts:AssumeRole"}`
	denyOther := `{"Sid":"D","Effect":"Deny","Principal":"*","Action":"sts:TagSession"}`
	allow2 := `{"Sid":"B","Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"sts:*"}`
	tests := []struct {
		name, statements string
		reason           Reason
		sid              string
	}{
		{"allow", allow, ReasonAllowed, "A"},
		{"deny after allow", allow + "," + deny, ReasonExplicitDeny, "D"},
		{"deny before allow", deny + "," + allow, ReasonExplicitDeny, "D"},
		{"deny of another action", allow + "," + denyOther, ReasonAllowed, "A"},
		{"first allow is reported", allow + "," + allow2, ReasonAllowed, "A"},
		{"only deny statements", denyOther, ReasonImplicitDeny, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustParse(t, `{"Version":"2012-10-17","Statement":[`+tt.statements+`]}`)
			d, err := p.Evaluate(Request{Action: "sts:AssumeRole", Principal: caller})
			if err != nil {
				t.Fatal(err)
			}
			if d.Reason != tt.reason || d.Allowed != (tt.reason == ReasonAllowed) {
				t.Fatalf("decision = %v (%v), want %v", d.Reason, d.Allowed, tt.reason)
			}
			if tt.sid != "" && (d.Statement == nil || d.Statement.Sid != tt.sid) {
				t.Errorf("statement = %+v, want Sid %q", d.Statement, tt.sid)
			}
		})
	}
}

// TestEvaluateErrors: what IAM refuses in a trust policy, and requests that
// cannot be evaluated, are errors rather than decisions.
func TestEvaluateErrors(t *testing.T) {
	tests := []struct {
		name, doc string
		req       Request
		want      string
	}{
		{"NotPrincipal", `{"Statement":{"Effect":"Deny","NotPrincipal":{"AWS":"111122223333"},"Action":"sts:AssumeRole"}}`, Request{Action: "sts:AssumeRole", Principal: caller}, "Statement.NotPrincipal: IAM does not allow NotPrincipal in a role trust policy"},
		{"no Principal", `{"Statement":[{"Effect":"Allow","Principal":"*","Action":"sts:AssumeRole"},{"Effect":"Allow","Action":"sts:AssumeRole"}]}`, Request{Action: "sts:AssumeRole", Principal: caller}, "Statement[1].Principal: missing"},
		{"Resource", `{"Statement":{"Effect":"Allow","Principal":"*","Action":"sts:AssumeRole","Resource":"*"}}`, Request{Action: "sts:AssumeRole", Principal: caller}, "Has prohibited field Resource"},
		{"NotResource", `{"Statement":{"Effect":"Allow","Principal":"*","Action":"sts:AssumeRole","NotResource":"*"}}`, Request{Action: "sts:AssumeRole", Principal: caller}, "Has prohibited field Resource"},
		{"no action", `{"Statement":{"Effect":"Allow","Principal":"*","Action":"sts:AssumeRole"}}`, Request{Principal: caller}, "request has no action"},
		{"action without service", `{"Statement":{"Effect":"Allow","Principal":"*","Action":"sts:AssumeRole"}}`, Request{Action: "AssumeRole", Principal: caller}, "has no service prefix"},
		{"key STS never sets, absent", `{"Statement":{"Effect":"Deny","Principal":"*","Action":"sts:AssumeRole","Condition":{"StringNotEquals":{"namespace":"payments"}}}}`, Request{Action: "sts:AssumeRole", Principal: caller}, `Statement.Condition.StringNotEquals.namespace: condition key "namespace" is not a key STS sets`},
		{"another service's key, absent", `{"Statement":[{"Effect":"Allow","Principal":"*","Action":"sts:AssumeRole","Condition":{"StringNotLike":{"s3:prefix":"x"}}}]}`, Request{Action: "sts:AssumeRole", Principal: caller}, `Statement[0].Condition.StringNotLike.s3:prefix: condition key "s3:prefix" is not a key STS sets`},
		{"principal type", `{"Statement":{"Effect":"Allow","Principal":"*","Action":"sts:AssumeRole"}}`, Request{Action: "sts:AssumeRole", Principal: Principal{Type: "User", ID: "x"}}, `request principal type "User"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustParse(t, tt.doc)
			d, err := p.Evaluate(tt.req)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Evaluate = %+v, %v; want error containing %q", d, err, tt.want)
			}
			if d.Allowed {
				t.Error("an error came with Allowed")
			}
		})
	}
}

// TestEvaluateHandBuilt: a Policy built in Go rather than parsed is
// compiled on the fly, without being modified.
func TestEvaluateHandBuilt(t *testing.T) {
	p := &Policy{Version: Version2012, Statements: []Statement{{
		Effect:    Allow,
		Principal: &Principals{ByType: []PrincipalValues{{Type: "Service", Values: Values{List: []string{"pods.eks.amazonaws.com"}}}}},
		Action:    Values{List: []string{"sts:AssumeRole"}},
		Condition: []Condition{{Operator: "StringEquals", Key: "aws:RequestTag/kubernetes-namespace", Values: Values{List: []string{"payments"}}}},
	}}}
	svc := Principal{Type: "Service", ID: "pods.eks.amazonaws.com"}
	for ns, want := range map[string]bool{"payments": true, "other": false} {
		d, err := p.Evaluate(AssumeRoleRequest(svc, map[string]string{"kubernetes-namespace": ns}, nil))
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed != want {
			t.Errorf("namespace %s: Allowed = %v, want %v", ns, d.Allowed, want)
		}
	}
	if p.compiled || p.Statements[0].Condition[0].cc != nil {
		t.Error("Evaluate modified a hand-built policy")
	}
	bad := &Policy{Statements: []Statement{{Effect: Allow, Principal: &Principals{Wildcard: true}, Action: Values{List: []string{"sts:AssumeRole"}},
		Condition: []Condition{{Operator: "StringEqualsMaybe", Key: "k", Values: Values{List: []string{"v"}}}}}}}
	if _, err := bad.Evaluate(Request{Action: "sts:AssumeRole", Principal: caller}); err == nil || !strings.Contains(err.Error(), `unknown condition operator "StringEqualsMaybe"`) {
		t.Errorf("unknown operator in a hand-built policy: %v", err)
	}
}

// TestRealPolicies evaluates the policies eksctl, kOps, the
// terraform-aws-modules IRSA modules and the AWS documentation write
// (testdata/) against the requests AWS would make.
func TestRealPolicies(t *testing.T) {
	eks := "https://oidc.eks.us-west-2.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
	tf := "https://oidc.eks.eu-west-1.amazonaws.com/id/5C54DDF35ER19312844C7333374CC09D"
	docs := "https://oidc.eks.region-code.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
	kops := "https://oidc.example.com/kops-cluster"
	blue := "https://issuer.example.net/clusters/blue"
	sts := []string{"sts.amazonaws.com"}
	pods := Principal{Type: "Service", ID: "pods.eks.amazonaws.com"}
	podTags := map[string]string{"kubernetes-namespace": "payments", "kubernetes-service-account": "ledger"}
	withSource := func(r Request, arn string) Request { r.Context["aws:SourceArn"] = []string{arn}; return r }
	with := func(r Request, keys map[string]string) Request {
		for k, v := range keys {
			r.Context[k] = []string{v}
		}
		return r
	}
	github := "https://token.actions.githubusercontent.com"
	ghDeploy := "octo-org/deploy-workflows/.github/workflows/deploy.yml@refs/heads/main"
	circleOrg := "3a0c2e0b-5cf1-4d8e-9a57-3b6c2f3e9d41"
	circle := "https://oidc.circleci.com/org/" + circleOrg
	circleProject := "oidc.circleci.com/org/" + circleOrg + ":oidc.circleci.com/project-id"
	circleSub := "org/" + circleOrg + "/project/8c7f6d1e-2b3a-4c5d-8e9f-0a1b2c3d4e5f/user/5e6f7a8b-0000-4000-8000-000000000001"
	idcApp := Principal{Type: "AWS", ID: "arn:aws:sts::111122223333:assumed-role/IdentityEnhancedApp/s1"}
	idc := func(action, user string) Request {
		r := with(AssumeRoleRequest(idcApp, nil, nil), map[string]string{
			"sts:RequestContextProviders":             "arn:aws:iam::aws:contextProvider/IdentityCenter",
			"sts:RequestContext/identitystore:UserId": user,
		})
		r.Action = action
		return r
	}
	chatbot := Principal{Type: "Service", ID: "chatbot.amazonaws.com"}
	saml := func(org string) Request {
		return Request{Action: "sts:AssumeRoleWithSAML", Principal: Principal{Type: "Federated", ID: "arn:aws:iam::111122223333:saml-provider/ExampleUniversityIdP"},
			Context: map[string][]string{"saml:aud": {"https://signin.aws.amazon.com/saml"}, "saml:eduorglegalname": {org}}}
	}
	tests := []struct {
		file    string
		name    string
		req     Request
		allowed bool
	}{
		{"eksctl.json", "its ServiceAccount", WebIdentityRequest("", "111122223333", eks, "system:serviceaccount:backend:s3-reader", sts), true},
		{"eksctl.json", "another ServiceAccount", WebIdentityRequest("", "111122223333", eks, "system:serviceaccount:backend:other", sts), false},
		{"eksctl.json", "kOps audience", WebIdentityRequest("", "111122223333", eks, "system:serviceaccount:backend:s3-reader", []string{"amazonaws.com"}), false},
		{"eksctl.json", "other account's provider", WebIdentityRequest("", "444455556666", eks, "system:serviceaccount:backend:s3-reader", sts), false},
		{"eksctl.json", "AssumeRole", AssumeRoleRequest(caller, nil, nil), false},
		{"kops.json", "any audience", WebIdentityRequest("", "111122223333", kops, "system:serviceaccount:kube-system:dns-controller", []string{"amazonaws.com"}), true},
		{"kops.json", "other namespace", WebIdentityRequest("", "111122223333", kops, "system:serviceaccount:default:dns-controller", []string{"amazonaws.com"}), false},
		{"terraform-irsa-eks.json", "first ServiceAccount", WebIdentityRequest("", "111122223333", tf, "system:serviceaccount:kube-system:aws-load-balancer-controller", sts), true},
		{"terraform-irsa-eks.json", "second ServiceAccount", WebIdentityRequest("", "111122223333", tf, "system:serviceaccount:ingress:aws-load-balancer-controller", sts), true},
		{"terraform-irsa-eks.json", "no aud", WebIdentityRequest("", "111122223333", tf, "system:serviceaccount:ingress:aws-load-balancer-controller", nil), false},
		{"terraform-assumable-role-oidc-wildcard.json", "team namespace", WebIdentityRequest("", "111122223333", blue, "system:serviceaccount:team-a:api", sts), true},
		{"terraform-assumable-role-oidc-wildcard.json", "not a team namespace", WebIdentityRequest("", "111122223333", blue, "system:serviceaccount:default:api", sts), false},
		{"aws-docs-irsa-namespace.json", "namespace", WebIdentityRequest("", "111122223333", docs, "system:serviceaccount:my-namespace:anything", sts), true},
		{"aws-docs-irsa-namespace.json", "other namespace", WebIdentityRequest("", "111122223333", docs, "system:serviceaccount:my-namespace2:x", sts), false},
		{"pod-identity.json", "AssumeRole", AssumeRoleRequest(pods, podTags, nil), true},
		{"pod-identity.json", "TagSession", func() Request { r := AssumeRoleRequest(pods, podTags, nil); r.Action = ActionTagSession; return r }(), true},
		{"pod-identity.json", "another service", AssumeRoleRequest(Principal{Type: "Service", ID: "ec2.amazonaws.com"}, nil, nil), false},
		{"pod-identity.json", "web identity", WebIdentityRequest("", "111122223333", eks, "system:serviceaccount:a:b", sts), false},
		{"pod-identity-namespace-tags.json", "its ServiceAccount", withSource(AssumeRoleRequest(pods, podTags, nil), "arn:aws:eks:us-west-2:111122223333:cluster/prod"), true},
		{"pod-identity-namespace-tags.json", "other cluster", withSource(AssumeRoleRequest(pods, podTags, nil), "arn:aws:eks:us-west-2:111122223333:cluster/dev"), false},
		{"pod-identity-namespace-tags.json", "other namespace", withSource(AssumeRoleRequest(pods, map[string]string{"kubernetes-namespace": "default", "kubernetes-service-account": "ledger"}, nil), "arn:aws:eks:us-west-2:111122223333:cluster/prod"), false},
		{"aws-docs-cross-account-external-id.json", "with external id", func() Request {
			r := AssumeRoleRequest(Principal{Type: "AWS", ID: "arn:aws:sts::444455556666:assumed-role/partner/s"}, nil, nil)
			r.Context["sts:ExternalId"] = []string{"Unique ID Assigned by Example Corp"}
			return r
		}(), true},
		{"aws-docs-cross-account-external-id.json", "without external id", AssumeRoleRequest(Principal{Type: "AWS", ID: "arn:aws:iam::444455556666:user/bob"}, nil, nil), false},
		{"aws-docs-confused-deputy.json", "from the account", func() Request {
			r := AssumeRoleRequest(Principal{Type: "Service", ID: "config.amazonaws.com"}, nil, nil)
			r.Context["aws:SourceAccount"] = []string{"111122223333"}
			r.Context["aws:SourceArn"] = []string{"arn:aws:config:us-east-1:111122223333:config-rule/r1"}
			return r
		}(), true},
		{"aws-docs-confused-deputy.json", "confused deputy", func() Request {
			r := AssumeRoleRequest(Principal{Type: "Service", ID: "config.amazonaws.com"}, nil, nil)
			r.Context["aws:SourceAccount"] = []string{"111122223333"}
			r.Context["aws:SourceArn"] = []string{"arn:aws:config:us-east-1:999988887777:config-rule/r1"}
			return r
		}(), false},
		{"deny-namespace.json", "application namespace", WebIdentityRequest("", "111122223333", "https://oidc.example.com/c1", "system:serviceaccount:shop:api", sts), true},
		// Third-party policies with the provider-specific and newer keys IAM documents.
		{"github-actions-job-workflow-ref.json", "reusable deploy workflow", with(WebIdentityRequest("", "111122223333", github, "repo:octo-org/shop:environment:production", sts), map[string]string{"token.actions.githubusercontent.com:job_workflow_ref": ghDeploy, "token.actions.githubusercontent.com:repository_owner_id": "1234567"}), true},
		{"github-actions-job-workflow-ref.json", "another workflow", with(WebIdentityRequest("", "111122223333", github, "repo:octo-org/shop:environment:production", sts), map[string]string{"token.actions.githubusercontent.com:job_workflow_ref": "octo-org/shop/.github/workflows/ci.yml@refs/heads/main", "token.actions.githubusercontent.com:repository_owner_id": "1234567"}), false},
		{"github-actions-job-workflow-ref.json", "no job_workflow_ref", WebIdentityRequest("", "111122223333", github, "repo:octo-org/shop:environment:production", sts), false},
		{"identity-center-set-context.json", "AssumeRole for the user", idc("sts:AssumeRole", "906701b4-5041-70a4-3a35-f0c1e2ad1f9e"), true},
		{"identity-center-set-context.json", "SetContext for the user", idc("sts:SetContext", "906701b4-5041-70a4-3a35-f0c1e2ad1f9e"), true},
		{"identity-center-set-context.json", "another user", idc("sts:AssumeRole", "00000000-0000-0000-0000-000000000000"), false},
		{"chatbot-source-arn.json", "ops channel", with(AssumeRoleRequest(chatbot, nil, nil), map[string]string{"aws:ChatbotSourceArn": "arn:aws:chatbot::111122223333:chat-configuration/slack-channel/ops-alerts"}), true},
		{"chatbot-source-arn.json", "another channel", with(AssumeRoleRequest(chatbot, nil, nil), map[string]string{"aws:ChatbotSourceArn": "arn:aws:chatbot::111122223333:chat-configuration/slack-channel/dev"}), false},
		{"saml-eduorglegalname.json", "its university", saml("Example University"), true},
		{"saml-eduorglegalname.json", "another university", saml("Other University"), false},
		{"circleci-project-id.json", "its project", with(WebIdentityRequest("", "111122223333", circle, circleSub, []string{circleOrg}), map[string]string{circleProject: "8c7f6d1e-2b3a-4c5d-8e9f-0a1b2c3d4e5f"}), true},
		{"circleci-project-id.json", "another project", with(WebIdentityRequest("", "111122223333", circle, circleSub, []string{circleOrg}), map[string]string{circleProject: "11111111-2222-4333-8444-555555555555"}), false},
		{"deny-namespace.json", "kube-system denied", WebIdentityRequest("", "111122223333", "https://oidc.example.com/c1", "system:serviceaccount:kube-system:api", sts), false},
	}
	for _, tt := range tests {
		t.Run(tt.file+"/"+tt.name, func(t *testing.T) {
			d, err := mustParseFile(t, tt.file).Evaluate(tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if d.Allowed != tt.allowed {
				t.Errorf("Allowed = %v, want %v\n%s", d.Allowed, tt.allowed, d.Explain())
			}
			// Every key of these policies is documented: none is flagged.
			if x := d.Explain(); strings.Contains(x, "not a key podiam knows") {
				t.Errorf("a documented key is flagged:\n%s", x)
			}
		})
	}
}

// BenchmarkEvaluate is the local STS's per-request cost: an eksctl policy
// and a web identity request, allowed and denied.
func BenchmarkEvaluate(b *testing.B) {
	p := mustParseFile(b, "eksctl.json")
	issuer := "https://oidc.eks.us-west-2.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
	for _, bc := range []struct {
		name string
		sub  string
	}{{"allowed", "system:serviceaccount:backend:s3-reader"}, {"denied", "system:serviceaccount:backend:other"}} {
		r := WebIdentityRequest("", "111122223333", issuer, bc.sub, []string{"sts.amazonaws.com"})
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.Evaluate(r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// FuzzEvaluate: any condition value, key and request value evaluate
// without a panic, and never allow when the principal does not match.
func FuzzEvaluate(f *testing.F) {
	f.Add("StringLike", "k", "a*b?c", "aXbYc")
	f.Add("ForAllValues:StringNotEqualsIgnoreCase", "aws:TagKeys", "x", "X")
	f.Add("ArnLike", "aws:SourceArn", "arn:aws:eks:*:1:cluster/*", "arn:aws:eks:r:1:cluster/p")
	f.Add("StringEquals", "k", "${aws:RequestTag/x, 'd'}", "d")
	f.Add("IpAddress", "aws:SourceIp", "10.0.0.0/8", "10.0.0.1")
	f.Add("DateLessThan", "aws:CurrentTime", "2030-01-01T00:00:00Z", "1700000000")
	f.Fuzz(func(t *testing.T, op, key, value, reqValue string) {
		doc := `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"sts:AssumeRole","Condition":{` +
			quoteJSON(op) + `:{` + quoteJSON(key) + `:` + quoteJSON(value) + `}}}}`
		p, err := Parse([]byte(doc))
		if err != nil {
			return
		}
		ctx := map[string][]string{key: {reqValue}, "aws:RequestTag/x": {reqValue}}
		if _, err := p.Evaluate(Request{Action: "sts:AssumeRole", Principal: caller, Context: ctx}); err != nil {
			t.Fatalf("a parsed policy failed to evaluate: %v", err)
		}
		other := Principal{Type: "AWS", ID: "arn:aws:iam::444455556666:role/x"}
		d, err := p.Evaluate(Request{Action: "sts:AssumeRole", Principal: other, Context: ctx})
		if err != nil || d.Allowed {
			t.Fatalf("another account: %+v, %v", d, err)
		}
		_ = d.Explain()
	})
}

func quoteJSON(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20:
			b.WriteString(`\u00`)
			b.WriteByte("0123456789abcdef"[r>>4])
			b.WriteByte("0123456789abcdef"[r&15])
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// TestEvaluateConcurrent: the local STS evaluates one parsed policy from
// many requests at once; Evaluate must not write to it (run with -race).
func TestEvaluateConcurrent(t *testing.T) {
	p := mustParseFile(t, "terraform-assumable-role-oidc-wildcard.json")
	issuer := "https://issuer.example.net/clusters/blue"
	done := make(chan error)
	for i := range 8 {
		go func() {
			sub := "system:serviceaccount:team-a:api"
			if i%2 == 1 {
				sub = "system:serviceaccount:default:api"
			}
			for range 200 {
				d, err := p.Evaluate(WebIdentityRequest("", "111122223333", issuer, sub, []string{"sts.amazonaws.com"}))
				if err != nil || d.Allowed != (i%2 == 0) {
					done <- fmt.Errorf("goroutine %d: %+v, %v", i, d, err)
					return
				}
				_ = d.Explain()
			}
			done <- nil
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
