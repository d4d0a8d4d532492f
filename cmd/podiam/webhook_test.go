package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"

	"github.com/podiam/podiam/internal/version"
	"github.com/podiam/podiam/test/testutil"
)

// writeKubeconfig writes a kubeconfig whose only cluster is server.
func writeKubeconfig(t *testing.T, server string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	doc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: %q, insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`, server)
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// countingServer listens on loopback and counts the connections made to it: a
// stand-in API server that tells whether anything tried to connect.
func countingServer(t *testing.T) (url string, accepted func() int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var n atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed by the cleanup
			}
			n.Add(1)
			c.Close()
		}
	}()
	return "https://" + ln.Addr().String(), n.Load
}

// executeWebhook runs `podiam webhook args...` and returns its output.
func executeWebhook(t *testing.T, args ...string) (string, error) {
	t.Helper()
	restoreKlog(t)
	var out bytes.Buffer
	root := newRootCommand()
	root.SetOut(&out)
	root.SetErr(io.Discard)
	root.SetArgs(append([]string{"webhook"}, args...))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

// Bad flags fail with the flag's error, quickly, before anything connects to the
// API server that --kubeconfig names.
func TestWebhookFailsBeforeConnecting(t *testing.T) {
	server, accepted := countingServer(t)
	kubeconfig := "--kubeconfig=" + writeKubeconfig(t, server)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--cert-mode=vault"}, `--cert-mode="vault"`},
		{[]string{"--tls-min-version=1.0"}, `--tls-min-version="1.0"`},
		{[]string{"--tls-cipher-suites=NOPE"}, `--tls-cipher-suites="NOPE"`},
		{[]string{"--token-expiration=99999999999"}, "--token-expiration=99999999999"},
		{[]string{"--role-session-name=x"}, `--role-session-name="x"`},
		{[]string{"--log-format=xml"}, `--log-format="xml"`},
		{[]string{"--log-level=loud"}, `--log-level="loud"`},
		{[]string{"--compose-role-arn"}, "--compose-role-arn needs --aws-account-id"},
		{[]string{"--stderrthreshold=LOUD"}, "stderrthreshold"}, // klog's own parser, at parse time
	}
	// A missing kubeconfig would fail as soon as podiam loads it, so the flag's
	// error proves the flag was checked first; the counting server proves that
	// nothing connected.
	for _, kc := range []string{"--kubeconfig=" + filepath.Join(t.TempDir(), "missing"), kubeconfig} {
		for _, tt := range tests {
			t.Run(strings.Join(append([]string{kc}, tt.args...), " "), func(t *testing.T) {
				// executeWebhook's timeout bounds the run: a command that hung
				// (on a connection, say) would end with its error instead.
				start := time.Now()
				_, err := executeWebhook(t, append([]string{kc, "--cert-mode=self-managed"}, tt.args...)...)
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("error = %v, want it to contain %q", err, tt.want)
				}
				t.Logf("failed after %v", time.Since(start).Round(time.Millisecond))
			})
		}
	}
	// The listener accepts connections in the order they were made, so once a
	// connection made now is counted, any made during the runs has been too.
	probe, err := net.Dial("tcp", strings.TrimPrefix(server, "https://"))
	if err != nil {
		t.Fatal(err)
	}
	probe.Close()
	testutil.Eventually(t, 15*time.Second, 10*time.Millisecond, "the counting server to accept a probe", func() bool { return accepted() > 0 })
	probed := accepted()
	if probed != 1 {
		t.Fatalf("the API server saw %d connections", probed-1)
	}
	// The counting server does see a client of that kubeconfig.
	cfg, err := restConfig(strings.TrimPrefix(kubeconfig, "--kubeconfig="), "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second) // client-go retries a closed connection
	defer cancel()
	_ = kubernetes.NewForConfigOrDie(cfg).Discovery().RESTClient().Get().AbsPath("/version").Do(ctx)
	if accepted() == probed {
		t.Fatal("the counting server saw no connection from a client of its kubeconfig")
	}
}

// --version prints what `podiam version` prints and exits 0, whatever else is on
// the command line and without loading the kubeconfig.
func TestWebhookVersionFlag(t *testing.T) {
	args := []string{"--version", "--kubeconfig=/does/not/exist", "--cert-mode=vault"}
	for _, af := range amazonFlags {
		if af.name != "version" && af.name != "kubeconfig" {
			args = append(args, "--"+af.name+"="+af.sample)
		}
	}
	out, err := executeWebhook(t, args...)
	if err != nil || out != version.String()+"\n" {
		t.Fatalf("output %q, error %v; want %q and no error", out, err, version.String()+"\n")
	}
}

// --kube-api is the API server URL. Unlike clientcmd.BuildConfigFromFlags in the
// Amazon webhook, which with --kube-api alone builds an anonymous config of only
// that URL, it replaces just the server of the config podiam would use anyway,
// keeping its credentials (here $KUBECONFIG's token; in a pod, the
// ServiceAccount's).
func TestRestConfigKubeAPI(t *testing.T) {
	// No in-cluster config and no default kubeconfig on this machine.
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("HOME", t.TempDir())
	kubeconfig := writeKubeconfig(t, "https://127.0.0.1:6443") // token "t"
	tests := []struct {
		name, envKubeconfig, kubeconfig, kubeAPI string
		wantHost, wantToken                      string
	}{
		{"kubeconfig", "", kubeconfig, "", "https://127.0.0.1:6443", "t"},
		{"kube-api overrides the kubeconfig", "", kubeconfig, "https://127.0.0.2:7443", "https://127.0.0.2:7443", "t"},
		{"kube-api keeps $KUBECONFIG's credentials", kubeconfig, "", "https://127.0.0.4:9443", "https://127.0.0.4:9443", "t"},
		{"kube-api alone", "", "", "https://127.0.0.3:8443", "https://127.0.0.3:8443", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("KUBECONFIG", tt.envKubeconfig)
			cfg, err := restConfig(tt.kubeconfig, tt.kubeAPI)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Host != tt.wantHost || cfg.BearerToken != tt.wantToken {
				t.Fatalf("host %q, token %q; want %q, %q", cfg.Host, cfg.BearerToken, tt.wantHost, tt.wantToken)
			}
		})
	}
	t.Setenv("KUBECONFIG", "")
	if _, err := restConfig("/does/not/exist", ""); err == nil || !strings.Contains(err.Error(), "loading kubeconfig") {
		t.Fatalf("missing kubeconfig: error %v", err)
	}
}

// The command lines of the Amazon webhook's own Deployments
// (github.com/aws/amazon-eks-pod-identity-webhook, deploy/deployment-base.yaml, now
// and before --in-cluster=false) parse and pass validation; only what podiam
// cannot honour warns.
func TestAmazonDeploymentCommandLines(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		warnings int
	}{
		{"deployment-base.yaml", []string{"--in-cluster=false", "--namespace=default", "--service-name=pod-identity-webhook",
			"--annotation-prefix=eks.amazonaws.com", "--token-audience=sts.amazonaws.com", "--logtostderr"}, 0},
		{"deployment-base.yaml, in-cluster era", []string{"--in-cluster", "--namespace=eks", "--service-name=iam-for-pods",
			"--tls-secret=iam-for-pods", "--annotation-prefix=eks.amazonaws.com", "--token-audience=sts.amazonaws.com", "--logtostderr"}, 2},
		{"with klog verbosity, values as separate words", []string{"--in-cluster=false", "--namespace", "eks", "--v", "2",
			"--alsologtostderr", "--port", "8443", "--metrics-port", "9999", "--watch-config-map"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, v, err := parseWebhookFlags(t, tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			if len(v.warnings) != tt.warnings {
				t.Fatalf("warnings %q, want %d", v.warnings, tt.warnings)
			}
		})
	}
}

// flagNamed matches --name as a whole flag name in the README.
func flagNamed(name string) *regexp.Regexp {
	return regexp.MustCompile(`(^|[^\w-])--` + regexp.QuoteMeta(name) + `($|[^\w-])`)
}

// The README names every flag of `podiam webhook --help`, every Amazon and klog
// flag podiam accepts, and in its differences table each flag whose default or effect differs from Amazon's.
func TestREADMEListsEveryFlag(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	var names []string
	newWebhookCommand().Flags().VisitAll(func(f *pflag.Flag) {
		if !f.Hidden {
			names = append(names, f.Name)
		}
	})
	for _, af := range testFlags(t) {
		names = append(names, af.name)
	}
	for _, name := range names {
		if !flagNamed(name).MatchString(readme) {
			t.Errorf("README.md does not mention --%s", name)
		}
	}

	const heading = "#### Defaults that differ from Amazon's"
	_, section, ok := strings.Cut(readme, heading)
	if !ok {
		t.Fatalf("README.md has no %q section", heading)
	}
	if end := strings.Index(section, "\n#"); end >= 0 {
		section = section[:end]
	}
	for _, name := range slices.Concat(differsFromAmazon, behavesUnlikeAmazon) {
		if !flagNamed(name).MatchString(section) {
			t.Errorf("README.md's %q table does not list --%s", heading, name)
		}
	}
}
