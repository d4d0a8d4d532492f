package auth

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/podiam/podiam/internal/eksauth"
	"github.com/podiam/podiam/internal/podtoken"
)

// KeyVerifier checks a token's signature with the cluster's keys;
// *jwks.KeySet implements it. Errors wrap the jwks errors (jwks.ErrFetch when
// the keys could not be fetched).
type KeyVerifier = podtoken.KeyVerifier

// DefaultLeeway is the clock skew `podiam auth` allows on token times, as
// kube-apiserver does for its own tokens. A Verifier's zero Leeway means none.
const DefaultLeeway = 60 * time.Second

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

// check checks tok the one way podiam checks pod tokens (podtoken.Check:
// issuer, audience, signature, time, then the kubernetes.io claims against
// want).
func (v *Verifier) check(ctx context.Context, tok string, want podtoken.Want) (podtoken.Pod, *podtoken.Failure) {
	c := podtoken.Checker{Keys: v.Keys, Issuer: v.Issuer, Leeway: v.Leeway}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	return c.Check(ctx, tok, want, now())
}

// reason says why a token failed one of the checks Caller and Pod share,
// those before its kubernetes.io claims. It never contains the token.
func reason(f *podtoken.Failure, issuer, audience string) string {
	switch f.Kind {
	case podtoken.WrongIssuer:
		return "issuer " + podtoken.Quote(f.Claims.Issuer) + " is not the cluster's (" + podtoken.Quote(issuer) + ")"
	case podtoken.WrongAudience:
		return "audience " + podtoken.QuoteList(f.Claims.Audience) + " does not include " + podtoken.Quote(audience)
	}
	return f.Error()
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
	sa := podtoken.ServiceAccount{Namespace: v.AgentNamespace, Name: v.AgentServiceAccount}
	p, f := v.check(ctx, tok, podtoken.Want{Audience: v.AgentAudience, ServiceAccount: &sa})
	if f == nil {
		return Caller{Namespace: p.Namespace, ServiceAccount: p.ServiceAccount, PodName: p.Name, PodUID: p.UID, NodeName: p.NodeName}, nil
	}
	switch f.Kind {
	case podtoken.KeysUnavailable:
		return Caller{}, unavailable(f.Error())
	case podtoken.WrongSubject:
		return deny("subject %s is not the agent's ServiceAccount %s/%s", podtoken.Quote(f.Claims.Subject), v.AgentNamespace, v.AgentServiceAccount)
	case podtoken.NotServiceAccount:
		return deny("its kubernetes.io claim does not name the agent's ServiceAccount %s/%s", v.AgentNamespace, v.AgentServiceAccount)
	case podtoken.NotBoundToPod:
		return deny("it is not bound to a pod (request it for the agent's pod, as a projected volume does)")
	case podtoken.WrongNode:
		return deny("it names no node (kubernetes.io.node.name)")
	}
	return deny("%s", reason(f, v.Issuer, v.AgentAudience))
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
	p, f := v.check(ctx, token, podtoken.Want{Audience: eksauth.Audience})
	if f == nil {
		return p, nil
	}
	switch f.Kind {
	case podtoken.KeysUnavailable:
		return Pod{}, unavailable(f.Error())
	case podtoken.Expired:
		return Pod{}, eksauth.NewError(eksauth.CodeExpiredToken, "pod token refused: %s", f.Error())
	case podtoken.NotServiceAccount:
		return invalid("it is not a ServiceAccount token (no kubernetes.io namespace and serviceaccount)")
	case podtoken.WrongSubject:
		k := f.Claims.Kubernetes
		return invalid("subject %s does not match its kubernetes.io claim (%s/%s)", podtoken.Quote(f.Claims.Subject), k.Namespace, k.ServiceAccount.Name)
	case podtoken.NotBoundToPod:
		return invalid("it is not bound to a pod; use a projected ServiceAccount token")
	case podtoken.WrongNode:
		return invalid("it names no node (kubernetes.io.node.name)")
	}
	return invalid("%s", reason(f, v.Issuer, eksauth.Audience))
}
