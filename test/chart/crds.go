package chart

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// ForeignCRDs returns the CustomResourceDefinitions of the kinds the chart
// renders from other projects (cert-manager's Certificate and Issuer, the
// Prometheus operator's ServiceMonitor), copied unchanged from those
// projects into testdata/crds (its README names the versions): with them
// the API server checks the chart's objects of these kinds against their
// real schemas.
func ForeignCRDs() ([]*unstructured.Unstructured, error) {
	dir := filepath.Join(filepath.Dir(Dir()), "..", "test", "chart", "testdata", "crds")
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("the CRDs under %s: %d files (%v)", dir, len(files), err)
	}
	slices.Sort(files)
	var out []*unstructured.Unstructured
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("reading a CRD: %w", err)
		}
		objs, err := Objects(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		for _, u := range objs {
			if u.GetKind() != "CustomResourceDefinition" {
				return nil, fmt.Errorf("%s: a %s, not a CustomResourceDefinition", f, u.GetKind())
			}
			out = append(out, u)
		}
	}
	return out, nil
}

// CRDFor returns the CRD of crds that serves kind of group at version, if
// there is one.
func CRDFor(crds []*unstructured.Unstructured, group, version, kind string) (*unstructured.Unstructured, bool) {
	for _, c := range crds {
		g, _, _ := unstructured.NestedString(c.Object, "spec", "group")
		k, _, _ := unstructured.NestedString(c.Object, "spec", "names", "kind")
		if g != group || k != kind {
			continue
		}
		versions, _, _ := unstructured.NestedSlice(c.Object, "spec", "versions")
		for _, v := range versions {
			vm, _ := v.(map[string]any)
			if name, _ := vm["name"].(string); strings.EqualFold(name, version) && vm["served"] == true {
				return c, true
			}
		}
	}
	return nil, false
}
