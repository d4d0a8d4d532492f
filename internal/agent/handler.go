package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// Handler serves GET /v1/credentials (SPEC §6). Create it with NewHandler;
// it is safe for concurrent use.
type Handler struct {
	hosts   map[string]bool // Host header values accepted, canonical
	tokens  *tokenChecker
	limiter *podLimiter
	creds   *credentialCache
	m       *Metrics
	log     *slog.Logger
}

// NewHandler checks o and returns the handler.
func NewHandler(o Options) (*Handler, error) {
	switch {
	case o.ClusterName == "":
		return nil, errors.New("agent: no cluster name")
	case o.NodeName == "":
		return nil, errors.New("agent: no node name")
	case o.Issuer == "":
		return nil, errors.New("agent: no service-account issuer")
	case o.Keys == nil:
		return nil, errors.New("agent: no key verifier")
	case o.Backend == nil:
		return nil, errors.New("agent: no backend")
	case len(o.ListenAddrs) == 0:
		return nil, errors.New("agent: no listen address")
	case o.MaxCacheSize < 0:
		return nil, fmt.Errorf("agent: negative max cache size %d", o.MaxCacheSize)
	case o.MaxConcurrentMisses < 0:
		return nil, fmt.Errorf("agent: negative max concurrent misses %d", o.MaxConcurrentMisses)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	hosts, err := hostSet(o.ListenAddrs)
	if err != nil {
		return nil, err
	}
	if o.MaxConcurrentMisses == 0 {
		o.MaxConcurrentMisses = DefaultMaxConcurrentMisses
	}
	return &Handler{
		hosts:   hosts,
		tokens:  newTokenChecker(&o),
		limiter: newPodLimiter(o.PodRate, o.PodBurst, o.Now),
		creds:   newCredentialCache(&o),
		m:       o.Metrics,
		log:     o.Logger,
	}, nil
}

// Forget drops everything known of a pod (its credentials, the facts of its
// tokens, its rate-limit bucket) and remembers it as deleted, so that its
// tokens, valid until they expire, are refused without a backend call. The
// pod watcher calls it when a pod of this node is deleted or has finished.
func (h *Handler) Forget(podUID string) {
	h.creds.forget(podUID)
	h.tokens.forget(podUID)
	h.limiter.forget(podUID)
}

// jsonContentType is shared by every answer: net/http only reads it, and
// setting it without building a new slice keeps the cached path from
// allocating.
var jsonContentType = []string{"application/json"}

// ServeHTTP answers GET /v1/credentials with the pod's credentials or a
// plain-text error.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	code := h.serve(w, r)
	h.m.request(code, time.Since(start).Seconds())
}

// serve answers the request and returns the status it sent.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request) int {
	if r.URL.Path != Path {
		return h.fail(w, refuse(http.StatusNotFound, "not found; the credentials are at %s", Path))
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		return h.fail(w, refuse(http.StatusMethodNotAllowed, "method %s not allowed; use GET", r.Method))
	}
	if !h.hostAllowed(r.Host) {
		return h.fail(w, refuse(http.StatusForbidden, "the Host header %s does not name an address this agent listens on", quote(r.Host)))
	}
	token := r.Header.Get("Authorization")
	if token == "" {
		return h.fail(w, refuse(http.StatusBadRequest, "no Authorization header; send the pod's projected ServiceAccount token (AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE)"))
	}
	pt, ref := h.tokens.check(r.Context(), token)
	if ref != nil {
		return h.fail(w, ref)
	}
	// A deleted pod's token stays valid until its exp: refused here, before
	// it can reach the backend or fill a rate-limit bucket.
	if h.creds.deleted(pt.PodUID) {
		return h.fail(w, refuse(http.StatusForbidden, "pod %s/%s was deleted", pt.Namespace, pt.PodName))
	}
	if !h.limiter.allow(pt.PodUID) {
		return h.fail(w, refuse(http.StatusTooManyRequests, "too many requests from pod %s/%s; slow down", pt.Namespace, pt.PodName))
	}
	e, ref := h.creds.get(r.Context(), pt, token)
	if ref != nil {
		return h.fail(w, ref)
	}
	w.Header()["Content-Type"] = jsonContentType
	_, _ = w.Write(e.body) // a client gone is not an error of the agent
	return http.StatusOK
}

// fail writes a plain-text error and logs it at Debug (refusals are the
// client's business; backend failures are logged where they happen).
func (h *Handler) fail(w http.ResponseWriter, r *refusal) int {
	http.Error(w, r.Message, r.Status)
	if h.log.Enabled(context.Background(), slog.LevelDebug) {
		h.log.Debug("request refused", "status", r.Status, "reason", r.Message)
	}
	return r.Status
}

// hostSet is the set of Host header values naming the listen addresses: each
// host:port, and the bare host when the port is 80 (the SDKs send
// "169.254.170.23" for http://169.254.170.23/...).
func hostSet(addrs []string) (map[string]bool, error) {
	set := make(map[string]bool, 2*len(addrs))
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			return nil, fmt.Errorf("agent: listen address %q: %w", a, err)
		}
		host = canonicalHost(host)
		set[net.JoinHostPort(host, port)] = true
		if port == "80" {
			set[bracket(host)] = true
		}
	}
	return set, nil
}

// hostAllowed reports whether a Host header names a listen address. The
// usual spelling is found with one map lookup; others (upper case names,
// IPv6 written differently) are canonicalized first.
func (h *Handler) hostAllowed(host string) bool {
	if h.hosts[host] {
		return true
	}
	name, port, err := net.SplitHostPort(host)
	if err != nil {
		// No port: a name, an IPv4 address or a bracketed IPv6 address
		// (an IPv6 address without brackets is not a Host).
		name, port = host, ""
		if strings.HasPrefix(name, "[") && strings.HasSuffix(name, "]") {
			name = name[1 : len(name)-1]
		} else if strings.Contains(name, ":") {
			return false
		}
	}
	if name == "" {
		return false
	}
	if port == "" {
		return h.hosts[bracket(canonicalHost(name))]
	}
	return h.hosts[net.JoinHostPort(canonicalHost(name), port)]
}

// bracket is host as a Host header without port spells it: an IPv6
// address in brackets.
func bracket(host string) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]"
	}
	return host
}

// canonicalHost spells an IP address the way netip does and a name in lower
// case.
func canonicalHost(host string) string {
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.Unmap().String()
	}
	return strings.ToLower(host)
}
