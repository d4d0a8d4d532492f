package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/podiam/podiam/test/testutil"
)

// TestServiceAccountAnnotations: the ServiceAccount's annotations decide the
// injected env, volume and mount; the pod's token-expiration wins, is raised to
// 600 s with an admission warning that reaches the client.
func TestServiceAccountAnnotations(t *testing.T) {
	t.Parallel()
	logsOnFailure(t, "shared", shared)
	ctx := ctxFor(t, time.Minute)
	ns := testutil.UniqueName("e2e-annotations")
	newNamespace(t, ctx, ns, nil)
	const role = "arn:aws:iam::111122223333:role/app"
	newServiceAccount(t, ctx, ns, "full", map[string]string{
		annoRoleARN: role, annoAudience: "sts.example.com", annoRegional: "true", annoExpiration: "3600"})
	newServiceAccount(t, ctx, ns, "minimal", map[string]string{annoRoleARN: role})
	newServiceAccount(t, ctx, ns, "not-regional", map[string]string{annoRoleARN: role, annoRegional: "false"})
	newServiceAccount(t, ctx, ns, "odd-arn", map[string]string{annoRoleARN: "not-an-arn"})
	newServiceAccount(t, ctx, ns, "plain", nil)
	cs, warnings := warningClient(t)

	for _, tc := range []struct {
		name     string
		sa       string
		podAnno  map[string]string
		labels   map[string]string
		userEnv  []corev1.EnvVar
		want     *irsaExpect // nil: no injection
		wantEnv  []string    // overrides want.env() when set
		warnings []string    // substrings, one per expected warning
	}{
		{name: "all annotations", sa: "full",
			want: &irsaExpect{role: role, regional: true, audience: "sts.example.com", expiration: 3600}},
		{name: "defaults", sa: "minimal", want: &irsaExpect{role: role, expiration: 86400}},
		{name: "regional false", sa: "not-regional", want: &irsaExpect{role: role, expiration: 86400}},
		{name: "pod token-expiration wins", sa: "full", podAnno: map[string]string{annoExpiration: "7200"},
			want: &irsaExpect{role: role, regional: true, audience: "sts.example.com", expiration: 7200}},
		{name: "pod token-expiration below 600", sa: "full", podAnno: map[string]string{annoExpiration: "300"},
			want:     &irsaExpect{role: role, regional: true, audience: "sts.example.com", expiration: 600},
			warnings: []string{"token expiration 300s is below the minimum; using 600s"}},
		{name: "non-integer token-expiration", sa: "minimal", podAnno: map[string]string{annoExpiration: "1h"},
			want: &irsaExpect{role: role, expiration: 86400}, warnings: []string{`"1h" is not an integer`}},
		{name: "odd role ARN is injected with a warning", sa: "odd-arn",
			want: &irsaExpect{role: "not-an-arn", expiration: 86400}, warnings: []string{`role ARN "not-an-arn" does not look like`}},
		{name: "user's region wins as a pair", sa: "minimal", userEnv: []corev1.EnvVar{{Name: "AWS_REGION", Value: "us-east-2"}},
			want:    &irsaExpect{role: role, expiration: 86400},
			wantEnv: []string{"AWS_REGION=us-east-2", "AWS_ROLE_ARN=" + role, "AWS_WEB_IDENTITY_TOKEN_FILE=" + irsaTokenFile}},
		{name: "user's role wins as a pair", sa: "minimal", userEnv: []corev1.EnvVar{{Name: "AWS_ROLE_ARN", Value: "arn:aws:iam::999999999999:role/own"}},
			want:     &irsaExpect{role: role, expiration: 86400},
			wantEnv:  []string{"AWS_ROLE_ARN=arn:aws:iam::999999999999:role/own", "AWS_DEFAULT_REGION=" + region, "AWS_REGION=" + region},
			warnings: []string{`container "app" sets AWS_ROLE_ARN but not AWS_WEB_IDENTITY_TOKEN_FILE`}},
		{name: "no role", sa: "plain"},
		{name: "skip label", sa: "full", labels: map[string]string{skipLabel: "true"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := simplePod(tc.sa)
			pod.Annotations, pod.Labels = tc.podAnno, tc.labels
			pod.Spec.Containers[0].Env = tc.userEnv
			warnings.take()
			got := createPod(t, ctx, cs, ns, pod)
			gotWarnings := warnings.take()

			switch {
			case tc.want == nil:
				checkIRSA(t, got, irsaExpect{})
			case tc.wantEnv != nil:
				w := *tc.want
				w.envOverride = tc.wantEnv
				checkIRSA(t, got, w, "app")
			default:
				checkIRSA(t, got, *tc.want, "app")
			}
			if len(gotWarnings) != len(tc.warnings) {
				t.Errorf("warnings = %q, want %d matching %q", gotWarnings, len(tc.warnings), tc.warnings)
			}
			for _, w := range tc.warnings {
				if !containsAny(gotWarnings, w) {
					t.Errorf("warnings %q: none contains %q", gotWarnings, w)
				}
			}
			for _, w := range gotWarnings {
				if !strings.HasPrefix(w, "podiam: ") {
					t.Errorf("warning %q: want prefix %q", w, "podiam: ")
				}
			}
		})
	}
}

func containsAny(list []string, sub string) bool {
	for _, s := range list {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// TestContainerSelection: skip-containers and inject-containers, init
// containers, native sidecars and Windows pods.
func TestContainerSelection(t *testing.T) {
	t.Parallel()
	logsOnFailure(t, "shared", shared)
	ctx := ctxFor(t, time.Minute)
	const role = "arn:aws:iam::111122223333:role/containers"
	ns := testutil.UniqueName("e2e-containers")
	newNamespace(t, ctx, ns, nil)
	newServiceAccount(t, ctx, ns, "app", map[string]string{annoRoleARN: role})
	ctr := func(name string) corev1.Container { return corev1.Container{Name: name, Image: image} }
	always := corev1.ContainerRestartPolicyAlways

	for _, tc := range []struct {
		name      string
		anno      map[string]string
		spec      corev1.PodSpec
		tokenFile string
		injected  []string
	}{
		{name: "skip-containers with spaces",
			anno:     map[string]string{annoSkip: " b ,  c "},
			spec:     corev1.PodSpec{Containers: []corev1.Container{ctr("a"), ctr("b"), ctr("c")}},
			injected: []string{"a"}},
		{name: "inject-containers",
			anno:     map[string]string{annoInject: "b, c"},
			spec:     corev1.PodSpec{Containers: []corev1.Container{ctr("a"), ctr("b"), ctr("c")}},
			injected: []string{"b", "c"}},
		{name: "inject and skip together",
			anno:     map[string]string{annoInject: "a,b", annoSkip: "b"},
			spec:     corev1.PodSpec{Containers: []corev1.Container{ctr("a"), ctr("b"), ctr("c")}},
			injected: []string{"a"}},
		{name: "init containers and native sidecar",
			spec: corev1.PodSpec{
				InitContainers: []corev1.Container{ctr("init"), {Name: "sidecar", Image: image, RestartPolicy: &always}},
				Containers:     []corev1.Container{ctr("main")}},
			injected: []string{"init", "sidecar", "main"}},
		{name: "skip a native sidecar",
			anno: map[string]string{annoSkip: "sidecar"},
			spec: corev1.PodSpec{
				InitContainers: []corev1.Container{{Name: "sidecar", Image: image, RestartPolicy: &always}},
				Containers:     []corev1.Container{ctr("main")}},
			injected: []string{"main"}},
		{name: "windows by nodeSelector",
			spec:      corev1.PodSpec{NodeSelector: map[string]string{"kubernetes.io/os": "windows"}, Containers: []corev1.Container{ctr("a")}},
			tokenFile: winTokenFile, injected: []string{"a"}},
		{name: "windows by beta nodeSelector",
			spec:      corev1.PodSpec{NodeSelector: map[string]string{"beta.kubernetes.io/os": "windows"}, Containers: []corev1.Container{ctr("a")}},
			tokenFile: winTokenFile, injected: []string{"a"}},
		{name: "windows by spec.os",
			spec:      corev1.PodSpec{OS: &corev1.PodOS{Name: corev1.Windows}, Containers: []corev1.Container{ctr("a")}},
			tokenFile: winTokenFile, injected: []string{"a"}},
		{name: "linux by spec.os",
			spec:     corev1.PodSpec{OS: &corev1.PodOS{Name: corev1.Linux}, Containers: []corev1.Container{ctr("a")}},
			injected: []string{"a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: "sel-", Annotations: tc.anno}, Spec: tc.spec}
			pod.Spec.ServiceAccountName = "app"
			got := createPod(t, ctx, client, ns, pod)
			checkIRSA(t, got, irsaExpect{role: role, expiration: 86400, tokenFile: tc.tokenFile}, tc.injected...)
			for i, c := range pod.Spec.InitContainers {
				if g := got.Spec.InitContainers[i]; g.Name != c.Name || fmt.Sprint(deref(g.RestartPolicy)) != fmt.Sprint(deref(c.RestartPolicy)) {
					t.Errorf("init container %d: got %q restartPolicy %v, want %q restartPolicy %v",
						i, g.Name, deref(g.RestartPolicy), c.Name, deref(c.RestartPolicy))
				}
			}
		})
	}
}

// TestDeploymentShapedPodSurvives: every field of a realistic pod template
// survives the webhook; only the injected env, mounts and volume are added.
func TestDeploymentShapedPodSurvives(t *testing.T) {
	t.Parallel()
	logsOnFailure(t, "shared", shared)
	ctx := ctxFor(t, time.Minute)
	const role = "arn:aws:iam::111122223333:role/deployment"
	ns := testutil.UniqueName("e2e-deployment")
	newNamespace(t, ctx, ns, nil)
	newServiceAccount(t, ctx, ns, "app", map[string]string{annoRoleARN: role, annoRegional: "true"})

	pod := deploymentPod()
	sent := pod.DeepCopy()
	got := createPod(t, ctx, client, ns, pod)
	checkIRSA(t, got, irsaExpect{role: role, regional: true, expiration: 86400}, "sidecar", "app", "metrics", "worker")

	// Every container, minus what podiam and the ServiceAccount plugin add, is
	// what was sent. The sent pod sets every field the API server would default,
	// so a difference is a field lost or changed on the way.
	type pair struct{ sent, got []corev1.Container }
	for _, p := range []pair{{sent.Spec.InitContainers, got.Spec.InitContainers}, {sent.Spec.Containers, got.Spec.Containers}} {
		if len(p.got) != len(p.sent) {
			t.Fatalf("got %d containers, sent %d", len(p.got), len(p.sent))
		}
		for i := range p.sent {
			stripped := stripInjected(p.got[i])
			if !semanticEqual(p.sent[i], stripped) {
				t.Errorf("container %q changed:\n%s", p.sent[i].Name, jsonDiff(p.sent[i], stripped))
			}
		}
	}
	// Pod-level fields podiam must not touch.
	for _, f := range []struct {
		name      string
		sent, got any
	}{
		{"topologySpreadConstraints", sent.Spec.TopologySpreadConstraints, got.Spec.TopologySpreadConstraints},
		{"securityContext", sent.Spec.SecurityContext, got.Spec.SecurityContext},
		{"affinity", sent.Spec.Affinity, got.Spec.Affinity},
		{"terminationGracePeriodSeconds", sent.Spec.TerminationGracePeriodSeconds, got.Spec.TerminationGracePeriodSeconds},
		{"labels", sent.Labels, got.Labels},
		{"annotations", sent.Annotations, got.Annotations},
	} {
		if !semanticEqual(f.sent, f.got) {
			t.Errorf("%s changed:\n%s", f.name, jsonDiff(f.sent, f.got))
		}
	}
	var userVols []corev1.Volume
	for _, v := range got.Spec.Volumes {
		if v.Name != irsaVolume && !strings.HasPrefix(v.Name, "kube-api-access-") {
			userVols = append(userVols, v)
		}
	}
	if !semanticEqual(sent.Spec.Volumes, userVols) {
		t.Errorf("volumes changed:\n%s", jsonDiff(sent.Spec.Volumes, userVols))
	}
	if got.Spec.InitContainers[0].RestartPolicy == nil || *got.Spec.InitContainers[0].RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Errorf("native sidecar lost restartPolicy Always: %v", deref(got.Spec.InitContainers[0].RestartPolicy))
	}
}

// stripInjected removes from a stored container what podiam injects (AWS_*
// env, the token mount) and the ServiceAccount plugin's kube-api-access mount.
func stripInjected(c corev1.Container) corev1.Container {
	c = *c.DeepCopy()
	var env []corev1.EnvVar
	for _, e := range c.Env {
		switch e.Name {
		case "AWS_STS_REGIONAL_ENDPOINTS", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE":
		default:
			env = append(env, e)
		}
	}
	c.Env = env
	var mounts []corev1.VolumeMount
	for _, m := range c.VolumeMounts {
		if m.Name != irsaVolume && !strings.HasPrefix(m.Name, "kube-api-access-") {
			mounts = append(mounts, m)
		}
	}
	c.VolumeMounts = mounts
	return c
}

// deploymentPod is shaped like the pod of a production Deployment, with every
// field the API server defaults set explicitly.
func deploymentPod() *corev1.Pod {
	always := corev1.ContainerRestartPolicyAlways
	probeDefaults := func(p *corev1.Probe) *corev1.Probe {
		p.TimeoutSeconds, p.PeriodSeconds, p.SuccessThreshold, p.FailureThreshold = 2, 7, 1, 4
		return p
	}
	base := func(name string) corev1.Container {
		return corev1.Container{
			Name:                     name,
			Image:                    "registry.example/" + name + ":1.2.3",
			ImagePullPolicy:          corev1.PullIfNotPresent,
			TerminationMessagePath:   "/dev/termination-log",
			TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
			SecurityContext: &corev1.SecurityContext{
				RunAsNonRoot:             ptr.To(true),
				RunAsUser:                ptr.To[int64](10001),
				ReadOnlyRootFilesystem:   ptr.To(true),
				AllowPrivilegeEscalation: ptr.To(false),
				Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{"cpu": mustQ("100m"), "memory": mustQ("128Mi")},
				Limits:   corev1.ResourceList{"cpu": mustQ("500m"), "memory": mustQ("256Mi")},
			},
		}
	}
	app := base("app")
	app.Command = []string{"/app"}
	app.Args = []string{"--listen=:8080", "--grpc=:9090"}
	app.WorkingDir = "/srv"
	app.Ports = []corev1.ContainerPort{
		{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP},
		{Name: "grpc", ContainerPort: 9090, Protocol: corev1.ProtocolTCP},
	}
	app.Env = []corev1.EnvVar{
		{Name: "LOG_LEVEL", Value: "debug"},
		{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.name"}}},
	}
	app.EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{
		LocalObjectReference: corev1.LocalObjectReference{Name: "app-config"}, Optional: ptr.To(true)}}}
	app.LivenessProbe = probeDefaults(&corev1.Probe{ProbeHandler: corev1.ProbeHandler{
		GRPC: &corev1.GRPCAction{Port: 9090, Service: ptr.To("health")}}, InitialDelaySeconds: 3})
	app.ReadinessProbe = probeDefaults(&corev1.Probe{ProbeHandler: corev1.ProbeHandler{
		HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstrName("http"), Scheme: corev1.URISchemeHTTP}}})
	app.StartupProbe = probeDefaults(&corev1.Probe{ProbeHandler: corev1.ProbeHandler{
		TCPSocket: &corev1.TCPSocketAction{Port: intstrName("http")}}})
	app.StartupProbe.FailureThreshold = 30
	app.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"/app", "drain"}}}}
	app.ResizePolicy = []corev1.ContainerResizePolicy{
		{ResourceName: "cpu", RestartPolicy: corev1.NotRequired},
		{ResourceName: "memory", RestartPolicy: corev1.RestartContainer},
	}
	app.VolumeMounts = []corev1.VolumeMount{{Name: "cache", MountPath: "/cache"}, {Name: "config", MountPath: "/etc/app", ReadOnly: true}}

	metrics := base("metrics")
	metrics.Ports = []corev1.ContainerPort{{Name: "metrics", ContainerPort: 9100, Protocol: corev1.ProtocolTCP}}
	metrics.Env = []corev1.EnvVar{{Name: "SCRAPE", Value: "1"}}

	worker := base("worker")
	worker.Args = []string{"work"}
	worker.Stdin, worker.TTY = false, false

	sidecar := base("sidecar")
	sidecar.RestartPolicy = &always
	sidecar.ReadinessProbe = probeDefaults(&corev1.Probe{ProbeHandler: corev1.ProbeHandler{
		Exec: &corev1.ExecAction{Command: []string{"/bin/true"}}}})
	sidecar.VolumeMounts = []corev1.VolumeMount{{Name: "cache", MountPath: "/cache"}}

	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "web-7d9f8b6c5-",
			Labels:       map[string]string{"app.kubernetes.io/name": "web", "pod-template-hash": "7d9f8b6c5"},
			Annotations:  map[string]string{"kubectl.kubernetes.io/default-container": "app", "example.com/owner": "team-a"},
		},
		Spec: corev1.PodSpec{
			ServiceAccountName:            "app",
			TerminationGracePeriodSeconds: ptr.To[int64](45),
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot: ptr.To(true), FSGroup: ptr.To[int64](2000),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{
				MaxSkew: 1, TopologyKey: "topology.kubernetes.io/zone", WhenUnsatisfiable: corev1.ScheduleAnyway,
				LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "web"}},
			}},
			Affinity: &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
				PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{Weight: 50,
					PodAffinityTerm: corev1.PodAffinityTerm{TopologyKey: "kubernetes.io/hostname",
						LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "web"}}}}}}},
			Volumes: []corev1.Volume{
				{Name: "cache", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: ptr.To(mustQ("1Gi"))}}},
				{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
					LocalObjectReference: corev1.LocalObjectReference{Name: "app-config"}, DefaultMode: ptr.To[int32](0o444), Optional: ptr.To(true)}}},
			},
			InitContainers: []corev1.Container{sidecar},
			Containers:     []corev1.Container{app, metrics, worker},
		},
	}
}
