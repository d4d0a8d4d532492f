package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Policy is a parsed IAM policy document.
type Policy struct {
	// Version is the policy language version, "2012-10-17" or "2008-10-17"
	// (the default when absent).
	Version string
	// ID is the optional Id element.
	ID string
	// Statements in document order.
	Statements []Statement

	// compiled is set by Parse: patterns compiled and trust-policy rules
	// checked (trustErr).
	compiled bool
	trustErr error
}

// Statement is one element of the Statement list.
type Statement struct {
	Sid    string
	Effect Effect
	// Principal and NotPrincipal are nil when absent.
	Principal    *Principals
	NotPrincipal *Principals
	Action       Values
	NotAction    Values
	Resource     Values
	NotResource  Values
	// Condition blocks in document order.
	Condition []Condition

	// path is the JSON path of the statement, e.g. "Statement[1]".
	path string
	// actions are the compiled Action or NotAction patterns (lower case).
	actions []pattern
}

// Effect is "Allow" or "Deny".
type Effect string

// The two effects.
const (
	Allow Effect = "Allow"
	Deny  Effect = "Deny"
)

// Values is an element that IAM accepts as a single string or a list of
// strings; Single records which form the document used.
type Values struct {
	List   []string
	Single bool
}

// Principals is a Principal or NotPrincipal element: "*" or a map from
// principal type (AWS, Federated, Service, CanonicalUser) to values.
type Principals struct {
	// Wildcard is true for "Principal": "*".
	Wildcard bool
	// ByType in document order.
	ByType []PrincipalValues
}

// PrincipalValues is one type of a Principal element.
type PrincipalValues struct {
	Type   string
	Values Values
}

// Condition is one operator/key pair of a Condition element, e.g.
// StringEquals "oidc.example.com:sub" ["system:serviceaccount:ns:app"].
type Condition struct {
	// Operator as written, e.g. "ForAnyValue:StringLikeIfExists".
	Operator string
	// Key as written; IAM compares keys case-insensitively.
	Key    string
	Values Values

	// path is the JSON path of the key, e.g. Statement[0].Condition.StringEquals.oidc.example.com:sub.
	path     string
	op       operator
	lowerKey string
	cc       *compiled
}

// Parse parses a JSON IAM policy document. Errors name the JSON path of the
// offending element, e.g. Statement[1].Condition.StringEquals.
func Parse(doc []byte) (*Policy, error) {
	return parse(doc)
}

// jsonKind is the type of a node of a decoded JSON document.
type jsonKind int

const (
	kindNull jsonKind = iota
	kindString
	kindNumber
	kindBool
	kindArray
	kindObject
)

func (k jsonKind) String() string {
	return [...]string{"null", "a string", "a number", "a boolean", "a list", "an object"}[k]
}

// node is a decoded JSON value that keeps the order of object members, so
// that statements and conditions are reported in the order the author wrote.
type node struct {
	kind    jsonKind
	text    string // string, number or bool text
	items   []node
	members []member
}

type member struct {
	name  string
	value node
}

// decodeJSON decodes one JSON value, refusing trailing data and duplicate
// object members (IAM would keep only one of them, silently).
func decodeJSON(doc []byte) (node, error) {
	d := &decoder{dec: json.NewDecoder(bytes.NewReader(doc)), doc: doc}
	d.dec.UseNumber()
	n, err := d.node("")
	if err != nil {
		return node{}, err
	}
	if _, err := d.dec.Token(); err != io.EOF {
		line, col := position(doc, d.dec.InputOffset())
		return node{}, fmt.Errorf("not JSON at line %d, column %d: data after the policy document", line, col)
	}
	return n, nil
}

// decoder reads a document token by token and keeps it to turn byte
// offsets into lines and columns for errors.
type decoder struct {
	dec *json.Decoder
	doc []byte
}

// syntaxError is a "not JSON" error at path (the element being read, "" for
// the document) with the line and column of the fault.
func (d *decoder) syntaxError(path string, err error) error {
	offset := d.dec.InputOffset()
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		offset = d.faultEnd(se)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		offset, err = int64(len(d.doc)), errors.New("unexpected end of the document")
	}
	line, col := position(d.doc, offset)
	msg := fmt.Sprintf("not JSON at line %d, column %d: %v", line, col, err)
	if path != "" {
		msg = path + ": " + msg
	}
	return errors.New(msg)
}

// faultEnd is the offset just after the byte an "invalid character" error
// names. encoding/json's offsets differ by where the error was found: after
// that byte (the scanner), at it (the Decoder's token checks), or at the
// start of the value (a literal such as tru}).
func (d *decoder) faultEnd(se *json.SyntaxError) int64 {
	off := min(max(se.Offset, 0), int64(len(d.doc)))
	names := func(i int64) bool {
		return strings.Contains(se.Error(), "invalid character "+quoteChar(d.doc[i]))
	}
	if off > 0 && names(off-1) {
		return off
	}
	for i := off; i < int64(len(d.doc)); i++ {
		if names(i) {
			return i + 1
		}
	}
	return off
}

// quoteChar quotes c the way encoding/json's errors do.
func quoteChar(c byte) string {
	switch c {
	case '\'':
		return `'\''`
	case '"':
		return `'"'`
	}
	q := strconv.Quote(string(rune(c)))
	return "'" + q[1:len(q)-1] + "'"
}

// position is the 1-based line and column (in bytes) of offset in doc.
// encoding/json reports the offset just after the offending byte.
func position(doc []byte, offset int64) (line, col int) {
	offset = min(max(offset, 0), int64(len(doc)))
	before := doc[:offset]
	line = 1 + bytes.Count(before, []byte("\n"))
	col = int(offset) - (bytes.LastIndexByte(before, '\n') + 1)
	return line, max(col, 1)
}

func (d *decoder) node(path string) (node, error) {
	tok, err := d.dec.Token()
	if err != nil {
		return node{}, d.syntaxError(path, err)
	}
	switch t := tok.(type) {
	case json.Delim:
		if t == '[' {
			n := node{kind: kindArray}
			for i := 0; d.dec.More(); i++ {
				item, err := d.node(fmt.Sprintf("%s[%d]", path, i))
				if err != nil {
					return node{}, err
				}
				n.items = append(n.items, item)
			}
			if _, err := d.dec.Token(); err != nil {
				return node{}, d.syntaxError(path, err)
			}
			return n, nil
		}
		n := node{kind: kindObject}
		seen := map[string]bool{}
		for d.dec.More() {
			tok, err := d.dec.Token()
			if err != nil {
				return node{}, d.syntaxError(path, err)
			}
			name, _ := tok.(string)
			if seen[name] {
				return node{}, fmt.Errorf("%s: duplicate element %q (IAM would keep only one of them)", join(path, name), name)
			}
			seen[name] = true
			v, err := d.node(join(path, name))
			if err != nil {
				return node{}, err
			}
			n.members = append(n.members, member{name: name, value: v})
		}
		if _, err := d.dec.Token(); err != nil {
			return node{}, d.syntaxError(path, err)
		}
		return n, nil
	case string:
		return node{kind: kindString, text: t}, nil
	case json.Number:
		return node{kind: kindNumber, text: t.String()}, nil
	case bool:
		return node{kind: kindBool, text: strconv.FormatBool(t)}, nil
	default:
		return node{kind: kindNull}, nil
	}
}

// join appends an element name to a JSON path.
func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func parse(doc []byte) (*Policy, error) {
	root, err := decodeJSON(doc)
	if err != nil {
		return nil, err
	}
	if root.kind != kindObject {
		return nil, fmt.Errorf("policy: the document is %s, want an object with Version and Statement", root.kind)
	}
	p := &Policy{}
	var stmts *node
	for i := range root.members {
		m := &root.members[i]
		switch m.name {
		case "Version":
			if m.value.kind != kindString {
				return nil, fmt.Errorf("Version: is %s, want a string", m.value.kind)
			}
			if m.value.text != Version2012 && m.value.text != Version2008 {
				return nil, fmt.Errorf("Version: %q is not a policy language version (want %q or %q)", m.value.text, Version2012, Version2008)
			}
			p.Version = m.value.text
		case "Id":
			if m.value.kind != kindString {
				return nil, fmt.Errorf("Id: is %s, want a string", m.value.kind)
			}
			p.ID = m.value.text
		case "Statement":
			stmts = &m.value
		default:
			return nil, unknownElement("", m.name, []string{"Version", "Id", "Statement"})
		}
	}
	if stmts == nil {
		return nil, errors.New("Statement: missing")
	}
	switch stmts.kind {
	case kindObject:
		s, err := parseStatement(*stmts, "Statement")
		if err != nil {
			return nil, err
		}
		p.Statements = []Statement{s}
	case kindArray:
		if len(stmts.items) == 0 {
			return nil, errors.New("Statement: empty list")
		}
		for i, item := range stmts.items {
			path := fmt.Sprintf("Statement[%d]", i)
			if item.kind != kindObject {
				return nil, fmt.Errorf("%s: is %s, want an object", path, item.kind)
			}
			s, err := parseStatement(item, path)
			if err != nil {
				return nil, err
			}
			p.Statements = append(p.Statements, s)
		}
	default:
		return nil, fmt.Errorf("Statement: is %s, want an object or a list of objects", stmts.kind)
	}
	if err := p.compile(); err != nil {
		return nil, err
	}
	return p, nil
}

// The policy language versions IAM knows.
const (
	Version2012 = "2012-10-17"
	Version2008 = "2008-10-17"
)

var statementElements = []string{"Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction", "Resource", "NotResource", "Condition"}

func parseStatement(n node, path string) (Statement, error) {
	s := Statement{path: path}
	var err error
	for _, m := range n.members {
		p := join(path, m.name)
		switch m.name {
		case "Sid":
			if m.value.kind != kindString {
				return s, fmt.Errorf("%s: is %s, want a string", p, m.value.kind)
			}
			s.Sid = m.value.text
		case "Effect":
			if m.value.kind != kindString {
				return s, fmt.Errorf("%s: is %s, want \"Allow\" or \"Deny\"", p, m.value.kind)
			}
			switch Effect(m.value.text) {
			case Allow, Deny:
				s.Effect = Effect(m.value.text)
			case "":
				return s, fmt.Errorf("%s: empty, want \"Allow\" or \"Deny\"", p)
			default:
				return s, fmt.Errorf("%s: %q, want \"Allow\" or \"Deny\" (IAM spells them so, case-sensitive)", p, m.value.text)
			}
		case "Principal":
			s.Principal, err = parsePrincipals(m.value, p)
		case "NotPrincipal":
			s.NotPrincipal, err = parsePrincipals(m.value, p)
		case "Action":
			s.Action, err = parseValues(m.value, p, false)
		case "NotAction":
			s.NotAction, err = parseValues(m.value, p, false)
		case "Resource":
			s.Resource, err = parseValues(m.value, p, false)
		case "NotResource":
			s.NotResource, err = parseValues(m.value, p, false)
		case "Condition":
			s.Condition, err = parseCondition(m.value, p)
		default:
			return s, unknownElement(path, m.name, statementElements)
		}
		if err != nil {
			return s, err
		}
	}
	switch {
	case s.Effect == "":
		return s, fmt.Errorf("%s.Effect: missing, want \"Allow\" or \"Deny\"", path)
	case s.Action.List != nil && s.NotAction.List != nil:
		return s, fmt.Errorf("%s: has both Action and NotAction, want one of them", path)
	case s.Action.List == nil && s.NotAction.List == nil:
		return s, fmt.Errorf("%s.Action: missing (a statement needs Action or NotAction)", path)
	case s.Principal != nil && s.NotPrincipal != nil:
		return s, fmt.Errorf("%s: has both Principal and NotPrincipal, want one of them", path)
	case s.Resource.List != nil && s.NotResource.List != nil:
		return s, fmt.Errorf("%s: has both Resource and NotResource, want one of them", path)
	}
	return s, nil
}

// unknownElement names an element the grammar does not have and, when it is
// only misspelt in case, the element meant.
func unknownElement(path, name string, known []string) error {
	for _, k := range known {
		if strings.EqualFold(k, name) {
			return fmt.Errorf("%s: unknown element %q (element names are case-sensitive: did you mean %q?)", join(path, name), name, k)
		}
	}
	return fmt.Errorf("%s: unknown element %q (want one of %s)", join(path, name), name, strings.Join(known, ", "))
}

// parseValues reads a string or a list of strings. scalars allows JSON
// numbers and booleans, which IAM accepts as condition values.
func parseValues(n node, path string, scalars bool) (Values, error) {
	scalar := func(n node, path string) (string, error) {
		switch {
		case n.kind == kindString:
			return n.text, nil
		case scalars && (n.kind == kindNumber || n.kind == kindBool):
			return n.text, nil
		case scalars:
			return "", fmt.Errorf("%s: is %s, want a string, number or boolean", path, n.kind)
		default:
			return "", fmt.Errorf("%s: is %s, want a string", path, n.kind)
		}
	}
	if n.kind != kindArray {
		v, err := scalar(n, path)
		if err != nil {
			if n.kind == kindObject || n.kind == kindNull {
				return Values{}, fmt.Errorf("%s: is %s, want a string or a list of strings", path, n.kind)
			}
			return Values{}, err
		}
		return Values{List: []string{v}, Single: true}, nil
	}
	if len(n.items) == 0 {
		return Values{}, fmt.Errorf("%s: empty list", path)
	}
	vs := Values{List: make([]string, 0, len(n.items))}
	for i, item := range n.items {
		v, err := scalar(item, fmt.Sprintf("%s[%d]", path, i))
		if err != nil {
			return Values{}, err
		}
		vs.List = append(vs.List, v)
	}
	return vs, nil
}

// principalTypes are the keys of a Principal object.
var principalTypes = []string{"AWS", "Federated", "Service", "CanonicalUser"}

func parsePrincipals(n node, path string) (*Principals, error) {
	switch n.kind {
	case kindString:
		if n.text != "*" {
			return nil, fmt.Errorf("%s: %q, want \"*\" or an object such as {\"AWS\": \"arn:aws:iam::111122223333:root\"}", path, n.text)
		}
		return &Principals{Wildcard: true}, nil
	case kindObject:
		if len(n.members) == 0 {
			return nil, fmt.Errorf("%s: empty object", path)
		}
		ps := &Principals{}
		for _, m := range n.members {
			known := false
			for _, t := range principalTypes {
				known = known || t == m.name
			}
			if !known {
				return nil, unknownElement(path, m.name, principalTypes)
			}
			vs, err := parseValues(m.value, join(path, m.name), false)
			if err != nil {
				return nil, err
			}
			ps.ByType = append(ps.ByType, PrincipalValues{Type: m.name, Values: vs})
		}
		return ps, nil
	default:
		return nil, fmt.Errorf("%s: is %s, want \"*\" or an object", path, n.kind)
	}
}

func parseCondition(n node, path string) ([]Condition, error) {
	if n.kind != kindObject {
		return nil, fmt.Errorf("%s: is %s, want an object of condition operators", path, n.kind)
	}
	var cs []Condition
	for _, opm := range n.members {
		opPath := join(path, opm.name)
		op, err := parseOperator(opm.name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", opPath, err)
		}
		if opm.value.kind != kindObject {
			return nil, fmt.Errorf("%s: is %s, want an object of condition keys", opPath, opm.value.kind)
		}
		if len(opm.value.members) == 0 {
			return nil, fmt.Errorf("%s: no condition keys", opPath)
		}
		for _, km := range opm.value.members {
			keyPath := join(opPath, km.name)
			if km.name == "" {
				return nil, fmt.Errorf("%s: empty condition key", opPath)
			}
			vs, err := parseValues(km.value, keyPath, true)
			if err != nil {
				return nil, err
			}
			c := Condition{Operator: opm.name, Key: km.name, Values: vs, path: keyPath, op: op}
			if err := c.check(); err != nil {
				return nil, fmt.Errorf("%s: %w", keyPath, err)
			}
			cs = append(cs, c)
		}
	}
	return cs, nil
}

// Path is the JSON path of the statement, e.g. "Statement[1]" ("Statement"
// when the document has a single statement object).
func (s *Statement) Path() string { return s.path }

// Name is how messages refer to the statement: its path and its Sid.
func (s *Statement) Name() string {
	if s.Sid != "" {
		return fmt.Sprintf("%s (Sid %q)", s.path, s.Sid)
	}
	return s.path
}

// Path is the JSON path of the condition key, e.g.
// Statement[0].Condition.StringEquals.oidc.example.com:sub.
func (c *Condition) Path() string { return c.path }

// validAccount reports whether s is an AWS account id: exactly 12 digits.
// It is the one account check of the package.
func validAccount(s string) bool {
	if len(s) != 12 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
