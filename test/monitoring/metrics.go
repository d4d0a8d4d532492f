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

// Others are the metrics of other components that the rules and the
// dashboard read, each with who exports it and why podiam needs it. Keep it
// short: a podiam metric does not belong here.
var Others = map[string]string{
	// kube-apiserver: calls to a webhook with failurePolicy Ignore that
	// failed, so the pod was admitted without podiam (label name = webhook).
	"apiserver_admission_webhook_fail_open_count": "kube-apiserver",
	// kube-state-metrics: ready (available) replicas of the webhook and
	// podiam auth, and the replicas wanted (an alert must not fire for a
	// Deployment scaled to zero on purpose).
	"kube_deployment_status_replicas_available": "kube-state-metrics",
	"kube_deployment_spec_replicas":             "kube-state-metrics",
	// kube-state-metrics: ready agents of the DaemonSet (dashboard only).
	"kube_daemonset_status_number_ready": "kube-state-metrics",
}

// Family is a metric family that podiam registers.
type Family struct {
	// Name is the family's name, as a rule or panel selects it.
	Name string
	// Suffixes name the other series of the family: _bucket, _sum and
	// _count for a histogram, _sum and _count for a summary.
	Suffixes []string
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
	rec := &recorder{Registry: prometheus.NewRegistry(), suffixes: map[string][]string{}}
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
	for _, mf := range mfs {
		switch mf.GetType() {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			rec.suffixes[mf.GetName()] = histogramSuffixes
		case dto.MetricType_SUMMARY:
			rec.suffixes[mf.GetName()] = summarySuffixes
		}
	}
	out := make(map[string]Family, len(rec.names))
	for _, name := range rec.names {
		out[name] = Family{Name: name, Suffixes: rec.suffixes[name]}
	}
	return out, nil
}

// fqName reads a Desc's name from its String form, the only place
// client_golang shows it: Desc{fqName: "podiam_...", help: ...}.
var fqName = regexp.MustCompile(`^Desc\{fqName: "([^"]+)"`)

// recorder is a Registerer that also records the names of what is
// registered on it.
type recorder struct {
	*prometheus.Registry
	names []string
	// suffixes are the series suffixes of histograms and summaries by
	// name: set here for vectors, whose families Gather omits until they
	// have a child.
	suffixes map[string][]string
	err      error
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
		name := vs.Name
		for _, m := range vs.LabelMatchers {
			if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
				name = m.Value
			}
		}
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
// _count), the histogram. ok is false when podiam exports no such series.
func FamilyOf(name string, exported map[string]Family) (family string, ok bool) {
	if _, ok := exported[name]; ok {
		return name, true
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
func Unknown(names []string, exported map[string]Family, others map[string]string) []string {
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
