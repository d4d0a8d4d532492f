// Package monitoring checks podiam's alerting rules and Grafana dashboard
// (deploy/monitoring) with Prometheus's own packages: they parse, and every
// metric they name is one that podiam exports or one of the few other
// components' metrics listed in Others.
//
// It is a test package: only its tests import it, so the Prometheus server's
// module never reaches the podiam binary.
package monitoring

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/podiam/podiam/internal/agent"
	"github.com/podiam/podiam/internal/auth"
	"github.com/podiam/podiam/internal/metrics"
	"github.com/podiam/podiam/internal/sts"
)

// Other is a metric of another component that the rules or the dashboard
// read.
type Other struct {
	// From names the component that exports it.
	From string
	// Labels are the labels of its series, besides ScrapeLabels.
	Labels []string
	// NewAtOne is true for a counter created at its first increment:
	// rate() and increase() never see that increment, so a panel must not
	// read it through them.
	NewAtOne bool
}

// Others are the metrics of other components that the rules and the
// dashboard read, with their labels (from each component's source) and why
// podiam needs them. Keep it short: a podiam metric does not belong here.
var Others = map[string]Other{
	// kube-apiserver (k8s.io/apiserver/pkg/admission/metrics): calls to a
	// webhook with failurePolicy Ignore that failed, so the pod was
	// admitted without podiam (label name = the webhook's name).
	"apiserver_admission_webhook_fail_open_count": {From: "kube-apiserver", Labels: []string{"name", "type"}, NewAtOne: true},
	// kube-apiserver: calls to a webhook that refused the request; with
	// error_type calling_webhook_error, a webhook with failurePolicy Fail
	// the API server could not call.
	"apiserver_admission_webhook_rejection_count": {From: "kube-apiserver", Labels: []string{"name", "type", "operation", "error_type", "rejection_code"}, NewAtOne: true},
	// kube-state-metrics: ready (available) replicas of the webhook and
	// podiam auth, and the replicas wanted (an alert must not fire for a
	// Deployment scaled to zero on purpose).
	"kube_deployment_status_replicas_available": {From: "kube-state-metrics", Labels: []string{"deployment"}},
	"kube_deployment_spec_replicas":             {From: "kube-state-metrics", Labels: []string{"deployment"}},
	// kube-state-metrics: ready and unavailable agents of the DaemonSet.
	"kube_daemonset_status_number_ready":       {From: "kube-state-metrics", Labels: []string{"daemonset"}},
	"kube_daemonset_status_number_unavailable": {From: "kube-state-metrics", Labels: []string{"daemonset"}},
	// kube-state-metrics: the Service a MutatingWebhookConfiguration calls,
	// which outlives a deleted webhook Deployment.
	"kube_mutatingwebhookconfiguration_webhook_clientconfig_service": {From: "kube-state-metrics", Labels: []string{"mutatingwebhookconfiguration", "webhook_name", "service_name", "service_namespace"}},
}

// ScrapeLabels are the labels Prometheus adds to every series it scrapes
// (a ServiceMonitor's namespace, pod, service, endpoint and container;
// the job and instance of any scrape; node from common relabelings): a
// rule may select or group by them whatever the metric.
var ScrapeLabels = []string{"namespace", "pod", "instance", "job", "service", "endpoint", "container", "node"}

// Family is a metric family that podiam registers.
type Family struct {
	// Name is the family's name, as a rule or panel selects it.
	Name string
	// Suffixes name the other series of the family: _bucket, _sum and
	// _count for a histogram, _sum and _count for a summary.
	Suffixes []string
	// Labels are the labels of its series (variable and constant), without
	// a histogram's le or a summary's quantile.
	Labels []string
	// AtStart is true when the family has a series as soon as its server
	// starts, before any request (a gauge, a vector whose children are
	// created up front): an idle install shows it.
	AtStart bool
}

// Series suffixes by family type.
var (
	histogramSuffixes = []string{"_bucket", "_sum", "_count"}
	summarySuffixes   = []string{"_sum", "_count"}
)

// servers build each podiam server's registry with its package's own
// constructors, as cmd/podiam does: what they register is what podiam
// exports. The webhook and podiam auth also register their certificate
// expiry and readiness gauges (metrics.RegisterServing); without a
// certificate the expiry gauge has no series, but Describe names it.
var servers = map[string]func(prometheus.Registerer){
	"webhook": func(r prometheus.Registerer) {
		metrics.NewWebhook(r)
		metrics.RegisterServing(r, "webhook", nil, oneCheck)
	},
	"auth": func(r prometheus.Registerer) {
		auth.NewMetrics(r)
		metrics.RegisterServing(r, "auth", nil, oneCheck)
	},
	"agent": func(r prometheus.Registerer) { agent.NewMetrics(r) },
	"sts":   func(r prometheus.Registerer) { sts.NewMetrics(r) },
}

// oneCheck stands in for a server's readiness checks: one is enough for
// the ready gauge to have a series.
var oneCheck = []metrics.Check{{Name: "check", Ready: func() bool { return true }}}

// Exported returns the metric families of every podiam server, by name.
func Exported() (map[string]Family, error) {
	out := map[string]Family{}
	for server, build := range servers {
		fams, err := families(build)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", server, err)
		}
		for name, f := range fams {
			out[name] = f
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no podiam server registered a metric")
	}
	return out, nil
}

// families returns the families that build registers on a new registry.
func families(build func(prometheus.Registerer)) (map[string]Family, error) {
	rec := &recorder{Registry: prometheus.NewRegistry(), suffixes: map[string][]string{}, labels: map[string][]string{}}
	build(rec)
	if rec.err != nil {
		return nil, rec.err
	}
	// Gather knows each family's type but lists only families with a
	// series; vectors without children are known by Describe alone.
	mfs, err := rec.Gather()
	if err != nil {
		return nil, fmt.Errorf("gathering: %w", err)
	}
	atStart := map[string]bool{}
	for _, mf := range mfs {
		atStart[mf.GetName()] = len(mf.GetMetric()) > 0
		switch mf.GetType() {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			rec.suffixes[mf.GetName()] = histogramSuffixes
		case dto.MetricType_SUMMARY:
			rec.suffixes[mf.GetName()] = summarySuffixes
		}
	}
	out := make(map[string]Family, len(rec.names))
	for _, name := range rec.names {
		out[name] = Family{Name: name, Suffixes: rec.suffixes[name], Labels: rec.labels[name], AtStart: atStart[name]}
	}
	return out, nil
}

// fqName reads a Desc's name from its String form, the only place
// client_golang shows it: Desc{fqName: "podiam_...", help: ...}.
var fqName = regexp.MustCompile(`^Desc\{fqName: "([^"]+)"`)

// descLabels reads a Desc's label names from the end of its String form:
// constLabels: {a="x",b="y"}, variableLabels: {code,c(constrained)}}.
var (
	descLabels    = regexp.MustCompile(`constLabels: \{(.*)\}, variableLabels: \{([^{}]*)\}\}$`)
	constLabel    = regexp.MustCompile(`(?:^|,)([a-zA-Z_][a-zA-Z0-9_]*)="`)
	constrainedVL = regexp.MustCompile(`^c\((.*)\)$`)
)

// labelNames returns the label names of a Desc, sorted.
func labelNames(d *prometheus.Desc) ([]string, error) {
	m := descLabels.FindStringSubmatch(d.String())
	if m == nil {
		return nil, fmt.Errorf("reading the labels of %s", d)
	}
	var names []string
	for _, c := range constLabel.FindAllStringSubmatch(m[1], -1) {
		names = append(names, c[1])
	}
	for v := range strings.SplitSeq(m[2], ",") {
		if v == "" {
			continue
		}
		if c := constrainedVL.FindStringSubmatch(v); c != nil {
			v = c[1]
		}
		names = append(names, v)
	}
	slices.Sort(names)
	return names, nil
}

// recorder is a Registerer that also records the names of what is
// registered on it.
type recorder struct {
	*prometheus.Registry
	names []string
	// suffixes are the series suffixes of histograms and summaries by
	// name: set here for vectors, whose families Gather omits until they
	// have a child.
	suffixes map[string][]string
	// labels are each name's label names.
	labels map[string][]string
	err    error
}

// Register records c's metric names, then registers it.
func (r *recorder) Register(c prometheus.Collector) error {
	var suffixes []string
	switch c.(type) {
	case *prometheus.HistogramVec:
		suffixes = histogramSuffixes
	case *prometheus.SummaryVec:
		suffixes = summarySuffixes
	}
	descs := make(chan *prometheus.Desc)
	go func() {
		c.Describe(descs)
		close(descs)
	}()
	for d := range descs {
		m := fqName.FindStringSubmatch(d.String())
		if m == nil {
			r.err = fmt.Errorf("reading a metric name from %s", d)
			continue
		}
		r.names = append(r.names, m[1])
		ls, err := labelNames(d)
		if err != nil {
			r.err = err
			continue
		}
		r.labels[m[1]] = ls
		if suffixes != nil {
			r.suffixes[m[1]] = suffixes
		}
	}
	return r.Registry.Register(c)
}

// MustRegister registers each collector and panics on an error, as
// prometheus.Registry's does.
func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// Names returns the metric names an expression selects, sorted and
// without duplicates. A selector that names no single metric (only a regular
// expression on __name__) is an error: its metrics cannot be checked.
func Names(expr parser.Expr) ([]string, error) {
	var names []string
	var err error
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		vs, ok := node.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := selectorName(vs)
		if name == "" && err == nil {
			err = fmt.Errorf("selector %s names no single metric", vs)
		}
		if name != "" {
			names = append(names, name)
		}
		return nil
	})
	slices.Sort(names)
	return slices.Compact(names), err
}

// FamilyOf returns the family a series name belongs to: the name itself, or
// for a histogram's _bucket, _sum or _count series (a summary's _sum or
// _count), the histogram. ok is false when podiam exports no such series; a
// histogram's own name is none (a classic histogram has only the suffixed
// series), while a summary's is (its quantiles).
func FamilyOf(name string, exported map[string]Family) (family string, ok bool) {
	if f, ok := exported[name]; ok {
		return name, !slices.Equal(f.Suffixes, histogramSuffixes)
	}
	for _, suffix := range histogramSuffixes {
		base, found := strings.CutSuffix(name, suffix)
		if f, exists := exported[base]; found && exists && slices.Contains(f.Suffixes, suffix) {
			return base, true
		}
	}
	return "", false
}

// Unknown returns the names, of those given, that are neither series podiam
// exports nor listed in others.
func Unknown(names []string, exported map[string]Family, others map[string]Other) []string {
	var unknown []string
	for _, n := range names {
		if _, ok := FamilyOf(n, exported); ok {
			continue
		}
		if _, ok := others[n]; ok {
			continue
		}
		unknown = append(unknown, n)
	}
	return unknown
}

// selectorName is the metric a selector names, or "".
func selectorName(vs *parser.VectorSelector) string {
	name := vs.Name
	for _, m := range vs.LabelMatchers {
		if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
			name = m.Value
		}
	}
	return name
}

// SeriesLabels returns the labels a series may carry: its family's (or its
// Other's), a histogram bucket's le or a summary's quantile, and
// ScrapeLabels. ok is false when the name is no series podiam exports nor
// one of others.
func SeriesLabels(name string, exported map[string]Family, others map[string]Other) (_ []string, ok bool) {
	out := slices.Clone(ScrapeLabels)
	if o, ok := others[name]; ok {
		return append(out, o.Labels...), true
	}
	family, ok := FamilyOf(name, exported)
	if !ok {
		return nil, false
	}
	f := exported[family]
	out = append(out, f.Labels...)
	switch {
	case name == family && slices.Equal(f.Suffixes, summarySuffixes):
		out = append(out, "quantile")
	case name == family+"_bucket":
		out = append(out, "le")
	}
	return out, true
}

// LabelProblems lists the label names an expression uses that its series
// cannot carry: in a selector's matchers (against that metric's labels), in
// an aggregation's by or without (against the labels of the series
// aggregated, and of label_replace's and label_join's new labels), and in a
// binary operation's on (against each side), ignoring, group_left or
// group_right (against either side). Metrics Unknown reports are skipped.
func LabelProblems(expr parser.Expr, exported map[string]Family, others map[string]Other) []string {
	var problems []string
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		switch n := node.(type) {
		case *parser.VectorSelector:
			name := selectorName(n)
			have, ok := SeriesLabels(name, exported, others)
			if !ok {
				return nil
			}
			for _, m := range n.LabelMatchers {
				if m.Name != labels.MetricName && !slices.Contains(have, m.Name) {
					problems = append(problems, fmt.Sprintf("%s has no label %s (it has %v)", name, m.Name, have))
				}
			}
		case *parser.AggregateExpr:
			have := available(n.Expr, exported, others)
			for _, l := range n.Grouping {
				if !have[l] {
					problems = append(problems, fmt.Sprintf("%s: no series aggregated has a label %s", n, l))
				}
			}
		case *parser.BinaryExpr:
			vm := n.VectorMatching
			if vm == nil {
				return nil
			}
			lhs, rhs := available(n.LHS, exported, others), available(n.RHS, exported, others)
			for _, l := range vm.MatchingLabels {
				if vm.On && (!lhs[l] || !rhs[l]) || !vm.On && !lhs[l] && !rhs[l] {
					problems = append(problems, fmt.Sprintf("%s: matching on a label %s that a side lacks", n, l))
				}
			}
			for _, l := range vm.Include {
				if !lhs[l] && !rhs[l] {
					problems = append(problems, fmt.Sprintf("%s: group_left or group_right copies a label %s that neither side has", n, l))
				}
			}
		}
		return nil
	})
	return problems
}

// available returns the label names the series of an expression may carry:
// those of every metric it selects, the labels label_replace and label_join
// add, and ScrapeLabels. It over-approximates (an inner aggregation drops
// labels), which is enough to catch a misspelled or foreign label.
func available(expr parser.Expr, exported map[string]Family, others map[string]Other) map[string]bool {
	out := map[string]bool{}
	for _, l := range ScrapeLabels {
		out[l] = true
	}
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		switch n := node.(type) {
		case *parser.VectorSelector:
			ls, _ := SeriesLabels(selectorName(n), exported, others)
			for _, l := range ls {
				out[l] = true
			}
		case *parser.Call:
			if (n.Func.Name == "label_replace" || n.Func.Name == "label_join") && len(n.Args) > 1 {
				if dst, ok := n.Args[1].(*parser.StringLiteral); ok {
					out[dst.Val] = true
				}
			}
		}
		return nil
	})
	return out
}
