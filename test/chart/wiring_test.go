package chart

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestWiringVariants: every rendering of the chart's tests, and one of every
// component with its metrics Services and ServiceMonitors, is wired: each
// Service leads to a declared container port of a workload.
func TestWiringVariants(t *testing.T) {
	variants := append(Variants(), Variant{Name: "all components", Values: allComponents("self-managed")})
	for _, v := range variants {
		t.Run(v.Name, func(t *testing.T) {
			objs := renderObjects(t, v.Values)
			eps, err := Wiring(objs)
			if err != nil {
				t.Fatal(err)
			}
			services := 0
			for _, u := range objs {
				if u.GetKind() == "Service" {
					services++
				}
			}
			if services > 0 && len(eps) < services {
				t.Errorf("%d endpoints for %d Services: %v", len(eps), services, eps)
			}
		})
	}
}

// TestWiringEndpoints: the all-components rendering's Services lead where
// the components listen (their flags' ports, which the e2e tests run).
func TestWiringEndpoints(t *testing.T) {
	eps, err := Wiring(renderObjects(t, allComponents("self-managed")))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int32{}
	for _, e := range eps {
		got[e.Service+"/"+e.PortName] = e.ContainerPort
	}
	for svc, want := range map[string]int32{
		"podiam-webhook/https": 8443, "podiam-webhook-metrics/metrics": 9999,
		"podiam-auth-metrics/metrics": 8444, "podiam-agent-metrics/metrics": 2705, "podiam-sts-metrics/metrics": 8081,
	} {
		if got[svc] != want {
			t.Errorf("%s leads to container port %d, want %d (all: %v)", svc, got[svc], want, eps)
		}
	}
}

// TestWiringFindsBreaks breaks one reference of a rendering at a time: each
// must be reported, naming what is broken.
func TestWiringFindsBreaks(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(t *testing.T, objs []*unstructured.Unstructured)
		want   string
	}{
		{"selector of a label the pods lack", func(t *testing.T, objs []*unstructured.Unstructured) {
			set(t, object(t, objs, "Service", "podiam-webhook"), "other", "spec", "selector", "app.kubernetes.io/component")
		}, "Service podiam-webhook: selector"},
		{"targetPort naming no container port", func(t *testing.T, objs []*unstructured.Unstructured) {
			ports, _, _ := unstructured.NestedSlice(object(t, objs, "Service", "podiam-auth").Object, "spec", "ports")
			ports[0].(map[string]any)["targetPort"] = "htps"
			set(t, object(t, objs, "Service", "podiam-auth"), ports, "spec", "ports")
		}, `Service podiam-auth port 443: Deployment podiam-auth: targetPort htps is no port`},
		{"targetPort number no container declares", func(t *testing.T, objs []*unstructured.Unstructured) {
			ports, _, _ := unstructured.NestedSlice(object(t, objs, "Service", "podiam-sts-metrics").Object, "spec", "ports")
			ports[0].(map[string]any)["targetPort"] = int64(9090)
			set(t, object(t, objs, "Service", "podiam-sts-metrics"), ports, "spec", "ports")
		}, "targetPort 9090 is no port"},
		{"container port renamed", func(t *testing.T, objs []*unstructured.Unstructured) {
			d := object(t, objs, "DaemonSet", "podiam-agent")
			cs, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
			for _, p := range cs[0].(map[string]any)["ports"].([]any) {
				p.(map[string]any)["name"] = "x-" + p.(map[string]any)["name"].(string)
			}
			set(t, d, cs, "spec", "template", "spec", "containers")
		}, "Service podiam-agent-metrics port 2705: DaemonSet podiam-agent: targetPort metrics is no port"},
		{"Service without a selector", func(t *testing.T, objs []*unstructured.Unstructured) {
			unstructured.RemoveNestedField(object(t, objs, "Service", "podiam-webhook").Object, "spec", "selector")
		}, "Service podiam-webhook selects no pods"},
		{"ServiceMonitor selecting no Service", func(t *testing.T, objs []*unstructured.Unstructured) {
			set(t, object(t, objs, "ServiceMonitor", "podiam-auth"), "podiam-authx", "spec", "selector", "matchLabels", "app.kubernetes.io/metrics")
		}, "ServiceMonitor podiam-auth: selector"},
		{"ServiceMonitor of another port name", func(t *testing.T, objs []*unstructured.Unstructured) {
			set(t, object(t, objs, "ServiceMonitor", "podiam-agent"), []any{map[string]any{"port": "http-metrics"}}, "spec", "endpoints")
		}, `endpoint port "http-metrics" is no port name of Service podiam-agent-metrics`},
		{"webhook calling another Service port", func(t *testing.T, objs []*unstructured.Unstructured) {
			mwc := object(t, objs, "MutatingWebhookConfiguration", "podiam-webhook")
			hooks, _, _ := unstructured.NestedSlice(mwc.Object, "webhooks")
			hooks[0].(map[string]any)["clientConfig"].(map[string]any)["service"].(map[string]any)["port"] = int64(8443)
			set(t, mwc, hooks, "webhooks")
		}, "at port 8443, which it does not have"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := renderObjects(t, allComponents("self-managed"))
			tc.mutate(t, objs)
			_, err := Wiring(objs)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func renderObjects(t *testing.T, values map[string]any) []*unstructured.Unstructured {
	t.Helper()
	out, err := Render(values)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Objects(out)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// object returns the rendered object of kind and name.
func object(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, u := range objs {
		if u.GetKind() == kind && u.GetName() == name {
			return u
		}
	}
	t.Fatalf("no %s %s in the rendering", kind, name)
	return nil
}

func set(t *testing.T, u *unstructured.Unstructured, value any, fields ...string) {
	t.Helper()
	if err := unstructured.SetNestedField(u.Object, value, fields...); err != nil {
		t.Fatal(err)
	}
}
