package podrequest

import (
	"context"
	"encoding/json"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/podiam/podiam/internal/oidc"
	"github.com/podiam/podiam/internal/policy"
)

// Read gets pod namespace/name and its ServiceAccount from the API server and
// returns Of them. A ServiceAccount deleted since the pod started is no
// error: the pod's token still names it.
func Read(ctx context.Context, client kubernetes.Interface, namespace, name string) (Facts, error) {
	pod, err := client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return Facts{}, fmt.Errorf("reading pod %s/%s: %w", namespace, name, err)
	}
	saName := pod.Spec.ServiceAccountName
	if saName == "" {
		saName = DefaultServiceAccount
	}
	sa, err := client.CoreV1().ServiceAccounts(namespace).Get(ctx, saName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		sa = nil
	case err != nil:
		return Facts{}, fmt.Errorf("reading ServiceAccount %s/%s of pod %s/%s: %w", namespace, saName, namespace, name, err)
	}
	return Of(pod, sa), nil
}

// ClusterIssuer asks the API server for its service-account issuer (the
// issuer of its OpenID discovery document), the iss of the pods' tokens.
func ClusterIssuer(ctx context.Context, client kubernetes.Interface) (string, error) {
	b, err := client.CoreV1().RESTClient().Get().AbsPath("/" + oidc.DiscoveryPath).DoRaw(ctx)
	if err != nil {
		return "", fmt.Errorf("reading the cluster's issuer from /%s: %w", oidc.DiscoveryPath, err)
	}
	var d oidc.Discovery
	if err := json.Unmarshal(b, &d); err != nil {
		return "", fmt.Errorf("the cluster's /%s is not JSON: %w", oidc.DiscoveryPath, err)
	}
	if d.Issuer == "" {
		return "", fmt.Errorf("the cluster's /%s has no issuer", oidc.DiscoveryPath)
	}
	return d.Issuer, nil
}

// ReadForRequest is Read plus what Requests needs from the cluster for the
// request the pod makes with o: the cluster's issuer in Facts.Issuer when
// that request is IRSA's and o names no issuer. Only then is the issuer
// asked for, so that a Pod Identity check, or one with --issuer, needs no
// access to the API server's discovery document.
func ReadForRequest(ctx context.Context, client kubernetes.Interface, namespace, name string, o Overrides) (Facts, error) {
	f, err := Read(ctx, client, namespace, name)
	if err != nil {
		return Facts{}, err
	}
	if Action(f, o) != policy.ActionAssumeRoleWithWebIdentity || o.Issuer != "" {
		return f, nil
	}
	if f.Issuer, err = ClusterIssuer(ctx, client); err != nil {
		return Facts{}, fmt.Errorf("%w (or pass --issuer)", err)
	}
	return f, nil
}
