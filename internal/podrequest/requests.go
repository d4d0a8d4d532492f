package podrequest

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/podiam/podiam/internal/oidc"
	"github.com/podiam/podiam/internal/policy"
)

// Overrides are what the user states about a request (the flags of `podiam
// policy check`); each one that is set wins over the Facts. Errors name them
// by their flag, since the flag is what the user can change.
type Overrides struct {
	// Action is policy.ActionAssumeRoleWithWebIdentity (IRSA) or
	// policy.ActionAssumeRole (Pod Identity) (--action).
	Action string
	// Partition, Account, Issuer and Audiences are IRSA's provider and token
	// (--partition, --account, --issuer, --audience, which may repeat for a
	// token whose aud is a list).
	Partition, Account, Issuer string
	Audiences                  []string
	// Principal is the AWS principal (an ARN) that calls sts:AssumeRole
	// instead of the EKS service (--principal); Pod Identity only.
	Principal string
	// Tags are Pod Identity session tags KEY=VALUE (--tag); they add to the
	// tags the facts give and override them.
	Tags []string
}

// ServiceAccountFacts are the facts of a request from ServiceAccount
// NAMESPACE/NAME with no pod (--serviceaccount). A pattern is refused: a
// request comes from one ServiceAccount.
func ServiceAccountFacts(s string) (Facts, error) {
	sa, err := policy.ParseServiceAccount(s)
	if err != nil {
		return Facts{}, fmt.Errorf("--serviceaccount: %w", err)
	}
	if sa.HasWildcard() {
		return Facts{}, fmt.Errorf("--serviceaccount %s: a request comes from one ServiceAccount; wildcards are for policy trust", sa)
	}
	return Facts{ServiceAccount: sa}, nil
}

// Action is the action to check: o's, else the one the webhook gave the pod,
// else IRSA's.
func Action(f Facts, o Overrides) string {
	switch {
	case o.Action != "":
		return o.Action
	case f.Action != "":
		return f.Action
	}
	return policy.ActionAssumeRoleWithWebIdentity
}

// Requests are the requests IAM evaluates for f with o, by Action:
// WebIdentityRequests or PodIdentityRequests.
func Requests(f Facts, o Overrides) ([]policy.Request, error) {
	switch a := Action(f, o); a {
	case policy.ActionAssumeRoleWithWebIdentity:
		return WebIdentityRequests(f, o)
	case policy.ActionAssumeRole:
		return PodIdentityRequests(f, o)
	default:
		return nil, fmt.Errorf("--action %q: want %s (IRSA) or %s (Pod Identity)", a, policy.ActionAssumeRoleWithWebIdentity, policy.ActionAssumeRole)
	}
}

// WebIdentityRequests is the one request of IRSA: the token of f's
// ServiceAccount, from the OIDC provider of the issuer in the account and
// partition. Each of these is o's, else the facts': the role's account and
// partition (IAM keeps the provider beside the role), the cluster's issuer,
// the pod's audience, else policy.DefaultAudience; the partition defaults to
// policy.DefaultPartition.
func WebIdentityRequests(f Facts, o Overrides) ([]policy.Request, error) {
	switch {
	case len(o.Tags) > 0:
		return nil, errors.New("--tag is for sts:AssumeRole (Pod Identity): ServiceAccount tokens carry no session tags")
	case o.Principal != "":
		return nil, errors.New("--principal is for sts:AssumeRole (Pod Identity): IRSA's principal is the OIDC provider")
	case slices.Contains(o.Audiences, ""):
		return nil, errors.New("--audience: empty; leave the flag out for sts.amazonaws.com")
	}
	account, err := webIdentityAccount(f, o)
	if err != nil {
		return nil, err
	}
	issuer, err := webIdentityIssuer(f, o)
	if err != nil {
		return nil, err
	}
	partition, err := webIdentityPartition(f, o)
	if err != nil {
		return nil, err
	}
	audiences := o.Audiences
	switch {
	case len(audiences) > 0:
	case f.Audience != "":
		audiences = []string{f.Audience}
	default:
		audiences = []string{policy.DefaultAudience}
	}
	return []policy.Request{policy.WebIdentityRequest(partition, account, issuer, f.ServiceAccount.Subject(), audiences)}, nil
}

// webIdentityAccount is o's account, else the role's, validated; the error
// says where a wrong one came from.
func webIdentityAccount(f Facts, o Overrides) (string, error) {
	switch {
	case o.Account != "":
		if err := policy.ValidateAccount(o.Account); err != nil {
			return "", fmt.Errorf("--account: %w", err)
		}
		return o.Account, nil
	case f.RoleAccount != "":
		if err := policy.ValidateAccount(f.RoleAccount); err != nil {
			return "", fmt.Errorf("the pod's %s %s: %w (or pass --account)", RoleARNEnv, f.RoleARN, err)
		}
		return f.RoleAccount, nil
	case f.RoleARN != "":
		return "", fmt.Errorf("--account is required: the pod's %s %q is not an ARN to take it from", RoleARNEnv, f.RoleARN)
	case f.PodName != "":
		return "", fmt.Errorf("--account is required: pod %s/%s has no %s to take it from", f.ServiceAccount.Namespace, f.PodName, RoleARNEnv)
	}
	return "", errors.New("--account is required for IRSA")
}

// webIdentityIssuer is o's issuer, else the cluster's, validated.
func webIdentityIssuer(f Facts, o Overrides) (string, error) {
	switch {
	case o.Issuer != "":
		if err := oidc.ValidateIssuer(o.Issuer); err != nil {
			return "", fmt.Errorf("--issuer: %w", err)
		}
		return o.Issuer, nil
	case f.Issuer != "":
		if err := oidc.ValidateIssuer(f.Issuer); err != nil {
			return "", fmt.Errorf("the cluster's issuer: %w (or pass --issuer)", err)
		}
		return f.Issuer, nil
	}
	return "", errors.New("--issuer is required for IRSA")
}

// webIdentityPartition is o's partition, else the role's, validated; ""
// (policy.DefaultPartition) when neither names one.
func webIdentityPartition(f Facts, o Overrides) (string, error) {
	switch {
	case o.Partition != "":
		if err := policy.ValidatePartition(o.Partition); err != nil {
			return "", fmt.Errorf("--partition: %w", err)
		}
		return o.Partition, nil
	case f.RolePartition != "":
		if err := policy.ValidatePartition(f.RolePartition); err != nil {
			return "", fmt.Errorf("the pod's %s %s: %w (or pass --partition)", RoleARNEnv, f.RoleARN, err)
		}
		return f.RolePartition, nil
	}
	return "", nil
}

// PodIdentityRequests is the Pod Identity request, by the EKS service or
// o.Principal, with the session tags EKS attaches (those the facts know: the
// ServiceAccount's and the pod's; o.Tags adds the cluster's and overrides
// any), and the same request for sts:TagSession (AssumeRoleRequests).
func PodIdentityRequests(f Facts, o Overrides) ([]policy.Request, error) {
	if len(o.Audiences) > 0 || o.Issuer != "" || o.Account != "" || o.Partition != "" {
		return nil, errors.New("--audience, --issuer, --account and --partition are for IRSA; sts:AssumeRole is decided on its principal and session tags")
	}
	principal := policy.Principal{Type: "Service", ID: policy.PodIdentityService}
	if o.Principal != "" {
		principal = policy.Principal{Type: "AWS", ID: o.Principal}
	}
	tags := f.SessionTags(Cluster{})
	for _, kv := range o.Tags {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--tag %q: want KEY=VALUE", kv)
		}
		tags[k] = v
	}
	return AssumeRoleRequests(principal, tags), nil
}
