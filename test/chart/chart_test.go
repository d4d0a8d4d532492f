package chart

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// TestDir checks that Dir names the chart, whatever the test's directory.
func TestDir(t *testing.T) {
	if !filepath.IsAbs(Dir()) {
		t.Errorf("Dir() = %q, want an absolute path", Dir())
	}
	if _, err := os.Stat(filepath.Join(Dir(), "Chart.yaml")); err != nil {
		t.Errorf("no Chart.yaml in Dir(): %v", err)
	}
}

// TestRenderRejectsBadValues checks that values.schema.json (or the
// templates' own checks) refuse each bad value with a message that names it.
func TestRenderRejectsBadValues(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values map[string]any
		want   []string // fragments of the error
	}{
		{"certificates mode", map[string]any{"webhook": map[string]any{"certificates": map[string]any{"mode": "vault"}}},
			[]string{"/webhook/certificates/mode", "'self-managed', 'cert-manager'"}},
		{"agent backend", map[string]any{"agent": map[string]any{"enabled": true, "backend": "gcp", "clusterName": "c"}},
			[]string{"/agent/backend", "'podiam', 'eks'"}},
		{"webhook replicas 0", map[string]any{"webhook": map[string]any{"replicas": 0}},
			[]string{"/webhook/replicas", "minimum"}},
		{"auth replicas a string", map[string]any{"auth": map[string]any{"replicas": "two"}},
			[]string{"/auth/replicas", "want integer"}},
		{"auth without clusterName", map[string]any{"auth": map[string]any{"enabled": true}},
			[]string{"/auth/clusterName", "minLength"}},
		{"agent without clusterName", map[string]any{"agent": map[string]any{"enabled": true}},
			[]string{"/agent/clusterName", "minLength"}},
		{"bad clusterName", map[string]any{"agent": map[string]any{"enabled": true, "clusterName": "my cluster"}},
			[]string{"/agent/clusterName", "pattern"}},
		{"image tag a number", map[string]any{"image": map[string]any{"tag": 1.2}},
			[]string{"/image/tag", "want string"}},
		{"image tag latest", map[string]any{"image": map[string]any{"tag": "latest"}},
			[]string{"image.tag must name a version, not latest"}},
		{"unknown key", map[string]any{"webhook": map[string]any{"replica": 3}},
			[]string{"/webhook", "'replica' not allowed"}},
		{"unknown top-level key", map[string]any{"agents": map[string]any{}},
			[]string{"'agents' not allowed"}},
		{"failurePolicy", map[string]any{"webhook": map[string]any{"failurePolicy": "Open"}},
			[]string{"/webhook/failurePolicy", "'Ignore', 'Fail'"}},
		{"timeoutSeconds over 30", map[string]any{"webhook": map[string]any{"timeoutSeconds": 31}},
			[]string{"/webhook/timeoutSeconds", "maximum"}},
		{"issuer sync without its settings", map[string]any{"issuerSync": map[string]any{"enabled": true}},
			[]string{"/issuerSync/issuer", "/issuerSync/to", "/issuerSync/region"}},
		{"issuer sync to not s3", map[string]any{"issuerSync": map[string]any{"enabled": true, "issuer": "https://i", "to": "/tmp/x", "region": "us-east-1"}},
			[]string{"/issuerSync/to", "pattern"}},
		{"sts without config", map[string]any{"sts": map[string]any{"enabled": true, "tlsSecretName": "s"}},
			[]string{"/sts/config", "minProperties"}},
		{"extraArgs not a flag", map[string]any{"webhook": map[string]any{"extraArgs": []any{"verbose"}}},
			[]string{"/webhook/extraArgs/0", "pattern"}},
		// Values that disagree only at run time, refused at install.
		{"agent and auth cluster names differ", map[string]any{"auth": map[string]any{"enabled": true, "clusterName": "a"}, "agent": map[string]any{"enabled": true, "clusterName": "b"}},
			[]string{"agent.clusterName (b) differs from auth.clusterName (a)"}},
		{"agent podiam without auth or authURL", map[string]any{"agent": map[string]any{"enabled": true, "clusterName": "c"}},
			[]string{"agent.podiam.authURL is required"}},
		{"PDB keeps every replica", map[string]any{"webhook": map[string]any{"replicas": 2, "podDisruptionBudget": map[string]any{"minAvailable": 2}}},
			[]string{"webhook.podDisruptionBudget.minAvailable (2) must be below webhook.replicas (2)"}},
		{"auth PDB keeps every replica", map[string]any{"auth": map[string]any{"enabled": true, "clusterName": "c", "replicas": 3, "podDisruptionBudget": map[string]any{"minAvailable": 3}}},
			[]string{"auth.podDisruptionBudget.minAvailable (3) must be below auth.replicas (3)"}},
		{"goMemLimit over the memory limit", map[string]any{"webhook": map[string]any{"resources": map[string]any{"limits": map[string]any{"memory": "128Mi"}}}},
			[]string{"webhook.goMemLimit (200MiB) must be below webhook.resources.limits.memory (128Mi)"}},
		{"goMemLimit at the memory limit", map[string]any{"agent": map[string]any{"enabled": true, "backend": "eks", "clusterName": "c", "goMemLimit": "1GiB", "resources": map[string]any{"limits": map[string]any{"memory": "1Gi"}}}},
			[]string{"agent.goMemLimit (1GiB) must be below"}},
		{"goMemLimit over a limit in bytes", map[string]any{"auth": map[string]any{"enabled": true, "clusterName": "c", "resources": map[string]any{"limits": map[string]any{"memory": "104857600"}}}},
			[]string{"auth.goMemLimit (200MiB) must be below"}},
		{"goMemLimit over a decimal memory limit", map[string]any{"webhook": map[string]any{"goMemLimit": "250MiB", "resources": map[string]any{"limits": map[string]any{"memory": "256M"}}}},
			[]string{"webhook.goMemLimit (250MiB) must be below webhook.resources.limits.memory (256M)"}},
		{"goMemLimit at a limit in G", map[string]any{"webhook": map[string]any{"goMemLimit": "1000000000B", "resources": map[string]any{"limits": map[string]any{"memory": "1G"}}}},
			[]string{"webhook.goMemLimit (1000000000B) must be below"}},
		{"goMemLimit over a limit in k", map[string]any{"webhook": map[string]any{"goMemLimit": "1MiB", "resources": map[string]any{"limits": map[string]any{"memory": "1000k"}}}},
			[]string{"webhook.goMemLimit (1MiB) must be below"}},
		{"goMemLimit over a limit in T", map[string]any{"webhook": map[string]any{"goMemLimit": "1TiB", "resources": map[string]any{"limits": map[string]any{"memory": "1T"}}}},
			[]string{"webhook.goMemLimit (1TiB) must be below"}},
		{"PDB of 100%", map[string]any{"webhook": map[string]any{"podDisruptionBudget": map[string]any{"minAvailable": "100%"}}},
			[]string{"webhook.podDisruptionBudget.minAvailable (100%) must be below webhook.replicas (2)"}},
		{"PDB percentage rounded up to every replica", map[string]any{"webhook": map[string]any{"replicas": 3, "podDisruptionBudget": map[string]any{"minAvailable": "67%"}}},
			[]string{"webhook.podDisruptionBudget.minAvailable (67%) must be below webhook.replicas (3): it keeps 3"}},
		{"PDB numeric string of every replica", map[string]any{"auth": map[string]any{"enabled": true, "clusterName": "c", "podDisruptionBudget": map[string]any{"minAvailable": "2"}}},
			[]string{"auth.podDisruptionBudget.minAvailable (2) must be below auth.replicas (2)"}},
		{"PDB numeric string over the replicas", map[string]any{"webhook": map[string]any{"podDisruptionBudget": map[string]any{"minAvailable": "5"}}},
			[]string{"webhook.podDisruptionBudget.minAvailable (5) must be below"}},
		{"PDB neither count nor percentage", map[string]any{"webhook": map[string]any{"podDisruptionBudget": map[string]any{"minAvailable": "half"}}},
			[]string{"/webhook/podDisruptionBudget/minAvailable", "pattern"}},
		{"mapping that the chart would ignore", map[string]any{"webhook": map[string]any{"manageMapping": false, "mapping": map[string]any{"ns/sa": map[string]any{"RoleARN": "arn:aws:iam::111122223333:role/r"}}}},
			[]string{"webhook.mapping is set but webhook.manageMapping is false"}},
		{"extraArgs flag and value in two items", map[string]any{"auth": map[string]any{"extraArgs": []any{"--region", "eu-west-1"}}},
			[]string{"/auth/extraArgs/1", "pattern"}},
		// Values the API server would refuse.
		{"agent maxUnavailable 0", map[string]any{"agent": map[string]any{"maxUnavailable": 0}},
			[]string{"/agent/maxUnavailable"}},
		{"agent maxUnavailable 0%", map[string]any{"agent": map[string]any{"maxUnavailable": "0%"}},
			[]string{"/agent/maxUnavailable"}},
		{"fullnameOverride not a DNS label", map[string]any{"fullnameOverride": "My_Podiam"},
			[]string{"/fullnameOverride", "pattern"}},
		{"fullnameOverride too long", map[string]any{"fullnameOverride": strings.Repeat("p", 48)},
			[]string{"/fullnameOverride", "maxLength"}},
		{"repository with a tag", map[string]any{"image": map[string]any{"repository": "ghcr.io/podiam/podiam:v1"}},
			[]string{"/image/repository", "pattern"}},
		{"digest not sha256", map[string]any{"image": map[string]any{"digest": "v0.1.0"}},
			[]string{"/image/digest", "pattern"}},
		{"roleArn not a role", map[string]any{"auth": map[string]any{"roleArn": "arn:aws:iam::111122223333:user/x"}},
			[]string{"/auth/roleArn", "pattern"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Render(tc.values)
			if err == nil {
				t.Fatalf("Render(%v) succeeded, want an error", tc.values)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestRenderAcceptsValues checks values the schema once refused wrongly,
// and that each renders.
func TestRenderAcceptsValues(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values map[string]any
	}{
		{"sovereign cloud region", map[string]any{"auth": map[string]any{"enabled": true, "clusterName": "c", "region": "eusc-de-east-1"}}},
		{"interval of minutes and seconds", map[string]any{"serviceMonitor": map[string]any{"enabled": true, "interval": "1m30s"}}},
		{"goMemLimit off", map[string]any{"webhook": map[string]any{"goMemLimit": "off"}}},
		{"no goMemLimit", map[string]any{"webhook": map[string]any{"goMemLimit": ""}}},
		{"goMemLimit without a memory limit", map[string]any{"webhook": map[string]any{"goMemLimit": "8GiB", "resources": map[string]any{"limits": map[string]any{"memory": nil}}}}}, // nil deletes the default, as helm does
		{"image digest", map[string]any{"image": map[string]any{"digest": "sha256:" + strings.Repeat("ab", 32)}}},
		{"registry with a port", map[string]any{"image": map[string]any{"repository": "registry.local:5000/podiam"}}},
		{"agent maxUnavailable 1", map[string]any{"agent": map[string]any{"maxUnavailable": 1}}},
		{"agent maxUnavailable 100%", map[string]any{"agent": map[string]any{"maxUnavailable": "100%"}}},
		{"goMemLimit below a decimal memory limit", map[string]any{"webhook": map[string]any{"goMemLimit": "200MiB", "resources": map[string]any{"limits": map[string]any{"memory": "256M"}}}}},
		{"PDB percentage keeping fewer than every replica", map[string]any{"webhook": map[string]any{"replicas": 3, "podDisruptionBudget": map[string]any{"minAvailable": "66%"}}}},
		{"PDB numeric string below the replicas", map[string]any{"auth": map[string]any{"enabled": true, "clusterName": "c", "podDisruptionBudget": map[string]any{"minAvailable": "1"}}}},
		{"unmanaged mapping", map[string]any{"webhook": map[string]any{"manageMapping": false}}},
		{"one webhook replica with its PDB on", map[string]any{"webhook": map[string]any{"replicas": 1}}},
		{"agent named by auth", map[string]any{"auth": map[string]any{"enabled": true, "clusterName": "c"}, "agent": map[string]any{"enabled": true}}},
		{"agent of another release's auth", map[string]any{"agent": map[string]any{"enabled": true, "clusterName": "c",
			"podiam": map[string]any{"authURL": "https://podiam-auth.podiam-system.svc", "caConfigMap": "podiam-auth-ca"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Render(tc.values); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestRenderServiceMonitorNeedsTheOperator checks that serviceMonitor.enabled
// on a cluster without the ServiceMonitor API fails with a message saying
// so, not with the API server's "no matches for kind".
func TestRenderServiceMonitorNeedsTheOperator(t *testing.T) {
	caps, err := capabilities()
	if err != nil {
		t.Fatal(err)
	}
	caps.APIVersions = slices.DeleteFunc(slices.Clone(caps.APIVersions), func(v string) bool { return slices.Contains(OptionalAPIs, v) })
	_, err = renderFor(caps, ReleaseName, ReleaseNamespace, map[string]any{"serviceMonitor": map[string]any{"enabled": true}})
	if err == nil || !strings.Contains(err.Error(), "needs the Prometheus operator's ServiceMonitor") {
		t.Fatalf("error %v, want one naming the Prometheus operator", err)
	}
	if _, err := renderFor(caps, ReleaseName, ReleaseNamespace, map[string]any{}); err != nil {
		t.Fatalf("without ServiceMonitors: %v", err)
	}
}

// TestRenderReleaseNames checks the fullname helper: release "podiam" gives
// the names deploy/ has always had, another release other cluster-scoped
// names, so that two releases do not take each other's objects.
func TestRenderReleaseNames(t *testing.T) {
	values := map[string]any{"auth": map[string]any{"enabled": true, "clusterName": "c"}, "agent": map[string]any{"enabled": true, "clusterName": "c"}}
	for _, tc := range []struct {
		release, namespace string
		want               []string // kind/name of cluster-scoped objects
		wantURL            string   // the agent's --auth-url
	}{
		{"podiam", "podiam-system", []string{"ClusterRole/podiam-webhook", "ClusterRole/podiam-auth", "ClusterRole/podiam-agent", "MutatingWebhookConfiguration/podiam-webhook"},
			"--auth-url=https://podiam-auth.podiam-system.svc"},
		{"staging", "other", []string{"ClusterRole/staging-podiam-webhook", "ClusterRole/staging-podiam-auth", "ClusterRole/staging-podiam-agent", "MutatingWebhookConfiguration/staging-podiam-webhook"},
			"--auth-url=https://staging-podiam-auth.other.svc"},
	} {
		t.Run(tc.release, func(t *testing.T) {
			out, err := RenderRelease(tc.release, tc.namespace, values)
			if err != nil {
				t.Fatal(err)
			}
			objs, err := Objects(out)
			if err != nil {
				t.Fatal(err)
			}
			have := map[string]bool{}
			for _, o := range objs {
				have[o.GetKind()+"/"+o.GetName()] = true
				if ns := o.GetNamespace(); ns != "" && ns != tc.namespace {
					t.Errorf("%s %s in namespace %q, want %s", o.GetKind(), o.GetName(), ns, tc.namespace)
				}
			}
			for _, w := range tc.want {
				if !have[w] {
					t.Errorf("no %s", w)
				}
			}
			if !strings.Contains(string(out), tc.wantURL) {
				t.Errorf("rendering lacks %s", tc.wantURL)
			}
		})
	}
}

// TestRenderCRD checks that the chart carries exactly the CRD that make
// generate writes to deploy/crd, plus the annotation that keeps it on
// uninstall, and only when crds.install is set.
func TestRenderCRD(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(ModuleRoot(), crdSource))
	if err != nil {
		t.Fatal(err)
	}
	var want map[string]any
	if err := yaml.Unmarshal(src, &want); err != nil {
		t.Fatal(err)
	}
	for _, install := range []bool{true, false} {
		out, err := Render(map[string]any{"crds": map[string]any{"install": install}})
		if err != nil {
			t.Fatal(err)
		}
		objs, err := Objects(out)
		if err != nil {
			t.Fatal(err)
		}
		var crd *unstructured.Unstructured
		for _, o := range objs {
			if o.GetKind() == "CustomResourceDefinition" {
				crd = o
			}
		}
		if (crd != nil) != install {
			t.Fatalf("crds.install=%v: CRD rendered %v", install, crd != nil)
		}
		if crd == nil {
			continue
		}
		if got := crd.GetAnnotations()["helm.sh/resource-policy"]; got != "keep" {
			t.Errorf("annotation helm.sh/resource-policy = %q, want keep", got)
		}
		if !reflect.DeepEqual(crd.Object["spec"], want["spec"]) {
			t.Errorf("the chart's CRD spec differs from %s: run make manifests", crdSource)
		}
		wantAnn := want["metadata"].(map[string]any)["annotations"].(map[string]any)
		for k, v := range wantAnn {
			if crd.GetAnnotations()[k] != v {
				t.Errorf("annotation %s = %q, want %q (the source's)", k, crd.GetAnnotations()[k], v)
			}
		}
	}
}

// TestObjects checks the parser's refusals and that it skips empty documents.
func TestObjects(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     int    // objects
		wantErr  string // fragment; "" for none
	}{
		{"two objects and empty documents", "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\n# only a comment\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: b\n", 2, ""},
		{"no name", "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n", 0, "all three are required"},
		{"no kind", "apiVersion: v1\nmetadata:\n  name: a\n", 0, "all three are required"},
		{"not YAML", "a: [b\n", 0, "document 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := Objects([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || len(objs) != tc.want {
				t.Fatalf("%d objects, error %v; want %d", len(objs), err, tc.want)
			}
		})
	}
}

// TestLintFindsProblems checks that Lint reports what helm lint reports, so
// that its clean result on every variant means something.
func TestLintFindsProblems(t *testing.T) {
	if err := Lint(map[string]any{"webhook": map[string]any{"replicas": 0}}); err == nil {
		t.Error("Lint accepted values the schema refuses")
	}
}

// allComponents are values that switch every component on, with webhook
// certificates from mode.
func allComponents(mode string) map[string]any {
	return map[string]any{
		"namespace":      map[string]any{"create": true},
		"webhook":        map[string]any{"certificates": map[string]any{"mode": mode}},
		"auth":           map[string]any{"enabled": true, "clusterName": "c", "region": "eu-west-1"},
		"agent":          map[string]any{"enabled": true, "clusterName": "c"},
		"issuerSync":     map[string]any{"enabled": true, "issuer": "https://i.example", "to": "s3://b/p", "region": "eu-west-1"},
		"sts":            map[string]any{"enabled": true, "tlsSecretName": "t", "config": map[string]any{"accounts": []any{}}},
		"serviceMonitor": map[string]any{"enabled": true},
	}
}

// TestRenderCrossReferences renders every component for releases of
// several names and namespaces (a namespaceOverride, release names up to
// helm's limit of 53 characters) and checks that the objects agree with one
// another, as the API server and the components will need them to: names
// and label values valid (Services as DNS labels), every namespaced object
// in one namespace, RBAC subjects that exist, resourceNames that are the
// names the components' flags use, volumes of objects the chart creates, the
// agent pointed at this podiam auth, and the webhook's certificate and
// configuration naming its Service.
func TestRenderCrossReferences(t *testing.T) {
	long := strings.Repeat("x", 47) + "podiam" // 53: helm's longest release name
	for _, tc := range []struct {
		name, release, namespace string
		values                   map[string]any
		wantNS                   string // of namespaced objects
		wantPrefix               string // of object names
	}{
		{"self-managed", "podiam", "podiam-system", allComponents("self-managed"), "podiam-system", "podiam"},
		{"cert-manager", "podiam", "podiam-system", allComponents("cert-manager"), "podiam-system", "podiam"},
		{"other release", "staging", "other", allComponents("cert-manager"), "other", "staging-podiam"},
		{"namespace override", "podiam", "podiam-system", mergeInto(allComponents("cert-manager"), map[string]any{"namespaceOverride": "kube-system"}), "kube-system", "podiam"},
		{"long release", long, "ns", allComponents("self-managed"), "ns", long[:47]},
		{"long release without the chart name", strings.Repeat("y", 53), "ns", allComponents("cert-manager"), "ns", strings.Repeat("y", 47)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := RenderRelease(tc.release, tc.namespace, tc.values)
			if err != nil {
				t.Fatal(err)
			}
			objs, err := Objects(out)
			if err != nil {
				t.Fatal(err)
			}
			r := refs{t: t, objs: objs}
			name := func(component string) string { return tc.wantPrefix + "-" + component }
			for _, o := range objs {
				id := o.GetKind() + " " + o.GetName()
				if errs := validation.IsDNS1123Subdomain(o.GetName()); len(errs) > 0 {
					t.Errorf("%s: name: %v", id, errs)
				}
				if o.GetKind() == "Service" {
					if errs := validation.IsDNS1035Label(o.GetName()); len(errs) > 0 {
						t.Errorf("%s: a Service name must be a DNS label: %v", id, errs)
					}
				}
				labels := o.GetLabels()
				tpl, _, _ := unstructured.NestedStringMap(o.Object, "spec", "template", "metadata", "labels")
				for k, v := range tpl {
					labels["template "+k] = v
				}
				for k, v := range labels {
					if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
						t.Errorf("%s: label %s=%q: %v", id, k, v, errs)
					}
				}
				if ns := o.GetNamespace(); !slices.Contains(clusterScoped, o.GetKind()) && ns != tc.wantNS {
					t.Errorf("%s: namespace %q, want %s", id, ns, tc.wantNS)
				}
				// RBAC: subjects are this release's ServiceAccounts, roles exist.
				if strings.HasSuffix(o.GetKind(), "Binding") {
					subjects, _, _ := unstructured.NestedSlice(o.Object, "subjects")
					for _, s := range subjects {
						s := s.(map[string]any)
						r.get("ServiceAccount", s["namespace"].(string), s["name"].(string), id+" subject")
					}
					kind, _, _ := unstructured.NestedString(o.Object, "roleRef", "kind")
					role, _, _ := unstructured.NestedString(o.Object, "roleRef", "name")
					if !strings.HasPrefix(role, "system:") {
						r.get(kind, o.GetNamespace(), role, id+" roleRef")
					}
				}
				// Workloads: their ServiceAccount, and the ConfigMaps and
				// Secrets they mount, are this release's (or named by values).
				if sa, ok, _ := unstructured.NestedString(o.Object, "spec", "template", "spec", "serviceAccountName"); ok {
					r.get("ServiceAccount", tc.wantNS, sa, id+" serviceAccountName")
				}
			}

			// The webhook: its Secret and configuration by name in its RBAC,
			// its Service in its configuration and certificate.
			webhook := r.get("Deployment", tc.wantNS, name("webhook"), "")
			wargs := args(webhook)
			svc := r.get("Service", tc.wantNS, flagValue(wargs, "--service-name"), "the webhook's --service-name")
			mwc := r.get("MutatingWebhookConfiguration", "", name("webhook"), "")
			hooks, _, _ := unstructured.NestedSlice(mwc.Object, "webhooks")
			if got, _, _ := unstructured.NestedString(hooks[0].(map[string]any), "clientConfig", "service", "name"); got != svc.GetName() {
				t.Errorf("webhook configuration's Service %q, want %s", got, svc.GetName())
			}
			if got, _, _ := unstructured.NestedString(hooks[0].(map[string]any), "clientConfig", "service", "namespace"); got != tc.wantNS {
				t.Errorf("webhook configuration's Service namespace %q, want %s", got, tc.wantNS)
			}
			if tc.values["webhook"].(map[string]any)["certificates"].(map[string]any)["mode"] == "self-managed" {
				r.resourceName("Role", tc.wantNS, name("webhook")+"-certs", "secrets", flagValue(wargs, "--cert-secret-name"))
				if cfg := flagValue(wargs, "--webhook-config-name"); cfg != mwc.GetName() {
					t.Errorf("--webhook-config-name=%s, want %s", cfg, mwc.GetName())
				}
				r.resourceName("ClusterRole", "", name("webhook")+"-cabundle", "mutatingwebhookconfigurations", mwc.GetName())
			} else {
				cert := r.get("Certificate", tc.wantNS, name("webhook"), "")
				want := tc.wantNS + "/" + cert.GetName()
				if got := mwc.GetAnnotations()["cert-manager.io/inject-ca-from"]; got != want {
					t.Errorf("inject-ca-from %q, want %s", got, want)
				}
				dns, _, _ := unstructured.NestedStringSlice(cert.Object, "spec", "dnsNames")
				if !slices.Contains(dns, svc.GetName()+"."+tc.wantNS+".svc") {
					t.Errorf("certificate dnsNames %v lack %s.%s.svc", dns, svc.GetName(), tc.wantNS)
				}
				secret, _, _ := unstructured.NestedString(cert.Object, "spec", "secretName")
				r.volume(webhook, "secret", secret)
			}
			r.resourceName("Role", tc.wantNS, name("webhook"), "configmaps", "pod-identity-webhook")
			r.get("ConfigMap", tc.wantNS, "pod-identity-webhook", "")

			// podiam auth: its Secret and CA ConfigMap by name in its RBAC,
			// the agent's ServiceAccount; the agent: podiam auth's URL, CA
			// and audience.
			auth := r.get("Deployment", tc.wantNS, name("auth"), "")
			aargs := args(auth)
			authSvc := r.get("Service", tc.wantNS, flagValue(aargs, "--service-name"), "podiam auth's --service-name")
			r.resourceName("Role", tc.wantNS, name("auth")+"-certs", "secrets", flagValue(aargs, "--tls-secret"))
			ca := flagValue(aargs, "--ca-configmap")
			r.resourceName("Role", tc.wantNS, name("auth")+"-certs", "configmaps", ca)
			agent := r.get("DaemonSet", tc.wantNS, name("agent"), "")
			gargs := args(agent)
			if want := tc.wantNS + "/" + agent.Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["serviceAccountName"].(string); flagValue(aargs, "--agent-service-account") != want {
				t.Errorf("podiam auth's --agent-service-account=%s, want %s", flagValue(aargs, "--agent-service-account"), want)
			}
			if want := "https://" + authSvc.GetName() + "." + tc.wantNS + ".svc"; flagValue(gargs, "--auth-url") != want {
				t.Errorf("the agent's --auth-url=%s, want %s", flagValue(gargs, "--auth-url"), want)
			}
			r.volume(agent, "configMap", ca)
			if aud := projectedAudience(agent, "podiam-auth-token"); aud != flagValue(aargs, "--agent-audience") {
				t.Errorf("the agent's token audience %q, podiam auth's --agent-audience %q", aud, flagValue(aargs, "--agent-audience"))
			}
			if flagValue(gargs, "--cluster-name") != flagValue(aargs, "--cluster-name") {
				t.Errorf("the agent's --cluster-name=%s, podiam auth's %s", flagValue(gargs, "--cluster-name"), flagValue(aargs, "--cluster-name"))
			}

			// ServiceMonitors select their metrics Service.
			for _, o := range objs {
				if o.GetKind() != "ServiceMonitor" {
					continue
				}
				sel, _, _ := unstructured.NestedStringMap(o.Object, "spec", "selector", "matchLabels")
				m := r.get("Service", tc.wantNS, o.GetName()+"-metrics", "ServiceMonitor "+o.GetName())
				for k, v := range sel {
					if m.GetLabels()[k] != v {
						t.Errorf("ServiceMonitor %s selects %s=%s, which Service %s lacks", o.GetName(), k, v, m.GetName())
					}
				}
			}
		})
	}
}

// refs looks objects of one rendering up.
type refs struct {
	t    *testing.T
	objs []*unstructured.Unstructured
}

// get returns the object of that kind, namespace and name, failing the test
// (naming what refers to it) when there is none.
func (r refs) get(kind, namespace, name, from string) *unstructured.Unstructured {
	r.t.Helper()
	for _, o := range r.objs {
		if o.GetKind() == kind && o.GetNamespace() == namespace && o.GetName() == name {
			return o
		}
	}
	r.t.Fatalf("%s: no %s %s/%s rendered", from, kind, namespace, name)
	return nil
}

// resourceName checks that a rule of the role grants resource by name.
func (r refs) resourceName(kind, namespace, role, resource, name string) {
	r.t.Helper()
	rules, _, _ := unstructured.NestedSlice(r.get(kind, namespace, role, "").Object, "rules")
	for _, rule := range rules {
		rule := rule.(map[string]any)
		res, _, _ := unstructured.NestedStringSlice(rule, "resources")
		names, _, _ := unstructured.NestedStringSlice(rule, "resourceNames")
		if slices.Contains(res, resource) && slices.Contains(names, name) {
			return
		}
	}
	r.t.Errorf("%s %s grants no %s named %q", kind, role, resource, name)
}

// volume checks that the workload mounts a volume of that source ("secret",
// "configMap") and name.
func (r refs) volume(w *unstructured.Unstructured, source, name string) {
	r.t.Helper()
	vols, _, _ := unstructured.NestedSlice(w.Object, "spec", "template", "spec", "volumes")
	for _, v := range vols {
		src, _ := v.(map[string]any)[source].(map[string]any)
		if src != nil && (src["name"] == name || src["secretName"] == name) {
			return
		}
	}
	r.t.Errorf("%s %s mounts no %s %q", w.GetKind(), w.GetName(), source, name)
}

// args returns the args of a workload's first container.
func args(w *unstructured.Unstructured) []string {
	cs, _, _ := unstructured.NestedSlice(w.Object, "spec", "template", "spec", "containers")
	a, _, _ := unstructured.NestedStringSlice(cs[0].(map[string]any), "args")
	return a
}

// flagValue returns the value of --name=value in args ("" if none).
func flagValue(args []string, name string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

// projectedAudience returns the audience of the ServiceAccount token of a
// workload's projected volume.
func projectedAudience(w *unstructured.Unstructured, volume string) string {
	vols, _, _ := unstructured.NestedSlice(w.Object, "spec", "template", "spec", "volumes")
	for _, v := range vols {
		v := v.(map[string]any)
		if v["name"] != volume {
			continue
		}
		srcs, _, _ := unstructured.NestedSlice(v, "projected", "sources")
		for _, s := range srcs {
			if aud, ok, _ := unstructured.NestedFieldNoCopy(s.(map[string]any), "serviceAccountToken", "audience"); ok {
				return fmt.Sprint(aud)
			}
		}
	}
	return ""
}
