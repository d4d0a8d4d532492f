package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podiam/podiam/api/v1alpha1"
	"github.com/podiam/podiam/test/testutil"
)

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// readManifest decodes the one object of the YAML file at path, relative to
// the module root.
func readManifest(t *testing.T, path string) *unstructured.Unstructured {
	t.Helper()
	root, err := testutil.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(root, path))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := &unstructured.Unstructured{}
	if err := utilyaml.NewYAMLOrJSONDecoder(f, 4096).Decode(&u.Object); err != nil {
		t.Fatalf("decoding %s: %v", path, err)
	}
	return u
}

// installAssociationCRD applies the generated PodIdentityAssociation CRD
// (deploy/crd) with server-side apply and waits until the API server serves
// the kind. It is idempotent and the CRD is left installed: it is
// cluster-scoped, the same for every test and every run (-count=2), and
// deleting it would delete the associations of any other test using it.
// It returns the dynamic client it applied the CRD with.
func installAssociationCRD(t *testing.T) dynamic.Interface {
	t.Helper()
	dyn, err := dynamic.NewForConfig(cluster.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t, time.Minute)
	crd := readManifest(t, "deploy/crd/podiam.dev_podidentityassociations.yaml")
	if _, err := dyn.Resource(crdGVR).Apply(ctx, crd.GetName(), crd, metav1.ApplyOptions{FieldManager: "podiam-e2e", Force: true}); err != nil {
		t.Fatalf("applying CRD %s: %v", crd.GetName(), err)
	}
	waitCRDEstablished(t, ctx, dyn, crd.GetName())
	return dyn
}

// associationClient is a controller-runtime client that knows podiam's API
// (through the generated deepcopy and the scheme registration).
func associationClient(t *testing.T) ctrlclient.Client {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c, err := ctrlclient.New(cluster.RESTConfig(), ctrlclient.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestCRDValidation creates associations against the real API server with the
// generated CRD: the OpenAPI validation from the kubebuilder markers accepts
// a valid one and rejects each bad field, naming it.
func TestCRDValidation(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 2*time.Minute)
	installAssociationCRD(t)
	c := associationClient(t)
	ns := testutil.UniqueName("crd-validation")
	newNamespace(t, ctx, ns, nil)

	const role = "arn:aws:iam::111122223333:role/app"
	valid := v1alpha1.PodIdentityAssociationSpec{ServiceAccount: "app", RoleARN: role}
	tests := []struct {
		name      string
		edit      func(*v1alpha1.PodIdentityAssociationSpec)
		wantField string // "" = accepted
	}{
		{"minimal", func(*v1alpha1.PodIdentityAssociationSpec) {}, ""},
		{"all fields", func(s *v1alpha1.PodIdentityAssociationSpec) {
			s.ServiceAccount = "app.v2-reader"
			s.RoleARN = "arn:aws-cn:iam::111122223333:role/path/app"
			s.TargetRoleARN = "arn:aws:iam::444455556666:role/reader"
			s.DisableSessionTags = true
			s.Policy = strings.Repeat("x", 2048)
		}, ""},
		{"roleArn of a user", func(s *v1alpha1.PodIdentityAssociationSpec) { s.RoleARN = "arn:aws:iam::111122223333:user/app" }, "spec.roleArn"},
		{"roleArn with a short account", func(s *v1alpha1.PodIdentityAssociationSpec) { s.RoleARN = "arn:aws:iam::1111:role/app" }, "spec.roleArn"},
		{"roleArn empty", func(s *v1alpha1.PodIdentityAssociationSpec) { s.RoleARN = "" }, "spec.roleArn"},
		{"roleArn too long", func(s *v1alpha1.PodIdentityAssociationSpec) { s.RoleARN = role + strings.Repeat("a", 2048) }, "spec.roleArn"},
		{"roleArn of a GovCloud role with a path", func(s *v1alpha1.PodIdentityAssociationSpec) {
			s.RoleARN = "arn:aws-us-gov:iam::111122223333:role/team/sub/app@v2"
		}, ""},
		{"roleArn of another partition name", func(s *v1alpha1.PodIdentityAssociationSpec) { s.RoleARN = "arn:awsx:iam::111122223333:role/app" }, "spec.roleArn"},
		{"roleArn with a space", func(s *v1alpha1.PodIdentityAssociationSpec) { s.RoleARN = "arn:aws:iam::111122223333:role/a b" }, "spec.roleArn"},
		{"roleArn ending in a slash", func(s *v1alpha1.PodIdentityAssociationSpec) { s.RoleARN = "arn:aws:iam::111122223333:role/team/" }, "spec.roleArn"},
		{"role name over 64 characters", func(s *v1alpha1.PodIdentityAssociationSpec) {
			s.RoleARN = "arn:aws:iam::111122223333:role/" + strings.Repeat("a", 65)
		}, "spec.roleArn"},
		{"targetRoleArn not an ARN", func(s *v1alpha1.PodIdentityAssociationSpec) { s.TargetRoleARN = "reader" }, "spec.targetRoleArn"},
		{"serviceAccount empty", func(s *v1alpha1.PodIdentityAssociationSpec) { s.ServiceAccount = "" }, "spec.serviceAccount"},
		{"serviceAccount upper case", func(s *v1alpha1.PodIdentityAssociationSpec) { s.ServiceAccount = "App" }, "spec.serviceAccount"},
		{"serviceAccount with a slash", func(s *v1alpha1.PodIdentityAssociationSpec) { s.ServiceAccount = "other-ns/app" }, "spec.serviceAccount"},
		{"serviceAccount too long", func(s *v1alpha1.PodIdentityAssociationSpec) { s.ServiceAccount = strings.Repeat("a", 254) }, "spec.serviceAccount"},
		{"policy too long", func(s *v1alpha1.PodIdentityAssociationSpec) { s.Policy = strings.Repeat("x", 2049) }, "spec.policy"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec := valid
			tc.edit(&spec)
			pia := &v1alpha1.PodIdentityAssociation{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pia-%d", i), Namespace: ns},
				Spec:       spec,
			}
			err := c.Create(ctx, pia)
			if tc.wantField == "" {
				if err != nil {
					t.Fatalf("create: %v", err)
				}
				var got v1alpha1.PodIdentityAssociation
				if err := c.Get(ctx, ctrlclient.ObjectKeyFromObject(pia), &got); err != nil {
					t.Fatalf("get: %v", err)
				}
				if got.Spec != spec {
					t.Errorf("stored spec %+v, want %+v", got.Spec, spec)
				}
				return
			}
			if !apierrors.IsInvalid(err) {
				t.Fatalf("create: %v, want Invalid naming %s", err, tc.wantField)
			}
			var fields []string
			if st, ok := err.(apierrors.APIStatus); ok && st.Status().Details != nil {
				for _, cause := range st.Status().Details.Causes {
					fields = append(fields, cause.Field)
				}
			}
			if !slices.Contains(fields, tc.wantField) || !strings.Contains(err.Error(), tc.wantField) {
				t.Errorf("rejected with fields %q (%v), want %s", fields, err, tc.wantField)
			}
		})
	}
}

// TestCRDStatusAndColumns checks the status subresource (the spec ignores
// status, the status endpoint ignores spec) and the printer columns that
// `kubectl get` shows, as a Table from the API server.
func TestCRDStatusAndColumns(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 2*time.Minute)
	installAssociationCRD(t)
	c := associationClient(t)
	ns := testutil.UniqueName("crd-status")
	newNamespace(t, ctx, ns, nil)

	const role = "arn:aws:iam::111122223333:role/app"
	readyStatus := v1alpha1.PodIdentityAssociationStatus{
		ExternalID: "eu-west-1/111122223333/test/" + ns + "/app",
		Conditions: []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: "RoleAssumed",
			Message: "assumed for a pod", LastTransitionTime: metav1.Now()}},
	}
	pia := &v1alpha1.PodIdentityAssociation{
		ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: ns},
		Spec:       v1alpha1.PodIdentityAssociationSpec{ServiceAccount: "app", RoleARN: role},
		Status:     readyStatus, // dropped: status is a subresource
	}
	if err := c.Create(ctx, pia); err != nil {
		t.Fatalf("create: %v", err)
	}
	var got v1alpha1.PodIdentityAssociation
	if err := c.Get(ctx, ctrlclient.ObjectKeyFromObject(pia), &got); err != nil {
		t.Fatal(err)
	}
	if got.Status.ExternalID != "" || len(got.Status.Conditions) != 0 {
		t.Errorf("create stored status %+v: status is not a subresource", got.Status)
	}

	// Through the status endpoint: status is written, a spec change is not.
	got.Status = readyStatus
	got.Spec.RoleARN = "arn:aws:iam::111122223333:role/other"
	if err := c.Status().Update(ctx, &got); err != nil {
		t.Fatalf("status update: %v", err)
	}
	var after v1alpha1.PodIdentityAssociation
	if err := c.Get(ctx, ctrlclient.ObjectKeyFromObject(pia), &after); err != nil {
		t.Fatal(err)
	}
	if after.Status.ExternalID != readyStatus.ExternalID || !meta.IsStatusConditionTrue(after.Status.Conditions, v1alpha1.ConditionReady) {
		t.Errorf("status after the status update %+v, want %+v", after.Status, readyStatus)
	}
	if after.Spec.RoleARN != role {
		t.Errorf("the status endpoint changed spec.roleArn to %s", after.Spec.RoleARN)
	}

	// kubectl get asks for a Table; the columns come from the CRD.
	raw, err := client.Discovery().RESTClient().Get().
		AbsPath("/apis/podiam.dev/v1alpha1/namespaces", ns, "podidentityassociations").
		SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").
		DoRaw(ctx)
	if err != nil {
		t.Fatalf("table request: %v", err)
	}
	var table metav1.Table
	if err := json.Unmarshal(raw, &table); err != nil {
		t.Fatalf("decoding the table: %v: %s", err, raw)
	}
	var cols []string
	for _, col := range table.ColumnDefinitions {
		cols = append(cols, col.Name)
	}
	if want := []string{"Name", "ServiceAccount", "Role", "Ready", "Age"}; !slices.Equal(cols, want) {
		t.Fatalf("columns %q, want %q", cols, want)
	}
	if len(table.Rows) != 1 {
		t.Fatalf("%d rows, want 1: %s", len(table.Rows), raw)
	}
	cells := table.Rows[0].Cells
	if want := []any{"app", "app", role, "True"}; len(cells) != 5 || !slices.Equal(cells[:4], want) || cells[4] == "" {
		t.Errorf("row %q, want %q and an age", cells, want)
	}
}

// TestCRDExampleDryRun applies deploy/examples/podidentityassociation.yaml with
// a server-side dry run (in a namespace of its own instead of the example's):
// the documented example is valid against the generated CRD.
func TestCRDExampleDryRun(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, time.Minute)
	dyn := installAssociationCRD(t)
	ns := testutil.UniqueName("crd-example")
	newNamespace(t, ctx, ns, nil)

	u := readManifest(t, "deploy/examples/podidentityassociation.yaml")
	if gvk := u.GroupVersionKind(); gvk != v1alpha1.GroupVersion.WithKind("PodIdentityAssociation") {
		t.Fatalf("example is a %s", gvk)
	}
	u.SetNamespace(ns)
	gvr := v1alpha1.GroupVersion.WithResource("podidentityassociations")
	applied, err := dyn.Resource(gvr).Namespace(ns).Apply(ctx, u.GetName(), u,
		metav1.ApplyOptions{FieldManager: "podiam-e2e", DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		t.Fatalf("server-side dry-run apply of the example: %v", err)
	}
	var pia v1alpha1.PodIdentityAssociation
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(applied.Object, &pia); err != nil {
		t.Fatal(err)
	}
	if pia.Spec.ServiceAccount == "" || pia.Spec.RoleARN == "" || pia.Spec.Policy == "" {
		t.Errorf("dry-run result lacks fields the example sets: %+v", pia.Spec)
	}
	// A dry run stores nothing.
	if _, err := dyn.Resource(gvr).Namespace(ns).Get(ctx, u.GetName(), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("get after the dry run: %v, want NotFound", err)
	}
}

// TestCRDServiceAccountImmutable: as on EKS, an association cannot be moved
// to another ServiceAccount (an older one would take it over from the
// association serving it); the rest of the spec can change.
func TestCRDServiceAccountImmutable(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 2*time.Minute)
	installAssociationCRD(t)
	c := associationClient(t)
	ns := testutil.UniqueName("crd-immutable")
	newNamespace(t, ctx, ns, nil)
	pia := &v1alpha1.PodIdentityAssociation{
		ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: ns},
		Spec:       v1alpha1.PodIdentityAssociationSpec{ServiceAccount: "app", RoleARN: "arn:aws:iam::111122223333:role/app"},
	}
	if err := c.Create(ctx, pia); err != nil {
		t.Fatal(err)
	}
	pia.Spec.RoleARN = "arn:aws:iam::111122223333:role/other"
	if err := c.Update(ctx, pia); err != nil {
		t.Fatalf("changing the role: %v", err)
	}
	pia.Spec.ServiceAccount = "other"
	err := c.Update(ctx, pia)
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "serviceAccount is immutable") {
		t.Fatalf("moving the association to another ServiceAccount: %v, want Invalid: serviceAccount is immutable", err)
	}
}

// waitCRDEstablished waits until the API server serves the CRD name.
func waitCRDEstablished(t *testing.T, ctx context.Context, dyn dynamic.Interface, name string) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, "CRD "+name+" to be established", func() (bool, string) {
		u, err := dyn.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		for _, c := range conds {
			if m, ok := c.(map[string]any); ok && m["type"] == "Established" && m["status"] == "True" {
				return true, ""
			}
		}
		return false, fmt.Sprint(conds)
	})
}
