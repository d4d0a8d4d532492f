package policy

import (
	"slices"
	"strings"

	"github.com/podiam/podiam/internal/oidc"
)

// Principal is the identity that makes a request, as IAM names it in the
// Principal element of a policy.
type Principal struct {
	// Type is "AWS", "Federated" or "Service".
	Type string
	// ID is an ARN or account id for "AWS" (arn:aws:iam::111122223333:role/app,
	// arn:aws:sts::111122223333:assumed-role/app/session, 111122223333), the
	// provider ARN or name for "Federated", the service name for "Service".
	ID string
}

// Request is one call that a trust policy decides on.
type Request struct {
	// Action is the IAM action, e.g. "sts:AssumeRoleWithWebIdentity".
	Action string
	// Principal is the caller.
	Principal Principal
	// Context holds the condition keys of the request. Keys may be given in
	// any case (IAM compares keys case-insensitively); a multi-valued key
	// (aws:TagKeys, an aud list) has several values.
	Context map[string][]string
}

// Actions IAM uses for the three ways to assume a role.
const (
	ActionAssumeRole                = "sts:AssumeRole"
	ActionAssumeRoleWithWebIdentity = "sts:AssumeRoleWithWebIdentity"
	ActionTagSession                = "sts:TagSession"
)

// WebIdentityRequest is the request IAM evaluates when a token of the OIDC
// provider issuer (https://…) asks for a role of account in partition (aws,
// aws-cn, aws-us-gov, …; DefaultPartition when empty) with
// sts:AssumeRoleWithWebIdentity. It carries the condition keys AWS documents
// for OIDC providers ("Available keys for AWS web identity federation"):
// <hostpath>:sub, <hostpath>:aud (several values when the token's aud is a
// list), <hostpath>:oaud is not set because AWS documents it only for
// providers whose aud differs from the client id; plus
// aws:FederatedProvider (the provider ARN). The principal is Federated
// arn:<partition>:iam::<account>:oidc-provider/<hostpath>, where hostpath is
// oidc.HostPath(issuer).
func WebIdentityRequest(partition, account, issuer, sub string, aud []string) Request {
	if partition == "" {
		partition = DefaultPartition
	}
	hp := oidc.HostPath(issuer)
	provider := "arn:" + partition + ":iam::" + account + ":oidc-provider/" + hp
	ctx := map[string][]string{
		hp + ":sub":             {sub},
		"aws:FederatedProvider": {provider},
	}
	if len(aud) > 0 {
		ctx[hp+":aud"] = append([]string(nil), aud...)
	}
	return Request{
		Action:    ActionAssumeRoleWithWebIdentity,
		Principal: Principal{Type: "Federated", ID: provider},
		Context:   ctx,
	}
}

// AssumeRoleRequest is the sts:AssumeRole request of principal with session
// tags (aws:RequestTag/<key> for each tag, aws:TagKeys for their keys,
// sorted) and transitive tag keys (sts:TransitiveTagKeys). For an AWS
// principal it also sets aws:PrincipalAccount and aws:PrincipalArn (for a
// role session, IAM's value is the role's ARN; a role path, which session
// ARNs do not carry, is not restored); for a service principal
// aws:PrincipalServiceName. IAM also evaluates
// sts:TagSession when tags are present: the caller evaluates the same request
// with Action set to ActionTagSession.
func AssumeRoleRequest(principal Principal, tags map[string]string, transitive []string) Request {
	ctx := map[string][]string{}
	switch principal.Type {
	case "AWS":
		if acct, _ := awsAccount(principal.ID); acct != "" {
			ctx["aws:PrincipalAccount"] = []string{acct}
		}
		if arn := principalARN(principal.ID); arn != "" {
			ctx["aws:PrincipalArn"] = []string{arn}
		}
	case "Service":
		ctx["aws:PrincipalServiceName"] = []string{principal.ID}
	}
	if len(tags) > 0 {
		keys := make([]string, 0, len(tags))
		for k, v := range tags {
			ctx["aws:RequestTag/"+k] = []string{v}
			keys = append(keys, k)
		}
		slices.Sort(keys)
		ctx["aws:TagKeys"] = keys
	}
	if len(transitive) > 0 {
		ctx["sts:TransitiveTagKeys"] = append([]string(nil), transitive...)
	}
	return Request{Action: ActionAssumeRole, Principal: principal, Context: ctx}
}

// principalARN is the value IAM gives aws:PrincipalArn: the caller's ARN,
// or for an assumed-role session the ARN of its role.
func principalARN(id string) string {
	p := strings.SplitN(id, ":", 6)
	if len(p) != 6 || p[0] != "arn" {
		return ""
	}
	if rest, ok := strings.CutPrefix(p[5], "assumed-role/"); ok && p[2] == "sts" {
		role, _, _ := strings.Cut(rest, "/")
		return "arn:" + p[1] + ":iam::" + p[4] + ":role/" + role
	}
	return id
}
