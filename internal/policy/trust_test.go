package policy

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// update rewrites the golden files: go test ./internal/policy -run TestTrust -update
var update = flag.Bool("update", false, "rewrite testdata/trust golden files")

const (
	testAccount = "111122223333"
	testIssuer  = "https://oidc.example.com/id/ABC123"
)

func sas(t *testing.T, specs ...string) []ServiceAccount {
	t.Helper()
	var out []ServiceAccount
	for _, s := range specs {
		sa, err := ParseServiceAccount(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, sa)
	}
	return out
}

// TestTrustGolden compares each policy with testdata/trust/<name>.json, a file
// reviewed against what eksctl, kOps, terraform-aws-modules and the AWS
// console write.
func TestTrustGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts TrustOptions
	}{
		{"eksctl", TrustOptions{Account: testAccount, Issuer: testIssuer, ServiceAccounts: sas(t, "default/app")}},
		{"eksctl-audience", TrustOptions{Account: testAccount, Issuer: testIssuer, Audience: "api.example.com", ServiceAccounts: sas(t, "default/app")}},
		{"kops", TrustOptions{Account: testAccount, Issuer: "https://bucket.s3.eu-west-1.amazonaws.com/cluster", Style: StyleKOps, ServiceAccounts: sas(t, "kube-system/dns-controller")}},
		{"wildcard-namespace", TrustOptions{Account: testAccount, Issuer: testIssuer, ServiceAccounts: sas(t, "team-*/app")}},
		{"wildcard-name-kops", TrustOptions{Account: testAccount, Issuer: testIssuer, Style: StyleKOps, ServiceAccounts: sas(t, "ci/runner-?")}},
		// Sorted and deduplicated: the flags' order does not change the policy.
		{"several", TrustOptions{Account: testAccount, Issuer: testIssuer, ServiceAccounts: sas(t, "ns2/b", "ns1/a", "ns2/b")}},
		// One pattern puts every subject under StringLike (see Trust).
		{"several-mixed", TrustOptions{Account: testAccount, Issuer: testIssuer, ServiceAccounts: sas(t, "apps/web", "batch/job-*")}},
		{"partition-cn", TrustOptions{Account: testAccount, Issuer: "https://oidc.eks.cn-north-1.amazonaws.com.cn/id/XYZ", Partition: "aws-cn", ServiceAccounts: sas(t, "default/app")}},
		{"pod-identity", TrustOptions{PodIdentity: true}},
		{"pod-identity-principal", TrustOptions{PodIdentity: true, Principal: "arn:aws:iam::111122223333:role/podiam-broker"}},
		{"pod-identity-sa", TrustOptions{PodIdentity: true, ServiceAccounts: sas(t, "apps/web")}},
		{"pod-identity-same-namespace", TrustOptions{PodIdentity: true, ServiceAccounts: sas(t, "apps/web", "apps/worker-*")}},
		// Different namespaces: one statement each, no cross pairs.
		// Associations without session tags: pinned to their external ids.
		{"pod-identity-external-id", TrustOptions{PodIdentity: true, Principal: "arn:aws:iam::111122223333:role/podiam-auth",
			ExternalIDs: []string{"eu-west-1/111122223333/prod/apps/web", "eu-west-1/111122223333/prod/apps/batch", "eu-west-1/111122223333/prod/apps/web"}}},
		{"pod-identity-namespaces", TrustOptions{PodIdentity: true, Principal: "111122223333", ServiceAccounts: sas(t, "ns2/sa2", "ns1/sa1", "team-*/sa3")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Trust(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if !json.Valid(got) || !bytes.HasSuffix(got, []byte("}\n")) {
				t.Fatalf("not one JSON document ending in a newline:\n%s", got)
			}
			again, err := Trust(tc.opts)
			if err != nil || !bytes.Equal(got, again) {
				t.Fatalf("second run differs (err %v):\n%s\n%s", err, got, again)
			}
			// The policy engine must read what we write.
			if _, err := Parse(got); err != nil {
				t.Fatalf("Parse of the generated policy: %v\n%s", err, got)
			}
			golden := filepath.Join("testdata", "trust", tc.name+".json")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("policy differs from %s:\n got:\n%s\nwant:\n%s", golden, got, want)
			}
		})
	}
}

func TestTrustErrors(t *testing.T) {
	app := []ServiceAccount{{Namespace: "default", Name: "app"}}
	for _, tc := range []struct {
		name string
		opts TrustOptions
		want string // in the error
	}{
		{"account short", TrustOptions{Account: "12345", Issuer: testIssuer, ServiceAccounts: app}, `account "12345"`},
		{"account letters", TrustOptions{Account: "11112222333a", Issuer: testIssuer, ServiceAccounts: app}, "12 digits"},
		{"no account", TrustOptions{Issuer: testIssuer, ServiceAccounts: app}, "account"},
		{"issuer http", TrustOptions{Account: testAccount, Issuer: "http://oidc.example.com", ServiceAccounts: app}, "issuer"},
		{"issuer empty", TrustOptions{Account: testAccount, ServiceAccounts: app}, "issuer"},
		{"no serviceaccount", TrustOptions{Account: testAccount, Issuer: testIssuer}, "at least one ServiceAccount"},
		{"bad partition", TrustOptions{Account: testAccount, Issuer: testIssuer, Partition: "azure", ServiceAccounts: app}, `partition "azure"`},
		{"bad style", TrustOptions{Account: testAccount, Issuer: testIssuer, Style: "terraform", ServiceAccounts: app}, `style "terraform"`},
		{"kops with audience", TrustOptions{Account: testAccount, Issuer: testIssuer, Style: StyleKOps, Audience: "x", ServiceAccounts: app}, "no :aud condition"},
		{"wildcard audience", TrustOptions{Account: testAccount, Issuer: testIssuer, Audience: "sts.*", ServiceAccounts: app}, "wildcards are not allowed"},
		{"principal with irsa", TrustOptions{Account: testAccount, Issuer: testIssuer, Principal: "111122223333", ServiceAccounts: app}, "principal is for Pod Identity"},
		{"invalid serviceaccount", TrustOptions{Account: testAccount, Issuer: testIssuer, ServiceAccounts: []ServiceAccount{{Namespace: "Default", Name: "app"}}}, `namespace "Default"`},
		{"pod identity with issuer", TrustOptions{PodIdentity: true, Issuer: testIssuer}, "for IRSA"},
		{"pod identity with account", TrustOptions{PodIdentity: true, Account: testAccount}, "for IRSA"},
		{"pod identity with style", TrustOptions{PodIdentity: true, Style: StyleKOps}, "for IRSA"},
		{"pod identity with audience", TrustOptions{PodIdentity: true, Audience: "x"}, "for IRSA"},
		{"pod identity with partition", TrustOptions{PodIdentity: true, Partition: "aws-cn"}, "for IRSA"},
		{"bad principal", TrustOptions{PodIdentity: true, Principal: "podiam-broker"}, `principal "podiam-broker"`},
		{"external id and serviceaccount", TrustOptions{PodIdentity: true, ExternalIDs: []string{"eu-west-1/111122223333/prod/apps/web"}, ServiceAccounts: app}, "one or the other"},
		{"external id short", TrustOptions{PodIdentity: true, ExternalIDs: []string{"prod/apps/web"}}, `external id "prod/apps/web"`},
		{"external id bad account", TrustOptions{PodIdentity: true, ExternalIDs: []string{"eu-west-1/1111/prod/apps/web"}}, "want <region>/<account>"},
		{"external id with irsa", TrustOptions{Account: testAccount, Issuer: testIssuer, ExternalIDs: []string{"eu-west-1/111122223333/prod/apps/web"}, ServiceAccounts: app}, "external ids are for Pod Identity"},
		{"principal not iam", TrustOptions{PodIdentity: true, Principal: "arn:aws:s3:::bucket"}, "want an IAM role ARN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Trust(tc.opts)
			if err == nil {
				t.Fatalf("accepted; wrote\n%s", got)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestParseServiceAccount(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    ServiceAccount
		wantErr string
	}{
		{in: "default/app", want: ServiceAccount{"default", "app"}},
		{in: "kube-system/aws-load-balancer-controller", want: ServiceAccount{"kube-system", "aws-load-balancer-controller"}},
		{in: "ns/name.with.dots", want: ServiceAccount{"ns", "name.with.dots"}},
		{in: "team-*/app", want: ServiceAccount{"team-*", "app"}},
		{in: "*/*", want: ServiceAccount{"*", "*"}},
		{in: "ns/job-?", want: ServiceAccount{"ns", "job-?"}},
		{in: "app", wantErr: "want NAMESPACE/NAME"},
		{in: "a/b/c", wantErr: "want NAMESPACE/NAME"},
		{in: "system:serviceaccount:ns:app", wantErr: "not as the token's sub"},
		{in: "/app", wantErr: `namespace "": empty`},
		{in: "ns/", wantErr: `name "": empty`},
		{in: "Default/app", wantErr: `namespace "Default"`},
		{in: "ns.dotted/app", wantErr: `namespace "ns.dotted"`}, // a label, not a subdomain
		{in: "ns/App", wantErr: `name "App"`},
		{in: "-*/app", wantErr: `namespace "-*"`},
		{in: "ns/app_1", wantErr: `name "app_1"`},
		{in: "ns/" + strings.Repeat("a", 254), wantErr: "must be no more than 253"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseServiceAccount(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %+v, %v; want error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
			if got.String() != tc.in {
				t.Errorf("String() = %q, want %q", got.String(), tc.in)
			}
		})
	}
}

func TestServiceAccountSubject(t *testing.T) {
	sa := ServiceAccount{Namespace: "kube-system", Name: "ebs-csi"}
	if got, want := sa.Subject(), "system:serviceaccount:kube-system:ebs-csi"; got != want {
		t.Fatalf("Subject() = %q, want %q", got, want)
	}
	if sa.HasWildcard() || !(ServiceAccount{"a", "b*"}).HasWildcard() || !(ServiceAccount{"a?", "b"}).HasWildcard() {
		t.Fatal("HasWildcard wrong")
	}
}

// TestTrustMatchesHandWritten compares Trust's output with policies written
// by hand from SPEC §4, the eksctl and kOps documentation and the EKS Pod
// Identity guide, not from Trust itself (as the golden files are). The
// comparison is semantic: member order, the order of values in a list and a
// one-element list against its single value do not count, as in IAM.
func TestTrustMatchesHandWritten(t *testing.T) {
	const (
		eksIssuer = "https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
		kopsIssr  = "https://discovery.example.com/mycluster.example.com"
	)
	for _, tc := range []struct {
		name string
		opts TrustOptions
		want string
	}{
		// eksctl create iamserviceaccount, and SPEC §4.
		{"eksctl, one ServiceAccount", TrustOptions{Account: testAccount, Issuer: eksIssuer, ServiceAccounts: sas(t, "kube-system/ebs-csi-controller-sa")}, `{
			"Version": "2012-10-17",
			"Statement": [{
				"Effect": "Allow",
				"Principal": {"Federated": "arn:aws:iam::111122223333:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"},
				"Action": "sts:AssumeRoleWithWebIdentity",
				"Condition": {"StringEquals": {
					"oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE:sub": "system:serviceaccount:kube-system:ebs-csi-controller-sa",
					"oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE:aud": "sts.amazonaws.com"
				}}
			}]
		}`},
		// kOps's serviceAccountIssuerDiscovery with IAM roles for
		// ServiceAccounts: members sorted as kOps prints them, :sub only.
		{"kops", TrustOptions{Account: testAccount, Issuer: kopsIssr, Style: StyleKOps, ServiceAccounts: sas(t, "kube-system/dns-controller")}, `{
			"Statement": [{
				"Action": "sts:AssumeRoleWithWebIdentity",
				"Condition": {"StringEquals": {
					"discovery.example.com/mycluster.example.com:sub": "system:serviceaccount:kube-system:dns-controller"
				}},
				"Effect": "Allow",
				"Principal": {"Federated": "arn:aws:iam::111122223333:oidc-provider/discovery.example.com/mycluster.example.com"}
			}],
			"Version": "2012-10-17"
		}`},
		// Every ServiceAccount of a namespace: SPEC §4's StringLike on :sub;
		// the audience has no wildcard and stays StringEquals.
		{"wildcard ServiceAccount", TrustOptions{Account: testAccount, Issuer: eksIssuer, ServiceAccounts: sas(t, "my-namespace/*")}, `{
			"Version": "2012-10-17",
			"Statement": [{
				"Effect": "Allow",
				"Principal": {"Federated": "arn:aws:iam::111122223333:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"},
				"Action": "sts:AssumeRoleWithWebIdentity",
				"Condition": {
					"StringLike": {"oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE:sub": "system:serviceaccount:my-namespace:*"},
					"StringEquals": {"oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE:aud": "sts.amazonaws.com"}
				}
			}]
		}`},
		// The EKS Pod Identity guide's trust policy.
		{"pod identity", TrustOptions{PodIdentity: true}, `{
			"Version": "2012-10-17",
			"Statement": [{
				"Sid": "AllowEksAuthToAssumeRoleForPodIdentity",
				"Effect": "Allow",
				"Principal": {"Service": "pods.eks.amazonaws.com"},
				"Action": ["sts:AssumeRole", "sts:TagSession"]
			}]
		}`},
		// The same guide, limited to one ServiceAccount by its session tags
		// (it writes the values as one-element lists).
		{"pod identity, one ServiceAccount", TrustOptions{PodIdentity: true, ServiceAccounts: sas(t, "shop/checkout")}, `{
			"Version": "2012-10-17",
			"Statement": [{
				"Sid": "AllowEksAuthToAssumeRoleForPodIdentity",
				"Effect": "Allow",
				"Principal": {"Service": "pods.eks.amazonaws.com"},
				"Action": ["sts:TagSession", "sts:AssumeRole"],
				"Condition": {"StringEquals": {
					"aws:RequestTag/kubernetes-namespace": ["shop"],
					"aws:RequestTag/kubernetes-service-account": ["checkout"]
				}}
			}]
		}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Trust(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			g, w := iamJSON(t, got), iamJSON(t, []byte(tc.want))
			if !reflect.DeepEqual(g, w) {
				t.Errorf("Trust wrote\n%s\nwhich differs from the hand-written\n%s", got, tc.want)
			}
		})
	}
}

// iamJSON parses a policy into a form where IAM-equal policies are
// reflect.DeepEqual: lists of strings sorted, a one-element list replaced by
// its value.
func iamJSON(t *testing.T, doc []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(doc, &v); err != nil {
		t.Fatalf("%v:\n%s", err, doc)
	}
	var norm func(any) any
	norm = func(v any) any {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				v[k] = norm(e)
			}
			return v
		case []any:
			if len(v) == 1 {
				return norm(v[0])
			}
			strs := make([]string, 0, len(v))
			for i, e := range v {
				v[i] = norm(e)
				if s, ok := v[i].(string); ok {
					strs = append(strs, s)
				}
			}
			if len(strs) == len(v) {
				slices.Sort(strs)
				return strs
			}
			return v
		}
		return v
	}
	return norm(v)
}

// TestTrustExternalIDAllows evaluates the external-id policy: the broker's
// AssumeRole with an association's external id is allowed, with another
// ServiceAccount's id, without one, or from another principal it is not.
func TestTrustExternalIDAllows(t *testing.T) {
	const broker = "arn:aws:iam::111122223333:role/podiam-auth"
	doc, err := Trust(TrustOptions{PodIdentity: true, Principal: broker, ExternalIDs: []string{"eu-west-1/111122223333/prod/apps/web"}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(doc)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		principal  string
		externalID string
		want       bool
	}{
		{"its external id", broker, "eu-west-1/111122223333/prod/apps/web", true},
		{"another ServiceAccount's", broker, "eu-west-1/111122223333/prod/apps/batch", false},
		{"none", broker, "", false},
		{"another principal", "arn:aws:iam::111122223333:role/other", "eu-west-1/111122223333/prod/apps/web", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := AssumeRoleRequest(Principal{Type: "AWS", ID: tc.principal}, nil, nil)
			if tc.externalID != "" {
				r.Context["sts:ExternalId"] = []string{tc.externalID}
			}
			d, err := p.Evaluate(r)
			if err != nil {
				t.Fatal(err)
			}
			if d.Allowed != tc.want {
				t.Fatalf("allowed = %v, want %v", d.Allowed, tc.want)
			}
		})
	}
}
