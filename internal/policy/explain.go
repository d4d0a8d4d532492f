package policy

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Explain is the decision in words: for an allow, the statement that
// allowed and its conditions; for an explicit deny, the statement that
// denied, each of its conditions with the values in the statement and in the
// request, and the change that would lift the Deny; for an implicit deny,
// every Allow statement with the first part that did not match, the value
// expected, the value the request carries and the change that would fix it.
// Warnings about likely mistakes follow every decision.
func (d Decision) Explain() string {
	var b strings.Builder
	who := d.request.Principal.Type + " " + d.request.Principal.ID
	switch d.Reason {
	case "":
		return "no decision\n"
	case ReasonAllowed:
		fmt.Fprintf(&b, "allowed: %s allows %s for %s\n", d.Statement.Name(), d.request.Action, who)
		writeMatched(&b, d.Matched)
	case ReasonExplicitDeny:
		fmt.Fprintf(&b, "denied: %s explicitly denies %s for %s; an explicit Deny overrides every Allow\n", d.Statement.Name(), d.request.Action, who)
		writeMatched(&b, d.Matched)
		if d.Fix != "" {
			fmt.Fprintf(&b, "  fix: %s\n", d.Fix)
		}
	default:
		fmt.Fprintf(&b, "denied: no statement allows %s for %s (implicit deny)\n", d.request.Action, who)
		if len(d.Mismatches) == 0 {
			b.WriteString("  the policy has no Allow statement\n")
		}
		for _, m := range d.Mismatches {
			m.write(&b)
		}
	}
	for _, w := range d.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", w)
	}
	return b.String()
}

// writeMatched lists the conditions that held, with both sides compared.
func writeMatched(b *strings.Builder, ms []Match) {
	for _, m := range ms {
		c := m.Condition
		fmt.Fprintf(b, "  condition %s %q matched\n    statement: %s\n", c.Operator, c.Key, quoteList(m.Expected))
		if m.KeyAbsent {
			fmt.Fprintf(b, "    request:   no key %q\n", c.Key)
		} else {
			fmt.Fprintf(b, "    request:   %s\n", quoteList(m.Actual))
		}
	}
}

// denyFix proposes how to lift an explicit deny: the Deny applies while
// every one of its conditions holds, so narrowing one of them is enough.
func (d Decision) denyFix() string {
	s := d.Statement
	if len(d.Matched) == 0 {
		return fmt.Sprintf("%s has no condition: it denies %s to every caller its Principal names; narrow its Principal or Action, or remove the statement", s.Name(), d.request.Action)
	}
	var fixes []string
	for _, m := range d.Matched {
		c := m.Condition
		switch {
		case c.op.fam == famNull:
			fixes = append(fixes, fmt.Sprintf("change Null %q to %q", c.Key, strconv.FormatBool(!m.KeyAbsent)))
		case m.KeyAbsent && c.op.ifExists:
			fixes = append(fixes, fmt.Sprintf("drop IfExists from %s %q: the request has no such key, and …IfExists holds for a missing key", c.Operator, c.Key))
		case m.KeyAbsent && c.op.set == setAllValues:
			fixes = append(fixes, fmt.Sprintf("use ForAnyValue in %s %q: the request has no such key, and ForAllValues holds for a missing key", c.Operator, c.Key))
		case m.KeyAbsent:
			fixes = append(fixes, fmt.Sprintf("send %q with one of %s: the request has no such key, and %s holds for a missing key", c.Key, quoteList(m.Expected), c.Operator))
		case c.op.negated:
			fixes = append(fixes, fmt.Sprintf("add %s to %s %q", quoteList(m.Actual), c.Operator, c.Key))
		default:
			fixes = append(fixes, fmt.Sprintf("narrow %s %q so that it no longer matches %s", c.Operator, c.Key, quoteList(m.Actual)))
		}
	}
	return fmt.Sprintf("the Deny applies while all of its conditions hold; %s, or remove %s if it should not deny this request", strings.Join(fixes, "; or "), s.Name())
}

func (m *Mismatch) write(b *strings.Builder) {
	s := m.Statement.Name()
	switch m.Part {
	case PartPrincipal:
		fmt.Fprintf(b, "%s: principal does not match\n  expected: %s\n  request:  %s\n", s, quoteList(m.Expected), quoteList(m.Actual))
	case PartAction:
		elem := "Action"
		if m.Statement.NotAction.List != nil {
			elem = "NotAction"
		}
		fmt.Fprintf(b, "%s: action does not match %s\n  expected: %s\n  request:  %s\n", s, elem, quoteList(m.Expected), quoteList(m.Actual))
	case PartCondition:
		c := m.Condition
		fmt.Fprintf(b, "%s: condition %s %q does not match\n  expected: %s\n", s, c.Operator, c.Key, quoteList(m.Expected))
		if m.KeyAbsent {
			fmt.Fprintf(b, "  request:  no key %q\n", c.Key)
		} else {
			fmt.Fprintf(b, "  request:  %s\n", quoteList(m.Actual))
		}
	}
	if m.Fix != "" {
		fmt.Fprintf(b, "  fix: %s\n", m.Fix)
	}
}

func quoteList(vs []string) string {
	if len(vs) == 0 {
		return "(none)"
	}
	q := make([]string, len(vs))
	for i, v := range vs {
		q[i] = fmt.Sprintf("%q", v)
	}
	return strings.Join(q, ", ")
}

// fix proposes the smallest change to the statement that makes it apply.
func (m *Mismatch) fix(r Request, ctx requestKeys) string {
	s := m.Statement
	switch m.Part {
	case PartPrincipal:
		var same []string
		for _, pv := range s.Principal.ByType {
			if pv.Type == r.Principal.Type {
				same = append(same, pv.Values.List...)
			}
		}
		switch len(same) {
		case 0:
			return fmt.Sprintf("add %q: %q to Principal", r.Principal.Type, r.Principal.ID)
		case 1:
			return fmt.Sprintf("change Principal.%s %q to %q", r.Principal.Type, same[0], r.Principal.ID)
		}
		return fmt.Sprintf("add %q to Principal.%s", r.Principal.ID, r.Principal.Type)
	case PartAction:
		if s.NotAction.List != nil {
			return fmt.Sprintf("remove the entry matching %q from NotAction", r.Action)
		}
		return fmt.Sprintf("add %q to Action", r.Action)
	case PartCondition:
		return m.conditionFix(r, ctx)
	}
	return ""
}

func (m *Mismatch) conditionFix(r Request, ctx requestKeys) string {
	c := m.Condition
	op := c.op
	if op.fam == famNull {
		if m.KeyAbsent {
			return fmt.Sprintf("the request has no key %q, which Null %q requires; change it to %q or add the key to the request", c.Key, "false", "true")
		}
		return fmt.Sprintf("the request carries %q, which Null %q forbids; change Null %q to %q", c.Key, "true", c.Key, "false")
	}
	if m.KeyAbsent {
		msg := fmt.Sprintf("the request has no key %q", c.Key)
		if alt := similarKey(c.Key, ctx); alt != "" {
			return msg + fmt.Sprintf("; change the key %q to %q", c.Key, alt)
		}
		if r.Action == ActionAssumeRoleWithWebIdentity && r.Principal.Type == "Federated" {
			hp := providerHostPath(r.Principal.ID)
			return msg + fmt.Sprintf("; IRSA requests carry %q and %q (the issuer without https://)", hp+":sub", hp+":aud")
		}
		return msg + "; it carries " + quoteList(slices.Sorted(maps.Keys(r.Context)))
	}
	if op.negated {
		var hit []string
		for _, v := range m.Actual {
			if c.matchAny(v, ctx) {
				hit = append(hit, v)
			}
		}
		return fmt.Sprintf("the request's %s excluded by %s; remove %s from %s %q", valuesPhrase(hit, "is", "are"), c.Operator, quoteList(hit), c.Operator, c.Key)
	}
	// The values the request carries that fail the condition.
	var bad []string
	for _, v := range m.Actual {
		if !c.matchAny(v, ctx) {
			bad = append(bad, v)
		}
	}
	if op.fam == famString && !op.like && !op.ignoreCase {
		for _, e := range c.cc.values {
			like, err := compilePattern(e.raw, true, false)
			if err == nil && strings.ContainsAny(e.raw, "*?") && slices.ContainsFunc(bad, func(v string) bool { return matchToks(like.toks, v, false) }) {
				return fmt.Sprintf("%q contains a wildcard, which only StringLike understands; change %s to %s", e.raw, c.Operator, strings.Replace(c.Operator, "StringEquals", "StringLike", 1))
			}
		}
	}
	if op.fam != famString && op.fam != famARN {
		return fmt.Sprintf("the request's %s not satisfy %s %q %s; change the condition or the request", valuesPhrase(bad, "does", "do"), c.Operator, c.Key, quoteList(c.Values.List))
	}
	if len(bad) == 1 {
		if len(c.Values.List) == 1 && op.set != setAllValues {
			return fmt.Sprintf("change %s %q to %q", c.Operator, c.Key, bad[0])
		}
		return fmt.Sprintf("add %q to %s %q", bad[0], c.Operator, c.Key)
	}
	return fmt.Sprintf("add %s to %s %q", quoteList(bad), c.Operator, c.Key)
}

// valuesPhrase is `value "a" <one>` or `values "a", "b" <many>`.
func valuesPhrase(vs []string, one, many string) string {
	if len(vs) == 1 {
		return fmt.Sprintf("value %q %s", vs[0], one)
	}
	return "values " + quoteList(vs) + " " + many
}

// similarKey finds a request key that differs from key only in the
// provider part (scheme, trailing slash, another host): same claim after
// the last ':'.
func similarKey(key string, ctx requestKeys) string {
	i := strings.LastIndexByte(key, ':')
	if i < 0 {
		return ""
	}
	claim := strings.ToLower(key[i:])
	var found []string
	for k := range ctx {
		if strings.HasSuffix(k, claim) && !strings.HasPrefix(k, "aws:") {
			found = append(found, k)
		}
	}
	if len(found) != 1 {
		return ""
	}
	return found[0]
}

// providerHostPath is the host+path of an oidc-provider ARN, or "".
func providerHostPath(arn string) string {
	_, hp, ok := strings.Cut(arn, ":oidc-provider/")
	if !ok {
		return ""
	}
	return hp
}

// warnings looks for the usual trust-policy mistakes that explain a denial.
func (p *Policy) warnings(r Request, ctx requestKeys) []string {
	var ws []string
	add := func(format string, args ...any) { ws = append(ws, fmt.Sprintf(format, args...)) }
	hp := ""
	if r.Principal.Type == "Federated" {
		hp = providerHostPath(r.Principal.ID)
	}
	for i := range p.Statements {
		s := &p.Statements[i]
		if s.Principal != nil {
			for _, pv := range s.Principal.ByType {
				for _, v := range pv.Values.List {
					if pv.Type == "Federated" && (strings.Contains(v, "https://") || strings.HasSuffix(v, "/")) {
						add("%s.Principal.Federated %q: a provider ARN names the issuer without https:// and without a trailing slash", s.path, v)
					}
				}
			}
		}
		for j := range s.Condition {
			c := &s.Condition[j]
			key := c.Key
			// An unknown key the request lacks is an Evaluate error
			// (checkRequestKeys); one it carries is compared as given.
			if _, present := ctx.get(c.lowerKey); present && !knownKey(key) {
				add("%s: %q is not a key podiam knows (not one IAM documents for STS requests); it was compared with the value the request carries, which STS itself may never send", c.path, key)
			}
			for _, v := range c.variables() {
				if _, present := ctx.get(v.text); present && !knownKey(v.key) {
					add("%s: policy variable ${%s} names a key podiam does not know (not one IAM documents for STS requests); it was replaced with the value the request carries, which STS itself may never send", c.path, v.key)
				}
			}
			// https:// and trailing slashes in keys are Parse errors (checkKey).
			prov, _, _ := cutLast(key, ':')
			if keyFamilyOf(key) == keyProvider && hp != "" && !strings.EqualFold(prov, hp) && s.Principal.matches(r.Principal) {
				// Only for statements that apply to this caller: a policy
				// may trust several clusters, one statement each. In a
				// Deny statement such a key is absent from the request,
				// which turns the Deny off.
				add("%s: key %q is for provider %q, but the request comes from %q", c.path, key, prov, hp)
			}
			if hp != "" && strings.EqualFold(key, hp+":aud") {
				got, _ := ctx.get(strings.ToLower(key))
				want := c.Values.List
				switch {
				case slices.Contains(want, "sts.amazonaws.com") && slices.Contains(got, "amazonaws.com"):
					add("%s: expects audience \"sts.amazonaws.com\" (eksctl, EKS) but the token has \"amazonaws.com\" (kOps's default); make them agree", c.path)
				case slices.Contains(want, "amazonaws.com") && slices.Contains(got, "sts.amazonaws.com"):
					add("%s: expects audience \"amazonaws.com\" (kOps's default) but the token has \"sts.amazonaws.com\" (eksctl, EKS); make them agree", c.path)
				}
			}
			if p.Version != Version2012 && slices.ContainsFunc(c.Values.List, func(v string) bool { return strings.Contains(v, "${") }) {
				add("%s: policy variables are substituted only with \"Version\": %q; here \"${…}\" is literal text", c.path, Version2012)
			}
		}
	}
	return ws
}

func cutLast(s string, sep byte) (before, after string, ok bool) {
	i := strings.LastIndexByte(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+1:], true
}

func trimScheme(s string) string {
	s = strings.TrimPrefix(s, "https://")
	return strings.TrimPrefix(s, "http://")
}
