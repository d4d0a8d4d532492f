package chart

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestForeignCRDs: every kind of another project that a rendering of the
// chart's tests has is served by a CRD of ForeignCRDs, with a structural
// schema (not one that accepts anything), so that the install tests can
// check those objects against it.
func TestForeignCRDs(t *testing.T) {
	crds, err := ForeignCRDs()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range crds {
		versions, _, _ := unstructured.NestedSlice(c.Object, "spec", "versions")
		for _, v := range versions {
			schema, _, _ := unstructured.NestedMap(v.(map[string]any), "schema", "openAPIV3Schema")
			if _, ok := schema["properties"].(map[string]any)["spec"]; !ok || schema["x-kubernetes-preserve-unknown-fields"] == true {
				t.Errorf("CRD %s: version %v has no schema of its spec", c.GetName(), v.(map[string]any)["name"])
			}
		}
	}
	seen := map[string]bool{}
	for _, v := range append(Variants(), Variant{Name: "all components", Values: allComponents("cert-manager")}) {
		for _, u := range renderObjects(t, v.Values) {
			gvk := u.GroupVersionKind()
			if !strings.Contains(gvk.Group, ".") || strings.HasSuffix(gvk.Group, ".k8s.io") || gvk.Group == "podiam.dev" {
				continue // built in, or the project's own
			}
			seen[gvk.Kind] = true
			if _, ok := CRDFor(crds, gvk.Group, gvk.Version, gvk.Kind); !ok {
				t.Errorf("variant %s renders %s, which no CRD of ForeignCRDs serves", v.Name, gvk)
			}
		}
	}
	for _, kind := range []string{"Certificate", "Issuer", "ServiceMonitor"} {
		if !seen[kind] {
			t.Errorf("no rendering has a %s: the test checks nothing for it", kind)
		}
	}
}

// TestCRDFor finds CRDs by group, version and kind, and only served ones.
func TestCRDFor(t *testing.T) {
	crds, err := ForeignCRDs()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		group, version, kind string
		want                 string
	}{
		{"cert-manager.io", "v1", "Certificate", "certificates.cert-manager.io"},
		{"cert-manager.io", "v1", "Issuer", "issuers.cert-manager.io"},
		{"monitoring.coreos.com", "v1", "ServiceMonitor", "servicemonitors.monitoring.coreos.com"},
		{"cert-manager.io", "v1alpha2", "Certificate", ""},
		{"cert-manager.io", "v1", "ClusterIssuer", ""},
		{"monitoring.coreos.com", "v1", "PodMonitor", ""},
	} {
		got := ""
		if c, ok := CRDFor(crds, tc.group, tc.version, tc.kind); ok {
			got = c.GetName()
		}
		if got != tc.want {
			t.Errorf("CRDFor(%s, %s, %s) = %q, want %q", tc.group, tc.version, tc.kind, got, tc.want)
		}
	}
}
