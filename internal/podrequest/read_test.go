package podrequest

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podiam/podiam/internal/policy"
	"github.com/podiam/podiam/test/testcluster"
	"github.com/podiam/podiam/test/testutil"
)

// TestRead reads pods and ServiceAccounts from a real API server: the
// annotation of an existing ServiceAccount is used, a deleted one is no
// error, a missing pod is an error naming it; and the cluster's issuer, which
// ReadForRequest adds when the request needs it.
func TestRead(t *testing.T) {
	const issuer = "https://oidc.example.com/podrequest"
	c := testcluster.StartForTest(t, testcluster.Options{IssuerURL: issuer})
	client, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	ns := testutil.UniqueName("podrequest")
	if err := c.EnsureNamespace(ctx, ns, nil); err != nil {
		t.Fatal(err)
	}
	for _, sa := range []string{"annotated", "deleted"} {
		obj := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa, Namespace: ns,
			Annotations: map[string]string{AudienceAnnotation: "api.example.com"}}}
		if _, err := client.CoreV1().ServiceAccounts(ns).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: sa, Namespace: ns}, Spec: corev1.PodSpec{
			ServiceAccountName: sa,
			Containers:         []corev1.Container{{Name: "app", Image: "app"}},
		}}
		if _, err := client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := client.CoreV1().ServiceAccounts(ns).Delete(ctx, "deleted", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		pod, wantAudience, wantErr string
	}{
		{pod: "annotated", wantAudience: "api.example.com"},
		{pod: "deleted", wantAudience: policy.DefaultAudience},
		{pod: "missing", wantErr: "reading pod " + ns + "/missing"},
	} {
		t.Run(tc.pod, func(t *testing.T) {
			f, err := Read(ctx, client, ns, tc.pod)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !apierrors.IsNotFound(err) {
					t.Fatalf("error %v, want a not-found error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := policy.ServiceAccount{Namespace: ns, Name: tc.pod}
			if f.ServiceAccount != want || f.Audience != tc.wantAudience || f.PodName != tc.pod || f.PodUID == "" {
				t.Fatalf("got %+v; want ServiceAccount %s, audience %q, the pod's name and uid", f, want, tc.wantAudience)
			}
		})
	}

	got, err := ClusterIssuer(ctx, client)
	if err != nil || got != issuer {
		t.Fatalf("ClusterIssuer = %q, %v; want %q", got, err, issuer)
	}

	// ReadForRequest asks for the cluster's issuer only when the request is
	// IRSA's and no issuer is given.
	for _, tc := range []struct {
		name, pod, wantIssuer, wantErr string
		o                              Overrides
	}{
		{name: "IRSA", pod: "annotated", wantIssuer: issuer},
		{name: "issuer given", pod: "annotated", o: Overrides{Issuer: "https://other.example.com"}},
		{name: "Pod Identity", pod: "annotated", o: Overrides{Action: policy.ActionAssumeRole}},
		{name: "missing pod", pod: "missing", wantErr: "reading pod " + ns + "/missing"},
	} {
		t.Run("ReadForRequest/"+tc.name, func(t *testing.T) {
			f, err := ReadForRequest(ctx, client, ns, tc.pod, tc.o)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || f.Issuer != tc.wantIssuer || f.PodName != tc.pod {
				t.Fatalf("got %+v, %v; want pod %s with issuer %q", f, err, tc.pod, tc.wantIssuer)
			}
		})
	}
}
