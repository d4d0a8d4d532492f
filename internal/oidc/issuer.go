package oidc

import (
	"fmt"
	"net/url"
	"strings"
)

// ValidateIssuer returns nil if issuer can be a service-account issuer that
// AWS IAM accepts as an OpenID Connect provider: an absolute https:// URL
// with a host, an optional port and path, and no user info, query, fragment
// or trailing "/". The error says exactly what is wrong.
//
// The trailing "/" is refused because tokens carry the issuer exactly as
// kube-apiserver's --service-account-issuer spells it while relying parties
// fetch <issuer>/.well-known/openid-configuration: with a trailing "/" the
// two no longer agree and verification fails.
func ValidateIssuer(issuer string) error {
	if issuer == "" {
		return fmt.Errorf("issuer is empty; want an https:// URL such as https://oidc.example.com/my-cluster")
	}
	u, err := url.Parse(issuer)
	if err != nil {
		return fmt.Errorf("issuer %q is not a URL: %w", issuer, err)
	}
	if u.User != nil {
		return fmt.Errorf("issuer %q contains user info; remove it", u.Redacted())
	}
	switch {
	case !strings.HasPrefix(issuer, "https://"): // literally: HostPath and IAM expect this spelling
		return fmt.Errorf("issuer %q must start with https:// (AWS IAM fetches the discovery document over HTTPS only)", issuer)
	case u.Opaque != "" || u.Host == "" || u.Hostname() == "":
		return fmt.Errorf("issuer %q has no host; want https://HOST[/PATH]", issuer)
	case u.RawQuery != "" || u.ForceQuery:
		return fmt.Errorf("issuer %q has a query (\"?...\"); an OpenID issuer may not have one", issuer)
	case u.Fragment != "" || strings.Contains(issuer, "#"):
		return fmt.Errorf("issuer %q has a fragment (\"#...\"); an OpenID issuer may not have one", issuer)
	case strings.HasSuffix(issuer, "/"):
		return fmt.Errorf("issuer %q ends with \"/\"; remove it here and in kube-apiserver's --service-account-issuer (tokens carry the issuer exactly, and <issuer>/.well-known/openid-configuration would get a double slash)", issuer)
	case strings.ContainsAny(issuer, " \t\r\n"):
		return fmt.Errorf("issuer %q contains white space", issuer)
	}
	return nil
}

// HostPath returns issuer without its https:// scheme (and without a
// trailing "/"): the form IAM uses in OIDC provider ARNs
// (arn:aws:iam::ACCOUNT:oidc-provider/HOSTPATH) and in the condition keys of
// trust policies (HOSTPATH:sub, HOSTPATH:aud).
func HostPath(issuer string) string {
	return strings.TrimSuffix(strings.TrimPrefix(issuer, "https://"), "/")
}
