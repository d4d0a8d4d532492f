package main

import (
	"flag"
	"fmt"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"
)

// The Amazon EKS pod identity webhook registers every klog flag (klog.InitFlags)
// next to its own, and its Deployments use some of them (--logtostderr, --v).
// podiam accepts all of them, and the Amazon flags it has no use for, so that an
// existing Deployment starts unchanged; those it cannot honour are logged once at
// start-up.

// ignoredFlag is an accepted flag that podiam cannot honour.
type ignoredFlag struct {
	name string
	// harmless is the value that matches what podiam does anyway, so setting
	// it needs no warning; empty means the flag's default.
	harmless string
	reason   string
}

// amazonIgnoredFlags are the Amazon webhook's own flags that podiam accepts and ignores.
var amazonIgnoredFlags = []ignoredFlag{
	{"in-cluster", "false", "podiam does not request its certificate through the CertificateSigningRequest API; " +
		"it serves --tls-cert/--tls-key (cert-manager, Secret volumes) or its own CA with --cert-mode=self-managed"},
	{"tls-secret", "", "only used with --in-cluster=true; with --cert-mode=self-managed the Secret is --cert-secret-name"},
	{"enable-debugging-handlers", "", "podiam has no /debug/alpha/cache; /metrics has the cache size (podiam_webhook_serviceaccounts_cached), and --profiling serves /debug/pprof/"},
}

// klogHonoured are the klog flags that keep their meaning: klog applies them to
// client-go's log lines before they reach podiam's log.
var klogHonoured = map[string]bool{"v": true, "vmodule": true, "log_backtrace_at": true}

// klogIgnoredReason is why the other klog flags do nothing.
const klogIgnoredReason = "podiam writes one structured log to stderr (--log-format, --log-level); klog's output settings do not apply"

// klogDefaults are klog's defaults by flag name, read when the process starts:
// klog.InitFlags takes a flag's default from klog's current value, which a
// parsed command line has changed.
var klogDefaults = func() map[string]string {
	defaults := map[string]string{}
	for _, f := range registerKlogFlags() {
		defaults[f.Name] = f.DefValue
	}
	return defaults
}()

func registerKlogFlags() []*flag.Flag {
	gfs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(gfs)
	var flags []*flag.Flag
	gfs.VisitAll(func(f *flag.Flag) { flags = append(flags, f) })
	return flags
}

// klogFlags returns klog's flags as klog itself registers them, with klog's
// defaults.
func klogFlags() []*flag.Flag {
	flags := registerKlogFlags()
	for _, f := range flags {
		f.DefValue = klogDefaults[f.Name]
	}
	return flags
}

// addAmazonCompatFlags registers klog's flags (hidden, bound to klog as in the
// Amazon webhook, so --v and --vmodule filter client-go's log lines) and the
// Amazon flags that podiam ignores (hidden; the README lists them).
// pflag.PFlagFromGoFlag keeps the Go flag forms: `--v 2`, `-v=2`, a bare `--logtostderr`.
func addAmazonCompatFlags(fs *pflag.FlagSet, f *webhookFlags) {
	for _, gf := range klogFlags() {
		pf := pflag.PFlagFromGoFlag(gf)
		pf.Hidden = true
		fs.AddFlag(pf)
	}
	fs.BoolVar(&f.inCluster, "in-cluster", true, ignoredUsage("in-cluster"))
	fs.StringVar(&f.tlsSecret, "tls-secret", "pod-identity-webhook", ignoredUsage("tls-secret"))
	fs.BoolVar(&f.debugHandlers, "enable-debugging-handlers", false, ignoredUsage("enable-debugging-handlers"))
	for _, ig := range amazonIgnoredFlags {
		_ = fs.MarkHidden(ig.name)
	}
}

// ignoredUsage is the help text of the ignored Amazon flag name. A name missing
// from amazonIgnoredFlags is a bug that every test of the command finds.
func ignoredUsage(name string) string {
	for _, ig := range amazonIgnoredFlags {
		if ig.name == name {
			return "ignored: " + ig.reason
		}
	}
	panic("no ignored Amazon flag --" + name)
}

// ignoredFlagWarnings returns one warning for each flag that is set (to a value
// other than a harmless one) but that podiam cannot honour.
func ignoredFlagWarnings(fs *pflag.FlagSet) []string {
	ignored := append([]ignoredFlag(nil), amazonIgnoredFlags...)
	for _, gf := range klogFlags() {
		if !klogHonoured[gf.Name] {
			ignored = append(ignored, ignoredFlag{name: gf.Name, reason: klogIgnoredReason})
		}
	}
	var warnings []string
	for _, ig := range ignored {
		pf := fs.Lookup(ig.name)
		if pf == nil || !pf.Changed {
			continue
		}
		harmless := ig.harmless
		if harmless == "" {
			harmless = pf.DefValue
		}
		if v := pf.Value.String(); v != harmless {
			warnings = append(warnings, fmt.Sprintf("--%s=%s has no effect: %s", ig.name, v, ig.reason))
		}
	}
	return warnings
}
