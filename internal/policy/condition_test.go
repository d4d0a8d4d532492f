package policy

import (
	"fmt"
	"strings"
	"testing"
)

// conditionPolicy wraps a Condition element in an Allow statement for
// account 111122223333 and sts:AssumeRole, so that the decision depends on
// the condition alone.
func conditionPolicy(version, condition string) string {
	v := ""
	if version != "" {
		v = fmt.Sprintf(`"Version":%q,`, version)
	}
	return `{` + v + `"Statement":{"Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"sts:AssumeRole","Condition":` + condition + `}}`
}

var caller = Principal{Type: "AWS", ID: "arn:aws:iam::111122223333:role/app"}

// TestConditionOperators is the operator table: every operator, the
// IfExists suffix and both set qualifiers, with the decision IAM's
// documented rules give (not the output of this package). Key absent:
// positive operators false, negated ones true, IfExists true, ForAllValues
// true, ForAnyValue false, Null tests presence.
func TestConditionOperators(t *testing.T) {
	const sub = "oidc.example.com/c1:sub"
	tests := []struct {
		name      string
		version   string // default 2012-10-17
		condition string
		context   map[string][]string
		allowed   bool
	}{
		// String operators.
		{"StringEquals exact", "", `{"StringEquals":{"aws:RequestTag/k":"v"}}`, map[string][]string{"aws:RequestTag/k": {"v"}}, true},
		{"StringEquals is case-sensitive", "", `{"StringEquals":{"aws:RequestTag/k":"v"}}`, map[string][]string{"aws:RequestTag/k": {"V"}}, false},
		{"StringEquals values are ORed", "", `{"StringEquals":{"aws:RequestTag/k":["a","b"]}}`, map[string][]string{"aws:RequestTag/k": {"b"}}, true},
		{"StringEquals key absent", "", `{"StringEquals":{"aws:RequestTag/k":"v"}}`, map[string][]string{"other": {"v"}}, false},
		{"StringEquals * is literal", "", `{"StringEquals":{"aws:RequestTag/k":"a*"}}`, map[string][]string{"aws:RequestTag/k": {"abc"}}, false},
		{"StringEquals * equals itself", "", `{"StringEquals":{"aws:RequestTag/k":"a*"}}`, map[string][]string{"aws:RequestTag/k": {"a*"}}, true},
		{"StringNotEquals other value", "", `{"StringNotEquals":{"aws:RequestTag/k":"v"}}`, map[string][]string{"aws:RequestTag/k": {"w"}}, true},
		{"StringNotEquals same value", "", `{"StringNotEquals":{"aws:RequestTag/k":"v"}}`, map[string][]string{"aws:RequestTag/k": {"v"}}, false},
		{"StringNotEquals key absent is true", "", `{"StringNotEquals":{"aws:RequestTag/k":"v"}}`, nil, true},
		{"StringNotEquals values are NORed", "", `{"StringNotEquals":{"aws:RequestTag/k":["a","b"]}}`, map[string][]string{"aws:RequestTag/k": {"b"}}, false},
		{"StringEqualsIgnoreCase", "", `{"StringEqualsIgnoreCase":{"aws:RequestTag/k":"Sts.AmazonAWS.com"}}`, map[string][]string{"aws:RequestTag/k": {"sts.amazonaws.com"}}, true},
		{"StringEqualsIgnoreCase other value", "", `{"StringEqualsIgnoreCase":{"aws:RequestTag/k":"a"}}`, map[string][]string{"aws:RequestTag/k": {"b"}}, false},
		{"StringNotEqualsIgnoreCase differs only in case", "", `{"StringNotEqualsIgnoreCase":{"aws:RequestTag/k":"ABC"}}`, map[string][]string{"aws:RequestTag/k": {"abc"}}, false},
		{"StringNotEqualsIgnoreCase other value", "", `{"StringNotEqualsIgnoreCase":{"aws:RequestTag/k":"ABC"}}`, map[string][]string{"aws:RequestTag/k": {"abd"}}, true},
		{"StringLike *", "", `{"StringLike":{"` + sub + `":"system:serviceaccount:ns:*"}}`, map[string][]string{sub: {"system:serviceaccount:ns:app-1"}}, true},
		{"StringLike * crosses colons", "", `{"StringLike":{"` + sub + `":"system:serviceaccount:*"}}`, map[string][]string{sub: {"system:serviceaccount:ns:app"}}, true},
		{"StringLike ? is one character", "", `{"StringLike":{"aws:RequestTag/k":"app-?"}}`, map[string][]string{"aws:RequestTag/k": {"app-12"}}, false},
		{"StringLike ? matches one character", "", `{"StringLike":{"aws:RequestTag/k":"app-?"}}`, map[string][]string{"aws:RequestTag/k": {"app-1"}}, true},
		{"StringLike is case-sensitive", "", `{"StringLike":{"aws:RequestTag/k":"App*"}}`, map[string][]string{"aws:RequestTag/k": {"app"}}, false},
		{"StringLike key absent", "", `{"StringLike":{"aws:RequestTag/k":"*"}}`, nil, false},
		{"StringNotLike match", "", `{"StringNotLike":{"aws:RequestTag/k":"kube-*"}}`, map[string][]string{"aws:RequestTag/k": {"kube-system"}}, false},
		{"StringNotLike no match", "", `{"StringNotLike":{"aws:RequestTag/k":"kube-*"}}`, map[string][]string{"aws:RequestTag/k": {"default"}}, true},
		{"StringNotLike key absent is true", "", `{"StringNotLike":{"aws:RequestTag/k":"kube-*"}}`, nil, true},

		// Keys case-insensitive, values case-sensitive; ANDs and ORs.
		{"condition keys are case-insensitive", "", `{"StringEquals":{"OIDC.Example.com/c1:SUB":"x"}}`, map[string][]string{sub: {"x"}}, true},
		{"request keys are case-insensitive", "", `{"StringEquals":{"` + sub + `":"x"}}`, map[string][]string{"Oidc.Example.Com/C1:Sub": {"x"}}, true},
		{"keys within an operator are ANDed", "", `{"StringEquals":{"a":"1","b":"2"}}`, map[string][]string{"a": {"1"}, "b": {"3"}}, false},
		{"keys within an operator all match", "", `{"StringEquals":{"a":"1","b":"2"}}`, map[string][]string{"a": {"1"}, "b": {"2"}}, true},
		{"operators are ANDed", "", `{"StringEquals":{"a":"1"},"StringLike":{"b":"x*"}}`, map[string][]string{"a": {"1"}, "b": {"y"}}, false},

		// IfExists.
		{"StringEqualsIfExists key absent", "", `{"StringEqualsIfExists":{"aws:RequestTag/k":"v"}}`, nil, true},
		{"StringEqualsIfExists mismatch", "", `{"StringEqualsIfExists":{"aws:RequestTag/k":"v"}}`, map[string][]string{"aws:RequestTag/k": {"w"}}, false},
		{"StringLikeIfExists match", "", `{"StringLikeIfExists":{"aws:RequestTag/k":"v*"}}`, map[string][]string{"aws:RequestTag/k": {"vv"}}, true},
		{"StringNotLikeIfExists present and matching", "", `{"StringNotLikeIfExists":{"aws:RequestTag/k":"v*"}}`, map[string][]string{"aws:RequestTag/k": {"vv"}}, false},
		{"ArnLikeIfExists key absent", "", `{"ArnLikeIfExists":{"aws:SourceArn":"arn:aws:eks:*:111122223333:cluster/*"}}`, nil, true},

		// Null.
		{"Null true, key absent", "", `{"Null":{"aws:RequestTag/k":"true"}}`, nil, true},
		{"Null true, key present", "", `{"Null":{"aws:RequestTag/k":"true"}}`, map[string][]string{"aws:RequestTag/k": {"v"}}, false},
		{"Null false, key present", "", `{"Null":{"aws:RequestTag/k":"false"}}`, map[string][]string{"aws:RequestTag/k": {"v"}}, true},
		{"Null false, key absent", "", `{"Null":{"aws:RequestTag/k":"false"}}`, nil, false},
		{"Null false, empty list is absent", "", `{"Null":{"aws:RequestTag/k":false}}`, map[string][]string{"aws:RequestTag/k": {}}, false},

		// Bool.
		{"Bool string true", "", `{"Bool":{"aws:SecureTransport":"true"}}`, map[string][]string{"aws:SecureTransport": {"true"}}, true},
		{"Bool JSON true", "", `{"Bool":{"aws:SecureTransport":true}}`, map[string][]string{"aws:SecureTransport": {"true"}}, true},
		{"Bool false against true", "", `{"Bool":{"aws:SecureTransport":"false"}}`, map[string][]string{"aws:SecureTransport": {"true"}}, false},
		{"Bool key absent", "", `{"Bool":{"aws:SecureTransport":"false"}}`, nil, false},
		{"BoolIfExists key absent", "", `{"BoolIfExists":{"aws:SecureTransport":"false"}}`, nil, true},

		// Multi-valued keys without a qualifier: any value for a positive
		// operator, none for a negated one.
		{"StringEquals on a multi-valued aud", "", `{"StringEquals":{"k:aud":"sts.amazonaws.com"}}`, map[string][]string{"k:aud": {"other", "sts.amazonaws.com"}}, true},
		{"StringNotEquals on a multi-valued key", "", `{"StringNotEquals":{"aws:RequestTag/k":"a"}}`, map[string][]string{"aws:RequestTag/k": {"b", "a"}}, false},

		// ForAnyValue.
		{"ForAnyValue:StringEquals one matches", "", `{"ForAnyValue:StringEquals":{"k:aud":"sts.amazonaws.com"}}`, map[string][]string{"k:aud": {"x", "sts.amazonaws.com"}}, true},
		{"ForAnyValue:StringEquals none matches", "", `{"ForAnyValue:StringEquals":{"k:aud":"sts.amazonaws.com"}}`, map[string][]string{"k:aud": {"x", "y"}}, false},
		{"ForAnyValue key absent is false", "", `{"ForAnyValue:StringEquals":{"aws:RequestTag/k":"v"}}`, nil, false},
		{"ForAnyValue:StringNotEquals one differs", "", `{"ForAnyValue:StringNotEquals":{"aws:RequestTag/k":"a"}}`, map[string][]string{"aws:RequestTag/k": {"a", "b"}}, true},
		{"ForAnyValue:StringNotEquals all equal", "", `{"ForAnyValue:StringNotEquals":{"aws:RequestTag/k":"a"}}`, map[string][]string{"aws:RequestTag/k": {"a"}}, false},
		{"ForAnyValue:StringLikeIfExists key absent", "", `{"ForAnyValue:StringLikeIfExists":{"aws:RequestTag/k":"a*"}}`, nil, true},

		// ForAllValues.
		{"ForAllValues:StringEquals subset", "", `{"ForAllValues:StringEquals":{"aws:TagKeys":["kubernetes-namespace","kubernetes-service-account"]}}`, map[string][]string{"aws:TagKeys": {"kubernetes-namespace"}}, true},
		{"ForAllValues:StringEquals extra value", "", `{"ForAllValues:StringEquals":{"aws:TagKeys":["kubernetes-namespace"]}}`, map[string][]string{"aws:TagKeys": {"kubernetes-namespace", "team"}}, false},
		{"ForAllValues key absent is true", "", `{"ForAllValues:StringEquals":{"aws:TagKeys":"a"}}`, nil, true},
		{"ForAllValues:StringLike", "", `{"ForAllValues:StringLike":{"aws:TagKeys":"kubernetes-*"}}`, map[string][]string{"aws:TagKeys": {"kubernetes-namespace", "kubernetes-pod-name"}}, true},
		{"ForAllValues:StringNotLike none excluded", "", `{"ForAllValues:StringNotLike":{"aws:TagKeys":"key1*"}}`, map[string][]string{"aws:TagKeys": {"key2:audit"}}, true},
		{"ForAllValues:StringNotLike one excluded", "", `{"ForAllValues:StringNotLike":{"aws:TagKeys":"key1*"}}`, map[string][]string{"aws:TagKeys": {"key1:legal"}}, false},

		// Numeric.
		{"NumericLessThan", "", `{"NumericLessThan":{"sts:DurationSeconds":"3600"}}`, map[string][]string{"sts:DurationSeconds": {"900"}}, true},
		{"NumericLessThan equal", "", `{"NumericLessThan":{"aws:RequestTag/n":3600}}`, map[string][]string{"aws:RequestTag/n": {"3600"}}, false},
		{"NumericLessThanEquals equal", "", `{"NumericLessThanEquals":{"aws:RequestTag/n":3600}}`, map[string][]string{"aws:RequestTag/n": {"3600"}}, true},
		{"NumericGreaterThan", "", `{"NumericGreaterThan":{"aws:RequestTag/n":"1.5"}}`, map[string][]string{"aws:RequestTag/n": {"2"}}, true},
		{"NumericGreaterThanEquals below", "", `{"NumericGreaterThanEquals":{"aws:RequestTag/n":"10"}}`, map[string][]string{"aws:RequestTag/n": {"9"}}, false},
		{"NumericEquals", "", `{"NumericEquals":{"aws:RequestTag/n":"10"}}`, map[string][]string{"aws:RequestTag/n": {"10.0"}}, true},
		{"NumericEquals request not a number", "", `{"NumericEquals":{"aws:RequestTag/n":"10"}}`, map[string][]string{"aws:RequestTag/n": {"ten"}}, false},
		{"NumericNotEquals key absent", "", `{"NumericNotEquals":{"aws:RequestTag/n":"10"}}`, nil, true},

		// Date.
		{"DateGreaterThan", "", `{"DateGreaterThan":{"aws:CurrentTime":"2020-01-01T00:00:00Z"}}`, map[string][]string{"aws:CurrentTime": {"2026-11-26T00:00:00Z"}}, true},
		{"DateLessThan past", "", `{"DateLessThan":{"aws:CurrentTime":"2020-01-01"}}`, map[string][]string{"aws:CurrentTime": {"2026-11-26T00:00:00Z"}}, false},
		{"DateEquals epoch and ISO", "", `{"DateEquals":{"aws:EpochTime":"1577836800"}}`, map[string][]string{"aws:EpochTime": {"2020-01-01T00:00:00Z"}}, true},
		{"DateNotEquals", "", `{"DateNotEquals":{"d":"2020-01-01T00:00:00Z"}}`, map[string][]string{"d": {"2020-01-02T00:00:00Z"}}, true},
		{"DateLessThanEquals", "", `{"DateLessThanEquals":{"d":"2020-01-01T00:00:00Z"}}`, map[string][]string{"d": {"2020-01-01T00:00:00Z"}}, true},
		{"DateGreaterThanEquals", "", `{"DateGreaterThanEquals":{"d":"2020-01-01T00:00:00Z"}}`, map[string][]string{"d": {"2019-12-31T23:59:59Z"}}, false},

		// IP addresses.
		{"IpAddress in block", "", `{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}`, map[string][]string{"aws:SourceIp": {"10.1.2.3"}}, true},
		{"IpAddress outside block", "", `{"IpAddress":{"aws:SourceIp":["10.0.0.0/8","192.0.2.7"]}}`, map[string][]string{"aws:SourceIp": {"192.0.2.8"}}, false},
		{"IpAddress single address", "", `{"IpAddress":{"aws:SourceIp":"192.0.2.7"}}`, map[string][]string{"aws:SourceIp": {"192.0.2.7"}}, true},
		{"IpAddress IPv6", "", `{"IpAddress":{"aws:SourceIp":"2001:db8::/32"}}`, map[string][]string{"aws:SourceIp": {"2001:db8::1"}}, true},
		{"NotIpAddress in block", "", `{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}}`, map[string][]string{"aws:SourceIp": {"10.1.2.3"}}, false},

		// ARNs: each of the six components matched on its own.
		{"ArnLike", "", `{"ArnLike":{"aws:SourceArn":"arn:aws:eks:*:111122223333:cluster/*"}}`, map[string][]string{"aws:SourceArn": {"arn:aws:eks:us-west-2:111122223333:cluster/prod"}}, true},
		{"ArnLike other account", "", `{"ArnLike":{"aws:SourceArn":"arn:aws:eks:*:111122223333:cluster/*"}}`, map[string][]string{"aws:SourceArn": {"arn:aws:eks:us-west-2:444455556666:cluster/prod"}}, false},
		{"ArnLike * stays in its component", "", `{"ArnLike":{"aws:SourceArn":"arn:aws:eks:*:111122223333:cluster/prod"}}`, map[string][]string{"aws:SourceArn": {"arn:aws:eks:us-west-2:x:111122223333:cluster/prod"}}, false},
		{"ArnEquals takes wildcards too", "", `{"ArnEquals":{"aws:SourceArn":"arn:aws:eks:us-west-2:111122223333:cluster/*"}}`, map[string][]string{"aws:SourceArn": {"arn:aws:eks:us-west-2:111122223333:cluster/prod"}}, true},
		{"ArnNotEquals other ARN", "", `{"ArnNotEquals":{"aws:PrincipalArn":"arn:aws:iam::111122223333:role/admin"}}`, map[string][]string{"aws:PrincipalArn": {"arn:aws:iam::111122223333:role/app"}}, true},
		{"ArnNotLike match", "", `{"ArnNotLike":{"aws:PrincipalArn":"arn:aws:iam::111122223333:role/*"}}`, map[string][]string{"aws:PrincipalArn": {"arn:aws:iam::111122223333:role/app"}}, false},
		{"ArnLike request not an ARN", "", `{"ArnLike":{"aws:SourceArn":"arn:aws:eks:*:111122223333:cluster/*"}}`, map[string][]string{"aws:SourceArn": {"prod"}}, false},

		{"ArnLike variable in a component", "", `{"ArnLike":{"aws:SourceArn":"arn:aws:eks:*:${aws:PrincipalAccount}:cluster/*"}}`, map[string][]string{"aws:SourceArn": {"arn:aws:eks:us-west-2:111122223333:cluster/prod"}, "aws:PrincipalAccount": {"111122223333"}}, true},
		{"ArnLike variable in a component, other account", "", `{"ArnLike":{"aws:SourceArn":"arn:aws:eks:*:${aws:PrincipalAccount}:cluster/*"}}`, map[string][]string{"aws:SourceArn": {"arn:aws:eks:us-west-2:444455556666:cluster/prod"}, "aws:PrincipalAccount": {"111122223333"}}, false},
		{"ArnEquals a whole variable", "", `{"ArnEquals":{"aws:SourceArn":"${aws:RequestTag/cluster}"}}`, map[string][]string{"aws:SourceArn": {"arn:aws:eks:us-west-2:111122223333:cluster/prod"}, "aws:RequestTag/cluster": {"arn:aws:eks:us-west-2:111122223333:cluster/prod"}}, true},

		// Binary.
		{"BinaryEquals", "", `{"BinaryEquals":{"aws:RequestTag/k":"QmluYXJ5VmFsdWU="}}`, map[string][]string{"aws:RequestTag/k": {"QmluYXJ5VmFsdWU="}}, true},

		// Policy variables (Version 2012-10-17 only).
		{"variable substituted", "", `{"StringEquals":{"` + sub + `":"system:serviceaccount:${aws:RequestTag/ns}:app"}}`, map[string][]string{sub: {"system:serviceaccount:team:app"}, "aws:RequestTag/ns": {"team"}}, true},
		{"variable default", "", `{"StringEquals":{"` + sub + `":"system:serviceaccount:${aws:RequestTag/ns, 'default'}:app"}}`, map[string][]string{sub: {"system:serviceaccount:default:app"}}, true},
		{"variable value is not a wildcard", "", `{"StringLike":{"k":"${aws:RequestTag/p}"}}`, map[string][]string{"k": {"abc"}, "aws:RequestTag/p": {"a*"}}, false},
		{"${*} is a literal star", "", `{"StringLike":{"k":"a${*}"}}`, map[string][]string{"k": {"ab"}}, false},
		{"${*} matches a star", "", `{"StringLike":{"k":"a${*}"}}`, map[string][]string{"k": {"a*"}}, true},
		{"no variables in Version 2008-10-17", Version2008, `{"StringEquals":{"k":"${aws:RequestTag/ns}"}}`, map[string][]string{"k": {"team"}, "aws:RequestTag/ns": {"team"}}, false},
		{"no variables without Version", "-", `{"StringEquals":{"k":"${aws:RequestTag/ns}"}}`, map[string][]string{"k": {"${aws:RequestTag/ns}"}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			version := tt.version
			switch version {
			case "":
				version = Version2012
			case "-":
				version = ""
			}
			p, err := Parse([]byte(conditionPolicy(version, tt.condition)))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			d, err := p.Evaluate(Request{Action: "sts:AssumeRole", Principal: caller, Context: tt.context})
			if err != nil {
				t.Fatalf("Evaluate: %v", err)
			}
			if d.Allowed != tt.allowed {
				t.Errorf("Allowed = %v, want %v\n%s", d.Allowed, tt.allowed, d.Explain())
			}
		})
	}
}

// TestConditionErrors: an operator, qualifier or value the grammar does not
// have is an error naming it and its path, never a condition that silently
// never (or always) matches.
func TestConditionErrors(t *testing.T) {
	tests := []struct {
		condition string
		want      string
	}{
		{`{"StringEqual":{"k":"v"}}`, `Statement.Condition.StringEqual: unknown condition operator "StringEqual"`},
		{`{"stringEquals":{"k":"v"}}`, `did you mean "StringEquals"`},
		{`{"ForSomeValues:StringEquals":{"k":"v"}}`, `unknown condition qualifier "ForSomeValues"`},
		{`{"ForAnyValue:StringEqualz":{"k":"v"}}`, `unknown condition operator "ForAnyValue:StringEqualz"`},
		{`{"NullIfExists":{"k":"true"}}`, `Null takes neither IfExists`},
		{`{"ForAllValues:Null":{"k":"true"}}`, `Null takes neither`},
		{`{"Null":{"k":"yes"}}`, `Statement.Condition.Null.k: Null value "yes" is not true or false`},
		{`{"Bool":{"k":"1"}}`, `Bool value "1" is not true or false`},
		{`{"NumericLessThan":{"n":"ten"}}`, `Statement.Condition.NumericLessThan.n: "ten" is not a number`},
		{`{"DateLessThan":{"d":"yesterday"}}`, `"yesterday" is not a date`},
		{`{"IpAddress":{"aws:SourceIp":"10.0.0.0/33"}}`, `is not an IP address or CIDR block`},
		{`{"ArnLike":{"aws:SourceArn":"arn:aws:eks:*:cluster/x"}}`, `is not an ARN`},
		{`{"BinaryEquals":{"k":"not base64!"}}`, `is not base64`},
		{`{"StringEquals":{"k":"${aws:username"}}`, `unterminated policy variable`},
		{`{"StringEquals":{"k":"${}"}}`, `empty policy variable`},
		{`{"StringEquals":{"k":"${a, default}"}}`, `must be quoted`},
		{`{"StringEquals":{"k":{"v":1}}}`, `Statement.Condition.StringEquals.k: is an object`},
		{`{"StringEquals":{"k":[]}}`, `Statement.Condition.StringEquals.k: empty list`},
		{`{"StringEquals":{"k":[null]}}`, `Statement.Condition.StringEquals.k[0]: is null`},
		{`{"StringEquals":"k"}`, `Statement.Condition.StringEquals: is a string, want an object of condition keys`},
		{`{"StringEquals":{}}`, `Statement.Condition.StringEquals: no condition keys`},
		{`{"StringEquals":{"":"v"}}`, `empty condition key`},
		{`{"StringEquals":{" k":"v"}}`, `contains white space`},
		{`["StringEquals"]`, `Statement.Condition: is a list`},
	}
	for _, tt := range tests {
		t.Run(tt.condition, func(t *testing.T) {
			_, err := Parse([]byte(conditionPolicy(Version2012, tt.condition)))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// TestConditionKeys: Parse refuses a key only for its shape (empty parts,
// no tag name, a provider with https:// or a trailing slash: such a key is
// always absent). A well-formed key podiam does not know parses; Evaluate
// refuses it, naming it and its path, when the request lacks it (its
// absence would decide a negated operator), and Explain warns when the
// request carries it. Documented keys (from IAM's lists, including the
// provider-specific claims) are neither refused nor flagged.
func TestConditionKeys(t *testing.T) {
	const unknown = "is not a key podiam knows"
	tests := []struct {
		key      string
		parseErr string // the Parse error, "" when the key parses
		evalErr  string // the Evaluate error when the request lacks the key; "" for a key podiam knows
	}{
		{"aws:PrincipalArn", "", ""},
		{"AWS:principalarn", "", ""}, // keys are case-insensitive
		{"aws:SourceAccount", "", ""},
		{"aws:RequestTag/kubernetes-namespace", "", ""},
		{"aws:ResourceTag/team:project", "", ""},
		{"aws:PrincipalTag/x", "", ""},
		{"aws:TagKeys", "", ""},
		{"aws:FederatedProvider", "", ""},
		{"aws:ChatbotSourceArn", "", ""},
		{"aws:SignInSessionArn", "", ""},
		{"aws:CalledViaAWSMCP", "", ""},
		{"aws:ViaAWSMCPService", "", ""},
		{"aws:IsMcpServiceAction", "", ""},
		{"sts:ExternalId", "", ""},
		{"sts:RoleSessionName", "", ""},
		{"sts:SourceIdentity", "", ""},
		{"sts:TransitiveTagKeys", "", ""},
		{"sts:AWSServiceName", "", ""},
		{"sts:RoleAuthorizedByIdp", "", ""},
		{"sts:TaskPolicyArn", "", ""},
		{"sts:RequestContext/identitystore:UserId", "", ""},
		{"saml:aud", "", ""},
		{"saml:sub", "", ""},
		{"saml:sub_type", "", ""},
		{"saml:eduorglegalname", "", ""},
		{"saml:eduorghomepageuri", "", ""},
		{"saml:eduorgidentityauthnpolicyuri", "", ""},
		{"saml:eduorgsuperioruri", "", ""},
		{"saml:eduorgwhitepagesuri", "", ""},
		{"oidc.example.com/c1:sub", "", ""},
		{"oidc.example.com/c1:aud", "", ""},
		{"oidc.example.com/c1:oaud", "", ""},
		{"oidc.example.com/c1:amr", "", ""},
		{"oidc.example.com/c1:azp", "", ""},
		{"oidc.example.com/c1:email", "", ""},
		{"accounts.google.com:aud", "", ""},
		{"accounts.google.com:google/organization_number", "", ""},
		{"cognito-identity.amazonaws.com:amr", "", ""},
		{"graph.facebook.com:id", "", ""},
		{"www.amazon.com:user_id", "", ""},
		{"www.amazon.com:app_id", "", ""},
		{"token.actions.githubusercontent.com:job_workflow_ref", "", ""},
		{"token.actions.githubusercontent.com:actor", "", ""},
		{"token.actions.githubusercontent.com:actor_id", "", ""},
		{"token.actions.githubusercontent.com:repository", "", ""},
		{"token.actions.githubusercontent.com:repository_id", "", ""},
		{"token.actions.githubusercontent.com:repository_owner_id", "", ""},
		{"token.actions.githubusercontent.com:ref", "", ""},
		{"token.actions.githubusercontent.com:environment", "", ""},
		{"token.actions.githubusercontent.com:workflow", "", ""},
		{"token.actions.githubusercontent.com:enterprise_id", "", ""},
		{"token.actions.githubusercontent.com/octo-enterprise:job_workflow_ref", "", ""},
		{"token.actions.octocorp.ghe.com:repository", "", ""},
		{"gitlab.com:project_id", "", ""},
		{"gitlab.com:namespace_id", "", ""},
		{"gitlab.com:ref_protected", "", ""},
		{"gitlab.com:user_login", "", ""},
		{"gitlab.com:user_access_level", "", ""},
		{"agent.buildkite.com:pipeline_slug", "", ""},
		{"oidc.circleci.com/org/3a0c2e0b-5cf1-4d8e-9a57-3b6c2f3e9d41:oidc.circleci.com/project-id", "", ""},
		{"idcs-0123456789abcdef.identity.oraclecloud.com:rpst_id", "", ""},
		// Well-formed keys podiam does not know: parse, refused at Evaluate when absent.
		{"iam:ResourceTag/team", "", `condition key "iam:ResourceTag/team" is a tag of the role itself (IAM sets it for AssumeRole* from the role's tags); podiam's requests do not carry role tags`},
		{"s3:prefix", "", `condition key "s3:prefix" is not a key STS sets for a request`},
		{"namespace", "", `condition key "namespace" is not a key STS sets for a request`},
		{"aws:PrincipalArnn", "", `condition key "aws:PrincipalArnn" ` + unknown + ` (not one of IAM's global condition keys`},
		{"aws:RequestTags/team", "", `condition key "aws:RequestTags/team" ` + unknown},
		{"sts:ExternalID2", "", `condition key "sts:ExternalID2" ` + unknown + ` (keys of AWS STS: sts:AWSServiceName`},
		{"saml:groups", "", `condition key "saml:groups" ` + unknown + ` (SAML federation keys`},
		{"oidc.example.com/c1:sbu", "", `condition key "oidc.example.com/c1:sbu" ` + unknown + `: it knows no claim "sbu" of this web identity provider (IAM sets "oidc.example.com/c1:amr", "oidc.example.com/c1:aud"`},
		{"oidc.example.com/c1:job_workflow_ref", "", `it knows no claim "job_workflow_ref"`}, // GitHub's claim, not this provider's
		{"gitlab.example.com:project_id", "", `it knows no claim "project_id"`},              // gitlab.com's only
		{"graph.facebook.com:sub", "", `(IAM sets "graph.facebook.com:app_id", "graph.facebook.com:id")`},
		// Shape mistakes: Parse errors.
		{"aws:RequestTag/", `condition key "aws:RequestTag/" names no tag`, ""},
		{"iam:ResourceTag/", `condition key "iam:ResourceTag/" names no tag`, ""},
		{"sts:RequestContext/", `condition key "sts:RequestContext/" names no context key`, ""},
		{":sub", `condition key ":sub" has nothing before ':'`, ""},
		{"oidc.example.com/c1:", `condition key "oidc.example.com/c1:" has nothing after ':'`, ""},
		{"https://oidc.example.com/c1:sub", `condition key "https://oidc.example.com/c1:sub": IAM names a provider's keys after the issuer without https:// and without a trailing slash: write "oidc.example.com/c1:sub"`, ""},
		{"https://oidc.example.com/c1/:aud", `write "oidc.example.com/c1:aud"`, ""},
		{"oidc.example.com/c1/:sub", `condition key "oidc.example.com/c1/:sub": the provider has a trailing slash, which IAM's keys never have: write "oidc.example.com/c1:sub"`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			path := "Statement.Condition.StringNotEquals." + tt.key + ": "
			p, err := Parse([]byte(conditionPolicy(Version2012, `{"StringNotEquals":{`+fmt.Sprintf("%q", tt.key)+`:"x"}}`)))
			switch {
			case tt.parseErr == "" && err != nil:
				t.Fatalf("Parse: %v", err)
			case tt.parseErr != "" && (err == nil || !strings.Contains(err.Error(), tt.parseErr) || !strings.Contains(err.Error(), path)):
				t.Fatalf("Parse error = %v, want the path and %q", err, tt.parseErr)
			case tt.parseErr != "":
				return
			}
			// The request lacks the key.
			d, err := p.Evaluate(Request{Action: "sts:AssumeRole", Principal: caller})
			switch {
			case tt.evalErr == "" && err != nil:
				t.Fatalf("Evaluate without the key: %v", err)
			case tt.evalErr != "" && (err == nil || !strings.Contains(err.Error(), tt.evalErr) || !strings.Contains(err.Error(), path)):
				t.Fatalf("Evaluate without the key = %v (Allowed %v), %v; want the path and %q", d.Reason, d.Allowed, err, tt.evalErr)
			}
			// The request carries the key: decided, flagged only when unknown.
			d, err = p.Evaluate(Request{Action: "sts:AssumeRole", Principal: caller, Context: map[string][]string{tt.key: {"y"}}})
			if err != nil {
				t.Fatalf("Evaluate with the key: %v", err)
			}
			if !d.Allowed {
				t.Errorf("StringNotEquals %q \"x\" against \"y\" denied:\n%s", tt.key, d.Explain())
			}
			flagged := strings.Contains(d.Explain(), "warning: "+path[:len(path)-2]+": \""+tt.key+"\" is not a key podiam knows")
			if known := tt.evalErr == "" || strings.HasPrefix(tt.key, "iam:"); flagged == known {
				t.Errorf("warning \"not a key podiam knows\" = %v, want %v:\n%s", flagged, !known, d.Explain())
			}
		})
	}
}

// TestUnknownKeyIsNeverASilentAllow: the mistakes that used to let a request
// through (a misspelt claim under a negated operator in an Allow, an
// https:// key in a Deny, a policy variable naming a key the request lacks
// under a negated operator) are errors, not decisions.
func TestUnknownKeyIsNeverASilentAllow(t *testing.T) {
	const provider = "arn:aws:iam::111122223333:oidc-provider/oidc.example.com/c1"
	allow := func(condition string) string {
		return `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"Federated":"` + provider + `"},"Action":"sts:AssumeRoleWithWebIdentity","Condition":` + condition + `}}`
	}
	tests := []struct{ name, doc, want string }{
		{"misspelt claim in an Allow", allow(`{"StringNotEquals":{"oidc.example.com/c1:sbu":"system:serviceaccount:kube-system:admin"}}`),
			`Statement.Condition.StringNotEquals.oidc.example.com/c1:sbu: condition key "oidc.example.com/c1:sbu" is not a key podiam knows`},
		{"https:// in a Deny", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Federated":"` + provider + `"},"Action":"sts:AssumeRoleWithWebIdentity"},{"Effect":"Deny","Principal":"*","Action":"sts:*","Condition":{"StringLike":{"https://oidc.example.com/c1:sub":"system:serviceaccount:kube-system:*"}}}]}`,
			`Statement[1].Condition.StringLike.https://oidc.example.com/c1:sub: condition key "https://oidc.example.com/c1:sub": IAM names a provider's keys after the issuer without https:// and without a trailing slash: write "oidc.example.com/c1:sub"`},
		{"misspelt variable in an Allow", allow(`{"StringNotEquals":{"oidc.example.com/c1:sub":"${aws:usernamee}"}}`),
			`Statement.Condition.StringNotEquals.oidc.example.com/c1:sub: policy variable ${aws:usernamee} names a key the request does not carry and has no default`},
		{"bare variable in an Allow", allow(`{"StringNotEquals":{"oidc.example.com/c1:sub":"${namespace}"}}`),
			`Statement.Condition.StringNotEquals.oidc.example.com/c1:sub: policy variable ${namespace} names a key the request does not carry`},
		{"documented variable the request lacks", allow(`{"StringNotLike":{"oidc.example.com/c1:sub":"system:serviceaccount:${aws:PrincipalTag/team}:*"}}`),
			`policy variable ${aws:PrincipalTag/team} names a key the request does not carry`},
		{"variable in an ArnNotLike", allow(`{"ArnNotLike":{"aws:FederatedProvider":"${aws:SourceArn}"}}`),
			`Statement.Condition.ArnNotLike.aws:FederatedProvider: policy variable ${aws:SourceArn} names a key the request does not carry`},
		{"variable under a positive operator", allow(`{"StringEquals":{"oidc.example.com/c1:sub":"system:serviceaccount:${aws:RequestTag/ns}:app"}}`),
			`policy variable ${aws:RequestTag/ns} names a key the request does not carry`},
		{"multi-valued variable", allow(`{"StringNotEquals":{"oidc.example.com/c1:sub":"${oidc.example.com/c1:aud}"}}`),
			`policy variable ${oidc.example.com/c1:aud} names a key with several values in the request ("sts.amazonaws.com", "api.example.com")`},
		{"https:// in a variable", allow(`{"StringNotEquals":{"oidc.example.com/c1:sub":"${https://oidc.example.com/c1:sub}"}}`),
			`Statement.Condition.StringNotEquals.oidc.example.com/c1:sub: policy variable ${https://oidc.example.com/c1:sub} in "${https://oidc.example.com/c1:sub}": condition key "https://oidc.example.com/c1:sub": IAM names a provider's keys after the issuer without https://`},
		{"variable with no tag name", allow(`{"StringNotEquals":{"oidc.example.com/c1:sub":"${aws:RequestTag/}"}}`),
			`policy variable ${aws:RequestTag/} in "${aws:RequestTag/}": condition key "aws:RequestTag/" names no tag`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := WebIdentityRequest("", "111122223333", "https://oidc.example.com/c1", "system:serviceaccount:kube-system:admin", []string{"sts.amazonaws.com", "api.example.com"})
			p, err := Parse([]byte(tt.doc))
			if err == nil {
				var d Decision
				d, err = p.Evaluate(r)
				if err == nil {
					t.Fatalf("no error: Evaluate = %v (Allowed %v)\n%s", d.Reason, d.Allowed, d.Explain())
				}
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestVariables: a variable with a default, or whose key the request
// carries, is substituted; only the statements that apply to the request
// (principal and action) need their keys.
func TestVariables(t *testing.T) {
	const provider = "arn:aws:iam::111122223333:oidc-provider/oidc.example.com/c1"
	r := WebIdentityRequest("", "111122223333", "https://oidc.example.com/c1", "system:serviceaccount:team:app", []string{"sts.amazonaws.com"})
	tests := []struct {
		name, doc string
		allowed   bool
	}{
		{"default used", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"Federated":"` + provider + `"},"Action":"sts:AssumeRoleWithWebIdentity","Condition":{"StringNotEquals":{"oidc.example.com/c1:sub":"system:serviceaccount:${aws:RequestTag/ns, 'team'}:app"}}}}`, false},
		{"key carried", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"Federated":"` + provider + `"},"Action":"sts:AssumeRoleWithWebIdentity","Condition":{"StringEquals":{"oidc.example.com/c1:sub":"system:serviceaccount:team:${aws:FederatedProvider, 'x'}"}}}}`, false},
		{"statement for another principal", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Federated":"` + provider + `"},"Action":"sts:AssumeRoleWithWebIdentity"},{"Effect":"Deny","Principal":{"AWS":"111122223333"},"Action":"sts:AssumeRole","Condition":{"StringNotEquals":{"aws:PrincipalTag/team":"${aws:RequestTag/team}"}}}]}`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := mustParse(t, tt.doc).Evaluate(r)
			if err != nil {
				t.Fatal(err)
			}
			if d.Allowed != tt.allowed {
				t.Errorf("Allowed = %v, want %v\n%s", d.Allowed, tt.allowed, d.Explain())
			}
		})
	}
}

// TestMatchToks checks the wildcard matcher on its own, including
// backtracking and multi-byte characters.
func TestMatchToks(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"", "", true},
		{"", "a", false},
		{"*", "", true},
		{"*", "anything", true},
		{"a*b*c", "aXbYc", true},
		{"a*b*c", "aXbYcZ", false},
		{"*abc", "ababc", true},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"?", "é", true},
		{"system:serviceaccount:*:app", "system:serviceaccount:ns:app", true},
		{"system:serviceaccount:*:app", "system:serviceaccount:ns:app2", false},
		{"**a", "a", true},
	}
	for _, tt := range tests {
		p, err := compilePattern(tt.pattern, true, false)
		if err != nil {
			t.Fatal(err)
		}
		if got := matchToks(p.toks, tt.s, false); got != tt.want {
			t.Errorf("match(%q, %q) = %v, want %v", tt.pattern, tt.s, got, tt.want)
		}
	}
}
