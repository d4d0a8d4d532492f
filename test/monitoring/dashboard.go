package monitoring

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"

	"github.com/prometheus/prometheus/promql/parser"
)

// DatasourceUID is the datasource every panel and target of podiam's
// dashboards names: the dashboard's `datasource` variable, so that the
// operator picks the Prometheus to read at import.
const DatasourceUID = "${datasource}"

// Dashboard is the part of a Grafana dashboard's JSON model the checks read.
type Dashboard struct {
	UID           string `json:"uid"`
	Title         string `json:"title"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []Variable `json:"list"`
	} `json:"templating"`
	Panels []Panel `json:"panels"`
}

// Variable is a dashboard template variable.
type Variable struct {
	Name       string      `json:"name"`
	Type       string      `json:"type"`
	Query      any         `json:"query"`
	Datasource *Datasource `json:"datasource"`
}

// Datasource is a panel's, target's or variable's data source reference.
type Datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// Panel is a dashboard panel; a collapsed row holds its panels.
type Panel struct {
	ID          int         `json:"id"`
	Type        string      `json:"type"`
	Title       string      `json:"title"`
	Datasource  *Datasource `json:"datasource"`
	FieldConfig struct {
		Defaults struct {
			// Unit is Grafana's unit id of the panel's values (reqps,
			// ops, s, short...).
			Unit string `json:"unit"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
	Targets []Target `json:"targets"`
	Panels  []Panel  `json:"panels"`
}

// labelValues matches a query variable's label_values(selector, label).
var labelValues = regexp.MustCompile(`^\s*label_values\((.*),\s*(\w+)\s*\)\s*$`)

// LabelValues returns the selector and the label of a query variable of
// the form label_values(selector, label); ok is false for another query.
func (v Variable) LabelValues() (selector, label string, ok bool) {
	q, _ := v.Query.(string)
	if m, isMap := v.Query.(map[string]any); isMap {
		q, _ = m["query"].(string)
	}
	sm := labelValues.FindStringSubmatch(q)
	if sm == nil {
		return "", "", false
	}
	return sm[1], sm[2], true
}

// Target is one query of a panel.
type Target struct {
	RefID      string      `json:"refId"`
	Expr       string      `json:"expr"`
	Datasource *Datasource `json:"datasource"`
}

// ParseDashboard decodes a dashboard's JSON: one object, nothing after it.
func ParseDashboard(content []byte) (*Dashboard, error) {
	dec := json.NewDecoder(bytes.NewReader(content))
	var d Dashboard
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("decoding the dashboard: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("decoding the dashboard: data after its JSON object")
	}
	return &d, nil
}

// AllPanels returns the dashboard's panels, those inside collapsed rows
// included.
func (d *Dashboard) AllPanels() []Panel {
	var out []Panel
	var walk func([]Panel)
	walk = func(ps []Panel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// variableValues stand in for Grafana's variables when a target's
// expression is parsed: the dashboard's own (namespace) and Grafana's
// built-in intervals.
var variableValues = map[string]string{
	"namespace":         "podiam-system",
	"__rate_interval":   "5m",
	"__interval":        "1m",
	"__range":           "1h",
	"__range_s":         "3600",
	"__interval_ms":     "60000",
	"__rate_interval_s": "300",
}

// variableRef matches $name, ${name} and ${name:format}.
var variableRef = regexp.MustCompile(`\$(\w+)|\$\{(\w+)(?::\w+)?\}`)

// ParseTargetExpr replaces the Grafana variables of a target's expression
// with sample values and parses it. A variable that is neither the
// dashboard's nor Grafana's is an error.
func ParseTargetExpr(expr string) (parser.Expr, error) {
	var unknown []string
	expanded := variableRef.ReplaceAllStringFunc(expr, func(ref string) string {
		m := variableRef.FindStringSubmatch(ref)
		name := m[1] + m[2]
		v, ok := variableValues[name]
		if !ok {
			unknown = append(unknown, name)
		}
		return v
	})
	if len(unknown) > 0 {
		return nil, fmt.Errorf("unknown variables %v in %q", unknown, expr)
	}
	e, err := Parser.ParseExpr(expanded)
	if err != nil {
		return nil, fmt.Errorf("parsing %q: %w", expanded, err)
	}
	return e, nil
}
