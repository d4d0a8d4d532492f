package policy

import (
	"reflect"
	"testing"
)

func TestWebIdentityRequest(t *testing.T) {
	tests := []struct {
		partition, issuer string
		aud               []string
		want              Request
	}{
		{"aws", "https://oidc.example.com/c1", []string{"sts.amazonaws.com"}, Request{
			Action:    "sts:AssumeRoleWithWebIdentity",
			Principal: Principal{Type: "Federated", ID: "arn:aws:iam::111122223333:oidc-provider/oidc.example.com/c1"},
			Context: map[string][]string{
				"oidc.example.com/c1:sub": {"system:serviceaccount:ns:app"},
				"oidc.example.com/c1:aud": {"sts.amazonaws.com"},
				"aws:FederatedProvider":   {"arn:aws:iam::111122223333:oidc-provider/oidc.example.com/c1"},
			},
		}},
		// A token without aud has no :aud key (so that StringEquals on it
		// fails, as it would in IAM); a trailing slash is not part of the key.
		// An empty partition is the aws partition.
		{"", "https://oidc.example.com/", nil, Request{
			Action:    "sts:AssumeRoleWithWebIdentity",
			Principal: Principal{Type: "Federated", ID: "arn:aws:iam::111122223333:oidc-provider/oidc.example.com"},
			Context: map[string][]string{
				"oidc.example.com:sub":  {"system:serviceaccount:ns:app"},
				"aws:FederatedProvider": {"arn:aws:iam::111122223333:oidc-provider/oidc.example.com"},
			},
		}},
		{"aws", "https://oidc.example.com", []string{"a", "b"}, Request{
			Action:    "sts:AssumeRoleWithWebIdentity",
			Principal: Principal{Type: "Federated", ID: "arn:aws:iam::111122223333:oidc-provider/oidc.example.com"},
			Context: map[string][]string{
				"oidc.example.com:sub":  {"system:serviceaccount:ns:app"},
				"oidc.example.com:aud":  {"a", "b"},
				"aws:FederatedProvider": {"arn:aws:iam::111122223333:oidc-provider/oidc.example.com"},
			},
		}},
		// Another partition names the provider in both the principal and
		// aws:FederatedProvider; the condition keys carry no partition.
		{"aws-cn", "https://oidc.eks.cn-north-1.amazonaws.com.cn/id/XYZ", []string{"sts.amazonaws.com"}, Request{
			Action:    "sts:AssumeRoleWithWebIdentity",
			Principal: Principal{Type: "Federated", ID: "arn:aws-cn:iam::111122223333:oidc-provider/oidc.eks.cn-north-1.amazonaws.com.cn/id/XYZ"},
			Context: map[string][]string{
				"oidc.eks.cn-north-1.amazonaws.com.cn/id/XYZ:sub": {"system:serviceaccount:ns:app"},
				"oidc.eks.cn-north-1.amazonaws.com.cn/id/XYZ:aud": {"sts.amazonaws.com"},
				"aws:FederatedProvider":                           {"arn:aws-cn:iam::111122223333:oidc-provider/oidc.eks.cn-north-1.amazonaws.com.cn/id/XYZ"},
			},
		}},
	}
	for _, tt := range tests {
		got := WebIdentityRequest(tt.partition, "111122223333", tt.issuer, "system:serviceaccount:ns:app", tt.aud)
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("WebIdentityRequest(%q, %q) =\n%+v\nwant\n%+v", tt.partition, tt.issuer, got, tt.want)
		}
	}
}

func TestAssumeRoleRequest(t *testing.T) {
	tests := []struct {
		name       string
		principal  Principal
		tags       map[string]string
		transitive []string
		want       map[string][]string
	}{
		{"pod identity", Principal{Type: "Service", ID: "pods.eks.amazonaws.com"},
			map[string]string{"kubernetes-service-account": "app", "kubernetes-namespace": "ns"}, []string{"kubernetes-namespace"},
			map[string][]string{
				"aws:PrincipalServiceName":                  {"pods.eks.amazonaws.com"},
				"aws:RequestTag/kubernetes-namespace":       {"ns"},
				"aws:RequestTag/kubernetes-service-account": {"app"},
				"aws:TagKeys":           {"kubernetes-namespace", "kubernetes-service-account"},
				"sts:TransitiveTagKeys": {"kubernetes-namespace"},
			}},
		{"role session", Principal{Type: "AWS", ID: "arn:aws:sts::111122223333:assumed-role/broker/s1"}, nil, nil,
			map[string][]string{
				"aws:PrincipalAccount": {"111122223333"},
				"aws:PrincipalArn":     {"arn:aws:iam::111122223333:role/broker"},
			}},
		{"user", Principal{Type: "AWS", ID: "arn:aws:iam::111122223333:user/alice"}, nil, nil,
			map[string][]string{
				"aws:PrincipalAccount": {"111122223333"},
				"aws:PrincipalArn":     {"arn:aws:iam::111122223333:user/alice"},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := AssumeRoleRequest(tt.principal, tt.tags, tt.transitive)
			if r.Action != "sts:AssumeRole" || r.Principal != tt.principal {
				t.Errorf("request = %+v", r)
			}
			if !reflect.DeepEqual(r.Context, tt.want) {
				t.Errorf("Context =\n%v\nwant\n%v", r.Context, tt.want)
			}
		})
	}
}
