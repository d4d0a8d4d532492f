// Package association keeps the cluster's PodIdentityAssociations
// (podiam.dev/v1alpha1) in memory, reduced to what a lookup needs, and answers
// which association, if any, a (namespace, ServiceAccount) has. The webhook asks
// it whether a pod gets Pod Identity; `podiam auth` asks it which role to assume.
//
// Two associations may name one ServiceAccount; the older one (by
// creationTimestamp, then by name) wins, as in EKS, where the second
// CreatePodIdentityAssociation would have been refused.
package association

import (
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podiam/podiam/api/v1alpha1"
)

// Resource is the API resource the watcher lists and watches.
var Resource = v1alpha1.GroupVersion.WithResource("podidentityassociations")

// Association is a PodIdentityAssociation reduced to what a lookup needs: no
// status, labels, annotations or managed fields.
type Association struct {
	Namespace, Name   string
	UID               types.UID
	CreationTimestamp time.Time

	ServiceAccount     string
	RoleARN            string
	TargetRoleARN      string
	DisableSessionTags bool
	Policy             string
}

// Key returns the association's "namespace/name".
func (a *Association) Key() string { return a.Namespace + "/" + a.Name }

// FromObject reduces p. Strings are copied, so the result keeps none of the
// decoded object's memory alive.
func FromObject(p *v1alpha1.PodIdentityAssociation) *Association {
	return &Association{
		Namespace:          strings.Clone(p.Namespace),
		Name:               strings.Clone(p.Name),
		UID:                types.UID(strings.Clone(string(p.UID))),
		CreationTimestamp:  p.CreationTimestamp.UTC(),
		ServiceAccount:     strings.Clone(p.Spec.ServiceAccount),
		RoleARN:            strings.Clone(p.Spec.RoleARN),
		TargetRoleARN:      strings.Clone(p.Spec.TargetRoleARN),
		DisableSessionTags: p.Spec.DisableSessionTags,
		Policy:             strings.Clone(p.Spec.Policy),
	}
}

// keys returns a copy of a with only what picking the winner of its
// ServiceAccount needs: no role ARNs, session-tag setting or policy.
func (a *Association) keys() *Association {
	return &Association{Namespace: a.Namespace, Name: a.Name, UID: a.UID,
		CreationTimestamp: a.CreationTimestamp, ServiceAccount: a.ServiceAccount}
}

// decode turns what the dynamic client delivers (or a typed object) into an
// Association. An object the API server let through but that names no
// ServiceAccount (the CRD's validation was bypassed or older) is an error.
func decode(obj any) (*Association, error) {
	var p v1alpha1.PodIdentityAssociation
	switch o := obj.(type) {
	case *v1alpha1.PodIdentityAssociation:
		p = *o
	case *unstructured.Unstructured:
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &p); err != nil {
			return nil, fmt.Errorf("decoding PodIdentityAssociation %s/%s: %w", o.GetNamespace(), o.GetName(), err)
		}
	default:
		return nil, fmt.Errorf("unexpected object %T", obj)
	}
	if p.Spec.ServiceAccount == "" {
		return nil, fmt.Errorf("PodIdentityAssociation %s/%s has no spec.serviceAccount", p.Namespace, p.Name)
	}
	return FromObject(&p), nil
}

// Older reports whether a wins over b for their ServiceAccount: the older by
// creationTimestamp, then (the API server's timestamps have a resolution of a
// second) the one whose name sorts first, so every replica picks the same one.
func Older(a, b *Association) bool {
	if !a.CreationTimestamp.Equal(b.CreationTimestamp) {
		return a.CreationTimestamp.Before(b.CreationTimestamp)
	}
	return a.Name < b.Name
}

// Winner returns the association that wins among candidates (all for one
// ServiceAccount), or nil if there are none.
func Winner(candidates []*Association) *Association {
	var w *Association
	for _, c := range candidates {
		if w == nil || Older(c, w) {
			w = c
		}
	}
	return w
}
