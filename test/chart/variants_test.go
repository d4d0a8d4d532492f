package chart

import (
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// clusterScoped are the kinds the chart renders without a namespace.
var clusterScoped = []string{"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration"}

// TestVariants renders every variant, lints it (errors and warnings), parses
// it and checks what any rendering must hold: objects with apiVersion, kind
// and name, each namespaced one in the release's namespace (or the
// variant's namespaceOverride), no two with one kind and name, and every
// image named by a version.
func TestVariants(t *testing.T) {
	names := map[string]bool{}
	for _, v := range Variants() {
		if names[v.Name] {
			t.Errorf("two variants named %s", v.Name)
		}
		names[v.Name] = true
		t.Run(v.Name, func(t *testing.T) {
			t.Parallel() // rendering and linting read the chart only
			out, err := Render(v.Values)
			if err != nil {
				t.Fatal(err)
			}
			if err := Lint(v.Values); err != nil {
				t.Errorf("lint: %v", err)
			}
			objs, err := Objects(out)
			if err != nil {
				t.Fatal(err)
			}
			if len(objs) == 0 {
				t.Fatal("no objects")
			}
			wantNS := ReleaseNamespace
			if ns, ok := v.Values["namespaceOverride"].(string); ok {
				wantNS = ns
			}
			seen := map[string]bool{}
			for _, o := range objs {
				id := o.GetKind() + " " + o.GetNamespace() + "/" + o.GetName()
				if seen[id] {
					t.Errorf("%s rendered twice", id)
				}
				seen[id] = true
				switch ns := o.GetNamespace(); {
				case slices.Contains(clusterScoped, o.GetKind()) && ns != "":
					t.Errorf("%s: cluster-scoped, rendered with a namespace", id)
				case !slices.Contains(clusterScoped, o.GetKind()) && ns != wantNS:
					t.Errorf("%s: namespace %q, want %s", id, ns, wantNS)
				}
				for _, image := range images(o) {
					if !strings.HasPrefix(image, "ghcr.io/podiam/podiam:v") || strings.HasSuffix(image, ":latest") {
						t.Errorf("%s: image %q, want ghcr.io/podiam/podiam:<version>", id, image)
					}
				}
			}
			if strings.Contains(string(out), ":latest") {
				t.Error("rendering says :latest")
			}
		})
	}
}

// TestVariantsDeploy checks that the deploy/ directories are unique and that
// the plain manifests cover every component.
func TestVariantsDeploy(t *testing.T) {
	var dirs []string
	kinds := map[string]bool{}
	for _, v := range Variants() {
		if v.Deploy == "" {
			continue
		}
		if slices.Contains(dirs, v.Deploy) {
			t.Errorf("two variants write deploy/%s", v.Deploy)
		}
		dirs = append(dirs, v.Deploy)
		if v.Doc == "" {
			t.Errorf("variant %s writes deploy/%s without a Doc", v.Name, v.Deploy)
		}
		out, err := Render(v.Values)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := Objects(out)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			kinds[o.GetKind()+"/"+o.GetName()] = true
		}
	}
	for _, want := range []string{"Deployment/podiam-webhook", "Deployment/podiam-auth", "DaemonSet/podiam-agent",
		"Deployment/podiam-issuer-sync", "CustomResourceDefinition/podidentityassociations.podiam.dev", "Certificate/podiam-webhook"} {
		if !kinds[want] {
			t.Errorf("no deploy/ directory has %s", want)
		}
	}
}

// TestVariantsFresh checks that each call returns maps of its own: a caller
// that changes one variant's values must not change another's rendering.
func TestVariantsFresh(t *testing.T) {
	a := Variants()
	a[0].Values["webhook"] = map[string]any{"replicas": 7}
	b := Variants()
	if m, ok := b[0].Values["webhook"].(map[string]any); ok && m["replicas"] == 7 {
		t.Error("Variants shares its maps between calls")
	}
}

// images returns the images of a workload's containers and init containers.
func images(o *unstructured.Unstructured) []string {
	var out []string
	for _, field := range []string{"containers", "initContainers"} {
		cs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", field)
		for _, c := range cs {
			if m, ok := c.(map[string]any); ok {
				if s, ok := m["image"].(string); ok {
					out = append(out, s)
				}
			}
		}
	}
	return out
}
