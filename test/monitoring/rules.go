package monitoring

import (
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

// Parser is the PromQL parser of the checks, with Prometheus's defaults.
var Parser = parser.NewParser(parser.Options{})

// Rule is one alerting or recording rule of a rules file, its expression
// parsed.
type Rule struct {
	Group string
	rulefmt.Rule
	Parsed parser.Expr
}

// Name is the rule's alert or record name.
func (r Rule) Name() string {
	if r.Alert != "" {
		return r.Alert
	}
	return r.Record
}

// ParseRules parses and validates a Prometheus rules file as Prometheus
// loads it (unknown fields are errors, as are bad expressions, durations
// and templates) and returns its rules.
func ParseRules(content []byte) ([]Rule, error) {
	groups, errs := rulefmt.Parse(content, false, model.UTF8Validation, Parser, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if len(errs) > 0 {
		return nil, fmt.Errorf("invalid rules: %w", errors.Join(errs...))
	}
	var out []Rule
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			expr, err := Parser.ParseExpr(r.Expr)
			if err != nil { // rulefmt checked it already; kept for the AST
				return nil, fmt.Errorf("rule %s: %w", r.Alert+r.Record, err)
			}
			out = append(out, Rule{Group: g.Name, Rule: r, Parsed: expr})
		}
	}
	return out, nil
}
