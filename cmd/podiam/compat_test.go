package main

import (
	"flag"
	"slices"
	"strings"
	"testing"
)

// amazonFlag is one flag of the Amazon EKS pod identity webhook.
type amazonFlag struct {
	name          string
	amazonDefault string // as pflag prints it
	sample        string // a value in pflag's own spelling, so Value.String() gives it back
	isBool        bool
}

// amazonFlags is transcribed from the flag.* calls of the Amazon EKS pod identity
// webhook's main.go (github.com/aws/amazon-eks-pod-identity-webhook, main.go), with
// Amazon's defaults. --service-account-lookup-grace-period defaults to 0 in current
// releases (100ms in older ones). The last three rows are not flags of Amazon's: SPEC
// §1.5 gives podiam them, in Amazon's spelling, for what Amazon hard-codes, and their
// default here is Amazon's hard-coded behaviour (Go's TLS defaults, a 60s resync).
// Amazon's klog flags are not listed: the tests take them from klog itself.
// Adding a row here makes the tests fail until podiam accepts the flag.
var amazonFlags = []amazonFlag{
	{"port", "443", "8443", false},
	{"metrics-port", "9999", "9998", false},
	{"kubeconfig", "", "/etc/kubeconfig", false},
	{"kube-api", "", "https://127.0.0.1:6443", false},
	{"tls-key", "/etc/webhook/certs/tls.key", "/k", false},
	{"tls-cert", "/etc/webhook/certs/tls.crt", "/c", false},
	{"in-cluster", "true", "false", true},
	{"service-name", "pod-identity-webhook", "iam-for-pods", false},
	{"namespace", "eks", "kube-system", false},
	{"tls-secret", "pod-identity-webhook", "iam-for-pods", false},
	{"annotation-prefix", "eks.amazonaws.com", "example.com", false},
	{"token-audience", "sts.amazonaws.com", "sts.example.com", false},
	{"token-mount-path", "/var/run/secrets/eks.amazonaws.com/serviceaccount", "/var/run/token", false},
	{"token-expiration", "86400", "3600", false},
	{"aws-default-region", "", "eu-west-1", false},
	{"sts-regional-endpoint", "false", "true", true},
	{"watch-config-map", "false", "true", true},
	{"compose-role-arn", "false", "true", true},
	{"watch-container-credentials-config", "", "/etc/cc.json", false},
	{"container-credentials-audience", "pods.eks.amazonaws.com", "pods.example.com", false},
	{"container-credentials-token-mount-path", "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount", "/m", false},
	{"container-credentials-token-volume-name", "eks-pod-identity-token", "v", false},
	{"container-credentials-token-path", "eks-pod-identity-token", "p", false},
	{"container-credentials-full-uri", "http://169.254.170.23/v1/credentials", "http://127.0.0.1:2703/v1/credentials", false},
	{"version", "false", "true", true},
	{"enable-debugging-handlers", "false", "true", true},
	{"service-account-lookup-grace-period", "0s", "250ms", false},
	// SPEC §1.5, not Amazon flags (see above).
	{"tls-min-version", "", "1.3", false},
	{"tls-cipher-suites", "", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", false},
	{"resync-period", "1m0s", "2m0s", false},
}

// differsFromAmazon are the flags whose podiam default is not Amazon's; the README's
// "Defaults that differ from Amazon's" table must name each.
var differsFromAmazon = []string{"service-account-lookup-grace-period", "resync-period", "tls-min-version"}

// behavesUnlikeAmazon are the flags whose default is Amazon's but whose effect
// differs in some case; the README's table must name each too.
var behavesUnlikeAmazon = []string{"token-expiration", "in-cluster", "version", "compose-role-arn", "kube-api"}

// klogSamples are values for klog flags whose default is not a useful sample (or,
// for log_backtrace_at, not one klog accepts back).
var klogSamples = map[string]string{
	"v":                        "4",
	"vmodule":                  "sacache=4",
	"log_backtrace_at":         "nowhere.go:1",
	"log_file_max_size":        "10",
	"stderrthreshold":          "3",
	"log_dir":                  "/var/log/podiam",
	"log_file":                 "/var/log/podiam.log",
	"alsologtostderrthreshold": "1",
}

// testFlags is every flag an Amazon Deployment may pass: the table above and all of
// klog's, from klog itself.
func testFlags(t *testing.T) []amazonFlag {
	t.Helper()
	flags := slices.Clone(amazonFlags)
	for _, gf := range klogFlags() {
		b, _ := gf.Value.(interface{ IsBoolFlag() bool })
		af := amazonFlag{name: gf.Name, amazonDefault: gf.DefValue, sample: gf.DefValue, isBool: b != nil && b.IsBoolFlag()}
		if s, ok := klogSamples[gf.Name]; ok {
			af.sample = s
		} else if af.isBool {
			af.sample = "true"
			if gf.DefValue == "true" {
				af.sample = "false"
			}
		}
		flags = append(flags, af)
	}
	return flags
}

// restoreKlog puts klog's global flag values back after a test that parsed klog
// flags: they are shared by the whole process, as in the Amazon webhook.
func restoreKlog(t *testing.T) {
	t.Cleanup(func() {
		for _, gf := range klogFlags() {
			if err := gf.Value.Set(gf.DefValue); err != nil {
				_ = gf.Value.Set("") // log_backtrace_at prints a default it does not parse
			}
		}
	})
}

// forms returns the ways a Deployment may write one flag.
func (a amazonFlag) forms() [][]string {
	if a.isBool {
		return [][]string{{"--" + a.name + "=" + a.sample}, {"--" + a.name}}
	}
	return [][]string{{"--" + a.name + "=" + a.sample}, {"--" + a.name, a.sample}}
}

// Every Amazon and klog flag parses alone, in each form, and all of them together.
func TestWebhookAcceptsEveryAmazonFlag(t *testing.T) {
	restoreKlog(t)
	var all []string
	for i, af := range testFlags(t) {
		for _, args := range af.forms() {
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				fs := newWebhookCommand().Flags()
				if err := fs.Parse(args); err != nil {
					t.Fatalf("parsing %q: %v", args, err)
				}
				pf := fs.Lookup(af.name)
				if !pf.Changed || len(fs.Args()) != 0 {
					t.Fatalf("%q: Changed=%v, left-over arguments %q", args, pf.Changed, fs.Args())
				}
				want := af.sample
				if len(args) == 1 && af.isBool && !strings.Contains(args[0], "=") {
					want = "true"
				}
				if got := pf.Value.String(); got != want {
					t.Errorf("%q: value %q, want %q", args, got, want)
				}
			})
		}
		all = append(all, af.forms()[i%2]...) // both forms, in turn
	}
	t.Run("all together", func(t *testing.T) {
		fs := newWebhookCommand().Flags()
		if err := fs.Parse(all); err != nil {
			t.Fatalf("parsing %q: %v", all, err)
		}
		if len(fs.Args()) != 0 {
			t.Fatalf("left-over arguments %q", fs.Args())
		}
	})
}

// podiam keeps Amazon's defaults, except those the README lists as different.
func TestWebhookDefaultsMatchAmazon(t *testing.T) {
	fs := newWebhookCommand().Flags()
	for _, af := range amazonFlags {
		pf := fs.Lookup(af.name)
		if pf == nil {
			t.Errorf("--%s: not a flag of podiam webhook", af.name)
			continue
		}
		differs := slices.Contains(differsFromAmazon, af.name)
		switch {
		case differs && pf.DefValue == af.amazonDefault:
			t.Errorf("--%s: listed as differing from Amazon, but both default to %q", af.name, af.amazonDefault)
		case !differs && pf.DefValue != af.amazonDefault:
			t.Errorf("--%s: podiam's default %q, Amazon's %q; list it in differsFromAmazon and the README", af.name, pf.DefValue, af.amazonDefault)
		}
	}
}

// Flags podiam cannot honour warn once each when set to anything but what podiam
// does anyway; those it honours do not warn.
func TestIgnoredFlagWarnings(t *testing.T) {
	restoreKlog(t)
	tests := []struct {
		args []string
		want []string // substrings, one per warning, in order
	}{
		{nil, nil},
		{[]string{"--in-cluster=false", "--logtostderr", "--v=2", "--vmodule=sacache=4", "--tls-secret=pod-identity-webhook"}, nil},
		{[]string{"--in-cluster"}, []string{"--in-cluster=true has no effect: podiam does not request"}},
		{[]string{"--tls-secret", "iam-for-pods"}, []string{"--tls-secret=iam-for-pods has no effect"}},
		{[]string{"--enable-debugging-handlers"}, []string{"--enable-debugging-handlers=true has no effect"}},
		{[]string{"--log_dir=/var/log", "--logtostderr=false", "--skip_headers"},
			[]string{"--log_dir=/var/log has no effect", "--logtostderr=false has no effect", "--skip_headers=true has no effect"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			fs := newWebhookCommand().Flags()
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			got := ignoredFlagWarnings(fs)
			if len(got) != len(tt.want) {
				t.Fatalf("warnings %q, want %d matching %q", got, len(tt.want), tt.want)
			}
			for i := range got {
				if !strings.Contains(got[i], tt.want[i]) {
					t.Errorf("warning %d = %q, want it to contain %q", i, got[i], tt.want[i])
				}
			}
		})
	}
}

// Every klog flag that podiam does not honour warns: the list comes from klog, so
// a flag a new klog adds is covered too.
func TestEveryIgnoredKlogFlagWarns(t *testing.T) {
	restoreKlog(t)
	for _, af := range testFlags(t)[len(amazonFlags):] {
		fs := newWebhookCommand().Flags()
		if err := fs.Parse(af.forms()[0]); err != nil {
			t.Fatal(err)
		}
		warned := len(ignoredFlagWarnings(fs)) == 1
		if honoured := klogHonoured[af.name]; warned == honoured {
			t.Errorf("--%s=%s: warned=%v, honoured=%v", af.name, af.sample, warned, honoured)
		}
	}
}

// klog's flags stay bound to klog, as in the Amazon webhook: --v sets klog's verbosity.
func TestKlogFlagsReachKlog(t *testing.T) {
	restoreKlog(t)
	if err := newWebhookCommand().Flags().Parse([]string{"--v", "3"}); err != nil {
		t.Fatal(err)
	}
	var v *flag.Flag
	for _, gf := range klogFlags() {
		if gf.Name == "v" {
			v = gf
		}
	}
	if v == nil || v.Value.String() != "3" {
		t.Fatalf("klog -v after --v 3: %v", v)
	}
}

// Each ignored Amazon flag's help text gives its own reason, whatever the order
// of amazonIgnoredFlags.
func TestIgnoredFlagsUsage(t *testing.T) {
	fs := newWebhookCommand().Flags()
	for _, ig := range amazonIgnoredFlags {
		pf := fs.Lookup(ig.name)
		if pf == nil {
			t.Errorf("--%s: not a flag of podiam webhook", ig.name)
			continue
		}
		if want := "ignored: " + ig.reason; pf.Usage != want {
			t.Errorf("--%s: usage %q, want %q", ig.name, pf.Usage, want)
		}
	}
}
