// Package chart renders podiam's Helm chart (charts/podiam) with the Helm Go
// library, the way `helm template` and `helm install` do: one release named
// "podiam" in the namespace "podiam-system". It is the one way the module's Go
// code renders the chart: the chart's tests, the install tests against the
// real API server and `make manifests` (which writes deploy/ from Variants)
// all go through it. It is a test and build helper: the podiam binary never
// links it.
package chart

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	"helm.sh/helm/v3/pkg/releaseutil"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// The release every rendering uses: deploy/ is rendered with these, so the
// object names are podiam-webhook, podiam-auth, podiam-agent...
const (
	ReleaseName      = "podiam"
	ReleaseNamespace = "podiam-system"
)

// KubeVersion is the Kubernetes version the chart is rendered and linted for
// (.Capabilities.KubeVersion; lint flags APIs deprecated in it): the API
// server the tests run (k8s.io/kubernetes in hack/tools/go.mod).
const KubeVersion = "v1.37.1"

// OptionalAPIs are the APIs of other projects the chart uses when switched
// on (serviceMonitor.enabled: the Prometheus operator's ServiceMonitor),
// which the chart checks .Capabilities.APIVersions for. Renderings and lint
// are for a cluster that serves them, as the install tests' API server does
// once it has their CRDs.
var OptionalAPIs = []string{"monitoring.coreos.com/v1", "monitoring.coreos.com/v1/ServiceMonitor"}

// Helm's linter renders with chartutil.DefaultCapabilities and its Go API
// takes no API versions: add OptionalAPIs to helm's defaults once, for Lint
// and render alike. Only this package, a test and build helper, does so.
func init() {
	chartutil.DefaultCapabilities.APIVersions = append(slices.Clone(chartutil.DefaultCapabilities.APIVersions), OptionalAPIs...)
}

// Dir is the absolute path of charts/podiam, found from this source file so
// that it works from any package's test directory and from `go run`.
func Dir() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		panic("chart: no caller information")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "charts", "podiam")
}

// Render renders the chart with values (merged over values.yaml and checked
// against values.schema.json, as helm does) for release "podiam" in namespace
// "podiam-system", and returns the objects as multi-document YAML in the
// order `helm install` applies them (CRDs and namespaces first, then RBAC,
// workloads, webhook configurations), each preceded by a "# Source:" comment
// naming its template. NOTES.txt is left out.
func Render(values map[string]any) ([]byte, error) {
	return render(ReleaseName, ReleaseNamespace, values)
}

// render renders the chart for any release name and namespace.
func render(release, namespace string, values map[string]any) ([]byte, error) {
	caps, err := capabilities()
	if err != nil {
		return nil, err
	}
	return renderFor(caps, release, namespace, values)
}

// renderFor renders the chart for a cluster of those capabilities.
func renderFor(caps *chartutil.Capabilities, release, namespace string, values map[string]any) ([]byte, error) {
	ch, err := loader.Load(Dir())
	if err != nil {
		return nil, fmt.Errorf("load chart %s: %w", Dir(), err)
	}
	if kv := ch.Metadata.KubeVersion; kv != "" && !chartutil.IsCompatibleRange(kv, caps.KubeVersion.String()) {
		return nil, fmt.Errorf("chart requires kubeVersion %s, rendering for %s", ch.Metadata.KubeVersion, caps.KubeVersion.String())
	}
	opts := chartutil.ReleaseOptions{Name: release, Namespace: namespace, Revision: 1, IsInstall: true}
	vals, err := chartutil.ToRenderValues(ch, copyValues(values), opts, caps)
	if err != nil {
		return nil, fmt.Errorf("values: %w", err)
	}
	files, err := engine.Render(ch, vals)
	if err != nil {
		return nil, fmt.Errorf("render chart: %w", err)
	}
	return assemble(files)
}

// doc is one rendered object with what orders it.
type doc struct {
	source, kind, namespace, name, text string
}

// assemble orders the rendered documents deterministically (helm's install
// order by kind, then namespace and name) and joins them.
func assemble(files map[string]string) ([]byte, error) {
	var docs []doc
	for name, content := range files {
		if path.Base(name) == "NOTES.txt" {
			continue
		}
		for _, text := range releaseutil.SplitManifests(content) {
			if strings.TrimSpace(stripComments(text)) == "" {
				continue
			}
			objs, err := Objects([]byte(text))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			if len(objs) != 1 {
				return nil, fmt.Errorf("%s: %d objects in one document", name, len(objs))
			}
			o := objs[0]
			docs = append(docs, doc{source: name, kind: o.GetKind(), namespace: o.GetNamespace(), name: o.GetName(), text: strings.TrimSpace(text)})
		}
	}
	order := func(kind string) int {
		if i := slices.Index(releaseutil.InstallOrder, kind); i >= 0 {
			return i
		}
		return len(releaseutil.InstallOrder) // unknown kinds last, as helm does
	}
	sort.Slice(docs, func(i, j int) bool {
		a, b := docs[i], docs[j]
		if oa, ob := order(a.kind), order(b.kind); oa != ob {
			return oa < ob
		}
		if a.kind != b.kind {
			return a.kind < b.kind
		}
		if a.namespace != b.namespace {
			return a.namespace < b.namespace
		}
		if a.name != b.name {
			return a.name < b.name
		}
		return a.source < b.source
	})
	var buf bytes.Buffer
	for i, d := range docs {
		if i > 0 {
			buf.WriteString("---\n")
		}
		fmt.Fprintf(&buf, "# Source: %s\n%s\n", d.source, d.text)
	}
	return buf.Bytes(), nil
}

// stripComments drops YAML comment lines, so that a document holding only
// comments (a template switched off) counts as empty.
func stripComments(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// Objects parses multi-document YAML into objects, each of which must have
// an apiVersion, a kind and a name; empty documents are skipped.
func Objects(manifest []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifest), 4096)
	var out []*unstructured.Unstructured
	for i := 0; ; i++ {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if u.GetAPIVersion() == "" || u.GetKind() == "" || u.GetName() == "" {
			return nil, fmt.Errorf("document %d: apiVersion %q, kind %q, name %q: all three are required", i, u.GetAPIVersion(), u.GetKind(), u.GetName())
		}
		out = append(out, u)
	}
}

// Lint runs Helm's chart linter (what `helm lint --strict` runs) with values
// and returns every message of severity warning or worse as one error.
func Lint(values map[string]any) error {
	caps, err := capabilities()
	if err != nil {
		return err
	}
	kv := caps.KubeVersion
	res := lint.AllWithKubeVersion(Dir(), copyValues(values), ReleaseNamespace, &kv)
	var errs []error
	for _, m := range res.Messages {
		if m.Severity >= support.WarningSev {
			errs = append(errs, errors.New(m.Error()))
		}
	}
	return errors.Join(errs...)
}

// capabilities are helm's defaults with the Kubernetes version set to
// KubeVersion.
func capabilities() (*chartutil.Capabilities, error) {
	caps := chartutil.DefaultCapabilities.Copy()
	kv, err := chartutil.ParseKubeVersion(KubeVersion)
	if err != nil {
		return nil, fmt.Errorf("kube version %s: %w", KubeVersion, err)
	}
	caps.KubeVersion = *kv
	return caps, nil
}

// copyValues deep-copies values (maps and lists), because helm's coalescing
// may write into what it is given and Variants' maps are shared by tests.
func copyValues(values map[string]any) map[string]any {
	out := make(map[string]any, len(values))
	for k, v := range values {
		out[k] = copyValue(v)
	}
	return out
}

func copyValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		return copyValues(v)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = copyValue(e)
		}
		return out
	default:
		return v
	}
}
