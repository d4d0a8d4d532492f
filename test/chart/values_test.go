package chart

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestValuesReachObjects checks that each per-component value of
// values.yaml lands in the object it configures (a value the templates
// ignore would pass every other test).
func TestValuesReachObjects(t *testing.T) {
	on := map[string]any{
		"auth":       map[string]any{"enabled": true, "clusterName": "c"},
		"agent":      map[string]any{"enabled": true, "clusterName": "c"},
		"issuerSync": map[string]any{"enabled": true, "issuer": "https://i.example", "to": "s3://b/p", "region": "eu-west-1"},
		"sts":        map[string]any{"enabled": true, "tlsSecretName": "t", "config": map[string]any{"accounts": []any{}}},
	}
	// with merges a component's extra values over on.
	with := func(component string, extra map[string]any) map[string]any {
		v := copyValues(on)
		m, _ := v[component].(map[string]any)
		if m == nil {
			m = map[string]any{}
		}
		for k, val := range extra {
			m[k] = val
		}
		v[component] = m
		return v
	}
	workloads := []struct{ component, kind, name string }{
		{"webhook", "Deployment", "podiam-webhook"},
		{"auth", "Deployment", "podiam-auth"},
		{"agent", "DaemonSet", "podiam-agent"},
		{"issuerSync", "Deployment", "podiam-issuer-sync"},
		{"sts", "Deployment", "podiam-sts"},
	}
	for _, w := range workloads {
		for _, tc := range []struct {
			value string
			set   any
			field []string // in the pod spec
			want  string   // in fmt.Sprint of the field
		}{
			{"priorityClassName", "tier-1", []string{"priorityClassName"}, "tier-1"},
			{"nodeSelector", map[string]any{"pool": "system"}, []string{"nodeSelector"}, "map[pool:system]"},
			{"tolerations", []any{map[string]any{"key": "k", "operator": "Exists"}}, []string{"tolerations"}, "[map[key:k operator:Exists]]"},
			// Merged with the chart's default (the agent's node affinity), as helm merges maps.
			{"affinity", map[string]any{"podAntiAffinity": map[string]any{}}, []string{"affinity"}, "podAntiAffinity:map[]"},
		} {
			t.Run(w.component+"/"+tc.value, func(t *testing.T) {
				obj := renderFind(t, with(w.component, map[string]any{tc.value: tc.set}), w.kind, w.name)
				got, _, _ := unstructured.NestedFieldNoCopy(obj.Object, append([]string{"spec", "template", "spec"}, tc.field...)...)
				if !strings.Contains(fmt.Sprint(got), tc.want) {
					t.Errorf("%s = %v, want %s in it", tc.value, got, tc.want)
				}
			})
		}
		t.Run(w.component+"/resources", func(t *testing.T) {
			obj := renderFind(t, with(w.component, map[string]any{"resources": map[string]any{"limits": map[string]any{"memory": "1Gi"}}}), w.kind, w.name)
			cs, _, _ := unstructured.NestedSlice(obj.Object, "spec", "template", "spec", "containers")
			got, _, _ := unstructured.NestedString(cs[0].(map[string]any), "resources", "limits", "memory")
			if got != "1Gi" {
				t.Errorf("memory limit %q, want 1Gi", got)
			}
		})
	}

	for _, tc := range []struct {
		name       string
		values     map[string]any
		kind, obj  string
		field      []string
		want       string
		wantAbsent bool
	}{
		{"failurePolicy", map[string]any{"webhook": map[string]any{"failurePolicy": "Fail"}},
			"MutatingWebhookConfiguration", "podiam-webhook", []string{"webhooks"}, "failurePolicy:Fail", false},
		{"webhook replicas", map[string]any{"webhook": map[string]any{"replicas": 3}},
			"Deployment", "podiam-webhook", []string{"spec", "replicas"}, "3", false},
		{"auth replicas", with("auth", map[string]any{"replicas": 4}),
			"Deployment", "podiam-auth", []string{"spec", "replicas"}, "4", false},
		{"webhook PDB off", map[string]any{"webhook": map[string]any{"podDisruptionBudget": map[string]any{"enabled": false}}},
			"PodDisruptionBudget", "podiam-webhook", nil, "", true},
		{"ServiceMonitor labels", map[string]any{"serviceMonitor": map[string]any{"enabled": true, "labels": map[string]any{"release": "prom"}}},
			"ServiceMonitor", "podiam-webhook", []string{"metadata", "labels", "release"}, "prom", false},
		{"no ServiceMonitor by default", map[string]any{},
			"ServiceMonitor", "podiam-webhook", nil, "", true},
		{"sts off by default", map[string]any{},
			"Deployment", "podiam-sts", nil, "", true},
		{"image tag", map[string]any{"image": map[string]any{"tag": "v9.9.9"}},
			"Deployment", "podiam-webhook", []string{"spec", "template", "spec", "containers"}, "image:ghcr.io/podiam/podiam:v9.9.9 ", false},
		{"cert-manager: no Secret RBAC", map[string]any{"webhook": map[string]any{"certificates": map[string]any{"mode": "cert-manager"}}},
			"Role", "podiam-webhook-certs", nil, "", true},
		{"namespaceSelector", map[string]any{"webhook": map[string]any{"namespaceSelector": map[string]any{"matchLabels": map[string]any{"irsa": "on"}}}},
			"MutatingWebhookConfiguration", "podiam-webhook", []string{"webhooks"}, "namespaceSelector:map[matchLabels:map[irsa:on]]", false},
		{"objectSelector by default", map[string]any{},
			"MutatingWebhookConfiguration", "podiam-webhook", []string{"webhooks"}, "objectSelector:map[matchExpressions:[map[key:eks.amazonaws.com/skip-pod-identity-webhook operator:DoesNotExist]]]", false},
		{"objectSelector", map[string]any{"webhook": map[string]any{"objectSelector": map[string]any{"matchLabels": map[string]any{"irsa": "on"}}}},
			"MutatingWebhookConfiguration", "podiam-webhook", []string{"webhooks"}, "objectSelector:map[matchExpressions:[map[key:eks.amazonaws.com/skip-pod-identity-webhook operator:DoesNotExist]] matchLabels:map[irsa:on]]", false},
		{"no mapping ConfigMap without watchConfigMap", map[string]any{"webhook": map[string]any{"watchConfigMap": false}},
			"ConfigMap", "pod-identity-webhook", nil, "", true},
		{"no mapping Role without watchConfigMap", map[string]any{"webhook": map[string]any{"watchConfigMap": false}},
			"Role", "podiam-webhook", nil, "", true},
		// An unmanaged mapping is written with kubectl: the chart renders no
		// ConfigMap (none for Helm to reset or for two releases to share) but
		// still reads it.
		{"unmanaged mapping: no ConfigMap", map[string]any{"webhook": map[string]any{"manageMapping": false}},
			"ConfigMap", "pod-identity-webhook", nil, "", true},
		{"unmanaged mapping: still read", map[string]any{"webhook": map[string]any{"manageMapping": false}},
			"Role", "podiam-webhook", []string{"rules"}, "resourceNames:[pod-identity-webhook]", false},
		{"unmanaged mapping: still watched", map[string]any{"webhook": map[string]any{"manageMapping": false}},
			"Deployment", "podiam-webhook", []string{"spec", "template", "spec", "containers"}, "--watch-config-map", false},
		{"managed mapping", map[string]any{"webhook": map[string]any{"mapping": map[string]any{"ns/sa": map[string]any{"RoleARN": "arn:aws:iam::111122223333:role/r"}}}},
			"ConfigMap", "pod-identity-webhook", []string{"data", "config"}, `"RoleARN": "arn:aws:iam::111122223333:role/r"`, false},
		{"PDB percentage", map[string]any{"webhook": map[string]any{"podDisruptionBudget": map[string]any{"minAvailable": "50%"}}},
			"PodDisruptionBudget", "podiam-webhook", []string{"spec", "minAvailable"}, "50%", false},
		{"no webhook PDB with one replica", map[string]any{"webhook": map[string]any{"replicas": 1}},
			"PodDisruptionBudget", "podiam-webhook", nil, "", true},
		{"no auth PDB with one replica", with("auth", map[string]any{"replicas": 1}),
			"PodDisruptionBudget", "podiam-auth", nil, "", true},
		{"image digest", map[string]any{"image": map[string]any{"digest": "sha256:" + strings.Repeat("0", 64)}},
			"Deployment", "podiam-webhook", []string{"spec", "template", "spec", "containers"}, "image:ghcr.io/podiam/podiam:v0.1.0@sha256:" + strings.Repeat("0", 64), false},
		{"version label follows image.tag", map[string]any{"image": map[string]any{"tag": "v9.9.9"}},
			"Deployment", "podiam-webhook", []string{"metadata", "labels", "app.kubernetes.io/version"}, "v9.9.9", false},
		{"no GOMEMLIMIT when empty", map[string]any{"webhook": map[string]any{"goMemLimit": ""}},
			"Deployment", "podiam-webhook", []string{"spec", "template", "spec", "containers"}, "env:[map[name:POD_NAMESPACE valueFrom:map[fieldRef:map[fieldPath:metadata.namespace]]]]", false},
		{"agent's CA ConfigMap", map[string]any{"agent": map[string]any{"enabled": true, "clusterName": "c", "podiam": map[string]any{"authURL": "https://a.b.svc", "caConfigMap": "other-ca"}}},
			"DaemonSet", "podiam-agent", []string{"spec", "template", "spec", "volumes"}, "configMap:map[items:[map[key:ca.crt path:ca.crt]] name:other-ca]", false},
		{"agent's cluster name from auth", map[string]any{"auth": map[string]any{"enabled": true, "clusterName": "prod"}, "agent": map[string]any{"enabled": true}},
			"DaemonSet", "podiam-agent", []string{"spec", "template", "spec", "containers"}, "--cluster-name=prod", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Render(tc.values)
			if err != nil {
				t.Fatal(err)
			}
			objs, err := Objects(out)
			if err != nil {
				t.Fatal(err)
			}
			i := slices.IndexFunc(objs, func(o *unstructured.Unstructured) bool { return o.GetKind() == tc.kind && o.GetName() == tc.obj })
			if tc.wantAbsent {
				if i >= 0 {
					t.Errorf("%s %s rendered, want none", tc.kind, tc.obj)
				}
				return
			}
			if i < 0 {
				t.Fatalf("no %s %s", tc.kind, tc.obj)
			}
			got, _, _ := unstructured.NestedFieldNoCopy(objs[i].Object, tc.field...)
			if s := fmt.Sprint(got); !strings.Contains(s, tc.want) {
				t.Errorf("%v = %s, want %s in it", tc.field, s, tc.want)
			}
		})
	}
}

// renderFind renders values and returns the object of that kind and name.
func renderFind(t *testing.T, values map[string]any, kind, name string) *unstructured.Unstructured {
	t.Helper()
	out, err := Render(values)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Objects(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("no %s %s", kind, name)
	return nil
}

// TestRoleArn checks that auth.roleArn and issuerSync.roleArn give the pod
// what the webhook would inject (so that it has AWS credentials even when
// created before the webhook answers) and the skip label (so that the
// webhook adds none twice), and that without roleArn the pod has neither.
func TestRoleArn(t *testing.T) {
	const role = "arn:aws:iam::111122223333:role/r"
	for _, tc := range []struct {
		component, kind, name string
		values                map[string]any
	}{
		{"auth", "Deployment", "podiam-auth", map[string]any{"enabled": true, "clusterName": "c"}},
		{"issuerSync", "Deployment", "podiam-issuer-sync", map[string]any{"enabled": true, "issuer": "https://i.example", "to": "s3://b/p", "region": "eu-west-1"}},
	} {
		for _, withRole := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/%v", tc.component, withRole), func(t *testing.T) {
				values := copyValues(tc.values)
				if withRole {
					values["roleArn"] = role
				}
				obj := renderFind(t, map[string]any{tc.component: values}, tc.kind, tc.name)
				pod, _, _ := unstructured.NestedMap(obj.Object, "spec", "template")
				c := pod["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)
				env := map[string]string{}
				es, _, _ := unstructured.NestedSlice(c, "env")
				for _, e := range es {
					e := e.(map[string]any)
					if v, ok := e["value"].(string); ok {
						env[e["name"].(string)] = v
					}
				}
				labels, _, _ := unstructured.NestedStringMap(pod, "metadata", "labels")
				if !withRole {
					if _, ok := env["AWS_ROLE_ARN"]; ok || labels["eks.amazonaws.com/skip-pod-identity-webhook"] != "" {
						t.Errorf("without roleArn: env %v, labels %v; want no AWS_ROLE_ARN and no skip label", env, labels)
					}
					return
				}
				const tokenDir = "/var/run/secrets/eks.amazonaws.com/serviceaccount"
				for k, want := range map[string]string{"AWS_ROLE_ARN": role, "AWS_WEB_IDENTITY_TOKEN_FILE": tokenDir + "/token", "AWS_STS_REGIONAL_ENDPOINTS": "regional"} {
					if env[k] != want {
						t.Errorf("env %s = %q, want %q", k, env[k], want)
					}
				}
				if labels["eks.amazonaws.com/skip-pod-identity-webhook"] != "true" {
					t.Errorf("labels %v lack the skip label", labels)
				}
				mounts, _, _ := unstructured.NestedSlice(c, "volumeMounts")
				if !slices.ContainsFunc(mounts, func(m any) bool {
					return m.(map[string]any)["name"] == "aws-iam-token" && m.(map[string]any)["mountPath"] == tokenDir
				}) {
					t.Errorf("volumeMounts %v lack aws-iam-token at %s", mounts, tokenDir)
				}
				if aud := projectedAudience(obj, "aws-iam-token"); aud != "sts.amazonaws.com" {
					t.Errorf("token audience %q, want sts.amazonaws.com", aud)
				}
			})
		}
	}
}

// TestFreeTextQuoted checks that free-text values reach their objects as
// the same strings, whatever YAML would make of them unquoted (a map from
// "a: b", a number from "12345").
func TestFreeTextQuoted(t *testing.T) {
	const text = "a: b #c"
	for _, tc := range []struct {
		name      string
		values    map[string]any
		kind, obj string
		want      string // an arg of the first container
		audience  string // or the agent token's audience
	}{
		{"tokenAudience", map[string]any{"webhook": map[string]any{"tokenAudience": text}}, "Deployment", "podiam-webhook", "--token-audience=" + text, ""},
		{"issuer", map[string]any{"issuerSync": map[string]any{"enabled": true, "issuer": "https://i.example/" + text, "to": "s3://b/p", "region": "eu-west-1"}},
			"Deployment", "podiam-issuer-sync", "--issuer=https://i.example/" + text, ""},
		{"to", map[string]any{"issuerSync": map[string]any{"enabled": true, "issuer": "https://i", "to": "s3://b/p: q", "region": "eu-west-1"}},
			"Deployment", "podiam-issuer-sync", "--to=s3://b/p: q", ""},
		{"agent audience", map[string]any{"auth": map[string]any{"enabled": true, "clusterName": "c"}, "agent": map[string]any{"enabled": true, "podiam": map[string]any{"audience": "12345"}}},
			"DaemonSet", "podiam-agent", "", "12345"},
		{"auth's agent audience", map[string]any{"auth": map[string]any{"enabled": true, "clusterName": "c"}, "agent": map[string]any{"podiam": map[string]any{"audience": "12345"}}},
			"Deployment", "podiam-auth", "--agent-audience=12345", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obj := renderFind(t, tc.values, tc.kind, tc.obj)
			if tc.want != "" && !slices.Contains(args(obj), tc.want) {
				t.Errorf("args %q lack %q", args(obj), tc.want)
			}
			if tc.audience != "" {
				vols, _, _ := unstructured.NestedSlice(obj.Object, "spec", "template", "spec", "volumes")
				found := false
				for _, v := range vols {
					srcs, _, _ := unstructured.NestedSlice(v.(map[string]any), "projected", "sources")
					for _, s := range srcs {
						if aud, ok, _ := unstructured.NestedFieldNoCopy(s.(map[string]any), "serviceAccountToken", "audience"); ok {
							found = true
							if aud != tc.audience {
								t.Errorf("audience %#v, want the string %q", aud, tc.audience)
							}
						}
					}
				}
				if !found {
					t.Error("no projected token")
				}
			}
		})
	}
}

// TestPodTemplateLabels checks that the pods' labels are only those that
// stay the same across chart versions (no helm.sh/chart, no version), so
// that a chart upgrade restarts no pod whose spec did not change.
func TestPodTemplateLabels(t *testing.T) {
	out, err := Render(allComponents("self-managed"))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Objects(out)
	if err != nil {
		t.Fatal(err)
	}
	allowed := []string{"app.kubernetes.io/name", "app.kubernetes.io/component", "app.kubernetes.io/instance", "app.kubernetes.io/part-of", "eks.amazonaws.com/skip-pod-identity-webhook"}
	n := 0
	for _, o := range objs {
		labels, ok, _ := unstructured.NestedStringMap(o.Object, "spec", "template", "metadata", "labels")
		if !ok {
			continue
		}
		n++
		for k := range labels {
			if !slices.Contains(allowed, k) {
				t.Errorf("%s %s: pod label %s=%s changes with the chart or its version", o.GetKind(), o.GetName(), k, labels[k])
			}
		}
	}
	if n != 5 {
		t.Errorf("%d pod templates, want 5 (webhook, auth, agent, issuer sync, sts)", n)
	}
}

// TestSecurityContexts checks each workload's pod and container security:
// every component but the agent meets Pod Security "restricted" (non-root,
// no privilege escalation, every capability dropped, RuntimeDefault
// seccomp) with a read-only root filesystem; the agent, on the node's
// network, is root with exactly the one capability each container needs.
func TestSecurityContexts(t *testing.T) {
	out, err := Render(allComponents("self-managed"))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Objects(out)
	if err != nil {
		t.Fatal(err)
	}
	wantCaps := map[string]string{"podiam-agent/init": "[NET_ADMIN]", "podiam-agent/agent": "[NET_BIND_SERVICE]"}
	n := 0
	for _, o := range objs {
		spec, ok, _ := unstructured.NestedMap(o.Object, "spec", "template", "spec")
		if !ok {
			continue
		}
		n++
		agent := o.GetName() == "podiam-agent"
		if got := fmt.Sprint(spec["hostNetwork"]); (got == "true") != agent {
			t.Errorf("%s: hostNetwork %s", o.GetName(), got)
		}
		if got, _, _ := unstructured.NestedString(spec, "securityContext", "seccompProfile", "type"); got != "RuntimeDefault" {
			t.Errorf("%s: seccompProfile %q, want RuntimeDefault", o.GetName(), got)
		}
		if !agent {
			if nonRoot, _, _ := unstructured.NestedBool(spec, "securityContext", "runAsNonRoot"); !nonRoot {
				t.Errorf("%s: pod runAsNonRoot not true", o.GetName())
			}
		}
		for _, field := range []string{"initContainers", "containers"} {
			cs, _, _ := unstructured.NestedSlice(spec, field)
			for _, c := range cs {
				c := c.(map[string]any)
				id := o.GetName() + "/" + c["name"].(string)
				sc, _ := c["securityContext"].(map[string]any)
				if v, _, _ := unstructured.NestedBool(sc, "allowPrivilegeEscalation"); v || sc["allowPrivilegeEscalation"] == nil {
					t.Errorf("%s: allowPrivilegeEscalation not false", id)
				}
				if v, _, _ := unstructured.NestedBool(sc, "readOnlyRootFilesystem"); !v {
					t.Errorf("%s: readOnlyRootFilesystem not true", id)
				}
				if v, _, _ := unstructured.NestedBool(sc, "privileged"); v {
					t.Errorf("%s: privileged", id)
				}
				drop, _, _ := unstructured.NestedStringSlice(sc, "capabilities", "drop")
				if !slices.Equal(drop, []string{"ALL"}) {
					t.Errorf("%s: capabilities drop %v, want [ALL]", id, drop)
				}
				add, _, _ := unstructured.NestedStringSlice(sc, "capabilities", "add")
				if got, want := fmt.Sprint(add), wantCaps[id]; (want == "" && len(add) > 0) || (want != "" && got != want) {
					t.Errorf("%s: capabilities add %s, want %q", id, got, want)
				}
				if uid, ok, _ := unstructured.NestedInt64(sc, "runAsUser"); ok && uid == 0 && !agent {
					t.Errorf("%s: runs as root", id)
				}
			}
		}
	}
	if n != 5 {
		t.Errorf("%d workloads, want 5", n)
	}
}

// TestNamespacePodSecurity checks the rendered Namespace's Pod Security
// level: privileged only where the agent runs, unless set.
func TestNamespacePodSecurity(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values map[string]any
		want   string
	}{
		{"webhook only", map[string]any{"namespace": map[string]any{"create": true}}, "restricted"},
		{"with the agent", map[string]any{"namespace": map[string]any{"create": true}, "agent": map[string]any{"enabled": true, "backend": "eks", "clusterName": "c"}}, "privileged"},
		{"set", map[string]any{"namespace": map[string]any{"create": true, "podSecurity": "baseline"}}, "baseline"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := renderFind(t, tc.values, "Namespace", ReleaseNamespace)
			if got := ns.GetLabels()["pod-security.kubernetes.io/enforce"]; got != tc.want {
				t.Errorf("pod-security.kubernetes.io/enforce = %q, want %s", got, tc.want)
			}
		})
	}
}

// TestExtraArgsDocumented checks that values.yaml tells the one form of
// extraArgs the schema accepts (each item `--flag=value`: a value in an item
// of its own, or a single-dash flag, is refused) for every component, and
// that its examples are accepted.
func TestExtraArgsDocumented(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(Dir(), "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	n := 0
	for i, l := range lines {
		if strings.TrimSpace(l) != "extraArgs: []" {
			continue
		}
		n++
		doc := lines[i-1]
		if !strings.Contains(doc, "# --") || !strings.Contains(doc, "`--flag=value`") {
			t.Errorf("values.yaml:%d: the comment of extraArgs, %q, does not say `--flag=value`", i+1, strings.TrimSpace(doc))
		}
		for _, m := range backticked.FindAllStringSubmatch(doc, -1) {
			example := strings.Trim(m[1], "[]")
			if !strings.HasPrefix(example, "--") || strings.Contains(example, "value") {
				continue // not an example of flags
			}
			var items []any
			for _, f := range strings.Split(example, ", ") {
				items = append(items, f)
			}
			if _, err := Render(map[string]any{"webhook": map[string]any{"extraArgs": items}}); err != nil {
				t.Errorf("values.yaml:%d: the example %s is refused: %v", i+1, m[1], err)
			}
		}
	}
	if n != 4 {
		t.Errorf("%d extraArgs in values.yaml, want 4 (webhook, auth, agent, issuerSync)", n)
	}
}
