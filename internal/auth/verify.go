package auth

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/podiam/podiam/internal/eksauth"
	"github.com/podiam/podiam/internal/jwks"
)

// KeyVerifier checks a token's signature with the cluster's keys;
// *jwks.KeySet implements it. Errors wrap the jwks errors (jwks.ErrFetch when
// the keys could not be fetched).
type KeyVerifier interface {
	Verify(ctx context.Context, tok *jwks.Token) error
}

// DefaultLeeway is the clock skew `podiam auth` allows on token times, as
// kube-apiserver does for its own tokens. A Verifier's zero Leeway means none.
const DefaultLeeway = 60 * time.Second

// serviceAccountPrefix starts the subject of every ServiceAccount token.
const serviceAccountPrefix = "system:serviceaccount:"

// Verifier checks the two tokens of a request: the caller's (the agent's
// own, audience AgentAudience) and the pod's (audience eksauth.Audience).
// Both must come from Issuer and verify with Keys. A Verifier is read-only
// after construction and safe for concurrent use.
type Verifier struct {
	// Keys verifies signatures: the cluster's service-account keys.
	Keys KeyVerifier
	// Issuer is the cluster's service-account issuer; iss must equal it.
	Issuer string
	// AgentNamespace and AgentServiceAccount are the only ServiceAccount
	// whose tokens may call.
	AgentNamespace, AgentServiceAccount string
	// AgentAudience is the audience the caller's token must have
	// (DefaultAgentAudience in `podiam auth`).
	AgentAudience string
	// Now returns the current time; time.Now when nil.
	Now func() time.Time
	// Leeway is the clock skew allowed on exp, nbf and iat, in either
	// direction. Keep it small (DefaultLeeway at most).
	Leeway time.Duration
}

// tokenFailure classifies why a token was refused, so that Caller and Pod
// can map it to their own codes.
type tokenFailure int

const (
	failInvalid     tokenFailure = iota // malformed, forged, wrong claims
	failExpired                         // exp passed (jwks.ErrExpired)
	failUnavailable                     // the keys could not be fetched (jwks.ErrFetch)
)

// tokenRefusal is why check refused a token: its class and a reason that
// never contains the token.
type tokenRefusal struct {
	fail   tokenFailure
	reason string
}

func refuse(fail tokenFailure, reason string) *tokenRefusal {
	return &tokenRefusal{fail: fail, reason: reason}
}

// check parses tok and checks issuer, audience, signature and time, in that
// order: a token of another issuer or audience is refused before it can make
// the key set refetch for an unknown kid. It returns the token, or why it was
// refused (never both).
func (v *Verifier) check(ctx context.Context, tok, audience string) (*jwks.Token, *tokenRefusal) {
	// A Verifier without an issuer would accept tokens without iss;
	// NewHandler refuses it too.
	if v.Issuer == "" {
		return nil, refuse(failInvalid, "the verifier has no issuer configured")
	}
	t, err := jwks.Parse(tok)
	if err != nil {
		return nil, refuse(failInvalid, err.Error())
	}
	if t.Claims.Issuer != v.Issuer {
		return nil, refuse(failInvalid, "issuer "+quote(t.Claims.Issuer)+" is not the cluster's ("+quote(v.Issuer)+")")
	}
	if !slices.Contains(t.Claims.Audience, audience) {
		return nil, refuse(failInvalid, "audience "+quoteList(t.Claims.Audience)+" does not include "+quote(audience))
	}
	if err := v.Keys.Verify(ctx, t); err != nil {
		if errors.Is(err, jwks.ErrFetch) {
			return nil, refuse(failUnavailable, err.Error())
		}
		return nil, refuse(failInvalid, err.Error())
	}
	if err := t.Claims.CheckTime(v.now(), v.Leeway); err != nil {
		if errors.Is(err, jwks.ErrExpired) {
			return nil, refuse(failExpired, err.Error())
		}
		return nil, refuse(failInvalid, err.Error())
	}
	return t, nil
}

func (v *Verifier) now() time.Time {
	if v.Now == nil {
		return time.Now()
	}
	return v.Now()
}

// unavailable is the answer when the cluster's keys cannot be fetched: the
// token may well be good, so the caller should retry.
func unavailable(reason string) *eksauth.Error {
	return eksauth.NewError(eksauth.CodeServiceUnavailable, "the cluster's keys could not be fetched to verify the token: %s", reason)
}

// callerRefused is a refusal of the caller's own token: AccessDeniedException
// sent with HTTP 403, as EKS Auth's signature layer refuses a caller, so that
// the agent tells its own failure (every pod of its node affected) from a
// refusal of a pod (HTTP 400).
func callerRefused(format string, args ...any) *eksauth.Error {
	e := eksauth.NewError(eksauth.CodeAccessDenied, "caller token refused: "+format, args...)
	e.Status = http.StatusForbidden
	return e
}

// Caller verifies the caller's Authorization header ("Bearer <token>", the
// scheme case-insensitive): the token must be the agent ServiceAccount's,
// with audience AgentAudience, bound to a pod and naming its node. Every
// refusal is AccessDeniedException with HTTP 403 (callerRefused), but for
// keys that could not be fetched (ServiceUnavailableException).
func (v *Verifier) Caller(ctx context.Context, authorization string) (Caller, *eksauth.Error) {
	deny := func(format string, args ...any) (Caller, *eksauth.Error) {
		return Caller{}, callerRefused(format, args...)
	}
	if authorization == "" {
		return deny("no Authorization header; send the agent's ServiceAccount token as \"Bearer <token>\"")
	}
	scheme, tok, _ := strings.Cut(authorization, " ")
	tok = strings.TrimSpace(tok)
	if !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return deny("the Authorization header is not \"Bearer <token>\"")
	}
	t, refused := v.check(ctx, tok, v.AgentAudience)
	switch {
	case refused != nil && refused.fail == failUnavailable:
		return Caller{}, unavailable(refused.reason)
	case refused != nil:
		return deny("%s", refused.reason)
	}
	want := serviceAccountPrefix + v.AgentNamespace + ":" + v.AgentServiceAccount
	if t.Claims.Subject != want {
		return deny("subject %s is not the agent's ServiceAccount %s/%s", quote(t.Claims.Subject), v.AgentNamespace, v.AgentServiceAccount)
	}
	k := t.Claims.Kubernetes
	if k == nil || k.Namespace != v.AgentNamespace || k.ServiceAccount == nil || k.ServiceAccount.Name != v.AgentServiceAccount {
		return deny("its kubernetes.io claim does not name the agent's ServiceAccount %s/%s", v.AgentNamespace, v.AgentServiceAccount)
	}
	if k.Pod == nil || k.Pod.Name == "" || k.Pod.UID == "" {
		return deny("it is not bound to a pod (request it for the agent's pod, as a projected volume does)")
	}
	if k.Node == nil || k.Node.Name == "" {
		return deny("it names no node (kubernetes.io.node.name)")
	}
	return Caller{
		Namespace:      strings.Clone(k.Namespace),
		ServiceAccount: strings.Clone(k.ServiceAccount.Name),
		PodName:        strings.Clone(k.Pod.Name),
		PodUID:         strings.Clone(k.Pod.UID),
		NodeName:       strings.Clone(k.Node.Name),
	}, nil
}

// Pod verifies a pod's token, the one in the request body: audience
// eksauth.Audience, bound to a pod, naming its node, its subject the
// ServiceAccount its kubernetes.io claim names. A token that is expired is
// ExpiredTokenException; keys that could not be fetched are
// ServiceUnavailableException; anything else is InvalidTokenException.
func (v *Verifier) Pod(ctx context.Context, token string) (Pod, *eksauth.Error) {
	invalid := func(format string, args ...any) (Pod, *eksauth.Error) {
		return Pod{}, eksauth.NewError(eksauth.CodeInvalidToken, "pod token refused: "+format, args...)
	}
	t, refused := v.check(ctx, token, eksauth.Audience)
	switch {
	case refused != nil && refused.fail == failUnavailable:
		return Pod{}, unavailable(refused.reason)
	case refused != nil && refused.fail == failExpired:
		return Pod{}, eksauth.NewError(eksauth.CodeExpiredToken, "pod token refused: %s", refused.reason)
	case refused != nil:
		return invalid("%s", refused.reason)
	}
	k := t.Claims.Kubernetes
	if k == nil || k.Namespace == "" || k.ServiceAccount == nil || k.ServiceAccount.Name == "" {
		return invalid("it is not a ServiceAccount token (no kubernetes.io namespace and serviceaccount)")
	}
	if want := serviceAccountPrefix + k.Namespace + ":" + k.ServiceAccount.Name; t.Claims.Subject != want {
		return invalid("subject %s does not match its kubernetes.io claim (%s/%s)", quote(t.Claims.Subject), k.Namespace, k.ServiceAccount.Name)
	}
	if k.Pod == nil || k.Pod.Name == "" || k.Pod.UID == "" {
		return invalid("it is not bound to a pod; use a projected ServiceAccount token")
	}
	if k.Node == nil || k.Node.Name == "" {
		return invalid("it names no node (kubernetes.io.node.name)")
	}
	// Strings are cloned: those of a parsed token share one buffer with
	// the whole token, which a cached Pod would otherwise keep alive.
	return Pod{
		Namespace:      strings.Clone(k.Namespace),
		ServiceAccount: strings.Clone(k.ServiceAccount.Name),
		Name:           strings.Clone(k.Pod.Name),
		UID:            strings.Clone(k.Pod.UID),
		NodeName:       strings.Clone(k.Node.Name),
		Expiry:         *t.Claims.Expiry, // CheckTime refused a token without exp
	}, nil
}

// maxQuoted caps a claim value quoted in a message: claims come from an
// unverified token and end up in responses and logs.
const maxQuoted = 80

// quote quotes s for a message (Go syntax: control characters escaped),
// cut to maxQuoted bytes.
func quote(s string) string {
	if len(s) > maxQuoted {
		return strconv.Quote(s[:maxQuoted]) + "…"
	}
	return strconv.Quote(s)
}

// quoteList quotes at most a few values of a list claim.
func quoteList(l []string) string {
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
		q = append(q, quote(s))
	}
	return "[" + strings.Join(q, " ") + "]"
}
