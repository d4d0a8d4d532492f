package policy

import (
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// family groups condition operators that compare values the same way.
type family int

const (
	famString family = iota
	famNumeric
	famDate
	famBool
	famBinary
	famIP
	famARN
	famNull
)

// compare is the relation a numeric or date operator tests.
type compare int

const (
	cmpEq compare = iota
	cmpLt
	cmpLe
	cmpGt
	cmpGe
)

// setQualifier is the ForAnyValue:/ForAllValues: prefix of an operator.
type setQualifier int

const (
	setNone setQualifier = iota
	setAnyValue
	setAllValues
)

// operator is a parsed condition operator such as
// ForAllValues:StringNotLikeIfExists.
type operator struct {
	base       string // e.g. "StringNotLike"
	fam        family
	cmp        compare
	negated    bool // the Not forms: the condition holds when no value matches
	ignoreCase bool
	like       bool // * and ? are wildcards
	ifExists   bool
	set        setQualifier
}

// baseOperators are the operators of the IAM policy grammar without
// qualifier or IfExists suffix.
var baseOperators = map[string]operator{
	"StringEquals":              {fam: famString},
	"StringNotEquals":           {fam: famString, negated: true},
	"StringEqualsIgnoreCase":    {fam: famString, ignoreCase: true},
	"StringNotEqualsIgnoreCase": {fam: famString, ignoreCase: true, negated: true},
	"StringLike":                {fam: famString, like: true},
	"StringNotLike":             {fam: famString, like: true, negated: true},
	"NumericEquals":             {fam: famNumeric, cmp: cmpEq},
	"NumericNotEquals":          {fam: famNumeric, cmp: cmpEq, negated: true},
	"NumericLessThan":           {fam: famNumeric, cmp: cmpLt},
	"NumericLessThanEquals":     {fam: famNumeric, cmp: cmpLe},
	"NumericGreaterThan":        {fam: famNumeric, cmp: cmpGt},
	"NumericGreaterThanEquals":  {fam: famNumeric, cmp: cmpGe},
	"DateEquals":                {fam: famDate, cmp: cmpEq},
	"DateNotEquals":             {fam: famDate, cmp: cmpEq, negated: true},
	"DateLessThan":              {fam: famDate, cmp: cmpLt},
	"DateLessThanEquals":        {fam: famDate, cmp: cmpLe},
	"DateGreaterThan":           {fam: famDate, cmp: cmpGt},
	"DateGreaterThanEquals":     {fam: famDate, cmp: cmpGe},
	"Bool":                      {fam: famBool},
	"BinaryEquals":              {fam: famBinary},
	"IpAddress":                 {fam: famIP},
	"NotIpAddress":              {fam: famIP, negated: true},
	"ArnEquals":                 {fam: famARN, like: true},
	"ArnLike":                   {fam: famARN, like: true},
	"ArnNotEquals":              {fam: famARN, like: true, negated: true},
	"ArnNotLike":                {fam: famARN, like: true, negated: true},
	"Null":                      {fam: famNull},
}

// parseOperator splits "ForAnyValue:StringLikeIfExists" into its parts. An
// operator or qualifier IAM does not have is an error naming it.
func parseOperator(name string) (operator, error) {
	rest := name
	set := setNone
	if q, after, ok := strings.Cut(name, ":"); ok {
		switch q {
		case "ForAnyValue":
			set = setAnyValue
		case "ForAllValues":
			set = setAllValues
		default:
			return operator{}, fmt.Errorf("unknown condition qualifier %q (want ForAnyValue or ForAllValues)", q)
		}
		rest = after
	}
	ifExists := false
	if b, ok := strings.CutSuffix(rest, "IfExists"); ok && b != "" {
		rest, ifExists = b, true
	}
	op, ok := baseOperators[rest]
	if !ok {
		for known := range baseOperators {
			if strings.EqualFold(known, rest) {
				return operator{}, fmt.Errorf("unknown condition operator %q (operator names are case-sensitive: did you mean %q?)", name, known)
			}
		}
		return operator{}, fmt.Errorf("unknown condition operator %q", name)
	}
	if op.fam == famNull && (ifExists || set != setNone) {
		return operator{}, fmt.Errorf("condition operator %q: Null takes neither IfExists nor a ForAnyValue/ForAllValues qualifier", name)
	}
	op.base, op.ifExists, op.set = rest, ifExists, set
	return op, nil
}

// check validates the condition's values for its operator at parse time, so
// that a malformed number, date, address or boolean is an error rather than
// a condition that silently never matches.
func (c *Condition) check() error {
	if strings.TrimSpace(c.Key) != c.Key || strings.ContainsAny(c.Key, " \t\n") {
		return fmt.Errorf("condition key %q contains white space", c.Key)
	}
	if err := checkKey(c.Key); err != nil {
		return err
	}
	for _, v := range c.Values.List {
		var err error
		switch c.op.fam {
		case famNull, famBool:
			if !strings.EqualFold(v, "true") && !strings.EqualFold(v, "false") {
				err = fmt.Errorf("%s value %q is not true or false", c.op.base, v)
			}
		case famNumeric:
			_, err = parseNumber(v)
		case famDate:
			_, err = parseDate(v)
		case famIP:
			_, err = parseCIDR(v)
		case famBinary:
			if _, e := base64.StdEncoding.DecodeString(v); e != nil {
				err = fmt.Errorf("BinaryEquals value %q is not base64", v)
			}
		case famARN:
			if parts := splitARN(v); v != "*" && len(parts) != 6 && (len(parts) != 1 || !strings.HasPrefix(v, "${")) {
				err = fmt.Errorf("%s value %q is not an ARN (arn:partition:service:region:account:resource)", c.op.base, v)
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func parseNumber(s string) (float64, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	return f, nil
}

// parseDate reads the date forms IAM accepts: ISO 8601 (date, date-time
// with or without seconds, zone) and epoch seconds.
func parseDate(s string) (time.Time, error) {
	if secs, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(secs, 0).UTC(), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05Z0700", "2006-01-02T15:04Z07:00", "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a date (want ISO 8601 such as 2026-01-02T15:04:05Z, or epoch seconds)", s)
}

func parseCIDR(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR block", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// tokKind is a piece of a compiled pattern.
type tokKind uint8

const (
	tokLit  tokKind = iota // literal text
	tokStar                // * : any run of characters
	tokQ                   // ? : one character
	tokVar                 // ${key} or ${key, 'default'}
)

type tok struct {
	kind   tokKind
	text   string // literal text, or the variable's key (lower case)
	key    string // the variable's key as written
	def    string // the variable's default
	hasDef bool
}

// pattern is a compiled condition value, action or ARN component.
type pattern struct {
	raw  string
	toks []tok
	vars bool // has policy variables
}

// compilePattern splits s into literals, wildcards (when like) and policy
// variables (when vars, i.e. policy version 2012-10-17). ${*}, ${?} and ${$}
// are the literal characters, as IAM defines them.
func compilePattern(s string, like, vars bool) (pattern, error) {
	p := pattern{raw: s}
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			p.toks = append(p.toks, tok{kind: tokLit, text: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		switch {
		case like && s[i] == '*':
			flush()
			if n := len(p.toks); n == 0 || p.toks[n-1].kind != tokStar {
				p.toks = append(p.toks, tok{kind: tokStar})
			}
		case like && s[i] == '?':
			flush()
			p.toks = append(p.toks, tok{kind: tokQ})
		case vars && strings.HasPrefix(s[i:], "${"):
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return p, fmt.Errorf("unterminated policy variable in %q", s)
			}
			body := strings.TrimSpace(s[i+2 : i+end])
			i += end
			switch body {
			case "*", "?", "$":
				lit.WriteString(body)
				continue
			case "":
				return p, fmt.Errorf("empty policy variable in %q", s)
			}
			t := tok{kind: tokVar}
			key, def, hasDef := strings.Cut(body, ",")
			t.key = strings.TrimSpace(key)
			t.text = strings.ToLower(t.key)
			// A variable names a condition key: the same shape mistakes
			// (https://, a trailing slash, no tag name) make it never resolve.
			if err := checkKey(t.key); err != nil {
				return p, fmt.Errorf("policy variable ${%s} in %q: %w", body, s, err)
			}
			if hasDef {
				def = strings.TrimSpace(def)
				if len(def) < 2 || def[0] != '\'' || def[len(def)-1] != '\'' {
					return p, fmt.Errorf("policy variable default in %q must be quoted with ' '", s)
				}
				t.def, t.hasDef = def[1:len(def)-1], true
			}
			flush()
			p.toks = append(p.toks, t)
			p.vars = true
		default:
			lit.WriteByte(s[i])
		}
	}
	flush()
	return p, nil
}

// variables lists the policy variables in the condition's values.
func (c *Condition) variables() []tok {
	var out []tok
	add := func(p pattern) {
		if !p.vars {
			return
		}
		for _, t := range p.toks {
			if t.kind == tokVar {
				out = append(out, t)
			}
		}
	}
	for _, p := range c.cc.values {
		add(p)
	}
	for _, a := range c.cc.arns {
		if a.whole != nil {
			add(*a.whole)
		}
		for _, p := range a.parts {
			add(p)
		}
	}
	return out
}

// resolve substitutes policy variables from the request. ok is false when a
// variable names a key the request does not carry (and has no default) or
// a multi-valued key: such a value matches nothing, as in IAM. Evaluate
// refuses such a request first (checkRequestKeys) for the statements that
// apply to it, so that a negated operator never turns this into an allow.
func (p pattern) resolve(ctx requestKeys) ([]tok, bool) {
	if !p.vars {
		return p.toks, true
	}
	out := make([]tok, 0, len(p.toks))
	for _, t := range p.toks {
		if t.kind != tokVar {
			out = append(out, t)
			continue
		}
		vs, present := ctx.get(t.text)
		switch {
		case present && len(vs) == 1:
			out = append(out, tok{kind: tokLit, text: vs[0]})
		case !present && t.hasDef:
			out = append(out, tok{kind: tokLit, text: t.def})
		default:
			return nil, false
		}
	}
	return out, true
}

// matchToks reports whether s matches the pattern tokens. Backtracking to
// the last * is complete for glob patterns and linear in practice.
func matchToks(toks []tok, s string, fold bool) bool {
	ti, si := 0, 0
	starT, starS := -1, 0
	for si < len(s) || ti < len(toks) {
		if ti < len(toks) {
			t := toks[ti]
			switch t.kind {
			case tokLit:
				if n := len(t.text); len(s)-si >= n && (s[si:si+n] == t.text || fold && strings.EqualFold(s[si:si+n], t.text)) {
					ti++
					si += n
					continue
				}
			case tokQ:
				if si < len(s) {
					_, size := utf8.DecodeRuneInString(s[si:])
					si += size
					ti++
					continue
				}
			case tokStar:
				starT, starS = ti, si
				ti++
				continue
			}
		}
		if starT >= 0 && starS < len(s) {
			_, size := utf8.DecodeRuneInString(s[starS:])
			starS += size
			si, ti = starS, starT+1
			continue
		}
		return false
	}
	return true
}

// literal is the resolved text of a pattern without wildcards.
func literal(toks []tok) string {
	if len(toks) == 1 {
		return toks[0].text
	}
	var b strings.Builder
	for _, t := range toks {
		b.WriteString(t.text)
	}
	return b.String()
}

// compiled is a condition ready to evaluate.
type compiled struct {
	values []pattern
	// typed forms of the values, for the families that need them.
	nums     []float64
	dates    []time.Time
	prefixes []netip.Prefix
	arns     []arnPattern
	bools    []bool
}

func (c *Condition) compile(vars bool) error {
	vars = vars && (c.op.fam == famString || c.op.fam == famARN)
	cc := &compiled{}
	for _, v := range c.Values.List {
		switch c.op.fam {
		case famNumeric:
			f, err := parseNumber(v)
			if err != nil {
				return err
			}
			cc.nums = append(cc.nums, f)
		case famDate:
			d, err := parseDate(v)
			if err != nil {
				return err
			}
			cc.dates = append(cc.dates, d)
		case famIP:
			p, err := parseCIDR(v)
			if err != nil {
				return err
			}
			cc.prefixes = append(cc.prefixes, p)
		case famNull, famBool:
			cc.bools = append(cc.bools, strings.EqualFold(v, "true"))
		case famARN:
			a, err := compileARN(v, vars)
			if err != nil {
				return err
			}
			cc.arns = append(cc.arns, a)
		}
		if c.op.fam == famString || c.op.fam == famBinary {
			p, err := compilePattern(v, c.op.like, vars)
			if err != nil {
				return err
			}
			cc.values = append(cc.values, p)
		}
	}
	c.cc = cc
	return nil
}

// requestKeys is the request context with keys folded to lower case, as IAM
// compares condition keys case-insensitively.
type requestKeys map[string][]string

func newRequestKeys(m map[string][]string) requestKeys {
	ctx := make(requestKeys, len(m))
	for k, v := range m {
		lk := strings.ToLower(k)
		if old, ok := ctx[lk]; ok {
			// The same key in two cases: IAM sees one key with both values.
			ctx[lk] = append(append([]string(nil), old...), v...)
		} else {
			ctx[lk] = v // read only: no copy
		}
	}
	return ctx
}

func (ctx requestKeys) get(lowerKey string) ([]string, bool) {
	v, ok := ctx[lowerKey]
	return v, ok && len(v) > 0
}

// eval decides the condition for the request. Missing keys follow IAM: a
// positive operator is false, a negated one (StringNotEquals, ArnNotLike…)
// true; …IfExists is true; ForAllValues is true and ForAnyValue false; Null
// tests presence. Without a qualifier a multi-valued key matches a positive
// operator when any of its values matches, and a negated one when none does.
func (c *Condition) eval(ctx requestKeys) bool {
	vals, present := ctx.get(c.lowerKey)
	if c.op.fam == famNull {
		for _, wantNull := range c.cc.bools {
			if wantNull != present {
				return true
			}
		}
		return false
	}
	if !present {
		switch {
		case c.op.ifExists, c.op.set == setAllValues:
			return true
		case c.op.set == setAnyValue:
			return false
		default:
			return c.op.negated
		}
	}
	// test is the per-value test: does one request value satisfy the
	// operator (for a negated operator: match none of the policy values)?
	test := func(v string) bool { return c.matchAny(v, ctx) != c.op.negated }
	switch c.op.set {
	case setAllValues:
		for _, v := range vals {
			if !test(v) {
				return false
			}
		}
		return true
	case setAnyValue:
		for _, v := range vals {
			if test(v) {
				return true
			}
		}
		return false
	default:
		for _, v := range vals {
			if c.matchAny(v, ctx) {
				return !c.op.negated
			}
		}
		return c.op.negated
	}
}

// matchAny reports whether request value v matches at least one of the
// condition's values under the positive form of the operator.
func (c *Condition) matchAny(v string, ctx requestKeys) bool {
	cc := c.cc
	switch c.op.fam {
	case famString, famBinary:
		for _, p := range cc.values {
			toks, ok := p.resolve(ctx)
			if !ok {
				continue
			}
			switch {
			case c.op.like:
				if matchToks(toks, v, false) {
					return true
				}
			case c.op.ignoreCase:
				if strings.EqualFold(literal(toks), v) {
					return true
				}
			default:
				if literal(toks) == v {
					return true
				}
			}
		}
	case famBool:
		for _, b := range cc.bools {
			if strings.EqualFold(v, strconv.FormatBool(b)) {
				return true
			}
		}
	case famNumeric:
		f, err := parseNumber(v)
		if err != nil {
			return false
		}
		for _, n := range cc.nums {
			if compareOK(c.op.cmp, cmpFloat(f, n)) {
				return true
			}
		}
	case famDate:
		d, err := parseDate(v)
		if err != nil {
			return false
		}
		for _, n := range cc.dates {
			if compareOK(c.op.cmp, d.Compare(n)) {
				return true
			}
		}
	case famIP:
		a, err := netip.ParseAddr(v)
		if err != nil {
			return false
		}
		for _, p := range cc.prefixes {
			if p.Contains(a.Unmap()) || p.Contains(a) {
				return true
			}
		}
	case famARN:
		parts := strings.SplitN(v, ":", 6)
		for _, a := range cc.arns {
			if a.match(v, parts, ctx) {
				return true
			}
		}
	}
	return false
}

// arnPattern is an Arn* condition value: six component patterns, or for a
// value made of one policy variable (${aws:SourceArn}) the whole value.
type arnPattern struct {
	parts [6]pattern
	whole *pattern
}

func compileARN(v string, vars bool) (arnPattern, error) {
	var a arnPattern
	parts := splitARN(v)
	if v == "*" {
		parts = []string{"*", "*", "*", "*", "*", "*"}
	}
	if len(parts) != 6 {
		p, err := compilePattern(v, true, vars)
		if err != nil {
			return a, err
		}
		a.whole = &p
		return a, nil
	}
	for i, part := range parts {
		p, err := compilePattern(part, true, vars)
		if err != nil {
			return a, err
		}
		a.parts[i] = p
	}
	return a, nil
}

// match compares request ARN v (split in parts) component by component.
func (a arnPattern) match(v string, parts []string, ctx requestKeys) bool {
	if a.whole != nil {
		toks, ok := a.whole.resolve(ctx)
		return ok && matchToks(toks, v, false)
	}
	if len(parts) != 6 {
		return false
	}
	for i := range a.parts {
		toks, ok := a.parts[i].resolve(ctx)
		if !ok || !matchToks(toks, parts[i], false) {
			return false
		}
	}
	return true
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func compareOK(c compare, r int) bool {
	switch c {
	case cmpLt:
		return r < 0
	case cmpLe:
		return r <= 0
	case cmpGt:
		return r > 0
	case cmpGe:
		return r >= 0
	}
	return r == 0
}

// splitARN splits an ARN into its six components (the last one keeps its
// colons), ignoring the colons inside policy variables such as
// ${aws:PrincipalAccount}. A value made of variables only, such as
// ${aws:SourceArn}, stays whole.
func splitARN(v string) []string {
	if strings.HasPrefix(v, "${") && strings.HasSuffix(v, "}") && !strings.Contains(v[2:], "${") {
		return []string{v}
	}
	parts := make([]string, 0, 6)
	depth, start := false, 0
	for i := 0; i < len(v) && len(parts) < 5; i++ {
		switch {
		case strings.HasPrefix(v[i:], "${"):
			depth = true
		case v[i] == '}':
			depth = false
		case v[i] == ':' && !depth:
			parts = append(parts, v[start:i])
			start = i + 1
		}
	}
	return append(parts, v[start:])
}

// keyFamily is who sets a condition key in a request.
type keyFamily int

const (
	keyOther    keyFamily = iota // not a key STS sets: another service's, or no prefix
	keyGlobal                    // aws:
	keySTS                       // sts:
	keySAML                      // saml:
	keyProvider                  // <web identity provider>:<claim>
)

// keyFamilyOf classifies a key by its prefix. A prefix with a dot or a
// slash is a web identity provider (oidc.example.com/c1,
// accounts.google.com); service prefixes have neither.
func keyFamilyOf(key string) keyFamily {
	prefix, _, ok := strings.Cut(strings.ToLower(key), ":")
	switch {
	case !ok:
		return keyOther
	case prefix == "aws":
		return keyGlobal
	case prefix == "sts":
		return keySTS
	case prefix == "saml":
		return keySAML
	case strings.ContainsAny(prefix, "./") || prefix == "https" || prefix == "http":
		return keyProvider
	}
	return keyOther
}

// globalKeys are IAM's global condition keys ("AWS global condition context
// keys"), lower case, without the keys that end in a tag key (keyPrefixes).
var globalKeys = lowerSet(
	"aws:AssumedRoot", "aws:CalledVia", "aws:CalledViaAWSMCP", "aws:CalledViaFirst", "aws:CalledViaLast",
	"aws:ChatbotSourceArn", "aws:CurrentTime", "aws:EpochTime", "aws:Ec2InstanceSourcePrivateIPv4",
	"aws:Ec2InstanceSourceVpc", "aws:FederatedProvider", "aws:IsMcpServiceAction",
	"aws:MultiFactorAuthAge", "aws:MultiFactorAuthPresent",
	"aws:PrincipalAccount", "aws:PrincipalArn", "aws:PrincipalIsAWSService", "aws:PrincipalOrgID",
	"aws:PrincipalOrgPaths", "aws:PrincipalServiceName", "aws:PrincipalServiceNamesList", "aws:PrincipalType",
	"aws:Referer", "aws:RequestedRegion", "aws:ResourceAccount", "aws:ResourceOrgID", "aws:ResourceOrgPaths",
	"aws:SecureTransport", "aws:SignInSessionArn", "aws:SourceAccount", "aws:SourceArn", "aws:SourceIdentity",
	"aws:SourceIp", "aws:SourceOrgID", "aws:SourceOrgPaths", "aws:SourceVpc", "aws:SourceVpcArn", "aws:SourceVpce",
	"aws:TagKeys", "aws:TokenIssueTime", "aws:UserAgent", "aws:userid", "aws:username",
	"aws:ViaAWSMCPService", "aws:ViaAWSService", "aws:VpceAccount", "aws:VpceOrgID", "aws:VpceOrgPaths",
	"aws:VpcSourceIp",
)

// keyPrefixes are the documented keys that end in a name of the caller's
// choosing (a tag key, a context key), lower case, with what that name is
// for the error on an empty one.
var keyPrefixes = []struct{ prefix, names string }{
	{"aws:requesttag/", "tag"},
	{"aws:resourcetag/", "tag"},
	{"aws:principaltag/", "tag"},
	{"iam:resourcetag/", "tag"},
	{"sts:requestcontext/", "context key"},
}

// iamResourceTagPrefix is the key AssumeRole* sets from the role's own tags.
const iamResourceTagPrefix = "iam:resourcetag/"

// stsKeys are the keys of AWS STS ("Available keys for AWS STS"), without
// sts:RequestContext/<key> (keyPrefixes).
var stsKeys = lowerSet(
	"sts:AWSServiceName", "sts:DurationSeconds", "sts:ExternalId", "sts:IdentityTokenAudience",
	"sts:RequestContext", "sts:RequestContextProviders", "sts:RoleAuthorizedByIdp", "sts:RoleSessionName",
	"sts:SetContext", "sts:SigningAlgorithm", "sts:SourceIdentity", "sts:TaskPolicyArn", "sts:TransitiveTagKeys",
)

// samlKeys are the keys of SAML federation ("Available keys for SAML-based
// AWS STS federation").
var samlKeys = lowerSet(
	"saml:aud", "saml:cn", "saml:commonName", "saml:doc", "saml:eduorghomepageuri",
	"saml:eduorgidentityauthnpolicyuri", "saml:eduorglegalname", "saml:eduorgsuperioruri",
	"saml:eduorgwhitepagesuri", "saml:edupersonaffiliation",
	"saml:edupersonassurance", "saml:edupersonentitlement", "saml:edupersonnickname",
	"saml:edupersonorgdn", "saml:edupersonorgunitdn", "saml:edupersonprimaryaffiliation",
	"saml:edupersonprimaryorgunitdn", "saml:edupersonprincipalname", "saml:edupersonscopedaffiliation",
	"saml:edupersontargetedid", "saml:givenName", "saml:iss", "saml:mail", "saml:name",
	"saml:namequalifier", "saml:organizationStatus", "saml:primaryGroupSID", "saml:sub",
	"saml:sub_type", "saml:surname", "saml:uid", "saml:x500UniqueIdentifier",
)

// webIdentityClaims are the claims IAM turns into <provider>:<claim> keys
// for every OIDC provider ("Available keys for AWS OIDC federation").
var webIdentityClaims = []string{"amr", "aud", "azp", "email", "oaud", "sub"}

// oauthProviderClaims are the keys of the web identity providers that are
// not OIDC providers: only these claims exist for them.
var oauthProviderClaims = map[string][]string{
	"graph.facebook.com": {"app_id", "id"},
	"www.amazon.com":     {"app_id", "user_id"},
}

// githubClaims are the GitHub Actions claims STS sets as keys.
var githubClaims = []string{"actor", "actor_id", "enterprise_id", "environment", "job_workflow_ref", "ref", "repository", "repository_id", "repository_owner_id", "workflow"}

// buildkiteClaims are the Buildkite agent claims STS sets as keys.
var buildkiteClaims = []string{"build_branch", "cluster_id", "cluster_name", "organization_id", "organization_slug", "pipeline_id", "pipeline_slug"}

// providerClaims are the provider-specific claims STS sets as keys, in
// addition to webIdentityClaims, for the providers whose issuer (lower
// case, without https://) matches. The issuers follow IAM's key patterns:
// token.actions.githubusercontent.com[/<path>], token.actions.<domain>.ghe.com,
// agent[.<domain>].buildkite.{com,dev,site}, oidc.circleci.com/org/<id>,
// idcs-<id>.identity.oraclecloud.com.
var providerClaims = []struct {
	issuer func(string) bool
	claims []string
}{
	{func(p string) bool {
		return p == "token.actions.githubusercontent.com" || strings.HasPrefix(p, "token.actions.githubusercontent.com/") ||
			strings.HasPrefix(p, "github.com/enterprises/") ||
			strings.HasPrefix(p, "token.actions.") && strings.HasSuffix(p, ".ghe.com") && !strings.Contains(p, "/")
	}, githubClaims},
	{func(p string) bool { return p == "gitlab.com" }, []string{
		"namespace_id", "pipeline_source", "project_id", "ref_protected", "runner_environment",
		"user_access_level", "user_email", "user_id", "user_login",
	}},
	{func(p string) bool {
		return p == "agent.buildkite.com" || strings.HasPrefix(p, "agent.") && !strings.Contains(p, "/") &&
			(strings.HasSuffix(p, ".buildkite.dev") || strings.HasSuffix(p, ".buildkite.site"))
	}, buildkiteClaims},
	{func(p string) bool { return strings.HasPrefix(p, "oidc.circleci.com/org/") }, []string{"oidc.circleci.com/project-id"}},
	{func(p string) bool { return p == "accounts.google.com" }, []string{"google/organization_number"}},
	{func(p string) bool {
		return strings.HasPrefix(p, "idcs-") && strings.HasSuffix(p, ".identity.oraclecloud.com") && !strings.Contains(p, "/")
	}, []string{"rpst_id"}},
}

// claimsOf lists the claims IAM sets as keys for provider (any case).
func claimsOf(provider string) []string {
	lower := strings.ToLower(provider)
	if c, ok := oauthProviderClaims[lower]; ok {
		return c
	}
	claims := webIdentityClaims
	for _, pc := range providerClaims {
		if pc.issuer(lower) {
			claims = append(slices.Clip(claims), pc.claims...)
		}
	}
	return claims
}

// lowerSet maps each key in lower case (keys are case-insensitive) to its
// documented spelling.
func lowerSet(keys ...string) map[string]string {
	m := make(map[string]string, len(keys))
	for _, k := range keys {
		m[strings.ToLower(k)] = k
	}
	return m
}

// checkKey refuses a condition key (or a policy variable's key) whose shape
// is wrong, whatever the key: empty, an empty prefix or name around ':', a
// tag or context key prefix with no name after it, or a provider written
// with https:// or a trailing slash (IAM's keys never have them, so such a
// key is always absent, which makes a negated operator true: a silent
// allow, or a Deny that never applies). A well-formed key that podiam does
// not know parses: Evaluate refuses it when the request lacks it
// (unknownKeyError).
func checkKey(key string) error {
	if key == "" {
		return errors.New("empty condition key")
	}
	if strings.ContainsAny(key, " \t\r\n") {
		return fmt.Errorf("condition key %q contains white space", key)
	}
	lower := strings.ToLower(key)
	for _, p := range keyPrefixes {
		if lower == p.prefix {
			return fmt.Errorf("condition key %q names no %s: write %s<%s>", key, p.names, key, p.names)
		}
	}
	if prefix, _, ok := strings.Cut(key, ":"); ok && prefix == "" {
		return fmt.Errorf("condition key %q has nothing before ':' (keys are written prefix:name, e.g. aws:SourceAccount)", key)
	}
	if strings.HasSuffix(key, ":") {
		return fmt.Errorf("condition key %q has nothing after ':' (keys are written prefix:name, e.g. aws:SourceAccount)", key)
	}
	if keyFamilyOf(key) != keyProvider {
		return nil
	}
	provider, claim, _ := cutLast(key, ':')
	fixed := strings.TrimRight(trimScheme(provider), "/")
	switch {
	case fixed == provider:
		return nil
	case fixed == strings.TrimRight(provider, "/"):
		return fmt.Errorf("condition key %q: the provider has a trailing slash, which IAM's keys never have: write %q", key, fixed+":"+claim)
	}
	return fmt.Errorf("condition key %q: IAM names a provider's keys after the issuer without https:// and without a trailing slash: write %q", key, fixed+":"+claim)
}

// knownKey reports whether key is one podiam knows IAM documents for the
// requests STS evaluates against a trust policy.
func knownKey(key string) bool {
	lower := strings.ToLower(key)
	for _, p := range keyPrefixes {
		if strings.HasPrefix(lower, p.prefix) {
			return true
		}
	}
	switch keyFamilyOf(key) {
	case keyGlobal:
		_, ok := globalKeys[lower]
		return ok
	case keySTS:
		_, ok := stsKeys[lower]
		return ok
	case keySAML:
		_, ok := samlKeys[lower]
		return ok
	case keyProvider:
		provider, claim, _ := cutLast(lower, ':')
		return slices.Contains(claimsOf(provider), claim)
	}
	return false
}

// unknownKeyError is why a key the request does not carry cannot be
// decided ("" when it can: a key podiam knows follows IAM's rules for a
// missing key). Such a key would decide its condition by its absence: a
// negated operator true, a silent allow or a Deny that never applies.
func unknownKeyError(key string) string {
	const absent = "and the request does not carry it: its absence would decide the condition without a word"
	lower := strings.ToLower(key)
	if strings.HasPrefix(lower, iamResourceTagPrefix) {
		return fmt.Sprintf("condition key %q is a tag of the role itself (IAM sets it for AssumeRole* from the role's tags); podiam's requests do not carry role tags, %s (add it to the request, or test the tag in the role's permissions instead)", key, absent)
	}
	if knownKey(key) {
		return ""
	}
	switch keyFamilyOf(key) {
	case keyGlobal:
		return fmt.Sprintf("condition key %q is not a key podiam knows (not one of IAM's global condition keys; tag keys are aws:RequestTag/<key>, aws:ResourceTag/<key>, aws:PrincipalTag/<key>), %s", key, absent)
	case keySTS:
		return fmt.Sprintf("condition key %q is not a key podiam knows (keys of AWS STS: %s, sts:RequestContext/<key>), %s", key, strings.Join(sortedSet(stsKeys), ", "), absent)
	case keySAML:
		return fmt.Sprintf("condition key %q is not a key podiam knows (SAML federation keys such as saml:aud, saml:sub, saml:sub_type, saml:iss, saml:namequalifier), %s", key, absent)
	case keyProvider:
		provider, claim, _ := cutLast(key, ':')
		return fmt.Sprintf("condition key %q is not a key podiam knows: it knows no claim %q of this web identity provider (IAM sets %s), %s", key, claim, quoteList(prefixAll(provider+":", claimsOf(provider))), absent)
	}
	return fmt.Sprintf("condition key %q is not a key STS sets for a request (a trust policy tests aws:, sts:, saml: and web identity provider keys such as oidc.example.com/id/X:sub), %s", key, absent)
}

func sortedSet(m map[string]string) []string {
	return slices.Sorted(maps.Values(m))
}

func prefixAll(prefix string, vs []string) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = prefix + v
	}
	return out
}
