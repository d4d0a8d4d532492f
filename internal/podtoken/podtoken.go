// Package podtoken checks a pod's projected ServiceAccount token, the one
// way `podiam auth` (the pod's token and its caller's, the agent's) and
// `podiam agent` (the pod's token, locally) both need it: the issuer and the
// audience first, so that a token of another cluster or for another service
// cannot make the key set refetch for a kid it does not know; then the
// signature (internal/jwks); then the times; then the kubernetes.io claims:
// a ServiceAccount (matching the subject), a pod the token is bound to and
// the node that pod runs on.
//
// A refusal is a *Failure whose Kind says which check refused the token;
// each caller builds its own answer from it (EKS Auth's error codes in
// `podiam auth`, an HTTP status in the agent), so that both check tokens the
// same way whatever their wire formats. Generic JWT verification stays in
// internal/jwks, which `podiam sts` uses for any OIDC issuer's tokens.
package podtoken

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/podiam/podiam/internal/jwks"
)

// KeyVerifier checks a token's signature with the cluster's keys;
// *jwks.KeySet implements it. Errors wrap the jwks errors (jwks.ErrFetch when
// the keys could not be fetched).
type KeyVerifier interface {
	Verify(ctx context.Context, tok *jwks.Token) error
}

// ServiceAccountPrefix starts the subject of every ServiceAccount token.
const ServiceAccountPrefix = "system:serviceaccount:"

// Checker checks the projected ServiceAccount tokens of one cluster. It is
// read-only after construction and safe for concurrent use.
type Checker struct {
	// Keys verifies signatures: the cluster's service-account keys.
	Keys KeyVerifier
	// Issuer is the cluster's service-account issuer; iss must equal it. A
	// Checker without one refuses every token (Unconfigured): it would
	// otherwise accept tokens without iss.
	Issuer string
	// Leeway is the clock skew allowed on exp, nbf and iat, in either
	// direction.
	Leeway time.Duration
}

// Want is what a caller requires of a token beyond its being the cluster's.
type Want struct {
	// Audience is the audience the token must have (among others).
	Audience string
	// ServiceAccount, when set, is the only ServiceAccount whose token
	// passes; when nil, any ServiceAccount's, provided the subject is the
	// one the kubernetes.io claim names.
	ServiceAccount *ServiceAccount
	// Node, when set, is the only node the token may name; when "", the
	// token must name a node, any.
	Node string
}

// ServiceAccount names a ServiceAccount.
type ServiceAccount struct {
	Namespace, Name string
}

// Pod is what a verified token says of the pod it is bound to.
type Pod struct {
	Namespace, ServiceAccount string
	Name, UID                 string
	NodeName                  string
	// Expiry is the token's exp (a token without one is refused).
	Expiry time.Time
}

// Kind is which check refused a token.
type Kind int

// The kinds of Failure, in the order they are checked.
const (
	// Unconfigured: the Checker has no Issuer.
	Unconfigured Kind = iota + 1
	// Malformed: jwks.Parse refused the token (Failure.Err).
	Malformed
	// WrongIssuer: iss is not the Checker's Issuer.
	WrongIssuer
	// WrongAudience: aud does not include Want.Audience.
	WrongAudience
	// KeysUnavailable: the cluster's keys could not be fetched
	// (jwks.ErrFetch): the token may well be good, the caller may retry.
	KeysUnavailable
	// BadSignature: the key set refused the signature (unknown kid, refused
	// algorithm, signature not verifying; Failure.Err).
	BadSignature
	// Expired: exp has passed (jwks.ErrExpired).
	Expired
	// BadTime: no exp, or nbf or iat in the future (Failure.Err).
	BadTime
	// WrongSubject: sub is not the ServiceAccount's: Want.ServiceAccount's
	// when set (checked before the kubernetes.io claim), else the one the
	// kubernetes.io claim names.
	WrongSubject
	// NotServiceAccount: the kubernetes.io claim names no ServiceAccount
	// (namespace and serviceaccount.name), or not Want.ServiceAccount.
	NotServiceAccount
	// NotBoundToPod: the kubernetes.io claim names no pod (name and uid):
	// the token was not requested for a pod, as a projected volume does.
	NotBoundToPod
	// WrongNode: the kubernetes.io claim names no node, or not Want.Node.
	WrongNode
)

var kindNames = [...]string{
	Unconfigured:      "no issuer configured",
	Malformed:         "malformed token",
	WrongIssuer:       "wrong issuer",
	WrongAudience:     "wrong audience",
	KeysUnavailable:   "keys unavailable",
	BadSignature:      "bad signature",
	Expired:           "expired",
	BadTime:           "invalid time claims",
	WrongSubject:      "wrong subject",
	NotServiceAccount: "not the ServiceAccount wanted",
	NotBoundToPod:     "not bound to a pod",
	WrongNode:         "wrong node",
}

func (k Kind) String() string {
	if k > 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Failure is why Check refused a token.
type Failure struct {
	Kind Kind
	// Err is the cause for Unconfigured and the kinds that come from
	// internal/jwks (Malformed, KeysUnavailable, BadSignature, Expired,
	// BadTime), nil for the others. Its text never holds the token.
	Err error
	// Claims are the token's claims for the kinds after Malformed, nil
	// before: for messages only. Nothing in them is verified for
	// WrongIssuer, WrongAudience, KeysUnavailable and BadSignature; quote
	// their values (Quote) before they reach a response or a log.
	Claims *jwks.Claims
}

// Error returns Err's text, or the Kind's when there is no Err.
func (f *Failure) Error() string {
	if f.Err != nil {
		return f.Err.Error()
	}
	return f.Kind.String()
}

// Unwrap returns Err, so that errors.Is sees the jwks errors.
func (f *Failure) Unwrap() error { return f.Err }

// errNoIssuer is Unconfigured's Err.
var errNoIssuer = errors.New("the verifier has no issuer configured")

// Check parses token and checks, in this order, its issuer, its audience,
// its signature, its times at now, and its kubernetes.io claims against
// want. It returns what the token says of its pod, or why it was refused
// (never both).
func (c *Checker) Check(ctx context.Context, token string, want Want, now time.Time) (Pod, *Failure) {
	if c.Issuer == "" {
		return Pod{}, &Failure{Kind: Unconfigured, Err: errNoIssuer}
	}
	t, err := jwks.Parse(token)
	if err != nil {
		return Pod{}, &Failure{Kind: Malformed, Err: err}
	}
	cl := &t.Claims
	fail := func(k Kind, err error) (Pod, *Failure) {
		return Pod{}, &Failure{Kind: k, Err: err, Claims: cl}
	}
	if cl.Issuer != c.Issuer {
		return fail(WrongIssuer, nil)
	}
	if !slices.Contains(cl.Audience, want.Audience) {
		return fail(WrongAudience, nil)
	}
	if err := c.Keys.Verify(ctx, t); err != nil {
		if errors.Is(err, jwks.ErrFetch) {
			return fail(KeysUnavailable, err)
		}
		return fail(BadSignature, err)
	}
	if err := cl.CheckTime(now, c.Leeway); err != nil {
		if errors.Is(err, jwks.ErrExpired) {
			return fail(Expired, err)
		}
		return fail(BadTime, err)
	}
	if k := checkKubernetes(cl, want); k != 0 {
		return fail(k, nil)
	}
	return own(cl), nil
}

// checkKubernetes checks the subject and the kubernetes.io claim of verified
// claims, returning the Kind of the first check that fails, or 0.
func checkKubernetes(cl *jwks.Claims, want Want) Kind {
	k := cl.Kubernetes
	if sa := want.ServiceAccount; sa != nil {
		// The subject first: a token of another ServiceAccount is told as
		// such, whatever its kubernetes.io claim.
		if cl.Subject != ServiceAccountPrefix+sa.Namespace+":"+sa.Name {
			return WrongSubject
		}
		if k == nil || k.Namespace != sa.Namespace || k.ServiceAccount == nil || k.ServiceAccount.Name != sa.Name {
			return NotServiceAccount
		}
	} else {
		if k == nil || k.Namespace == "" || k.ServiceAccount == nil || k.ServiceAccount.Name == "" {
			return NotServiceAccount
		}
		if cl.Subject != ServiceAccountPrefix+k.Namespace+":"+k.ServiceAccount.Name {
			return WrongSubject
		}
	}
	if k.Pod == nil || k.Pod.Name == "" || k.Pod.UID == "" {
		return NotBoundToPod
	}
	if k.Node == nil || k.Node.Name == "" || (want.Node != "" && k.Node.Name != want.Node) {
		return WrongNode
	}
	return 0
}

// own returns the Pod of claims checkKubernetes accepted, its strings
// copied: those of a parsed token share one buffer with the whole token,
// which a cached Pod would otherwise keep alive.
func own(cl *jwks.Claims) Pod {
	k := cl.Kubernetes
	return Pod{
		Namespace:      strings.Clone(k.Namespace),
		ServiceAccount: strings.Clone(k.ServiceAccount.Name),
		Name:           strings.Clone(k.Pod.Name),
		UID:            strings.Clone(k.Pod.UID),
		NodeName:       strings.Clone(k.Node.Name),
		Expiry:         *cl.Expiry, // CheckTime refused a token without exp
	}
}

// maxQuoted caps a value quoted in a message: claims come from an
// unverified token and end up in responses and logs.
const maxQuoted = 80

// Quote quotes s, a value taken from a token or a request, for a message:
// Go syntax (control characters escaped), cut to its first 80 bytes with
// "…" after the closing quote, so that a hostile value cannot make messages
// and logs large, and a cut value is told from one that ends in "…".
func Quote(s string) string {
	if len(s) > maxQuoted {
		return strconv.Quote(s[:maxQuoted]) + "…"
	}
	return strconv.Quote(s)
}

// QuoteList quotes the first five values of a list claim (Quote), "(none)"
// for an empty list.
func QuoteList(l []string) string {
	if len(l) == 0 {
		return "(none)"
	}
	const most = 5
	q := make([]string, 0, most+1)
	for i, s := range l {
		if i == most {
			q = append(q, "…")
			break
		}
		q = append(q, Quote(s))
	}
	return "[" + strings.Join(q, " ") + "]"
}
