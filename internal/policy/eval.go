package policy

import (
	"errors"
	"fmt"
	"strings"
)

// Decision is the result of evaluating a request against a policy.
type Decision struct {
	// Allowed is true when an Allow statement matched and no Deny did.
	Allowed bool
	// Reason is how the decision was reached.
	Reason Reason
	// Statement is the statement that allowed or explicitly denied; nil for
	// an implicit deny.
	Statement *Statement
	// Mismatches lists, for an implicit deny, every Allow statement and the
	// first part of it that did not match the request.
	Mismatches []Mismatch
	// Matched lists, for an allow or an explicit deny, the conditions of
	// Statement that held, with the values they compared.
	Matched []Match
	// Fix is, for an explicit deny, the change to the policy that would
	// stop the Deny statement from applying.
	Fix string
	// Warnings are likely mistakes found in the policy for this request
	// (a condition key for another provider, an audience kOps does not
	// use). They are computed for every decision: a mistake in a Deny
	// statement lets a request through.
	Warnings []string

	request Request
}

// Reason says how a Decision was reached.
type Reason string

// The three outcomes of IAM's evaluation logic.
const (
	ReasonAllowed      Reason = "allowed"
	ReasonExplicitDeny Reason = "explicit deny"
	ReasonImplicitDeny Reason = "implicit deny"
)

// Part names the part of a statement that did not match.
type Part string

// Parts of a statement.
const (
	PartPrincipal Part = "Principal"
	PartAction    Part = "Action"
	PartCondition Part = "Condition"
)

// Mismatch is why one Allow statement did not apply.
type Mismatch struct {
	Statement *Statement
	Part      Part
	// Expected are the values the statement names (principals, actions or
	// condition values).
	Expected []string
	// Actual are the values the request carries; empty when the key is absent.
	Actual []string
	// Condition is the failing condition when Part is PartCondition.
	Condition *Condition
	// KeyAbsent is true when the failing condition's key is not in the request.
	KeyAbsent bool
	// Fix is a concrete change to the policy (or the request) that would
	// make the statement apply.
	Fix string
}

// Match is a condition that held for the request.
type Match struct {
	Condition *Condition
	// Expected are the condition's values in the statement.
	Expected []string
	// Actual are the values the request carries; empty when the key is absent.
	Actual []string
	// KeyAbsent is true when the key is not in the request (the condition
	// held because of that: a negated operator, …IfExists, ForAllValues, Null).
	KeyAbsent bool
}

// Evaluate decides r the way IAM evaluates a role's trust policy: an
// explicit Deny wins, else an Allow whose principal, action and conditions
// all match allows, else the request is implicitly denied. It returns an
// error, never a decision, for what it cannot evaluate: a policy that IAM
// would refuse as a trust policy (no Principal, a NotPrincipal, a Resource),
// a request without action or with an unknown principal type, or, in a
// statement that applies to the request, a condition key podiam does not
// know or a policy variable without default that the request does not
// carry (its absence would decide the condition silently).
func (p *Policy) Evaluate(r Request) (Decision, error) {
	if !p.compiled {
		// A Policy built by hand rather than by Parse: compile a copy, so
		// that Evaluate never writes to a shared policy.
		q := *p
		q.Statements = append([]Statement(nil), p.Statements...)
		for i := range q.Statements {
			q.Statements[i].Condition = append([]Condition(nil), p.Statements[i].Condition...)
		}
		if err := q.compile(); err != nil {
			return Decision{}, err
		}
		p = &q
	}
	if p.trustErr != nil {
		return Decision{}, p.trustErr
	}
	if r.Action == "" {
		return Decision{}, errors.New("request has no action")
	}
	if !strings.Contains(r.Action, ":") {
		return Decision{}, fmt.Errorf("request action %q has no service prefix (want e.g. %q)", r.Action, ActionAssumeRoleWithWebIdentity)
	}
	switch r.Principal.Type {
	case "AWS", "Federated", "Service", "CanonicalUser":
	default:
		return Decision{}, fmt.Errorf("request principal type %q: want AWS, Federated or Service", r.Principal.Type)
	}
	ctx := newRequestKeys(r.Context)
	action := strings.ToLower(r.Action)
	if err := p.checkRequestKeys(r.Principal, action, ctx); err != nil {
		return Decision{}, err
	}

	d := Decision{Reason: ReasonImplicitDeny, request: r}
	var allow *Statement
	for i := range p.Statements {
		s := &p.Statements[i]
		m := s.match(r.Principal, action, ctx)
		switch {
		case m == nil && s.Effect == Deny:
			// An explicit deny wins over every allow.
			d = Decision{Reason: ReasonExplicitDeny, Statement: s, Matched: s.matched(ctx), request: r}
			d.Fix = d.denyFix()
			d.Warnings = p.warnings(r, ctx)
			return d, nil
		case m == nil && allow == nil:
			allow = s
		case m != nil && s.Effect == Allow:
			d.Mismatches = append(d.Mismatches, *m)
		}
	}
	if allow != nil {
		d = Decision{Allowed: true, Reason: ReasonAllowed, Statement: allow, Matched: allow.matched(ctx), request: r}
	}
	for i := range d.Mismatches {
		d.Mismatches[i].Fix = d.Mismatches[i].fix(r, ctx)
	}
	d.Warnings = p.warnings(r, ctx)
	return d, nil
}

// checkRequestKeys refuses what the request cannot decide in the
// statements that apply to it (principal and action match): a condition
// key podiam does not know (another service's s3:prefix, a bare
// "namespace", a misspelt aws:PrincipalArnn or claim) or a role tag
// (iam:ResourceTag/<key>) that the request does not carry, and a policy
// variable without a default whose key the request lacks or holds several
// values for. Such a key's absence would make a negated operator true and
// so turn an Allow on, or a Deny off, without a word. IAM documents that a
// variable it cannot resolve makes its condition not match; for a negated
// operator podiam refuses instead of deciding.
func (p *Policy) checkRequestKeys(pr Principal, action string, ctx requestKeys) error {
	for i := range p.Statements {
		s := &p.Statements[i]
		if !s.applies(pr, action) {
			continue
		}
		for j := range s.Condition {
			c := &s.Condition[j]
			if _, present := ctx.get(c.lowerKey); !present {
				if msg := unknownKeyError(c.Key); msg != "" {
					return fmt.Errorf("%s: %s", c.path, msg)
				}
			}
			for _, v := range c.variables() {
				if v.hasDef {
					continue
				}
				switch vs, present := ctx.get(v.text); {
				case !present:
					return fmt.Errorf("%s: policy variable ${%s} names a key the request does not carry and has no default: IAM does not match such a condition, and podiam refuses rather than let %s decide it silently; send the key or give a default, ${%s, 'value'}", c.path, v.key, c.Operator, v.key)
				case len(vs) > 1:
					return fmt.Errorf("%s: policy variable ${%s} names a key with several values in the request (%s): IAM substitutes single-valued keys only", c.path, v.key, quoteList(vs))
				}
			}
		}
	}
	return nil
}

// matched lists the statement's conditions (all of which held) with the
// values compared, for the explanation of an allow or an explicit deny.
func (s *Statement) matched(ctx requestKeys) []Match {
	var ms []Match
	for i := range s.Condition {
		c := &s.Condition[i]
		vals, present := ctx.get(c.lowerKey)
		ms = append(ms, Match{Condition: c, Expected: c.Values.List, Actual: vals, KeyAbsent: !present})
	}
	return ms
}

// match is nil when the statement applies to the request, else the first
// part that does not match (principal, then action, then conditions in
// document order). Fix is left for the caller.
func (s *Statement) match(pr Principal, action string, ctx requestKeys) *Mismatch {
	if !s.Principal.matches(pr) {
		return &Mismatch{Statement: s, Part: PartPrincipal, Expected: s.Principal.strings(), Actual: []string{pr.Type + ": " + pr.ID}}
	}
	if !s.matchesAction(action) {
		exp := s.Action.List
		if s.NotAction.List != nil {
			exp = s.NotAction.List
		}
		return &Mismatch{Statement: s, Part: PartAction, Expected: exp, Actual: []string{action}}
	}
	for i := range s.Condition {
		c := &s.Condition[i]
		if !c.eval(ctx) {
			vals, present := ctx.get(c.lowerKey)
			return &Mismatch{Statement: s, Part: PartCondition, Condition: c, Expected: c.Values.List, Actual: vals, KeyAbsent: !present}
		}
	}
	return nil
}

// applies reports whether the statement's principal and action match, so
// that its conditions decide it.
func (s *Statement) applies(pr Principal, action string) bool {
	return s.Principal.matches(pr) && s.matchesAction(action)
}

// matchesAction reports whether the lower-case action matches Action (or
// does not match NotAction).
func (s *Statement) matchesAction(action string) bool {
	hit := false
	for _, a := range s.actions {
		if matchToks(a.toks, action, false) {
			hit = true
			break
		}
	}
	if s.NotAction.List != nil {
		hit = !hit
	}
	return hit
}

// matches implements IAM's principal matching for a trust policy.
func (ps *Principals) matches(pr Principal) bool {
	if ps == nil {
		return false
	}
	if ps.Wildcard {
		return true
	}
	for _, pv := range ps.ByType {
		for _, v := range pv.Values.List {
			// {"AWS": "*"} is the same as "*": every principal.
			if pv.Type == "AWS" && v == "*" {
				return true
			}
			if pv.Type != pr.Type {
				continue
			}
			if pv.Type == "AWS" && matchAWSPrincipal(v, pr.ID) {
				return true
			}
			if v == pr.ID {
				return true
			}
		}
	}
	return false
}

// matchAWSPrincipal: an account (id or :root ARN) names every principal
// of that account; a role ARN also names the sessions of that role
// (arn:aws:sts::<account>:assumed-role/<name>/<session>), as IAM documents
// for role principals; anything else must be equal.
func matchAWSPrincipal(policy, caller string) bool {
	if policy == caller {
		return true
	}
	pPart, pAcct, pRoot := awsPartitionAccount(policy)
	cPart, cAcct, _ := awsPartitionAccount(caller)
	if pRoot {
		// A bare account id carries no partition (IAM reads it in the
		// role's own); an ARN names one, and an account id is unique only
		// within its partition: arn:aws:iam::…:root is not a caller in aws-cn.
		return pAcct != "" && pAcct == cAcct && (pPart == "" || cPart == "" || pPart == cPart)
	}
	// Role ARN against an assumed-role session of that role.
	pp := strings.SplitN(policy, ":", 6)
	cp := strings.SplitN(caller, ":", 6)
	if len(pp) != 6 || len(cp) != 6 || pp[1] != cp[1] || pp[4] != cp[4] || pp[2] != "iam" || cp[2] != "sts" {
		return false
	}
	role, ok := strings.CutPrefix(pp[5], "role/")
	if !ok {
		return false
	}
	if i := strings.LastIndexByte(role, '/'); i >= 0 {
		role = role[i+1:] // session ARNs carry the role name without its path
	}
	rest, ok := strings.CutPrefix(cp[5], "assumed-role/")
	if !ok {
		return false
	}
	name, _, ok := strings.Cut(rest, "/")
	return ok && name == role
}

// awsAccount returns the account of an AWS principal and whether the
// principal is the account itself (a bare id or the :root ARN).
func awsAccount(id string) (acct string, root bool) {
	_, acct, root = awsPartitionAccount(id)
	return acct, root
}

// awsPartitionAccount is awsAccount with the partition of an ARN ("" for a
// bare account id).
func awsPartitionAccount(id string) (partition, acct string, root bool) {
	if validAccount(id) {
		return "", id, true
	}
	p := strings.SplitN(id, ":", 6)
	if len(p) != 6 || p[0] != "arn" {
		return "", "", false
	}
	return p[1], p[4], p[2] == "iam" && p[5] == "root"
}

func (ps *Principals) strings() []string {
	if ps == nil {
		return nil
	}
	if ps.Wildcard {
		return []string{"*"}
	}
	var out []string
	for _, pv := range ps.ByType {
		for _, v := range pv.Values.List {
			out = append(out, pv.Type+": "+v)
		}
	}
	return out
}

// compile compiles actions and conditions (policy variables only with
// Version 2012-10-17, as IAM) and checks the rules IAM applies to trust
// policies, keeping that error for Evaluate: Parse reads any policy.
func (p *Policy) compile() error {
	vars := p.Version == Version2012
	for i := range p.Statements {
		s := &p.Statements[i]
		if s.path == "" {
			s.path = fmt.Sprintf("Statement[%d]", i)
		}
		list, elem := s.Action.List, "Action"
		if s.NotAction.List != nil {
			list, elem = s.NotAction.List, "NotAction"
		}
		s.actions = s.actions[:0:0]
		for j, a := range list {
			if a != "*" && !strings.Contains(a, ":") {
				return fmt.Errorf("%s.%s[%d]: %q has no service prefix (IAM refuses it: actions are written service:Action, e.g. %q)", s.path, elem, j, a, ActionAssumeRoleWithWebIdentity)
			}
			pat, err := compilePattern(strings.ToLower(a), true, false)
			if err != nil {
				return fmt.Errorf("%s.%s[%d]: %w", s.path, elem, j, err)
			}
			s.actions = append(s.actions, pat)
		}
		for j := range s.Condition {
			c := &s.Condition[j]
			if c.op.base == "" {
				op, err := parseOperator(c.Operator)
				if err != nil {
					return fmt.Errorf("%s.Condition.%s: %w", s.path, c.Operator, err)
				}
				c.op = op
				if c.path == "" {
					c.path = s.path + ".Condition." + c.Operator + "." + c.Key
				}
				if err := c.check(); err != nil {
					return fmt.Errorf("%s: %w", c.path, err)
				}
			}
			c.lowerKey = strings.ToLower(c.Key)
			if err := c.compile(vars); err != nil {
				return fmt.Errorf("%s: %w", c.path, err)
			}
		}
		if p.trustErr == nil {
			p.trustErr = s.trustRules()
		}
	}
	p.compiled = true
	return nil
}

// trustRules are the checks IAM applies when a policy is set as a role's
// trust policy; IAM refuses such a policy, so evaluating it would mislead.
func (s *Statement) trustRules() error {
	switch {
	case s.NotPrincipal != nil:
		return fmt.Errorf("%s.NotPrincipal: IAM does not allow NotPrincipal in a role trust policy; name the principals in Principal and exclude others with a Deny statement and a condition", s.path)
	case s.Principal == nil:
		return fmt.Errorf("%s.Principal: missing; a role trust policy names who may assume the role (IAM refuses it: \"Missing required field Principal\")", s.path)
	case s.Resource.List != nil || s.NotResource.List != nil:
		return fmt.Errorf("%s.Resource: a role trust policy has no Resource (IAM refuses it: \"Has prohibited field Resource\"); the role itself is the resource", s.path)
	}
	return nil
}
