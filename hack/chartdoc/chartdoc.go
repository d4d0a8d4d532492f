package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The README's generated part lies between these markers; everything else
// in it is written by hand.
const (
	beginMarker = "<!-- values:begin -->"
	endMarker   = "<!-- values:end -->"
)

// Row is one line of the values table.
type Row struct {
	Key         string // dotted path, e.g. webhook.certificates.mode
	Type        string // string, int, float, bool, list, object, null, or the (type) the comment gives
	Default     string // Markdown: the value as JSON in a code span, or the comment's @default text
	Description string
}

// comment is what a key's head comment says, in helm-docs' convention:
//
//	# -- Description, which may go on
//	# over several lines.
//	# @default -- text shown instead of the value
//
// A description may start with "(type)" to name the type shown.
type comment struct {
	documented  bool
	typ         string
	description string
	defaultText string
}

var typePrefix = regexp.MustCompile(`^\(([^)]+)\)\s*`)

// parseComment reads a yaml.v3 head comment. Lines before the "# --" line
// (a section heading, a note for the chart's developers) are not part of the
// description.
func parseComment(text string) comment {
	var c comment
	var desc []string
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		body, isComment := strings.CutPrefix(line, "#")
		if !isComment {
			continue
		}
		body = strings.TrimSpace(body)
		if rest, ok := cutMarker(body, "@default"); ok {
			c.defaultText = rest
			continue
		}
		if rest, ok := cutMarker(body, ""); ok {
			c.documented = true
			desc = []string{rest}
			continue
		}
		if c.documented && body != "" {
			desc = append(desc, body)
		}
	}
	c.description = strings.TrimSpace(strings.Join(desc, " "))
	if m := typePrefix.FindStringSubmatch(c.description); m != nil {
		c.typ = m[1]
		c.description = c.description[len(m[0]):]
	}
	return c
}

// cutMarker matches "<prefix> --" at the start of a comment line and
// returns the text after it.
func cutMarker(body, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(body, prefix)
	if !ok {
		return "", false
	}
	rest = strings.TrimLeft(rest, " ")
	rest, ok = strings.CutPrefix(rest, "--")
	if !ok || (rest != "" && rest[0] != ' ') {
		return "", false
	}
	return strings.TrimSpace(rest), true
}

// Rows reads values.yaml and returns its table, in the file's order. Every
// key with a "# --" comment gets a row; a map whose keys are documented gets
// a row of its own (no default: its keys have theirs) only if it is
// documented itself; a map none of whose keys is documented is one row with
// its whole value as default; a key without a comment still gets a row
// (empty description) unless a documented map above it covers it.
func Rows(values []byte) ([]Row, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(values, &doc); err != nil {
		return nil, fmt.Errorf("parsing values: %w", err)
	}
	if doc.Kind == 0 { // an empty file
		return nil, nil
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("values must be a YAML mapping")
	}
	var rows []Row
	if err := walk(doc.Content[0], "", &rows); err != nil {
		return nil, err
	}
	return rows, nil
}

func walk(m *yaml.Node, prefix string, rows *[]Row) error {
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return fmt.Errorf("line %d: a key that is not a string", k.Line)
		}
		key := prefix + keyPart(k.Value)
		c := parseComment(k.HeadComment)
		if v.Kind == yaml.AliasNode {
			v = v.Alias
		}
		if v.Kind == yaml.MappingNode && len(v.Content) > 0 && hasDocumented(v) {
			if c.documented {
				*rows = append(*rows, Row{Key: key, Type: orDefault(c.typ, "object"), Default: c.defaultText, Description: c.description})
			}
			if err := walk(v, key+".", rows); err != nil {
				return err
			}
			continue
		}
		row, err := leafRow(key, v, c)
		if err != nil {
			return fmt.Errorf("line %d: %s: %w", k.Line, key, err)
		}
		*rows = append(*rows, row)
	}
	return nil
}

// keyPart quotes a key that a dotted path could not show unambiguously.
func keyPart(k string) string {
	if k == "" || strings.ContainsAny(k, ". \"") {
		return strconv.Quote(k)
	}
	return k
}

// hasDocumented reports whether any key under the map has a "# --" comment.
func hasDocumented(m *yaml.Node) bool {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if parseComment(m.Content[i].HeadComment).documented {
			return true
		}
		if v := m.Content[i+1]; v.Kind == yaml.MappingNode && hasDocumented(v) {
			return true
		}
	}
	return false
}

func leafRow(key string, v *yaml.Node, c comment) (Row, error) {
	var value any
	if err := v.Decode(&value); err != nil {
		return Row{}, err
	}
	def := c.defaultText
	if def == "" {
		raw, err := json.Marshal(value)
		if err != nil {
			return Row{}, fmt.Errorf("default as JSON: %w", err)
		}
		def = "`" + string(raw) + "`"
	}
	return Row{Key: key, Type: orDefault(c.typ, typeOf(v, value)), Default: def, Description: c.description}, nil
}

// typeOf names a value's type as helm-docs does.
func typeOf(v *yaml.Node, value any) string {
	switch value.(type) {
	case nil:
		return "null"
	case bool:
		return "bool"
	case int, int64, uint64:
		return "int"
	case float64:
		return "float"
	case string:
		return "string"
	case []any:
		return "list"
	case map[string]any:
		return "object"
	}
	return v.ShortTag()
}

func orDefault(s, def string) string {
	if s != "" {
		return s
	}
	return def
}

// Table renders the rows as a Markdown table.
func Table(rows []Row) string {
	var b strings.Builder
	b.WriteString("| Key | Type | Default | Description |\n")
	b.WriteString("|-----|------|---------|-------------|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", cell("`"+r.Key+"`"), cell(r.Type), cell(r.Default), cell(r.Description))
	}
	return b.String()
}

// cell keeps a value inside its table cell: a "|" would end the cell (in
// code spans too, for GitHub's tables) and a newline the row.
func cell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}

// Splice puts table between the README's markers, replacing what was
// there.
func Splice(readme []byte, table string) ([]byte, error) {
	begin := bytes.Index(readme, []byte(beginMarker))
	end := bytes.Index(readme, []byte(endMarker))
	switch {
	case begin < 0 || end < 0:
		return nil, fmt.Errorf("the README lacks the markers %s and %s around the values table", beginMarker, endMarker)
	case end < begin:
		return nil, fmt.Errorf("%s comes before %s", endMarker, beginMarker)
	case bytes.Count(readme, []byte(beginMarker)) > 1 || bytes.Count(readme, []byte(endMarker)) > 1:
		return nil, errors.New("the README has the values markers more than once")
	}
	var out bytes.Buffer
	out.Write(readme[:begin+len(beginMarker)])
	out.WriteString("\n" + table)
	out.Write(readme[end:])
	return out.Bytes(), nil
}
