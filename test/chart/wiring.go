package chart

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Endpoint is where one port of a rendered Service leads: the container
// port of a workload whose pods the Service selects.
type Endpoint struct {
	// Namespace and Service name the Service; Port and PortName are its
	// port.
	Namespace, Service string
	Port               int32
	PortName           string
	// Kind and Workload name the Deployment or DaemonSet; Container and
	// ContainerPort are the port of its pod template that the Service's
	// targetPort resolves to.
	Kind, Workload string
	Container      string
	ContainerPort  int32
}

// Wiring follows the references between a rendering's objects that the API
// server does not check when it accepts them, and that only break once
// traffic flows: every Service's selector must select the pod template of at
// least one Deployment or DaemonSet of its namespace, and each of its ports'
// targetPort (a name or a number) must resolve to a port that the
// template's containers declare; every ServiceMonitor must select a Service
// with a port of each endpoint's port name; every MutatingWebhookConfiguration
// that calls a Service must name a rendered Service and one of its ports. It
// returns the endpoints of every Service port, by workload, and every broken
// reference as one error.
func Wiring(objs []*unstructured.Unstructured) ([]Endpoint, error) {
	type tmpl struct {
		kind, name, namespace string
		pod                   corev1.PodTemplateSpec
	}
	var (
		templates []tmpl
		services  []corev1.Service
		errs      []error
	)
	for _, u := range objs {
		switch u.GetKind() {
		case "Deployment":
			var d appsv1.Deployment
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &d); err != nil {
				return nil, fmt.Errorf("Deployment %s: %w", u.GetName(), err)
			}
			templates = append(templates, tmpl{"Deployment", d.Name, d.Namespace, d.Spec.Template})
		case "DaemonSet":
			var d appsv1.DaemonSet
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &d); err != nil {
				return nil, fmt.Errorf("DaemonSet %s: %w", u.GetName(), err)
			}
			templates = append(templates, tmpl{"DaemonSet", d.Name, d.Namespace, d.Spec.Template})
		case "Service":
			var s corev1.Service
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &s); err != nil {
				return nil, fmt.Errorf("Service %s: %w", u.GetName(), err)
			}
			services = append(services, s)
		}
	}

	var out []Endpoint
	for _, s := range services {
		if len(s.Spec.Selector) == 0 {
			errs = append(errs, fmt.Errorf("Service %s selects no pods: it has no selector", s.Name))
			continue
		}
		selected := 0
		for _, w := range templates {
			if w.namespace != s.Namespace || !subset(s.Spec.Selector, w.pod.Labels) {
				continue
			}
			selected++
			for _, sp := range s.Spec.Ports {
				c, cp, err := resolveTargetPort(sp, w.pod.Spec.Containers)
				if err != nil {
					errs = append(errs, fmt.Errorf("Service %s port %d: %s %s: %w", s.Name, sp.Port, w.kind, w.name, err))
					continue
				}
				out = append(out, Endpoint{Namespace: s.Namespace, Service: s.Name, Port: sp.Port, PortName: sp.Name,
					Kind: w.kind, Workload: w.name, Container: c, ContainerPort: cp})
			}
		}
		if selected == 0 {
			errs = append(errs, fmt.Errorf("Service %s: selector %v matches the pod template of no Deployment or DaemonSet of namespace %s", s.Name, s.Spec.Selector, s.Namespace))
		}
	}

	for _, u := range objs {
		switch u.GetKind() {
		case "ServiceMonitor":
			errs = append(errs, serviceMonitorWiring(u, services)...)
		case "MutatingWebhookConfiguration":
			errs = append(errs, webhookWiring(u, services)...)
		}
	}
	return out, errors.Join(errs...)
}

// resolveTargetPort finds the container port that a Service port's
// targetPort names, as the endpoints controller does: by name, the first
// container port of that name; by number (the Service's port when unset),
// a declared container port of that number. The protocols must agree.
func resolveTargetPort(sp corev1.ServicePort, containers []corev1.Container) (string, int32, error) {
	proto := func(p corev1.Protocol) corev1.Protocol {
		if p == "" {
			return corev1.ProtocolTCP
		}
		return p
	}
	target := sp.TargetPort
	if target.Type == intstr.Int && target.IntVal == 0 {
		target = intstr.FromInt32(sp.Port)
	}
	for _, c := range containers {
		for _, cp := range c.Ports {
			if target.Type == intstr.String && cp.Name != target.StrVal || target.Type == intstr.Int && cp.ContainerPort != target.IntVal {
				continue
			}
			if proto(cp.Protocol) != proto(sp.Protocol) {
				return "", 0, fmt.Errorf("targetPort %s is container %s's port %d of protocol %s, not %s", target.String(), c.Name, cp.ContainerPort, proto(cp.Protocol), proto(sp.Protocol))
			}
			return c.Name, cp.ContainerPort, nil
		}
	}
	return "", 0, fmt.Errorf("targetPort %s is no port of its containers", target.String())
}

// serviceMonitorWiring checks that ServiceMonitor u selects a Service
// (matchLabels, in the namespaces it names or its own) that has a port of
// each endpoint's port name.
func serviceMonitorWiring(u *unstructured.Unstructured, services []corev1.Service) []error {
	name := u.GetName()
	if _, found, _ := unstructured.NestedFieldNoCopy(u.Object, "spec", "selector", "matchExpressions"); found {
		return []error{fmt.Errorf("ServiceMonitor %s: matchExpressions are not checked here", name)}
	}
	match, _, err := unstructured.NestedStringMap(u.Object, "spec", "selector", "matchLabels")
	if err != nil || len(match) == 0 {
		return []error{fmt.Errorf("ServiceMonitor %s: no spec.selector.matchLabels (%v)", name, err)}
	}
	namespaces, _, _ := unstructured.NestedStringSlice(u.Object, "spec", "namespaceSelector", "matchNames")
	if len(namespaces) == 0 {
		namespaces = []string{u.GetNamespace()}
	}
	var selected []corev1.Service
	for _, s := range services {
		if slices.Contains(namespaces, s.Namespace) && subset(match, s.Labels) {
			selected = append(selected, s)
		}
	}
	if len(selected) == 0 {
		return []error{fmt.Errorf("ServiceMonitor %s: selector %v in namespaces %v matches no Service", name, match, namespaces)}
	}
	endpoints, _, _ := unstructured.NestedSlice(u.Object, "spec", "endpoints")
	if len(endpoints) == 0 {
		return []error{fmt.Errorf("ServiceMonitor %s has no endpoints", name)}
	}
	var errs []error
	for _, e := range endpoints {
		port, _ := e.(map[string]any)["port"].(string)
		for _, s := range selected {
			if !slices.ContainsFunc(s.Spec.Ports, func(sp corev1.ServicePort) bool { return sp.Name == port }) {
				errs = append(errs, fmt.Errorf("ServiceMonitor %s: endpoint port %q is no port name of Service %s", name, port, s.Name))
			}
		}
	}
	return errs
}

// webhookWiring checks that every webhook of configuration u that calls a
// Service calls a rendered one at one of its ports (443 when unset).
func webhookWiring(u *unstructured.Unstructured, services []corev1.Service) []error {
	hooks, _, _ := unstructured.NestedSlice(u.Object, "webhooks")
	var errs []error
	for _, h := range hooks {
		hm, _ := h.(map[string]any)
		ref, found, _ := unstructured.NestedMap(hm, "clientConfig", "service")
		if !found {
			continue
		}
		name, _ := ref["name"].(string)
		namespace, _ := ref["namespace"].(string)
		port := int64(443)
		if p, ok, _ := unstructured.NestedInt64(ref, "port"); ok {
			port = p
		}
		i := slices.IndexFunc(services, func(s corev1.Service) bool { return s.Name == name && s.Namespace == namespace })
		switch {
		case i < 0:
			errs = append(errs, fmt.Errorf("%s webhook %v calls Service %s/%s, which is not rendered", u.GetName(), hm["name"], namespace, name))
		case !slices.ContainsFunc(services[i].Spec.Ports, func(sp corev1.ServicePort) bool { return int64(sp.Port) == port }):
			errs = append(errs, fmt.Errorf("%s webhook %v calls Service %s/%s at port %d, which it does not have", u.GetName(), hm["name"], namespace, name, port))
		}
	}
	return errs
}

// subset reports whether labels has every label of selector.
func subset(selector, labels map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// String names the endpoint for messages.
func (e Endpoint) String() string {
	return fmt.Sprintf("Service %s/%s port %d → %s %s container %s port %d",
		e.Namespace, e.Service, e.Port, strings.ToLower(e.Kind), e.Workload, e.Container, e.ContainerPort)
}
