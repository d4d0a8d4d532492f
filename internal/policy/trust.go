package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/podiam/podiam/internal/oidc"
)

// TrustStyle is the shape of an IRSA trust policy.
type TrustStyle string

// The IRSA trust-policy styles.
const (
	// StyleEKSCTL pins both the subject and the audience, as eksctl, the AWS
	// console and the terraform-aws-modules IRSA module write it.
	StyleEKSCTL TrustStyle = "eksctl"
	// StyleKOps pins the subject only, as kOps writes it. kOps registers its
	// provider with the client ID KOpsAudience, and IAM checks the token's
	// audience against the provider's client IDs, not the trust policy.
	StyleKOps TrustStyle = "kops"
)

// Audiences and names the trust policies use.
const (
	// DefaultAudience is the audience the EKS webhook (and podiam's) puts in
	// IRSA tokens, and the client ID of an EKS-style OIDC provider.
	DefaultAudience = "sts.amazonaws.com"
	// KOpsAudience is the client ID kOps registers and the audience its
	// webhook configuration asks for.
	KOpsAudience = "amazonaws.com"
	// PodIdentityService is the service principal EKS Pod Identity assumes
	// roles as.
	PodIdentityService = "pods.eks.amazonaws.com"
	// PodIdentitySid is the statement id the AWS console writes for Pod
	// Identity roles.
	PodIdentitySid = "AllowEksAuthToAssumeRoleForPodIdentity"
	// BrokerSid is the statement id for a Pod Identity role assumed by an
	// AWS principal (podiam's credential broker) instead of EKS.
	BrokerSid = "AllowBrokerToAssumeRoleForPodIdentity"
	// SubjectPrefix starts the sub claim of every ServiceAccount token.
	SubjectPrefix = "system:serviceaccount:"
	// DefaultPartition is the AWS partition of ARNs unless told otherwise.
	DefaultPartition = "aws"
)

// Session tags that EKS Pod Identity attaches (SPEC §6) and that a trust
// policy can match with aws:RequestTag/<key>.
const (
	TagClusterARN     = "eks-cluster-arn"
	TagClusterName    = "eks-cluster-name"
	TagNamespace      = "kubernetes-namespace"
	TagServiceAccount = "kubernetes-service-account"
	TagPodName        = "kubernetes-pod-name"
	TagPodUID         = "kubernetes-pod-uid"
)

// ServiceAccount names a Kubernetes ServiceAccount, or a pattern of them when
// Namespace or Name contain the IAM wildcards * and ?.
type ServiceAccount struct {
	Namespace, Name string
}

// ParseServiceAccount parses "NAMESPACE/NAME". Both parts must be valid
// Kubernetes names (a DNS-1123 label for the namespace, a DNS-1123 subdomain
// for the ServiceAccount), where * and ? may stand for any characters.
func ParseServiceAccount(s string) (ServiceAccount, error) {
	ns, name, ok := strings.Cut(s, "/")
	if !ok || strings.Contains(name, "/") {
		if strings.HasPrefix(s, SubjectPrefix) {
			return ServiceAccount{}, fmt.Errorf("ServiceAccount %q: write it as NAMESPACE/NAME, not as the token's sub", s)
		}
		return ServiceAccount{}, fmt.Errorf("ServiceAccount %q: want NAMESPACE/NAME", s)
	}
	if err := validName(ns, validation.IsDNS1123Label); err != nil {
		return ServiceAccount{}, fmt.Errorf("ServiceAccount %q: namespace %q: %w", s, ns, err)
	}
	if err := validName(name, validation.IsDNS1123Subdomain); err != nil {
		return ServiceAccount{}, fmt.Errorf("ServiceAccount %q: name %q: %w", s, name, err)
	}
	return ServiceAccount{Namespace: ns, Name: name}, nil
}

// validName checks a name that may hold IAM wildcards: each wildcard is
// replaced by a letter it could stand for, so "team-*" passes and "-*" (no
// Kubernetes name starts with "-") does not.
func validName(s string, check func(string) []string) error {
	if s == "" {
		return errors.New("empty")
	}
	if msgs := check(strings.NewReplacer("*", "a", "?", "a").Replace(s)); len(msgs) > 0 {
		return errors.New(strings.Join(msgs, "; "))
	}
	return nil
}

// String is "NAMESPACE/NAME".
func (sa ServiceAccount) String() string { return sa.Namespace + "/" + sa.Name }

// Subject is the sub claim of the ServiceAccount's tokens,
// system:serviceaccount:NAMESPACE:NAME.
func (sa ServiceAccount) Subject() string { return SubjectPrefix + sa.Namespace + ":" + sa.Name }

// HasWildcard reports whether the namespace or the name is a pattern.
func (sa ServiceAccount) HasWildcard() bool {
	return hasWildcard(sa.Namespace) || hasWildcard(sa.Name)
}

// ValidateAccount checks an AWS account id: 12 digits.
func ValidateAccount(account string) error {
	if !validAccount(account) {
		return fmt.Errorf("account %q: want the 12 digits of an AWS account id", account)
	}
	return nil
}

// ValidatePartition checks the name of an AWS partition (aws, aws-cn,
// aws-us-gov, …) as it appears in ARNs.
func ValidatePartition(partition string) error {
	if !partitionRE.MatchString(partition) {
		return fmt.Errorf("partition %q: want aws, aws-cn, aws-us-gov, …", partition)
	}
	return nil
}

func hasWildcard(s string) bool { return strings.ContainsAny(s, "*?") }

// TrustOptions describes the trust policy to write.
type TrustOptions struct {
	// Account is the 12-digit account of the role and of the OIDC provider
	// (IRSA only).
	Account string
	// Issuer is the cluster's service-account issuer, https://… (IRSA only).
	Issuer string
	// Partition of the provider ARN; DefaultPartition when empty.
	Partition string
	// Style of an IRSA policy; StyleEKSCTL when empty.
	Style TrustStyle
	// Audience pinned by StyleEKSCTL; DefaultAudience when empty.
	Audience string
	// ServiceAccounts allowed to assume the role: required for IRSA; for Pod
	// Identity they add session-tag conditions.
	ServiceAccounts []ServiceAccount
	// PodIdentity writes the sts:AssumeRole + sts:TagSession policy of EKS
	// Pod Identity instead of IRSA.
	PodIdentity bool
	// Principal, with PodIdentity, replaces the EKS service principal with
	// this AWS principal (an ARN or account id): podiam's own broker.
	Principal string
	// ExternalIDs, with PodIdentity, are the sts:ExternalId values of
	// associations that disable session tags
	// ("<region>/<account>/<cluster>/<namespace>/<service account>", shown in
	// the association's status). They replace the session-tag conditions,
	// which such sessions cannot meet, and the policy allows sts:AssumeRole
	// only.
	ExternalIDs []string
}

var (
	partitionRE = regexp.MustCompile(`^aws(-[a-z]+)*$`)
	// principalRE accepts what IAM accepts in "Principal": {"AWS": …} for a
	// role's caller: an account id or an iam/sts ARN with an account.
	// externalIDRE is the external id EKS sets when an association disables
	// session tags: region/account/cluster/namespace/service account.
	externalIDRE = regexp.MustCompile(`^[a-z0-9-]+/[0-9]{12}/[0-9A-Za-z][A-Za-z0-9_-]*/[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-.a-z0-9]*[a-z0-9])?$`)
	principalRE  = regexp.MustCompile(`^(arn:aws(-[a-z]+)*:(iam|sts)::[0-9]{12}:[^\s]+|[0-9]{12})$`)
)

// The document a trust policy is written as. Struct members keep IAM's
// customary order (Sid, Effect, Principal, Action, Condition); encoding/json
// sorts map keys, so the output is the same for the same options.
type trustDocument struct {
	Version   string           `json:"Version"`
	Statement []trustStatement `json:"Statement"`
}

type trustStatement struct {
	Sid       string                    `json:"Sid,omitempty"`
	Effect    Effect                    `json:"Effect"`
	Principal map[string]string         `json:"Principal"`
	Action    any                       `json:"Action"`
	Condition map[string]map[string]any `json:"Condition,omitempty"`
}

// Trust writes the trust policy o describes as indented JSON, ending in a
// newline. Several ServiceAccounts share one statement: their subjects form
// one list under one key (as eksctl and terraform-aws-modules write it),
// under StringLike as soon as one of them is a pattern: IAM ANDs the
// operators of a statement, so exact subjects under StringEquals beside
// patterns under StringLike would require both and allow nobody, while
// StringLike matches an exact Kubernetes name exactly (names hold no * or ?).
//
// For Pod Identity, the ServiceAccounts of one namespace share a statement
// (aws:RequestTag/kubernetes-namespace = the namespace AND
// aws:RequestTag/kubernetes-service-account in the names); ServiceAccounts
// of different namespaces get one statement each, because one list of
// namespaces beside one list of names would also allow the cross pairs
// (ns1/sa2 for ns1/sa1 and ns2/sa2).
func Trust(o TrustOptions) ([]byte, error) {
	doc, err := trustDoc(o)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("encoding the trust policy: %w", err)
	}
	return buf.Bytes(), nil
}

func trustDoc(o TrustOptions) (*trustDocument, error) {
	sas, err := uniqueServiceAccounts(o.ServiceAccounts)
	if err != nil {
		return nil, err
	}
	if o.PodIdentity {
		return podIdentityDoc(o, sas)
	}
	return irsaDoc(o, sas)
}

// uniqueServiceAccounts sorts and deduplicates, so that the policy does not
// depend on the order of the flags.
func uniqueServiceAccounts(in []ServiceAccount) ([]ServiceAccount, error) {
	out := make([]ServiceAccount, 0, len(in))
	seen := map[ServiceAccount]bool{}
	for _, sa := range in {
		if _, err := ParseServiceAccount(sa.String()); err != nil {
			return nil, err
		}
		if !seen[sa] {
			seen[sa] = true
			out = append(out, sa)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out, nil
}

func irsaDoc(o TrustOptions, sas []ServiceAccount) (*trustDocument, error) {
	if o.Principal != "" {
		return nil, errors.New("a principal is for Pod Identity policies; IRSA's principal is the cluster's OIDC provider")
	}
	if len(o.ExternalIDs) > 0 {
		return nil, errors.New("external ids are for Pod Identity policies (associations without session tags)")
	}
	if err := ValidateAccount(o.Account); err != nil {
		return nil, err
	}
	if err := oidc.ValidateIssuer(o.Issuer); err != nil {
		return nil, fmt.Errorf("issuer: %w", err)
	}
	partition := o.Partition
	if partition == "" {
		partition = DefaultPartition
	}
	if err := ValidatePartition(partition); err != nil {
		return nil, err
	}
	style := o.Style
	if style == "" {
		style = StyleEKSCTL
	}
	if style != StyleEKSCTL && style != StyleKOps {
		return nil, fmt.Errorf("style %q: want %s or %s", style, StyleEKSCTL, StyleKOps)
	}
	if style == StyleKOps && o.Audience != "" {
		return nil, fmt.Errorf("style %s writes no :aud condition (kOps's provider accepts the client ID %s): leave the audience out or use style %s", StyleKOps, KOpsAudience, StyleEKSCTL)
	}
	if len(sas) == 0 {
		return nil, errors.New("at least one ServiceAccount (NAMESPACE/NAME, wildcards allowed) must be named: IRSA trusts subjects, not the whole cluster")
	}

	hp := oidc.HostPath(o.Issuer)
	subs := make([]string, len(sas))
	wildcard := false
	for i, sa := range sas {
		subs[i] = sa.Subject()
		wildcard = wildcard || sa.HasWildcard()
	}
	subOp := "StringEquals"
	if wildcard {
		subOp = "StringLike"
	}
	cond := map[string]map[string]any{subOp: {hp + ":sub": oneOrList(subs)}}
	if style == StyleEKSCTL {
		aud := o.Audience
		if aud == "" {
			aud = DefaultAudience
		}
		if hasWildcard(aud) {
			return nil, fmt.Errorf("audience %q: a client ID is matched exactly, wildcards are not allowed", aud)
		}
		if cond["StringEquals"] == nil {
			cond["StringEquals"] = map[string]any{}
		}
		cond["StringEquals"][hp+":aud"] = aud
	}
	return &trustDocument{Version: "2012-10-17", Statement: []trustStatement{{
		Effect:    Allow,
		Principal: map[string]string{"Federated": "arn:" + partition + ":iam::" + o.Account + ":oidc-provider/" + hp},
		Action:    ActionAssumeRoleWithWebIdentity,
		Condition: cond,
	}}}, nil
}

func podIdentityDoc(o TrustOptions, sas []ServiceAccount) (*trustDocument, error) {
	switch {
	case o.Account != "" || o.Issuer != "":
		return nil, errors.New("the account and the issuer are for IRSA policies: Pod Identity trusts a principal, not an OIDC provider")
	case o.Style != "" || o.Audience != "":
		return nil, errors.New("the style and the audience are for IRSA policies")
	case o.Partition != "":
		return nil, errors.New("the partition is for IRSA policies: a Pod Identity principal ARN names its own")
	}
	principal, sid := map[string]string{"Service": PodIdentityService}, PodIdentitySid
	if o.Principal != "" {
		if !principalRE.MatchString(o.Principal) {
			return nil, fmt.Errorf("principal %q: want an IAM role ARN (arn:aws:iam::111122223333:role/NAME) or an account id", o.Principal)
		}
		principal, sid = map[string]string{"AWS": o.Principal}, BrokerSid
	}
	base := trustStatement{
		Sid:       sid,
		Effect:    Allow,
		Principal: principal,
		Action:    []string{ActionAssumeRole, ActionTagSession},
	}
	doc := &trustDocument{Version: "2012-10-17"}
	if len(o.ExternalIDs) > 0 {
		return externalIDDoc(doc, base, o.ExternalIDs, sas)
	}
	if len(sas) == 0 {
		doc.Statement = []trustStatement{base}
		return doc, nil
	}
	// sas is sorted, so the ServiceAccounts of a namespace are adjacent.
	for i := 0; i < len(sas); {
		j := i
		var names []string
		for ; j < len(sas) && sas[j].Namespace == sas[i].Namespace; j++ {
			names = append(names, sas[j].Name)
		}
		st := base
		if len(doc.Statement) > 0 || j < len(sas) {
			// IAM requires distinct Sids within a policy.
			st.Sid = fmt.Sprintf("%s%d", sid, len(doc.Statement)+1)
		}
		st.Condition = map[string]map[string]any{}
		addCondition(st.Condition, "aws:RequestTag/"+TagNamespace, []string{sas[i].Namespace})
		addCondition(st.Condition, "aws:RequestTag/"+TagServiceAccount, names)
		doc.Statement = append(doc.Statement, st)
		i = j
	}
	return doc, nil
}

// externalIDDoc pins the role to the external ids of associations without
// session tags: the ServiceAccount is part of each id, so no tag condition
// is needed (nor possible: such sessions carry no tags).
func externalIDDoc(doc *trustDocument, base trustStatement, ids []string, sas []ServiceAccount) (*trustDocument, error) {
	if len(sas) > 0 {
		return nil, errors.New("external ids replace the ServiceAccount conditions (each id names its namespace and ServiceAccount): give one or the other")
	}
	seen := map[string]bool{}
	var unique []string
	for _, id := range ids {
		if !externalIDRE.MatchString(id) {
			return nil, fmt.Errorf("external id %q: want <region>/<account>/<cluster name>/<namespace>/<service account>, as the association's status shows it", id)
		}
		if !seen[id] {
			seen[id] = true
			unique = append(unique, id)
		}
	}
	sort.Strings(unique)
	base.Action = ActionAssumeRole
	base.Condition = map[string]map[string]any{"StringEquals": {"sts:ExternalId": oneOrList(unique)}}
	doc.Statement = []trustStatement{base}
	return doc, nil
}

// addCondition puts key under StringLike when one of its values is a pattern,
// under StringEquals otherwise.
func addCondition(cond map[string]map[string]any, key string, values []string) {
	op := "StringEquals"
	for _, v := range values {
		if hasWildcard(v) {
			op = "StringLike"
		}
	}
	if cond[op] == nil {
		cond[op] = map[string]any{}
	}
	cond[op][key] = oneOrList(values)
}

// oneOrList is a string for one value (as eksctl writes it) and a list for
// several.
func oneOrList(vs []string) any {
	if len(vs) == 1 {
		return vs[0]
	}
	return vs
}
