package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/podiam/podiam/test/harness"
	"github.com/podiam/podiam/test/testutil"
)

// Values the shared webhook injects.
const (
	irsaVolume     = "aws-iam-token"
	irsaMountPath  = "/var/run/secrets/eks.amazonaws.com/serviceaccount"
	irsaTokenFile  = irsaMountPath + "/token"
	winTokenFile   = `C:\var\run\secrets\eks.amazonaws.com\serviceaccount\token`
	piVolume       = "eks-pod-identity-token"
	piMountPath    = "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount"
	piTokenFile    = piMountPath + "/eks-pod-identity-token"
	piAudience     = "pods.eks.amazonaws.com"
	piFullURI      = "http://169.254.170.23/v1/credentials"
	piLabel        = "eks.amazonaws.com/pod-identity"
	annoRoleARN    = "eks.amazonaws.com/role-arn"
	annoAudience   = "eks.amazonaws.com/audience"
	annoRegional   = "eks.amazonaws.com/sts-regional-endpoints"
	annoExpiration = "eks.amazonaws.com/token-expiration"
	annoSkip       = "eks.amazonaws.com/skip-containers"
	annoInject     = "eks.amazonaws.com/inject-containers"
	defaultAud     = "sts.amazonaws.com"
	image          = "registry.example/app:1.0"
)

// ctxFor returns a context bounded by d and by the test.
func ctxFor(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// newNamespace creates namespace name with labels and its default
// ServiceAccount. Name it with testutil.UniqueName: namespaces are never
// finalized here (no kube-controller-manager), and `go test -count=2` runs
// each test twice against the same cluster.
func newNamespace(t *testing.T, ctx context.Context, name string, labels map[string]string) {
	t.Helper()
	if err := cluster.EnsureNamespace(ctx, name, labels); err != nil {
		t.Fatal(err)
	}
}

// newServiceAccount creates a ServiceAccount with annotations.
func newServiceAccount(t *testing.T, ctx context.Context, ns, name string, annotations map[string]string) *corev1.ServiceAccount {
	t.Helper()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: annotations}}
	sa, err := client.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create serviceaccount %s/%s: %v", ns, name, err)
	}
	return sa
}

// simplePod is a one-container pod using ServiceAccount sa.
func simplePod(sa string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "pod-"},
		Spec: corev1.PodSpec{
			ServiceAccountName: sa,
			Containers:         []corev1.Container{{Name: "app", Image: image}},
		},
	}
}

// createPod creates pod in ns and returns the stored pod, read back with GET.
func createPod(t *testing.T, ctx context.Context, cs kubernetes.Interface, ns string, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	created, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod in %s: %v", ns, err)
	}
	got, err := cs.CoreV1().Pods(ns).Get(ctx, created.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get pod %s/%s: %v", ns, created.Name, err)
	}
	return got
}

// envMap returns a container's literal env vars and fails on duplicates.
func envMap(t *testing.T, c *corev1.Container) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, e := range c.Env {
		if _, dup := m[e.Name]; dup {
			t.Errorf("container %q: env var %s appears twice: %v", c.Name, e.Name, c.Env)
		}
		m[e.Name] = e.Value
	}
	return m
}

// awsEnv returns the names and values of a container's AWS_* env vars in order.
func awsEnv(c *corev1.Container) []string {
	var out []string
	for _, e := range c.Env {
		if strings.HasPrefix(e.Name, "AWS_") {
			out = append(out, e.Name+"="+e.Value)
		}
	}
	return out
}

// mountsNamed returns the mounts of volume name in c.
func mountsNamed(c *corev1.Container, name string) []corev1.VolumeMount {
	var out []corev1.VolumeMount
	for _, m := range c.VolumeMounts {
		if m.Name == name {
			out = append(out, m)
		}
	}
	return out
}

// volumesNamed returns the pod's volumes called name.
func volumesNamed(p *corev1.Pod, name string) []corev1.Volume {
	var out []corev1.Volume
	for _, v := range p.Spec.Volumes {
		if v.Name == name {
			out = append(out, v)
		}
	}
	return out
}

// allContainers returns pointers to the pod's init containers and containers.
func allContainers(p *corev1.Pod) []*corev1.Container {
	var out []*corev1.Container
	for i := range p.Spec.InitContainers {
		out = append(out, &p.Spec.InitContainers[i])
	}
	for i := range p.Spec.Containers {
		out = append(out, &p.Spec.Containers[i])
	}
	return out
}

// tokenSource returns the single projected serviceAccountToken of volume name.
func tokenSource(t *testing.T, p *corev1.Pod, name string) *corev1.ServiceAccountTokenProjection {
	t.Helper()
	vols := volumesNamed(p, name)
	if len(vols) != 1 {
		t.Fatalf("pod %s: want exactly one volume %q, got %d (volumes %v)", p.Name, name, len(vols), volumeNames(p))
	}
	v := vols[0]
	if v.Projected == nil || len(v.Projected.Sources) != 1 || v.Projected.Sources[0].ServiceAccountToken == nil {
		t.Fatalf("pod %s: volume %q is not a single projected serviceAccountToken: %+v", p.Name, name, v.VolumeSource)
	}
	return v.Projected.Sources[0].ServiceAccountToken
}

func volumeNames(p *corev1.Pod) []string {
	var out []string
	for _, v := range p.Spec.Volumes {
		out = append(out, v.Name)
	}
	return out
}

// irsaExpect is what an IRSA-injected container must carry.
type irsaExpect struct {
	role        string
	regional    bool
	tokenFile   string // default irsaTokenFile
	audience    string // default defaultAud
	expiration  int64
	skipVolumes bool     // do not check the volume (checked elsewhere)
	envOverride []string // the exact AWS_* env, when the user set some
}

// env is the exact AWS_* env of an IRSA container of the shared webhook, in order.
func (e irsaExpect) env() []string {
	if e.envOverride != nil {
		return e.envOverride
	}
	var out []string
	if e.regional {
		out = append(out, "AWS_STS_REGIONAL_ENDPOINTS=regional")
	}
	tf := e.tokenFile
	if tf == "" {
		tf = irsaTokenFile
	}
	return append(out, "AWS_DEFAULT_REGION="+region, "AWS_REGION="+region, "AWS_ROLE_ARN="+e.role, "AWS_WEB_IDENTITY_TOKEN_FILE="+tf)
}

// checkIRSA asserts that the named containers of p got IRSA exactly once and
// the others got nothing.
func checkIRSA(t *testing.T, p *corev1.Pod, want irsaExpect, injected ...string) {
	t.Helper()
	inj := map[string]bool{}
	for _, n := range injected {
		inj[n] = true
	}
	for _, c := range allContainers(p) {
		envMap(t, c) // duplicates
		got := strings.Join(awsEnv(c), "\n")
		mounts := mountsNamed(c, irsaVolume)
		if !inj[c.Name] {
			if got != "" || len(mounts) != 0 {
				t.Errorf("pod %s container %q: want no injection, got env %q mounts %v", p.Name, c.Name, got, mounts)
			}
			continue
		}
		if w := strings.Join(want.env(), "\n"); got != w {
			t.Errorf("pod %s container %q: AWS env:\n got %q\nwant %q", p.Name, c.Name, got, w)
		}
		if len(mounts) != 1 || mounts[0].MountPath != irsaMountPath || !mounts[0].ReadOnly {
			t.Errorf("pod %s container %q: want one readOnly mount of %s at %s, got %+v", p.Name, c.Name, irsaVolume, irsaMountPath, mounts)
		}
	}
	if len(injected) == 0 {
		if n := len(volumesNamed(p, irsaVolume)); n != 0 {
			t.Errorf("pod %s: want no %s volume, got %d", p.Name, irsaVolume, n)
		}
		return
	}
	if want.skipVolumes {
		return
	}
	tok := tokenSource(t, p, irsaVolume)
	aud := want.audience
	if aud == "" {
		aud = defaultAud
	}
	if tok.Audience != aud || tok.Path != "token" || tok.ExpirationSeconds == nil || *tok.ExpirationSeconds != want.expiration {
		t.Errorf("pod %s: token projection = {audience %q path %q expirationSeconds %v}, want {%q token %d}",
			p.Name, tok.Audience, tok.Path, deref(tok.ExpirationSeconds), aud, want.expiration)
	}
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

// roleOf returns AWS_ROLE_ARN of the pod's first container ("" if none).
func roleOf(p *corev1.Pod) string {
	for _, e := range p.Spec.Containers[0].Env {
		if e.Name == "AWS_ROLE_ARN" {
			return e.Value
		}
	}
	return ""
}

// warningRecorder collects the warnings the API server sends a client.
type warningRecorder struct {
	mu       sync.Mutex
	warnings []string
}

func (w *warningRecorder) HandleWarningHeader(code int, _ string, text string) {
	if code != 299 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.warnings = append(w.warnings, text)
}

// take returns and clears the recorded warnings.
func (w *warningRecorder) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.warnings
	w.warnings = nil
	return out
}

// warningClient returns a clientset whose warnings go to a recorder.
func warningClient(t *testing.T) (kubernetes.Interface, *warningRecorder) {
	t.Helper()
	rec := &warningRecorder{}
	cfg := cluster.RESTConfig()
	cfg.WarningHandler = rec
	var _ rest.WarningHandler = rec
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs, rec
}

// metricSum sums the samples of metric whose labels include every given
// name="value" pair, in a Prometheus text exposition.
func metricSum(text, metric string, labels ...string) float64 {
	var sum float64
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, metric) {
			continue
		}
		rest := line[len(metric):]
		var lbls string
		switch {
		case strings.HasPrefix(rest, "{"):
			end := strings.Index(rest, "}")
			if end < 0 {
				continue
			}
			lbls, rest = rest[1:end], rest[end+1:]
		case strings.HasPrefix(rest, " "):
		default:
			continue // a longer metric name
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(","+lbls+",", ","+l+",") {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// webhookMetric reads one summed metric of the shared webhook.
func webhookMetric(t *testing.T, ctx context.Context, metric string, labels ...string) float64 {
	t.Helper()
	text, err := shared.Metrics(ctx)
	if err != nil {
		t.Fatalf("reading webhook metrics: %v", err)
	}
	return metricSum(text, metric, labels...)
}

// apiserverMetrics returns the API server's /metrics.
func apiserverMetrics(ctx context.Context) (string, error) {
	b, err := client.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return "", fmt.Errorf("GET /metrics: %w", err)
	}
	return string(b), nil
}

func mustQ(s string) resource.Quantity { return resource.MustParse(s) }

func intstrName(name string) intstr.IntOrString { return intstr.FromString(name) }

// semanticEqual compares API values as the API server does (quantities by value).
func semanticEqual(a, b any) bool { return apiequality.Semantic.DeepEqual(a, b) }

// jsonDiff shows two values as indented JSON, line by line where they differ.
func jsonDiff(want, got any) string {
	wb, _ := json.MarshalIndent(want, "", "  ")
	gb, _ := json.MarshalIndent(got, "", "  ")
	wl, gl := strings.Split(string(wb), "\n"), strings.Split(string(gb), "\n")
	var b strings.Builder
	for i := 0; i < len(wl) || i < len(gl); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			fmt.Fprintf(&b, "line %d:\n  sent: %s\n  got:  %s\n", i+1, w, g)
		}
	}
	return fmt.Sprintf("%s\nsent:\n%s\ngot:\n%s", b.String(), wb, gb)
}

// runPodiamEnv runs the podiam binary with args, its environment this
// process's plus env, and returns its stdout, stderr and exit code.
func runPodiamEnv(t *testing.T, ctx context.Context, env []string, args ...string) (string, string, int) {
	t.Helper()
	res, err := harness.RunPodiam(ctx, podiamBin, env, args...)
	if err != nil {
		t.Fatal(err)
	}
	return res.Stdout, res.Stderr, res.ExitCode
}

// podiamOutput runs the podiam binary and returns its stdout, failing t
// unless it exits 0.
func podiamOutput(t *testing.T, ctx context.Context, args ...string) string {
	t.Helper()
	out, errOut, code := runPodiamEnv(t, ctx, nil, args...)
	if code != 0 {
		t.Fatalf("podiam %s: exit %d\n%s", strings.Join(args, " "), code, errOut)
	}
	return out
}

// startPodiam starts a long-running podiam command (oidc serve, publish
// --interval). It is killed when t ends, if still running, and its output
// is logged if t failed.
func startPodiam(t *testing.T, args ...string) (*harness.Process, *testutil.SyncBuffer) {
	t.Helper()
	logs := new(testutil.SyncBuffer)
	p, err := harness.StartPodiam(podiamBin, logs, nil, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Kill() // no-op once it has exited
		if t.Failed() {
			t.Logf("podiam %s output:\n%s", strings.Join(args[:min(2, len(args))], " "), tail(logs.String(), 16<<10))
		}
	})
	return p, logs
}
