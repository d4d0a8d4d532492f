// Package podrequest works out the request a pod makes to AWS from what the
// webhook gave it: its ServiceAccount, whether it uses IRSA or EKS Pod
// Identity, the audience of its token, its role, and the session tags EKS Pod
// Identity attaches (SPEC §2 and §6).
//
// The pure part (Of, Facts.SessionTags, TransitiveTagKeys,
// AssumeRoleRequests, and Requests with its Overrides) turns Kubernetes
// objects into policy.Request facts and is shared by `podiam policy check`,
// the local STS and `podiam auth`; the I/O part (Read, ReadForRequest,
// ClusterIssuer) only gets the objects from the API server.
package podrequest

import (
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/podiam/podiam/internal/policy"
)

// Names the webhook uses in the pods it mutates (SPEC §2).
const (
	// IRSAVolumeName is the projected volume of the IRSA token.
	IRSAVolumeName = "aws-iam-token"
	// PodIdentityVolumeName is the projected volume of the Pod Identity token.
	PodIdentityVolumeName = "eks-pod-identity-token"
	// RoleARNEnv holds the IRSA role in the pod's containers.
	RoleARNEnv = "AWS_ROLE_ARN"
	// AudienceAnnotation on a ServiceAccount sets the audience of its IRSA
	// tokens.
	AudienceAnnotation = "eks.amazonaws.com/audience"
	// DefaultServiceAccount is the ServiceAccount of a pod that names none.
	DefaultServiceAccount = "default"
)

// Facts is what a pod presents to AWS, as the webhook set it up.
type Facts struct {
	// ServiceAccount is the pod's ServiceAccount (the token's subject).
	ServiceAccount policy.ServiceAccount
	// PodName and PodUID identify the pod (Pod Identity session tags); empty
	// when the facts describe a ServiceAccount rather than a pod.
	PodName, PodUID string
	// Action is policy.ActionAssumeRoleWithWebIdentity (IRSA) or
	// policy.ActionAssumeRole (Pod Identity).
	Action string
	// Audience is the aud of the IRSA token; empty for Pod Identity.
	Audience string
	// RoleARN is the IRSA role (AWS_ROLE_ARN); empty when the webhook gave
	// the pod none.
	RoleARN string
	// RoleAccount and RolePartition are the account and partition (aws,
	// aws-cn, aws-us-gov, …) of RoleARN: IAM keeps a role's OIDC provider in
	// the role's own account, and so in its partition.
	RoleAccount, RolePartition string
	// Issuer is the iss of the pod's tokens, the cluster's service-account
	// issuer; ReadForRequest sets it when the request needs it, Of never.
	Issuer string
}

// Of reads the identity the webhook injected into pod. sa is the pod's
// ServiceAccount object, or nil when it is gone (the pod's token still names
// it). The pod uses Pod Identity when it has the eks-pod-identity-token
// volume and no aws-iam-token, else IRSA, with the audience of the
// aws-iam-token projection, else of sa's eks.amazonaws.com/audience
// annotation, else policy.DefaultAudience.
func Of(pod *corev1.Pod, sa *corev1.ServiceAccount) Facts {
	saName := pod.Spec.ServiceAccountName
	if saName == "" {
		saName = DefaultServiceAccount
	}
	f := Facts{
		ServiceAccount: policy.ServiceAccount{Namespace: pod.Namespace, Name: saName},
		PodName:        pod.Name,
		PodUID:         string(pod.UID),
		Action:         policy.ActionAssumeRoleWithWebIdentity,
	}
	var irsa, podIdentity bool
	for _, v := range pod.Spec.Volumes {
		switch v.Name {
		case IRSAVolumeName:
			irsa = true
			if v.Projected == nil {
				continue
			}
			for _, s := range v.Projected.Sources {
				if s.ServiceAccountToken != nil && f.Audience == "" {
					f.Audience = s.ServiceAccountToken.Audience
				}
			}
		case PodIdentityVolumeName:
			podIdentity = true
		}
	}
	if podIdentity && !irsa {
		f.Action = policy.ActionAssumeRole
		f.Audience = "" // Pod Identity's audience is fixed; the request carries none
	} else {
		if f.Audience == "" && sa != nil {
			f.Audience = sa.Annotations[AudienceAnnotation]
		}
		if f.Audience == "" {
			f.Audience = policy.DefaultAudience
		}
	}
	for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
		for _, e := range c.Env {
			if e.Name == RoleARNEnv && e.Value != "" && f.RoleARN == "" {
				f.RoleARN = e.Value
			}
		}
	}
	// arn:PARTITION:iam::ACCOUNT:role/NAME
	if parts := strings.SplitN(f.RoleARN, ":", 6); len(parts) == 6 && parts[0] == "arn" {
		f.RolePartition, f.RoleAccount = parts[1], parts[4]
	}
	return f
}

// Cluster names the EKS cluster for the eks-cluster-* session tags; either
// may be empty when unknown.
type Cluster struct {
	Name, ARN string
}

// SessionTags are the session tags EKS Pod Identity attaches for these facts
// in cluster (SPEC §6): eks-cluster-arn, eks-cluster-name,
// kubernetes-namespace, kubernetes-service-account, kubernetes-pod-name,
// kubernetes-pod-uid. A tag whose value is unknown (no pod, no cluster) is
// left out rather than sent empty.
func (f Facts) SessionTags(cluster Cluster) map[string]string {
	tags := map[string]string{}
	for k, v := range map[string]string{
		policy.TagClusterARN:     cluster.ARN,
		policy.TagClusterName:    cluster.Name,
		policy.TagNamespace:      f.ServiceAccount.Namespace,
		policy.TagServiceAccount: f.ServiceAccount.Name,
		policy.TagPodName:        f.PodName,
		policy.TagPodUID:         f.PodUID,
	} {
		if v != "" {
			tags[k] = v
		}
	}
	return tags
}

// TransitiveTagKeys are the keys of tags, sorted: EKS marks every session tag
// transitive (SPEC §6), so that they follow a role chain.
func TransitiveTagKeys(tags map[string]string) []string {
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// AssumeRoleRequests are the requests IAM evaluates when principal assumes a
// role for Pod Identity with tags, all transitive: sts:AssumeRole and, when
// there are tags, the same request for sts:TagSession, which IAM also
// requires.
func AssumeRoleRequests(principal policy.Principal, tags map[string]string) []policy.Request {
	r := policy.AssumeRoleRequest(principal, tags, TransitiveTagKeys(tags))
	if len(tags) == 0 {
		return []policy.Request{r}
	}
	tag := r
	tag.Action = policy.ActionTagSession
	tag.Context = maps.Clone(r.Context) // callers may annotate one without the other
	return []policy.Request{r, tag}
}
