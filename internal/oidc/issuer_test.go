package oidc

import (
	"strings"
	"testing"
)

func TestValidateIssuer(t *testing.T) {
	tests := []struct {
		issuer string
		want   string // "" for valid; else a substring of the error
	}{
		{"https://oidc.example.com", ""},
		{"https://oidc.example.com/cluster-1", ""},
		{"https://s3.eu-west-1.amazonaws.com/my-bucket", ""},
		{"https://oidc.example.com:8443/c", ""},
		{"https://kubernetes.default.svc", ""},
		{"", "empty"},
		{"http://oidc.example.com", "must start with https://"},
		{"oidc.example.com", "must start with https://"},
		{"HTTPS://oidc.example.com", "must start with https://"}, // tokens and ARNs carry the spelling
		{"https://", "no host"},
		{"https:///path", "no host"},
		{"https://:443/path", "no host"},
		{"https:oidc.example.com", "must start with https://"},
		{"https://user:pw@oidc.example.com", "user info"},
		{"https://oidc.example.com/c?x=1", "query"},
		{"https://oidc.example.com/c?", "query"},
		{"https://oidc.example.com/c#frag", "fragment"},
		{"https://oidc.example.com/c#", "fragment"},
		{"https://oidc.example.com/", `ends with "/"`},
		{"https://oidc.example.com/c/", `ends with "/"`},
		{"https://oidc.example.com/a b", "white space"},
		{"https://oidc.example.com/\x7f", "not a URL"},
	}
	for _, tt := range tests {
		t.Run(tt.issuer, func(t *testing.T) {
			err := ValidateIssuer(tt.issuer)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error = %v, want one containing %q", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "pw@") {
				t.Errorf("error shows the password: %v", err)
			}
		})
	}
}

func TestHostPath(t *testing.T) {
	tests := []struct{ issuer, want string }{
		{"https://oidc.example.com", "oidc.example.com"},
		{"https://s3.eu-west-1.amazonaws.com/my-bucket/c1", "s3.eu-west-1.amazonaws.com/my-bucket/c1"},
		{"https://oidc.example.com/c1/", "oidc.example.com/c1"},
		{"https://oidc.eks.eu-west-1.amazonaws.com/id/ABC", "oidc.eks.eu-west-1.amazonaws.com/id/ABC"},
	}
	for _, tt := range tests {
		if got := HostPath(tt.issuer); got != tt.want {
			t.Errorf("HostPath(%q) = %q, want %q", tt.issuer, got, tt.want)
		}
	}
}
