package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PodIdentityAssociationSpec says which IAM role the pods of one
// ServiceAccount of the association's namespace get. Field names are the EKS
// API's (CreatePodIdentityAssociation).
type PodIdentityAssociationSpec struct {
	// ServiceAccount is the name of a ServiceAccount in the association's
	// namespace; an association never reaches into another namespace. It
	// cannot change, as on EKS: an older association re-pointed at another
	// ServiceAccount would take that ServiceAccount over from the one serving it.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="serviceAccount is immutable"
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	ServiceAccount string `json:"serviceAccount"`

	// RoleARN is the IAM role the pods get.
	// +kubebuilder:validation:Pattern=`^arn:aws(-[a-z]+)*:iam::[0-9]{12}:role/([\x21-\x7E]+/)?[\w+=,.@-]{1,64}$`
	// +kubebuilder:validation:MaxLength=2048
	RoleARN string `json:"roleArn"`

	// TargetRoleARN, if set, is assumed with the credentials of RoleARN's
	// session (role chaining), for access to another account.
	// +optional
	// +kubebuilder:validation:Pattern=`^arn:aws(-[a-z]+)*:iam::[0-9]{12}:role/([\x21-\x7E]+/)?[\w+=,.@-]{1,64}$`
	// +kubebuilder:validation:MaxLength=2048
	TargetRoleARN string `json:"targetRoleArn,omitempty"`

	// DisableSessionTags leaves out the six session tags; the role's trust
	// policy then identifies the pod by the external id in the status.
	// +optional
	DisableSessionTags bool `json:"disableSessionTags,omitempty"`

	// Policy is a session policy (IAM policy JSON) that narrows the role's
	// permissions for these pods.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	Policy string `json:"policy,omitempty"`
}

// PodIdentityAssociationStatus is what podiam observed.
type PodIdentityAssociationStatus struct {
	// ExternalID is the sts:ExternalId podiam sends when session tags are
	// disabled: <region>/<account>/<cluster name>/<namespace>/<service account>.
	// +optional
	ExternalID string `json:"externalId,omitempty"`

	// Conditions: Ready (the role could be assumed, or why not) and Conflict
	// (another, older association names the same ServiceAccount).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Condition types of a PodIdentityAssociation.
const (
	// ConditionReady is True when the role was assumed for a pod.
	ConditionReady = "Ready"
	// ConditionConflict is True on the newer of two associations for one
	// ServiceAccount: the older one wins.
	ConditionConflict = "Conflict"
)

// PodIdentityAssociation gives the pods of a ServiceAccount an IAM role
// through Pod Identity.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=pia,categories=podiam
// +kubebuilder:printcolumn:name="ServiceAccount",type=string,JSONPath=`.spec.serviceAccount`
// +kubebuilder:printcolumn:name="Role",type=string,JSONPath=`.spec.roleArn`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type PodIdentityAssociation struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   PodIdentityAssociationSpec   `json:"spec"`
	Status PodIdentityAssociationStatus `json:"status,omitempty"`
}

// PodIdentityAssociationList is a list of PodIdentityAssociations.
//
// +kubebuilder:object:root=true
type PodIdentityAssociationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []PodIdentityAssociation `json:"items"`
}

func init() {
	SchemeBuilder.Register(&PodIdentityAssociation{}, &PodIdentityAssociationList{})
}
