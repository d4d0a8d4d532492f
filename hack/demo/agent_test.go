package main

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestPodAppEnv checks the pod application's environment: the pod's
// container env with the agent's address and the token's path of this
// machine, podiam sts as the STS, and none of the machine's AWS settings.
func TestPodAppEnv(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIAMACHINEKEY")
	t.Setenv("AWS_PROFILE", "machine")
	t.Setenv(podAppMarker, "stale")
	pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Env: []corev1.EnvVar{
		{Name: "AWS_STS_REGIONAL_ENDPOINTS", Value: "regional"},
		{Name: "AWS_CONTAINER_CREDENTIALS_FULL_URI", Value: "http://169.254.170.23/v1/credentials"},
		{Name: "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", Value: "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token"},
	}}}}}
	env := podAppEnv(pod, "http://127.0.0.1:8080/v1/credentials", "/tmp/d/token", "http://127.0.0.1:9000", "/tmp/d")

	// What exec does with duplicates: the last value wins.
	last := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		last[k] = v
	}
	want := map[string]string{
		"AWS_CONTAINER_CREDENTIALS_FULL_URI":     "http://127.0.0.1:8080/v1/credentials",
		"AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": "/tmp/d/token",
		"AWS_STS_REGIONAL_ENDPOINTS":             "regional",
		"AWS_ENDPOINT_URL_STS":                   "http://127.0.0.1:9000",
		"AWS_REGION":                             region,
		"AWS_CONFIG_FILE":                        "/tmp/d/no-aws-config",
		podAppMarker:                             "1",
	}
	for k, v := range want {
		if last[k] != v {
			t.Errorf("%s = %q, want %q", k, last[k], v)
		}
	}
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_PROFILE"} {
		if _, ok := last[k]; ok {
			t.Errorf("the machine's %s reaches the pod's application", k)
		}
	}
	if !slices.Contains(env, podAppMarker+"=1") || slices.Contains(env, podAppMarker+"=stale") {
		t.Errorf("env has not exactly one %s=1: %q", podAppMarker, env)
	}
}
