package identity

// DefaultAnnotationPrefix is the prefix the Amazon EKS pod identity webhook uses;
// keeping it as the default lets existing manifests work unchanged.
const DefaultAnnotationPrefix = "eks.amazonaws.com"

// PodIdentityLabel marks pods that received Pod Identity credentials. It is fixed
// (not derived from the prefix) because node agents select on this exact key.
const PodIdentityLabel = "eks.amazonaws.com/pod-identity"

// PodIdentityLabelValue is the value of PodIdentityLabel.
const PodIdentityLabelValue = "enabled"

// RoleSessionNamePodName is the only accepted value of the role-session-name
// annotation and flag: the session name is the pod's name.
const RoleSessionNamePodName = "pod-name"

// Keys holds the annotation and label keys for one prefix.
type Keys struct {
	// ServiceAccount annotations.
	RoleARN     string
	Audience    string
	RegionalSTS string
	// Both ServiceAccount and pod annotations.
	TokenExpiration string
	RoleSessionName string
	FSGroup         string
	// Pod annotations.
	SkipContainers   string
	InjectContainers string
	// Pod label excluded by the webhook configuration's objectSelector.
	SkipLabel string
}

// NewKeys returns the keys for prefix (for example "eks.amazonaws.com").
func NewKeys(prefix string) Keys {
	p := prefix + "/"
	return Keys{
		RoleARN:          p + "role-arn",
		Audience:         p + "audience",
		RegionalSTS:      p + "sts-regional-endpoints",
		TokenExpiration:  p + "token-expiration",
		RoleSessionName:  p + "role-session-name",
		FSGroup:          p + "fs-group",
		SkipContainers:   p + "skip-containers",
		InjectContainers: p + "inject-containers",
		SkipLabel:        p + "skip-pod-identity-webhook",
	}
}

// ServiceAccountKeys lists the keys that matter on a ServiceAccount. The cache keeps
// only these, so memory does not grow with unrelated annotations.
func (k Keys) ServiceAccountKeys() []string {
	return []string{k.RoleARN, k.Audience, k.RegionalSTS, k.TokenExpiration, k.RoleSessionName, k.FSGroup}
}
