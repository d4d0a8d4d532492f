package policy

import (
	"strings"
	"testing"
)

// TestExplain checks that each kind of denial names the statement, the
// failing part, the expected and the actual value and a fix, and that the
// usual IRSA mistakes are pointed out.
func TestExplain(t *testing.T) {
	const (
		issuer   = "https://oidc.example.com/c1"
		provider = "arn:aws:iam::111122223333:oidc-provider/oidc.example.com/c1"
	)
	irsa := func(condition string) string {
		return `{"Version":"2012-10-17","Statement":[{"Sid":"IRSA","Effect":"Allow","Principal":{"Federated":"` + provider + `"},"Action":"sts:AssumeRoleWithWebIdentity","Condition":` + condition + `}]}`
	}
	req := WebIdentityRequest("", "111122223333", issuer, "system:serviceaccount:ns:other", []string{"sts.amazonaws.com"})
	kopsReq := WebIdentityRequest("", "111122223333", issuer, "system:serviceaccount:ns:app", []string{"amazonaws.com"})
	// Both audiences: the Deny on "amazonaws.com" applies, and the mix is worth a warning.
	kopsReqWrongAud := WebIdentityRequest("", "111122223333", issuer, "system:serviceaccount:ns:app", []string{"amazonaws.com", "sts.amazonaws.com"})
	tests := []struct {
		name   string
		doc    string
		req    Request
		want   []string
		reason Reason
	}{
		{"wrong sub", irsa(`{"StringEquals":{"oidc.example.com/c1:sub":"system:serviceaccount:ns:app","oidc.example.com/c1:aud":"sts.amazonaws.com"}}`), req, []string{
			`Statement[0] (Sid "IRSA"): condition StringEquals "oidc.example.com/c1:sub" does not match`,
			`expected: "system:serviceaccount:ns:app"`,
			`request:  "system:serviceaccount:ns:other"`,
			`fix: change StringEquals "oidc.example.com/c1:sub" to "system:serviceaccount:ns:other"`,
		}, ReasonImplicitDeny},
		{"key of another provider", irsa(`{"StringEquals":{"oidc.example.com/c2:sub":"system:serviceaccount:ns:other"}}`), req, []string{
			`warning: Statement[0].Condition.StringEquals.oidc.example.com/c2:sub: key "oidc.example.com/c2:sub" is for provider "oidc.example.com/c2", but the request comes from "oidc.example.com/c1"`,
		}, ReasonImplicitDeny},
		{"unknown key the request carries", irsa(`{"StringEquals":{"oidc.example.com/c1:sub":"system:serviceaccount:ns:other","namespace":"ns"}}`), withKeys(req, map[string]string{"namespace": "ns"}), []string{
			`allowed: Statement[0] (Sid "IRSA") allows`,
			`warning: Statement[0].Condition.StringEquals.namespace: "namespace" is not a key podiam knows (not one IAM documents for STS requests)`,
		}, ReasonAllowed},
		{"unknown variable key the request carries", irsa(`{"StringEquals":{"oidc.example.com/c1:sub":"system:serviceaccount:${namespace}:other"}}`), withKeys(req, map[string]string{"namespace": "ns"}), []string{
			`warning: Statement[0].Condition.StringEquals.oidc.example.com/c1:sub: policy variable ${namespace} names a key podiam does not know`,
		}, ReasonAllowed},
		{"kOps audience against eksctl's", irsa(`{"StringEquals":{"oidc.example.com/c1:aud":"sts.amazonaws.com"}}`), kopsReq, []string{
			`fix: change StringEquals "oidc.example.com/c1:aud" to "amazonaws.com"`,
			`expects audience "sts.amazonaws.com" (eksctl, EKS) but the token has "amazonaws.com" (kOps's default)`,
		}, ReasonImplicitDeny},
		{"eksctl audience against kOps's", irsa(`{"StringEquals":{"oidc.example.com/c1:aud":"amazonaws.com"}}`), req, []string{
			`expects audience "amazonaws.com" (kOps's default) but the token has "sts.amazonaws.com"`,
		}, ReasonImplicitDeny},
		{"wildcard with StringEquals", irsa(`{"StringEquals":{"oidc.example.com/c1:sub":"system:serviceaccount:ns:*"}}`), req, []string{
			`fix: "system:serviceaccount:ns:*" contains a wildcard, which only StringLike understands; change StringEquals to StringLike`,
		}, ReasonImplicitDeny},
		{"negated operator", irsa(`{"StringNotLike":{"oidc.example.com/c1:sub":"system:serviceaccount:ns:*"}}`), req, []string{
			`fix: the request's value "system:serviceaccount:ns:other" is excluded by StringNotLike; remove "system:serviceaccount:ns:other" from StringNotLike "oidc.example.com/c1:sub"`,
		}, ReasonImplicitDeny},
		{"claim IAM does not set", irsa(`{"StringEquals":{"oidc.example.com/c1:email":"a@example.com"}}`), req, []string{
			`the request has no key "oidc.example.com/c1:email"; IRSA requests carry "oidc.example.com/c1:sub" and "oidc.example.com/c1:aud"`,
		}, ReasonImplicitDeny},
		{"Null", irsa(`{"Null":{"oidc.example.com/c1:sub":"true"}}`), req, []string{
			`which Null "true" forbids; change Null "oidc.example.com/c1:sub" to "false"`,
		}, ReasonImplicitDeny},
		{"ForAllValues", irsa(`{"ForAllValues:StringEquals":{"oidc.example.com/c1:aud":"a"}}`), req, []string{
			`fix: add "sts.amazonaws.com" to ForAllValues:StringEquals "oidc.example.com/c1:aud"`,
		}, ReasonImplicitDeny},
		{"numeric", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":"*","Action":"sts:AssumeRole","Condition":{"NumericLessThan":{"n":"3"}}}}`,
			Request{Action: "sts:AssumeRole", Principal: caller, Context: map[string][]string{"n": {"5"}}}, []string{
				`the request's value "5" does not satisfy NumericLessThan "n" "3"`,
			}, ReasonImplicitDeny},
		{"other account's provider", irsa(`{}`), WebIdentityRequest("", "444455556666", issuer, "x", nil), []string{
			`Statement[0] (Sid "IRSA"): principal does not match`,
			`expected: "Federated: ` + provider + `"`,
			`fix: change Principal.Federated "` + provider + `" to "arn:aws:iam::444455556666:oidc-provider/oidc.example.com/c1"`,
		}, ReasonImplicitDeny},
		{"principal of another type", irsa(`{}`), AssumeRoleRequest(caller, nil, nil), []string{
			`fix: add "AWS": "arn:aws:iam::111122223333:role/app" to Principal`,
		}, ReasonImplicitDeny},
		{"action", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"Federated":"` + provider + `"},"Action":"sts:AssumeRole"}}`, req, []string{
			`Statement: action does not match Action`,
			`fix: add "sts:AssumeRoleWithWebIdentity" to Action`,
		}, ReasonImplicitDeny},
		{"NotAction", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":"*","NotAction":"sts:AssumeRoleWith*"}}`, req, []string{
			`fix: remove the entry matching "sts:AssumeRoleWithWebIdentity" from NotAction`,
		}, ReasonImplicitDeny},
		{"no Allow statement", `{"Statement":{"Effect":"Deny","Principal":"*","Action":"sts:TagSession"}}`, req, []string{
			`the policy has no Allow statement`,
		}, ReasonImplicitDeny},
		{"provider ARN with https://", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"Federated":"arn:aws:iam::111122223333:oidc-provider/https://oidc.example.com/c1"},"Action":"sts:AssumeRoleWithWebIdentity"}}`, req, []string{
			`a provider ARN names the issuer without https://`,
		}, ReasonImplicitDeny},
		{"variables in an old version", `{"Version":"2008-10-17","Statement":{"Effect":"Allow","Principal":"*","Action":"sts:AssumeRole","Condition":{"StringEquals":{"k":"${aws:username}"}}}}`,
			Request{Action: "sts:AssumeRole", Principal: caller, Context: map[string][]string{"k": {"x"}}}, []string{
				`policy variables are substituted only with "Version": "2012-10-17"`,
			}, ReasonImplicitDeny},
		{"explicit deny", "@deny-namespace.json", WebIdentityRequest("", "111122223333", issuer, "system:serviceaccount:kube-system:x", []string{"sts.amazonaws.com"}), []string{
			`denied: Statement[1] (Sid "NotKubeSystem") explicitly denies sts:AssumeRoleWithWebIdentity for Federated ` + provider,
			`  condition StringLike "oidc.example.com/c1:sub" matched
    statement: "system:serviceaccount:kube-system:*"
    request:   "system:serviceaccount:kube-system:x"
  fix: the Deny applies while all of its conditions hold; narrow StringLike "oidc.example.com/c1:sub" so that it no longer matches "system:serviceaccount:kube-system:x", or remove Statement[1] (Sid "NotKubeSystem") if it should not deny this request`,
		}, ReasonExplicitDeny},
		{"explicit deny by a negated operator on an absent key", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"sts:AssumeRole"},
			{"Sid":"NeedsTag","Effect":"Deny","Principal":"*","Action":"sts:AssumeRole","Condition":{"StringNotEquals":{"aws:RequestTag/team":"blue"}}}]}`,
			Request{Action: "sts:AssumeRole", Principal: caller}, []string{
				`  condition StringNotEquals "aws:RequestTag/team" matched
    statement: "blue"
    request:   no key "aws:RequestTag/team"`,
				`fix: the Deny applies while all of its conditions hold; send "aws:RequestTag/team" with one of "blue": the request has no such key, and StringNotEquals holds for a missing key, or remove Statement[1] (Sid "NeedsTag")`,
			}, ReasonExplicitDeny},
		{"explicit deny by a negated operator", `{"Version":"2012-10-17","Statement":{"Sid":"OnlyBlue","Effect":"Deny","Principal":"*","Action":"sts:AssumeRole","Condition":{"StringNotEquals":{"aws:RequestTag/team":"blue"}}}}`,
			AssumeRoleRequest(caller, map[string]string{"team": "red"}, nil), []string{
				`request:   "red"`,
				`fix: the Deny applies while all of its conditions hold; add "red" to StringNotEquals "aws:RequestTag/team", or remove Statement (Sid "OnlyBlue")`,
			}, ReasonExplicitDeny},
		{"explicit deny by IfExists and Null on absent keys", `{"Version":"2012-10-17","Statement":{"Sid":"D","Effect":"Deny","Principal":"*","Action":"sts:AssumeRole","Condition":{"StringNotEqualsIfExists":{"sts:ExternalId":"x"},"Null":{"aws:RequestTag/team":"true"}}}}`,
			Request{Action: "sts:AssumeRole", Principal: caller}, []string{
				`drop IfExists from StringNotEqualsIfExists "sts:ExternalId"`,
				`; or change Null "aws:RequestTag/team" to "false"`,
			}, ReasonExplicitDeny},
		{"explicit deny without condition", `{"Version":"2012-10-17","Statement":{"Sid":"Nobody","Effect":"Deny","Principal":"*","Action":"sts:*"}}`, req, []string{
			`fix: Statement (Sid "Nobody") has no condition: it denies sts:AssumeRoleWithWebIdentity to every caller its Principal names; narrow its Principal or Action, or remove the statement`,
		}, ReasonExplicitDeny},
		{"warning on an allow: a Deny for another provider's key never applies", `{"Version":"2012-10-17","Statement":[
			{"Effect":"Allow","Principal":{"Federated":"` + provider + `"},"Action":"sts:AssumeRoleWithWebIdentity"},
			{"Effect":"Deny","Principal":"*","Action":"sts:*","Condition":{"StringLike":{"oidc.example.com/c2:sub":"system:serviceaccount:ns:*"}}}]}`, req, []string{
			`allowed: Statement[0] allows`,
			`warning: Statement[1].Condition.StringLike.oidc.example.com/c2:sub: key "oidc.example.com/c2:sub" is for provider "oidc.example.com/c2", but the request comes from "oidc.example.com/c1"`,
		}, ReasonAllowed},
		{"warning on an explicit deny", `{"Version":"2012-10-17","Statement":{"Effect":"Deny","Principal":"*","Action":"sts:*","Condition":{"StringEquals":{"oidc.example.com/c1:aud":"amazonaws.com"}}}}`, kopsReqWrongAud, []string{
			`explicitly denies`,
			`warning: Statement.Condition.StringEquals.oidc.example.com/c1:aud: expects audience "amazonaws.com" (kOps's default) but the token has "sts.amazonaws.com"`,
		}, ReasonExplicitDeny},
		{"allow", "@deny-namespace.json", WebIdentityRequest("", "111122223333", issuer, "system:serviceaccount:shop:x", []string{"sts.amazonaws.com"}), []string{
			`allowed: Statement[0] (Sid "AnyServiceAccount") allows sts:AssumeRoleWithWebIdentity`,
		}, ReasonAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p *Policy
			if file, ok := strings.CutPrefix(tt.doc, "@"); ok {
				p = mustParseFile(t, file)
			} else {
				p = mustParse(t, tt.doc)
			}
			d, err := p.Evaluate(tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if d.Reason != tt.reason {
				t.Errorf("Reason = %v, want %v", d.Reason, tt.reason)
			}
			got := d.Explain()
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("Explain() lacks %q:\n%s", w, got)
				}
			}
		})
	}
}

// TestExplainEveryAllowStatement: a denial lists each Allow statement with
// its own first failing part.
func TestExplainEveryAllowStatement(t *testing.T) {
	p := mustParse(t, `{"Version":"2012-10-17","Statement":[
		{"Sid":"Web","Effect":"Allow","Principal":{"Federated":"arn:aws:iam::111122223333:oidc-provider/o.example.com"},"Action":"sts:AssumeRoleWithWebIdentity","Condition":{"StringEquals":{"o.example.com:sub":"a"}}},
		{"Sid":"Pods","Effect":"Allow","Principal":{"Service":"pods.eks.amazonaws.com"},"Action":"sts:AssumeRole"},
		{"Sid":"Other","Effect":"Allow","Principal":{"Federated":"arn:aws:iam::111122223333:oidc-provider/o2.example.com"},"Action":"sts:AssumeRoleWithWebIdentity","Condition":{"StringEquals":{"o2.example.com:sub":"a"}}},
		{"Sid":"Deny","Effect":"Deny","Principal":"*","Action":"sts:TagSession"}]}`)
	d, err := p.Evaluate(WebIdentityRequest("", "111122223333", "https://o.example.com", "b", nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Mismatches) != 3 || d.Mismatches[0].Part != PartCondition || d.Mismatches[1].Part != PartPrincipal || d.Mismatches[2].Part != PartPrincipal {
		t.Fatalf("mismatches = %+v", d.Mismatches)
	}
	if m := d.Mismatches[0]; m.Condition.Key != "o.example.com:sub" || m.KeyAbsent || m.Actual[0] != "b" || m.Fix == "" {
		t.Errorf("first mismatch = %+v", m)
	}
	text := d.Explain()
	if len(d.Warnings) != 0 {
		t.Errorf("warnings for a statement of another provider: %q", d.Warnings)
	}
	if !strings.Contains(text, `Sid "Web"`) || !strings.Contains(text, `Sid "Pods"`) || strings.Contains(text, `Sid "Deny"`) {
		t.Errorf("Explain() =\n%s", text)
	}
}

// withKeys is r with single-valued keys added to a copy of its context.
func withKeys(r Request, keys map[string]string) Request {
	ctx := make(map[string][]string, len(r.Context)+len(keys))
	for k, v := range r.Context {
		ctx[k] = v
	}
	for k, v := range keys {
		ctx[k] = []string{v}
	}
	r.Context = ctx
	return r
}
