// Package auth is `podiam auth`: EKS Auth's AssumeRoleForPodIdentity for a
// cluster of one's own. Node agents call it with their own projected token and
// a pod's token; it checks both against the cluster's keys (the same node must
// be named by both), finds the pod's PodIdentityAssociation and assumes its
// role with STS, with the session tags, session name and external id EKS would
// use. It is the only component that holds AWS credentials.
//
// The pieces: verify.go checks tokens (pure, given a key set), handler.go
// speaks HTTP, credentials.go calls STS (merging concurrent requests and
// caching per association and pod), ratelimit.go limits each node, status.go
// writes the associations' status, cluster.go works out the cluster's identity
// (name, ARN, region, account) at start-up.
package auth

import (
	"context"

	"github.com/podiam/podiam/internal/association"
	"github.com/podiam/podiam/internal/eksauth"
	"github.com/podiam/podiam/internal/podtoken"
)

// DefaultAgentAudience is the audience of the agent's own token, the one it
// presents as its bearer token.
const DefaultAgentAudience = "podiam-auth"

// Cluster is what `podiam auth` knows of the cluster it serves: its name (the
// request path must name it, and the eks-cluster-name tag carries it), its ARN
// (the eks-cluster-arn tag; empty off EKS unless set), and the region and
// account that make up the external id of associations with session tags
// disabled.
type Cluster struct {
	Name, ARN       string
	Region, Account string
}

// ExternalID is the sts:ExternalId EKS sets when an association disables
// session tags: "<region>/<account>/<cluster name>/<namespace>/<service account>".
func (c Cluster) ExternalID(namespace, serviceAccount string) string {
	return c.Region + "/" + c.Account + "/" + c.Name + "/" + namespace + "/" + serviceAccount
}

// Caller is the agent that sent a request, from its verified bearer token.
type Caller struct {
	// Namespace and ServiceAccount are the agent's.
	Namespace, ServiceAccount string
	// PodName and PodUID are the agent pod the token is bound to.
	PodName, PodUID string
	// NodeName is the node the token names.
	NodeName string
}

// Pod is what a verified pod token says of its pod.
type Pod = podtoken.Pod

// Issued is what an issuance returns: the credentials and the session they
// belong to.
type Issued struct {
	Credentials     eksauth.Credentials
	AssumedRoleUser eksauth.AssumedRoleUser
	// SessionName is the role session name of the (last) assumed role.
	SessionName string
	// RoleARN is the role the credentials are for: the target role when the
	// association has one, else its role.
	RoleARN string
	// Cached is true when the credentials came from the cache, without a call
	// to STS.
	Cached bool
}

// Credentialer gets credentials of association a for pod, calling STS at most
// once per (association, pod) per credential lifetime. Errors are
// *eksauth.Error, ready for the caller.
type Credentialer interface {
	Credentials(ctx context.Context, a *association.Association, pod Pod) (*Issued, *eksauth.Error)
}

// StatusReporter learns the outcome of each STS call made for an association
// (not of cache hits), so that its status can say whether its role could be
// assumed, and why not. err is nil on success. Implementations must not block.
type StatusReporter interface {
	Report(a *association.Association, err *eksauth.Error)
}

// Associations finds the association of a ServiceAccount (the older one when
// there are several); association.Watcher implements it.
type Associations interface {
	Lookup(namespace, serviceAccount string) (*association.Association, bool)
}
