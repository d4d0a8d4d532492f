package monitoring

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// dashboards parses every dashboard under deploy/monitoring, by file name.
func dashboards(t *testing.T) map[string]*Dashboard {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(monitoringDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no dashboard in %s", monitoringDir)
	}
	out := map[string]*Dashboard{}
	for _, f := range files {
		d, err := ParseDashboard(readFile(t, f))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[filepath.Base(f)] = d
	}
	return out
}

func TestParseDashboard(t *testing.T) {
	for _, tc := range []struct {
		name, json, wantErr string
	}{
		{name: "valid", json: `{"uid": "u", "panels": [{"id": 1, "type": "row", "panels": [{"id": 2, "targets": [{"expr": "up"}]}]}]}`},
		{name: "not JSON", json: `{"uid": "u",}`, wantErr: "invalid character"},
		{name: "two objects", json: `{"uid": "u"} {"uid": "v"}`, wantErr: "data after"},
		{name: "wrong type", json: `{"uid": 1}`, wantErr: "cannot unmarshal number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := ParseDashboard([]byte(tc.json))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got := len(d.AllPanels()); got != 2 {
					t.Errorf("AllPanels: %d panels, want 2 (a row's included)", got)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestParseTargetExpr(t *testing.T) {
	for _, tc := range []struct {
		expr, want, wantErr string
	}{
		{expr: `rate(x_total{namespace=~"$namespace"}[$__rate_interval])`, want: `rate(x_total{namespace=~"podiam-system"}[5m])`},
		{expr: `increase(x_total{namespace=~"${namespace}"}[${__range}])`, want: `increase(x_total{namespace=~"podiam-system"}[1h])`},
		{expr: `x_total{namespace=~"${namespace:regex}"}`, want: `x_total{namespace=~"podiam-system"}`},
		{expr: `x_total{pod="$pod"}`, wantErr: "unknown variables [pod]"},
		{expr: `sum(rate(x_total[$__rate_interval])`, wantErr: "parsing"},
	} {
		t.Run(tc.expr, func(t *testing.T) {
			e, err := ParseTargetExpr(tc.expr)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := e.String(); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

// TestDashboards checks the shipped dashboards: Grafana's schema 39 or
// later, unique uids and panel ids, the datasource variable used by every
// panel, target and query variable, and every target's expression parses
// and names only metrics podiam exports or Others.
func TestDashboards(t *testing.T) {
	exported, err := Exported()
	if err != nil {
		t.Fatal(err)
	}
	uids := map[string]string{}
	for file, d := range dashboards(t) {
		for _, problem := range dashboardProblems(d, exported) {
			t.Errorf("%s: %s", file, problem)
		}
		if other, dup := uids[d.UID]; dup {
			t.Errorf("%s and %s have the same uid %q", file, other, d.UID)
		}
		uids[d.UID] = file
	}
}

// TestDashboardProblems proves that TestDashboards's checks catch each
// kind of fault: each case breaks the shipped dashboard once.
func TestDashboardProblems(t *testing.T) {
	exported, err := Exported()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		spoil func(d *Dashboard)
		want  string
	}{
		{"as shipped", func(*Dashboard) {}, ""},
		{"old schema", func(d *Dashboard) { d.SchemaVersion = 36 }, "schemaVersion 36"},
		{"no uid", func(d *Dashboard) { d.UID = "" }, "uid"},
		{"duplicate panel id", func(d *Dashboard) { d.Panels[2].ID = d.Panels[1].ID }, "panel id"},
		{"fixed datasource", func(d *Dashboard) { d.Panels[1].Datasource = &Datasource{Type: "prometheus", UID: "prom-1"} }, "datasource"},
		{"target without datasource", func(d *Dashboard) { d.Panels[1].Targets[0].Datasource = nil }, "datasource"},
		{"no datasource variable", func(d *Dashboard) {
			d.Templating.List = slices.DeleteFunc(d.Templating.List, func(v Variable) bool { return v.Name == "datasource" })
		}, "variable datasource"},
		{"unknown metric", func(d *Dashboard) {
			d.Panels[1].Targets[0].Expr = `sum(rate(podiam_webhook_pod_total[$__rate_interval]))`
		}, "podiam_webhook_pod_total"},
		{"bad expression", func(d *Dashboard) { d.Panels[1].Targets[0].Expr = `sum(rate(x[5m])` }, "parsing"},
		{"a misspelled label", func(d *Dashboard) {
			d.Panels[1].Targets[0].Expr = `sum by (mode) (rate(podiam_webhook_pods_total{namespce=~"$namespace"}[$__rate_interval]))`
		}, "no label namespce"},
		{"grouping by a label the metric lacks", func(d *Dashboard) {
			d.Panels[1].Targets[0].Expr = `sum by (code) (rate(podiam_webhook_pods_total[$__rate_interval]))`
		}, "label code"},
		{"a histogram's own name", func(d *Dashboard) {
			d.Panels[1].Targets[0].Expr = `rate(podiam_agent_request_duration_seconds[$__rate_interval])`
		}, "podiam_agent_request_duration_seconds"},
		// Grafana's namespace list of an idle install: the request counters
		// of the webhook and podiam auth appear with the first request.
		{"namespaces from request counters", func(d *Dashboard) {
			setNamespaceQuery(d, `label_values({__name__=~"podiam_(webhook|auth|agent)_requests_total"}, namespace)`)
		}, "podiam_webhook_requests_total, which has no series until the first request"},
		{"namespaces of one server only", func(d *Dashboard) {
			setNamespaceQuery(d, `label_values(podiam_agent_cache_entries, namespace)`)
		}, "no podiam_auth_* metric"},
		{"fail-open count as a rate", func(d *Dashboard) {
			d.Panels[1].Targets[0].Expr = `sum by (name) (increase(apiserver_admission_webhook_fail_open_count{name=~".*podiam.*"}[$__rate_interval]))`
		}, "apiserver_admission_webhook_fail_open_count through rate or increase"},
		{"a gauge and a rate on one axis", func(d *Dashboard) {
			d.Panels[1].Targets = append(d.Panels[1].Targets, Target{RefID: "Z", Datasource: d.Panels[1].Datasource, Expr: `sum(podiam_auth_credential_cache_entries)`})
		}, "mixes rates and levels"},
		{"pods in requests per second", func(d *Dashboard) {
			d.Panels[1].FieldConfig.Defaults.Unit = "reqps"
			d.Panels[1].Targets = d.Panels[1].Targets[:1]
			d.Panels[1].Targets[0].Expr = `sum by (reason) (rate(podiam_webhook_containers_skipped_total[$__rate_interval]))`
		}, "unit reqps"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := ParseDashboard(readFile(t, filepath.Join(monitoringDir, "podiam-dashboard.json")))
			if err != nil {
				t.Fatal(err)
			}
			if d.Panels[0].Type != "row" || len(d.Panels[1].Targets) == 0 {
				t.Fatal("the dashboard no longer starts with a row and a panel with targets: update this test")
			}
			tc.spoil(d)
			problems := dashboardProblems(d, exported)
			if tc.want == "" {
				if len(problems) > 0 {
					t.Fatalf("problems in the shipped dashboard: %v", problems)
				}
				return
			}
			if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tc.want) }) {
				t.Errorf("problems %v, want one containing %q", problems, tc.want)
			}
		})
	}
}

// setNamespaceQuery sets the namespace variable's query.
func setNamespaceQuery(d *Dashboard, query string) {
	for i, v := range d.Templating.List {
		if v.Name == "namespace" {
			d.Templating.List[i].Query = map[string]any{"query": query, "refId": "namespace"}
		}
	}
}

// dashboardProblems lists what is wrong with a dashboard.
func dashboardProblems(d *Dashboard, exported map[string]Family) []string {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if d.SchemaVersion < 39 {
		add("schemaVersion %d, want 39 or later", d.SchemaVersion)
	}
	if d.UID == "" || len(d.UID) > 40 {
		add("uid %q: want 1 to 40 characters", d.UID)
	}
	if d.Title == "" {
		add("no title")
	}
	checkDS := func(what string, ds *Datasource) {
		if ds == nil || ds.Type != "prometheus" || ds.UID != DatasourceUID {
			add("%s: datasource %+v, want {prometheus %s}", what, ds, DatasourceUID)
		}
	}
	hasDS := false
	for _, v := range d.Templating.List {
		switch v.Type {
		case "datasource":
			if v.Name == "datasource" && v.Query == "prometheus" {
				hasDS = true
			}
		case "query":
			checkDS("variable "+v.Name, v.Datasource)
		}
	}
	if !hasDS {
		add("no variable datasource of type datasource and query prometheus")
	}
	ids := map[int]bool{}
	for _, p := range d.AllPanels() {
		what := fmt.Sprintf("panel %d %q", p.ID, p.Title)
		if ids[p.ID] {
			add("%s: panel id used twice", what)
		}
		ids[p.ID] = true
		checkDS(what, p.Datasource)
		if p.Type != "row" && len(p.Targets) == 0 {
			add("%s: no target", what)
		}
		refs := map[string]bool{}
		rates, levels := 0, 0
		for _, tg := range p.Targets {
			checkDS(what+" target "+tg.RefID, tg.Datasource)
			if refs[tg.RefID] || tg.RefID == "" {
				add("%s: refId %q empty or used twice", what, tg.RefID)
			}
			refs[tg.RefID] = true
			e, err := ParseTargetExpr(tg.Expr)
			if err != nil {
				add("%s: %v", what, err)
				continue
			}
			names, err := Names(e)
			if err != nil {
				add("%s: %v", what, err)
			}
			if u := Unknown(names, exported, Others); len(u) > 0 {
				add("%s names metrics that podiam does not export: %v", what, u)
			}
			for _, p := range LabelProblems(e, exported, Others) {
				add("%s: %s", what, p)
			}
			for _, n := range ratedNewAtOne(e) {
				add("%s reads %s through rate or increase, which miss its first increment: show its value", what, n)
			}
			if isRate(e) {
				rates++
			} else {
				levels++
			}
			if p.FieldConfig.Defaults.Unit == "reqps" && slices.ContainsFunc(names, func(n string) bool { return !strings.Contains(n, "request") }) {
				add("%s: unit reqps for %v, which counts no requests", what, names)
			}
		}
		if rates > 0 && levels > 0 {
			add("%s mixes rates and levels (gauges, counts) on one axis and unit", what)
		}
	}
	for _, v := range d.Templating.List {
		if v.Name == "namespace" {
			problems = append(problems, namespaceVariableProblems(v, exported)...)
		}
	}
	return problems
}

// shownServers are the prefixes of podiam's servers that the dashboard shows.
var shownServers = []string{"podiam_webhook_", "podiam_auth_", "podiam_agent_"}

// namespaceVariableProblems checks that the namespace variable lists every
// namespace podiam runs in from its start, idle or not: its
// label_values(selector, namespace) selects, of podiam's metrics, only
// families that have a series before any request, and at least one of
// each server's.
func namespaceVariableProblems(v Variable, exported map[string]Family) []string {
	sel, label, ok := v.LabelValues()
	if !ok || label != "namespace" {
		return []string{fmt.Sprintf("variable namespace: query %v is not label_values(<selector>, namespace)", v.Query)}
	}
	e, err := Parser.ParseExpr(sel)
	vs, isSelector := e.(*parser.VectorSelector)
	if err != nil || !isSelector {
		return []string{fmt.Sprintf("variable namespace: %q is not a selector: %v", sel, err)}
	}
	var problems []string
	covered := map[string]bool{}
	for name, f := range exported {
		series := []string{name}
		for _, suffix := range f.Suffixes {
			series = append(series, name+suffix)
		}
		for _, n := range series {
			if !matchesName(vs, n) {
				continue
			}
			if !f.AtStart {
				problems = append(problems, fmt.Sprintf("variable namespace reads %s, which has no series until the first request: an idle install would list no namespace", n))
				continue
			}
			for _, s := range shownServers {
				covered[s] = covered[s] || strings.HasPrefix(n, s)
			}
		}
	}
	for _, s := range shownServers {
		if !covered[s] {
			problems = append(problems, fmt.Sprintf("variable namespace reads no %s* metric that exists from the start", s))
		}
	}
	slices.Sort(problems)
	return problems
}

// matchesName reports whether a selector's __name__ matchers select name.
func matchesName(vs *parser.VectorSelector, name string) bool {
	for _, m := range vs.LabelMatchers {
		if m.Name == labels.MetricName && !m.Matches(name) {
			return false
		}
	}
	return true
}

// rateFuncs are the functions whose value is a change over a range.
var rateFuncs = []string{"rate", "irate", "increase", "delta", "idelta", "deriv"}

// isRate reports whether an expression calls one of rateFuncs.
func isRate(e parser.Expr) bool {
	found := false
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if c, ok := n.(*parser.Call); ok && slices.Contains(rateFuncs, c.Func.Name) {
			found = true
		}
		return nil
	})
	return found
}

// ratedNewAtOne returns the metrics of Others marked NewAtOne that an
// expression passes to one of rateFuncs.
func ratedNewAtOne(e parser.Expr) []string {
	var out []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		c, ok := n.(*parser.Call)
		if !ok || !slices.Contains(rateFuncs, c.Func.Name) {
			return nil
		}
		for _, arg := range c.Args {
			names, _ := Names(arg)
			for _, name := range names {
				if Others[name].NewAtOne {
					out = append(out, name)
				}
			}
		}
		return nil
	})
	return out
}

// read is a metric that a row of the dashboard must show: a panel of the row
// (any row if row is "") names it, aggregated by at least the labels by.
type read struct {
	row, metric string
	by          []string
}

// wantReads are the metrics an operator looks for first in each row: the
// certificates' expiry (from podiam's own gauges, whoever issued the
// certificate) and each replica's readiness checks.
var wantReads = []read{
	{row: "Webhook", metric: "podiam_webhook_certificate_expiry_timestamp_seconds"},
	{row: "", metric: "podiam_auth_certificate_expiry_timestamp_seconds"},
	{row: "Webhook", metric: "podiam_webhook_ready", by: []string{"pod", "check"}},
	{row: "podiam auth", metric: "podiam_auth_ready", by: []string{"pod", "check"}},
}

// TestDashboardReads checks that the shipped dashboard shows wantReads, and
// that the check notices when a panel stops showing one.
func TestDashboardReads(t *testing.T) {
	for _, tc := range []struct {
		name        string
		old, new    string // a change to every target's expression
		wantMissing string // "" for the shipped dashboard
	}{
		{name: "as shipped"},
		{name: "readiness not per pod", old: "min by (pod, check) (podiam_webhook_ready", new: "min by (check) (podiam_webhook_ready", wantMissing: "podiam_webhook_ready"},
		{name: "auth readiness gone", old: "podiam_auth_ready", new: "podiam_auth_requests_total", wantMissing: "podiam_auth_ready"},
		{name: "expiry from cert-manager", old: "podiam_webhook_certificate_expiry_timestamp_seconds", new: "certmanager_certificate_expiration_timestamp_seconds", wantMissing: "podiam_webhook_certificate_expiry_timestamp_seconds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := ParseDashboard(readFile(t, filepath.Join(monitoringDir, "podiam-dashboard.json")))
			if err != nil {
				t.Fatal(err)
			}
			changed := false
			for i := range d.Panels {
				for j := range d.Panels[i].Targets {
					tg := &d.Panels[i].Targets[j]
					if tc.old != "" && strings.Contains(tg.Expr, tc.old) {
						tg.Expr, changed = strings.ReplaceAll(tg.Expr, tc.old, tc.new), true
					}
				}
			}
			if tc.old != "" && !changed {
				t.Fatalf("no target contains %q: update this case", tc.old)
			}
			missing, err := missingReads(d, wantReads)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			if tc.wantMissing != "" {
				want = []string{tc.wantMissing}
			}
			if !slices.Equal(missing, want) {
				t.Errorf("missing %v, want %v", missing, want)
			}
		})
	}
}

// missingReads returns the metrics of wants that no panel of their row
// shows as wanted. A panel belongs to the last row before it, or to the
// collapsed row that holds it.
func missingReads(d *Dashboard, wants []read) ([]string, error) {
	byRow := map[string][]Panel{}
	row := ""
	for _, p := range d.Panels {
		if p.Type == "row" {
			row = p.Title
			byRow[row] = append(byRow[row], p.Panels...)
			continue
		}
		byRow[row] = append(byRow[row], p)
	}
	var missing []string
	for _, w := range wants {
		panels := byRow[w.row]
		if w.row == "" {
			panels = d.AllPanels()
		}
		found := false
		for _, p := range panels {
			for _, tg := range p.Targets {
				ok, err := reads(tg.Expr, w.metric, w.by)
				if err != nil {
					return nil, fmt.Errorf("panel %d %q: %w", p.ID, p.Title, err)
				}
				found = found || ok
			}
		}
		if !found {
			missing = append(missing, w.metric)
		}
	}
	return missing, nil
}

// reads reports whether expr has an aggregation by (at least) the labels by
// of an expression that names metric; with no labels, whether expr names
// metric at all.
func reads(expr, metric string, by []string) (bool, error) {
	e, err := ParseTargetExpr(expr)
	if err != nil {
		return false, err
	}
	names := func(e parser.Expr) bool {
		ns, _ := Names(e) // an unnamed selector names nothing: not metric
		return slices.Contains(ns, metric)
	}
	if len(by) == 0 {
		return names(e), nil
	}
	found := false
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		agg, ok := n.(*parser.AggregateExpr)
		if ok && !agg.Without && names(agg.Expr) &&
			!slices.ContainsFunc(by, func(l string) bool { return !slices.Contains(agg.Grouping, l) }) {
			found = true
		}
		return nil
	})
	return found, nil
}
