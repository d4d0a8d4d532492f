package auth

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/podiam/podiam/internal/association"
	"github.com/podiam/podiam/internal/eksauth"
)

// PodGetter gets a pod from the API server; `podiam auth` wires it to the
// typed clientset's CoreV1().Pods(namespace).Get. A pod that does not exist
// must be an error for which apierrors.IsNotFound is true.
type PodGetter func(ctx context.Context, namespace, name string) (*corev1.Pod, error)

// HandlerOptions are the parts NewHandler puts together. Every field but
// Limiter and Logger is required.
type HandlerOptions struct {
	// Cluster is the cluster served: the request path must name it.
	Cluster Cluster
	// Verifier checks the caller's and the pod's tokens.
	Verifier *Verifier
	// Pods gets the caller's agent pod and the pod asking for credentials.
	Pods PodGetter
	// Associations finds the association of the pod's ServiceAccount.
	Associations Associations
	// Credentials gets the association's credentials for the pod.
	Credentials Credentialer
	// Limiter limits each node's requests; nil means no limit.
	Limiter *NodeLimiter
	// Metrics counts requests and issuances.
	Metrics *Metrics
	// Logger gets one audit line per issuance and one line per refusal;
	// slog.Default() when nil.
	Logger *slog.Logger
}

// Agent pods are checked against the API server at most once per
// agentPodTTL each (a DaemonSet pod lives for days; a deleted one loses its
// access within this time), refusals as well as acceptances, so that a leaked
// token of a deleted agent pod replayed in a loop costs no API call either;
// at most agentPodCacheMax are remembered, more than the nodes of any cluster.
const (
	agentPodTTL      = 30 * time.Second
	agentPodCacheMax = 10000
)

// podGetTimeout bounds each GET of a pod, so that a slow API server makes
// requests fail (ServiceUnavailableException) rather than pile up.
const podGetTimeout = 5 * time.Second

// handler serves AssumeRoleForPodIdentity.
type handler struct {
	HandlerOptions
	now func() time.Time // time.Now; tests set it

	mu        sync.Mutex
	agentPods map[string]agentPod // by pod UID
	agentGets singleflight.Group  // GETs of agent pods in flight
}

// agentPod is the answer of the check of an agent pod, as the caller's token
// named it (namespace, name, node), until expires: refusal is nil when the
// pod exists on that node, else the error to answer.
type agentPod struct {
	namespace, name, node string
	expires               time.Time
	refusal               *eksauth.Error
}

func (p agentPod) expiry() time.Time { return p.expires }

// NewHandler returns the http.Handler of POST
// /clusters/{name}/assume-role-for-pod-identity. It panics if a required
// option is missing: that is a wiring mistake, not a runtime condition.
func NewHandler(o HandlerOptions) http.Handler {
	if o.Verifier == nil || o.Pods == nil || o.Associations == nil || o.Credentials == nil || o.Metrics == nil {
		panic("auth.NewHandler: Verifier, Pods, Associations, Credentials and Metrics are required")
	}
	// An empty Issuer would accept tokens without iss, an empty agent
	// setting tokens that name no agent.
	if o.Cluster.Name == "" || o.Verifier.Issuer == "" || o.Verifier.AgentAudience == "" ||
		o.Verifier.AgentNamespace == "" || o.Verifier.AgentServiceAccount == "" {
		panic("auth.NewHandler: Cluster.Name and the Verifier's Issuer, AgentAudience, AgentNamespace and AgentServiceAccount are required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &handler{HandlerOptions: o, now: time.Now, agentPods: map[string]agentPod{}}
}

// requestInfo is what the handler learned of a request, for its log line.
type requestInfo struct {
	caller Caller
	pod    Pod
}

// ServeHTTP answers one request: credentials, or an EKS Auth error.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := h.now()
	var rq requestInfo
	out, eerr := h.serve(r, &rq)
	code := CodeOK
	if eerr != nil {
		code = eerr.Code
		eksauth.WriteError(w, eerr)
		h.logRefusal(r, &rq, eerr)
	} else {
		eksauth.WriteResponse(w, out)
	}
	h.Metrics.Requests.WithLabelValues(code).Inc()
	h.Metrics.RequestDuration.Observe(h.now().Sub(start).Seconds())
}

// serve runs the checks in order, cheapest and least revealing first: the
// caller is authenticated before anything of the pod's token is looked at,
// and its node's rate is taken before any call to the API server.
func (h *handler) serve(r *http.Request, rq *requestInfo) (*eksauth.Output, *eksauth.Error) {
	ctx := r.Context()
	cluster, in, eerr := eksauth.DecodeRequest(r)
	if eerr != nil {
		return nil, eerr
	}
	if cluster != h.Cluster.Name {
		return nil, eksauth.NewError(eksauth.CodeResourceNotFound, "cluster %q is not served here (this is cluster %q)", cluster, h.Cluster.Name)
	}

	caller, eerr := h.Verifier.Caller(ctx, r.Header.Get("Authorization"))
	if eerr != nil {
		return nil, eerr
	}
	rq.caller = caller
	// The node name comes from a verified token, so the limiter holds one
	// bucket per real node, however many requests are replayed.
	if !h.Limiter.Allow(caller.NodeName) {
		return nil, eksauth.NewError(eksauth.CodeThrottling, "node %s is over its request rate; retry later", caller.NodeName)
	}
	if eerr := h.checkAgentPod(ctx, caller); eerr != nil {
		return nil, eerr
	}

	pod, eerr := h.Verifier.Pod(ctx, in.Token)
	if eerr != nil {
		return nil, eerr
	}
	rq.pod = pod
	if pod.NodeName != caller.NodeName {
		return nil, eksauth.NewError(eksauth.CodeAccessDenied, "the pod %s/%s runs on another node (%s) than the caller (%s)",
			pod.Namespace, pod.Name, pod.NodeName, caller.NodeName)
	}
	if eerr := h.checkPod(ctx, pod); eerr != nil {
		return nil, eerr
	}

	a, ok := h.Associations.Lookup(pod.Namespace, pod.ServiceAccount)
	// An association only ever grants its own namespace's ServiceAccount,
	// whatever a Lookup implementation returns.
	if !ok || a == nil || a.Namespace != pod.Namespace || a.ServiceAccount != pod.ServiceAccount {
		return nil, eksauth.NewError(eksauth.CodeResourceNotFound, "no PodIdentityAssociation for ServiceAccount %s/%s", pod.Namespace, pod.ServiceAccount)
	}
	issued, eerr := h.Credentials.Credentials(ctx, a, pod)
	if eerr != nil {
		return nil, eerr
	}
	if issued == nil {
		return nil, eksauth.NewError(eksauth.CodeInternalServer, "no credentials were issued")
	}
	h.audit(caller, pod, a, issued)
	return &eksauth.Output{
		Subject:  eksauth.Subject{Namespace: pod.Namespace, ServiceAccount: pod.ServiceAccount},
		Audience: eksauth.Audience,
		PodIdentityAssociation: eksauth.PodIdentityAssociation{
			AssociationArn: AssociationARN(h.Cluster, a),
			AssociationID:  string(a.UID),
		},
		AssumedRoleUser: issued.AssumedRoleUser,
		Credentials:     issued.Credentials,
	}, nil
}

// checkAgentPod makes sure the caller's token is not that of an agent pod
// deleted since (its token stays valid until it expires): the pod must exist
// with the token's UID, on the token's node. The answer, positive or a
// refusal (pod gone, another UID, another node), is cached per pod UID for
// agentPodTTL; failures to ask the API server are not.
func (h *handler) checkAgentPod(ctx context.Context, c Caller) *eksauth.Error {
	now := h.now()
	h.mu.Lock()
	p, ok := h.agentPods[c.PodUID]
	h.mu.Unlock()
	if ok && now.Before(p.expires) && p.namespace == c.Namespace && p.name == c.PodName && p.node == c.NodeName {
		if p.refusal == nil {
			return nil
		}
		e := *p.refusal // each request gets its own copy
		return &e
	}
	// Concurrent misses for one agent pod (a node's first burst) make one GET:
	// the API server calls are what bounds podiam auth's throughput.
	ch := h.agentGets.DoChan(c.PodUID+"/"+c.Namespace+"/"+c.PodName+"/"+c.NodeName, func() (any, error) {
		// Detached: one caller giving up must not fail the others.
		return h.lookUpAgentPod(context.WithoutCancel(ctx), c, now), nil
	})
	var refusal *eksauth.Error
	select {
	case r := <-ch:
		refusal = r.Val.(*eksauth.Error)
	case <-ctx.Done():
		return eksauth.NewError(eksauth.CodeServiceUnavailable, "checking the agent pod %s/%s: %v", c.Namespace, c.PodName, ctx.Err())
	}
	if refusal == nil {
		return nil
	}
	e := *refusal // each request gets its own copy
	return &e
}

// lookUpAgentPod GETs the agent pod of c and returns the refusal (nil when
// the pod exists with c's UID on c's node), remembering the answer unless the
// API server failed.
func (h *handler) lookUpAgentPod(ctx context.Context, c Caller, now time.Time) *eksauth.Error {
	var refusal *eksauth.Error
	obj, err := h.getPod(ctx, c.Namespace, c.PodName)
	switch {
	case apierrors.IsNotFound(err):
		refusal = callerRefused("the agent pod %s/%s no longer exists", c.Namespace, c.PodName)
	case err != nil:
		return eksauth.NewError(eksauth.CodeServiceUnavailable, "checking the agent pod %s/%s failed: %v", c.Namespace, c.PodName, err)
	case string(obj.UID) != c.PodUID:
		refusal = callerRefused("the agent pod %s/%s no longer exists (another pod has its name)", c.Namespace, c.PodName)
	case obj.Spec.NodeName != c.NodeName:
		refusal = callerRefused("the agent pod %s/%s runs on node %q, not on %q", c.Namespace, c.PodName, obj.Spec.NodeName, c.NodeName)
	}
	h.remember(c, agentPod{namespace: c.Namespace, name: c.PodName, node: c.NodeName, expires: now.Add(agentPodTTL), refusal: refusal}, now)
	return refusal
}

// remember caches the answer p of the check of c's agent pod, unless the
// cache is full of live entries (then every request checks rather than the
// cache grow).
func (h *handler) remember(c Caller, p agentPod, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	putBounded(h.agentPods, c.PodUID, p, agentPodCacheMax, now)
}

// checkPod makes sure the pod the token is bound to still exists, with the
// token's UID and ServiceAccount, on the token's node, and has not finished:
// the token of a pod that succeeded or failed stays valid until the pod is
// deleted, and its containers are gone.
func (h *handler) checkPod(ctx context.Context, p Pod) *eksauth.Error {
	obj, err := h.getPod(ctx, p.Namespace, p.Name)
	switch {
	case apierrors.IsNotFound(err):
		return eksauth.NewError(eksauth.CodeInvalidToken, "the pod %s/%s no longer exists", p.Namespace, p.Name)
	case err != nil:
		return eksauth.NewError(eksauth.CodeServiceUnavailable, "getting the pod %s/%s failed: %v", p.Namespace, p.Name, err)
	case string(obj.UID) != p.UID:
		return eksauth.NewError(eksauth.CodeInvalidToken, "the pod %s/%s no longer exists (another pod has its name)", p.Namespace, p.Name)
	case obj.Spec.NodeName != p.NodeName:
		return eksauth.NewError(eksauth.CodeAccessDenied, "the pod %s/%s runs on node %q, not on the node its token names (%q)", p.Namespace, p.Name, obj.Spec.NodeName, p.NodeName)
	case serviceAccountOf(obj) != p.ServiceAccount:
		return eksauth.NewError(eksauth.CodeInvalidToken, "the pod %s/%s runs as ServiceAccount %q, not as its token's %q", p.Namespace, p.Name, serviceAccountOf(obj), p.ServiceAccount)
	case obj.Status.Phase == corev1.PodSucceeded || obj.Status.Phase == corev1.PodFailed:
		return eksauth.NewError(eksauth.CodeInvalidToken, "pod %s/%s has terminated", p.Namespace, p.Name)
	}
	return nil
}

// serviceAccountOf is the pod's ServiceAccount ("default" when unset, as the
// API server defaults it).
func serviceAccountOf(p *corev1.Pod) string {
	if p.Spec.ServiceAccountName == "" {
		return "default"
	}
	return p.Spec.ServiceAccountName
}

// getPod gets a pod within podGetTimeout. A nil pod without error (a
// PodGetter's bug) reads as not found.
func (h *handler) getPod(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	ctx, cancel := context.WithTimeout(ctx, podGetTimeout)
	defer cancel()
	p, err := h.Pods(ctx, namespace, name)
	if err == nil && p == nil {
		err = apierrors.NewNotFound(corev1.Resource("pods"), name)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return nil, errors.New("the API server did not answer in time")
	}
	return p, err
}

// AssociationARN is the synthetic ARN `podiam auth` answers for an
// association, shaped like EKS's
// (arn:aws:eks:<region>:<account>:podidentityassociation/<cluster>/<id>) but
// naming the association by namespace and name, which is how Kubernetes
// names it: arn:<partition>:eks:<region>:<account>:podidentityassociation/
// <cluster>/<namespace>/<name>. The partition is the cluster ARN's, "aws"
// when there is none. associationId is the association's UID.
func AssociationARN(c Cluster, a *association.Association) string {
	partition := "aws"
	if rest, ok := strings.CutPrefix(c.ARN, "arn:"); ok {
		if p, _, ok := strings.Cut(rest, ":"); ok && p != "" {
			partition = p
		}
	}
	return "arn:" + partition + ":eks:" + c.Region + ":" + c.Account + ":podidentityassociation/" +
		c.Name + "/" + a.Namespace + "/" + a.Name
}

// audit writes the line every issuance leaves: who asked (node), for whom
// (namespace, ServiceAccount, pod) and what was handed out (association,
// role, session), never the credentials themselves.
func (h *handler) audit(c Caller, p Pod, a *association.Association, is *Issued) {
	h.Logger.Info("issued credentials",
		"node", c.NodeName,
		"namespace", p.Namespace,
		"serviceAccount", p.ServiceAccount,
		"pod", p.Name,
		"podUID", p.UID,
		"association", a.Key(),
		"role", is.RoleARN,
		"sessionName", is.SessionName,
		"cached", is.Cached)
}

// logRefusal writes one line per refused request: its code and reason (the
// message sent back, which never holds a token), and what is known of the
// caller and the pod by then. Server-side failures (the cluster's keys or STS
// unreachable, whoever asked) and refused tokens of a verified caller are
// warnings. Other refusals before the caller is verified are at debug level,
// as is throttling: anyone who reaches the port, or a throttled node, would
// otherwise flood the log; their count is in the metrics.
func (h *handler) logRefusal(r *http.Request, rq *requestInfo, e *eksauth.Error) {
	level := slog.LevelWarn
	switch {
	case e.HTTPStatus() >= http.StatusInternalServerError:
		// level stays Warn: podiam's own dependencies failed
	case rq.caller.NodeName == "": // not verified (Caller sets it on success only)
		level = slog.LevelDebug
	case e.Code == eksauth.CodeThrottling:
		level = slog.LevelDebug
	case e.Code == eksauth.CodeResourceNotFound, e.Code == eksauth.CodeExpiredToken,
		e.Code == eksauth.CodeInvalidRequest, e.Code == eksauth.CodeInvalidParameter:
		level = slog.LevelInfo
	}
	attrs := []slog.Attr{
		slog.String("code", e.Code),
		slog.String("reason", e.Message),
		slog.String("remoteAddr", r.RemoteAddr),
	}
	if rq.caller.NodeName != "" {
		attrs = append(attrs, slog.String("node", rq.caller.NodeName), slog.String("callerPod", rq.caller.Namespace+"/"+rq.caller.PodName))
	}
	if rq.pod.Name != "" {
		attrs = append(attrs, slog.String("namespace", rq.pod.Namespace), slog.String("serviceAccount", rq.pod.ServiceAccount),
			slog.String("pod", rq.pod.Name), slog.String("podUID", rq.pod.UID))
	}
	h.Logger.LogAttrs(r.Context(), level, "request refused", attrs...)
}
