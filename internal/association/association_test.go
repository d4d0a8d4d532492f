package association

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podiam/podiam/api/v1alpha1"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func assoc(name string, created time.Time) *Association {
	return &Association{Namespace: "ns", Name: name, ServiceAccount: "app", CreationTimestamp: created}
}

func TestWinner(t *testing.T) {
	tests := []struct {
		name  string
		cands []*Association
		want  string // winner's name; "" for none
	}{
		{name: "none", cands: nil, want: ""},
		{name: "one", cands: []*Association{assoc("a", t0)}, want: "a"},
		{name: "the older wins", cands: []*Association{assoc("a", t0.Add(time.Second)), assoc("b", t0)}, want: "b"},
		{name: "the older wins whatever the order", cands: []*Association{assoc("b", t0), assoc("a", t0.Add(time.Second))}, want: "b"},
		{name: "same second: the first name wins", cands: []*Association{assoc("zeta", t0), assoc("alpha", t0)}, want: "alpha"},
		{name: "three", cands: []*Association{assoc("c", t0.Add(2*time.Second)), assoc("b", t0.Add(time.Second)), assoc("a", t0.Add(time.Second))}, want: "a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Winner(tt.cands)
			switch {
			case got == nil && tt.want != "":
				t.Fatalf("Winner = nil, want %s", tt.want)
			case got != nil && got.Name != tt.want:
				t.Fatalf("Winner = %s, want %q", got.Name, tt.want)
			}
		})
	}
}

func unstructuredPIA(ns, name, sa string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	u.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("PodIdentityAssociation"))
	u.SetNamespace(ns)
	u.SetName(name)
	u.SetUID(types.UID("uid-" + name))
	u.SetCreationTimestamp(metav1.NewTime(t0))
	if sa != "" {
		spec["serviceAccount"] = sa
	}
	return u
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name    string
		obj     any
		want    Association
		wantErr string
	}{
		{
			name: "unstructured, every field",
			obj: unstructuredPIA("ns", "web", "app", map[string]any{"roleArn": "arn:aws:iam::111122223333:role/web",
				"targetRoleArn": "arn:aws:iam::444455556666:role/x", "disableSessionTags": true, "policy": `{"Version":"2012-10-17"}`}),
			want: Association{Namespace: "ns", Name: "web", UID: "uid-web", CreationTimestamp: t0, ServiceAccount: "app",
				RoleARN: "arn:aws:iam::111122223333:role/web", TargetRoleARN: "arn:aws:iam::444455556666:role/x",
				DisableSessionTags: true, Policy: `{"Version":"2012-10-17"}`},
		},
		{
			name: "typed",
			obj: &v1alpha1.PodIdentityAssociation{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "t", CreationTimestamp: metav1.NewTime(t0)},
				Spec: v1alpha1.PodIdentityAssociationSpec{ServiceAccount: "app", RoleARN: "arn:aws:iam::111122223333:role/t"}},
			want: Association{Namespace: "ns", Name: "t", CreationTimestamp: t0, ServiceAccount: "app", RoleARN: "arn:aws:iam::111122223333:role/t"},
		},
		{name: "no serviceAccount", obj: unstructuredPIA("ns", "bad", "", map[string]any{"roleArn": "r"}), wantErr: "has no spec.serviceAccount"},
		{name: "wrong type in spec", obj: unstructuredPIA("ns", "bad", "app", map[string]any{"disableSessionTags": "yes"}), wantErr: "decoding PodIdentityAssociation ns/bad"},
		{name: "not an association", obj: "x", wantErr: "unexpected object string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decode(tt.obj)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("decode error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if *got != tt.want {
				t.Fatalf("decode\n got %+v\nwant %+v", *got, tt.want)
			}
		})
	}
}
