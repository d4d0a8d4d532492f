package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podiam/podiam/internal/association"
	"github.com/podiam/podiam/internal/eksauth"
	"github.com/podiam/podiam/internal/jwks"
)

// The handler's tests use fakes for the API server, the associations and
// STS: what is tested here is the order and mapping of the checks. The real
// chain is tested end to end with kube-apiserver and podiam sts.

const (
	htCluster = "test-cluster"
	htRole    = "arn:aws:iam::111122223333:role/cart"
	htSession = "eks-test-cluster-cart-5d9f-0a1b2c3d"
	// Credentials the handler hands out and must never log.
	htAccessKey    = "ASIAHTTESTACCESSKEY0"
	htSecretKey    = "htSecretAccessKey/never/in/a/log"
	htSessionToken = "htSessionTokenNeverInALog"
)

// htPods is a fake API server holding pods by namespace/name.
type htPods struct {
	mu   sync.Mutex
	pods map[string]*corev1.Pod
	err  map[string]error // a GET of this namespace/name fails so
	gets map[string]int
	// delay, when set, is how long each GET takes (concurrent callers overlap).
	delay time.Duration
}

func (p *htPods) get(_ context.Context, namespace, name string) (*corev1.Pod, error) {
	time.Sleep(p.delay)
	p.mu.Lock()
	defer p.mu.Unlock()
	key := namespace + "/" + name
	p.gets[key]++
	if err := p.err[key]; err != nil {
		return nil, err
	}
	pod, ok := p.pods[key]
	if !ok {
		return nil, apierrors.NewNotFound(corev1.Resource("pods"), name)
	}
	return pod.DeepCopy(), nil
}

func (p *htPods) put(namespace, name, uid, node, sa string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pods[namespace+"/"+name] = &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, UID: types.UID(uid)},
		Spec:       corev1.PodSpec{NodeName: node, ServiceAccountName: sa},
	}
}

func (p *htPods) delete(namespace, name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.pods, namespace+"/"+name)
}

func (p *htPods) count(namespace, name string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.gets[namespace+"/"+name]
}

// htAssociations is a fixed set of associations by namespace/ServiceAccount.
type htAssociations map[string]*association.Association

func (a htAssociations) Lookup(namespace, serviceAccount string) (*association.Association, bool) {
	x, ok := a[namespace+"/"+serviceAccount]
	return x, ok
}

// htCredentials hands out fixed credentials, or an error, recording calls.
type htCredentials struct {
	mu     sync.Mutex
	err    *eksauth.Error
	cached bool
	calls  []Pod
}

func (c *htCredentials) Credentials(_ context.Context, a *association.Association, pod Pod) (*Issued, *eksauth.Error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, pod)
	if c.err != nil {
		return nil, c.err
	}
	return &Issued{
		Credentials: eksauth.Credentials{AccessKeyID: htAccessKey, SecretAccessKey: htSecretKey,
			SessionToken: htSessionToken, Expiration: vtNow.Add(time.Hour)},
		AssumedRoleUser: eksauth.AssumedRoleUser{Arn: "arn:aws:sts::111122223333:assumed-role/cart/" + htSession,
			AssumeRoleID: "AROAHT:" + htSession},
		SessionName: htSession,
		RoleARN:     a.RoleARN,
		Cached:      c.cached,
	}, nil
}

// htEnv is a handler over fakes holding the test pod and agent on vtNode,
// and an association for the pod's ServiceAccount.
type htEnv struct {
	pods    *htPods
	assoc   htAssociations
	creds   *htCredentials
	reg     *prometheus.Registry
	metrics *Metrics
	logs    *bytes.Buffer
	limiter *NodeLimiter
	h       *handler
	now     time.Time
}

func newHTEnv(t testing.TB) *htEnv {
	t.Helper()
	e := &htEnv{
		pods:  &htPods{pods: map[string]*corev1.Pod{}, err: map[string]error{}, gets: map[string]int{}},
		creds: &htCredentials{},
		reg:   prometheus.NewRegistry(),
		logs:  &bytes.Buffer{},
		now:   vtNow,
		assoc: htAssociations{vtPodNS + "/" + vtPodSA: {
			Namespace: vtPodNS, Name: "cart-role", UID: "assoc-uid-1", ServiceAccount: vtPodSA, RoleARN: htRole,
		}},
		limiter: NewNodeLimiter(rate.Inf, 0),
	}
	e.pods.put(vtAgentNS, vtAgentPod, vtAgentUID, vtNode, vtAgentSA)
	e.pods.put(vtPodNS, vtPodName, vtPodUID, vtNode, vtPodSA)
	e.metrics = NewMetrics(e.reg)
	e.h = NewHandler(HandlerOptions{
		Cluster:  Cluster{Name: htCluster, Region: "us-west-2", Account: "111122223333"},
		Verifier: vtVerifier(t), Pods: e.pods.get, Associations: e.assoc, Credentials: e.creds,
		Limiter: e.limiter, Metrics: e.metrics,
		Logger: slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}).(*handler)
	e.h.now = func() time.Time { return e.now }
	return e
}

// htRequest is a request as the agent sends it.
func htRequest(cluster, authorization, podToken string) *http.Request {
	body, _ := json.Marshal(eksauth.Input{Token: podToken})
	r := httptest.NewRequest(http.MethodPost, eksauth.Path(cluster), bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	if authorization != "" {
		r.Header.Set("Authorization", authorization)
	}
	return r
}

// do serves r and returns the response.
func (e *htEnv) do(r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	return w
}

// logLines decodes the JSON log lines written so far.
func (e *htEnv) logLines(t *testing.T) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(e.logs.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		lines = append(lines, m)
	}
	return lines
}

// durationCount is the number of requests the duration histogram observed.
func (e *htEnv) durationCount(t *testing.T) uint64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "podiam_auth_request_duration_seconds" {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	return 0
}

// TestHandler covers each answer of the handler: success, and every refusal
// with its code, status, message, metric and log line.
func TestHandler(t *testing.T) {
	agentHeader := func(t *testing.T) string { return "Bearer " + vtAgentClaims().sign(t) }
	podToken := func(t *testing.T) string { return vtPodClaims().sign(t) }
	apiDown := errors.New("dial tcp 127.0.0.1:6443: connect: connection refused")
	tests := []struct {
		name  string
		setup func(e *htEnv)
		// req builds the request; the agent's and pod's valid tokens when nil.
		req        func(t *testing.T) *http.Request
		wantCode   string
		wantStatus int
		wantMsg    string
	}{
		{name: "credentials", wantCode: CodeOK, wantStatus: http.StatusOK},
		{name: "GET", req: func(t *testing.T) *http.Request {
			r := htRequest(htCluster, agentHeader(t), podToken(t))
			r.Method = http.MethodGet
			return r
		}, wantCode: eksauth.CodeInvalidRequest, wantStatus: http.StatusMethodNotAllowed, wantMsg: "use POST"},
		{name: "another cluster", req: func(t *testing.T) *http.Request {
			return htRequest("other-cluster", agentHeader(t), podToken(t))
		}, wantCode: eksauth.CodeResourceNotFound, wantStatus: 404, wantMsg: `cluster "other-cluster" is not served here`},
		{name: "no caller token", req: func(t *testing.T) *http.Request {
			return htRequest(htCluster, "", podToken(t))
		}, wantCode: eksauth.CodeAccessDenied, wantStatus: http.StatusForbidden, wantMsg: "no Authorization header"},
		{name: "caller token of another ServiceAccount", req: func(t *testing.T) *http.Request {
			c := vtKubeClaims(vtAgentAud, vtPodNS, vtPodSA, vtPodName, vtPodUID, vtNode)
			return htRequest(htCluster, "Bearer "+c.sign(t), podToken(t))
		}, wantCode: eksauth.CodeAccessDenied, wantStatus: http.StatusForbidden, wantMsg: "not the agent's ServiceAccount"},
		{name: "caller token not bound to a pod", req: func(t *testing.T) *http.Request {
			c := vtAgentClaims()
			delete(c.kube(), "pod")
			return htRequest(htCluster, "Bearer "+c.sign(t), podToken(t))
		}, wantCode: eksauth.CodeAccessDenied, wantStatus: http.StatusForbidden, wantMsg: "not bound to a pod"},
		{name: "pod token as caller token", req: func(t *testing.T) *http.Request {
			return htRequest(htCluster, "Bearer "+podToken(t), podToken(t))
		}, wantCode: eksauth.CodeAccessDenied, wantStatus: http.StatusForbidden, wantMsg: "audience"},
		{name: "agent pod deleted", setup: func(e *htEnv) { e.pods.delete(vtAgentNS, vtAgentPod) },
			wantCode: eksauth.CodeAccessDenied, wantStatus: http.StatusForbidden, wantMsg: "agent pod kube-system/podiam-agent-x7k2p no longer exists"},
		{name: "agent pod replaced", setup: func(e *htEnv) { e.pods.put(vtAgentNS, vtAgentPod, "new-uid", vtNode, vtAgentSA) },
			wantCode: eksauth.CodeAccessDenied, wantStatus: http.StatusForbidden, wantMsg: "no longer exists"},
		{name: "agent pod on another node", setup: func(e *htEnv) { e.pods.put(vtAgentNS, vtAgentPod, vtAgentUID, vtOtherNode, vtAgentSA) },
			wantCode: eksauth.CodeAccessDenied, wantStatus: http.StatusForbidden, wantMsg: `runs on node "node-2"`},
		{name: "API server down for the agent pod", setup: func(e *htEnv) { e.pods.err[vtAgentNS+"/"+vtAgentPod] = apiDown },
			wantCode: eksauth.CodeServiceUnavailable, wantStatus: 503, wantMsg: "checking the agent pod"},
		{name: "pod token for another audience", req: func(t *testing.T) *http.Request {
			c := vtPodClaims()
			c["aud"] = []string{"sts.amazonaws.com"}
			return htRequest(htCluster, agentHeader(t), c.sign(t))
		}, wantCode: eksauth.CodeInvalidToken, wantStatus: 400, wantMsg: "audience"},
		{name: "forged pod token", req: func(t *testing.T) *http.Request {
			return htRequest(htCluster, agentHeader(t), vtSignES256(t, vtOtherKey, vtKid(t), vtPodClaims()))
		}, wantCode: eksauth.CodeInvalidToken, wantStatus: 400, wantMsg: "signature"},
		{name: "expired pod token", req: func(t *testing.T) *http.Request {
			c := vtPodClaims()
			c["exp"] = vtNow.Add(-time.Hour).Unix()
			return htRequest(htCluster, agentHeader(t), c.sign(t))
		}, wantCode: eksauth.CodeExpiredToken, wantStatus: 400, wantMsg: "expired"},
		{name: "pod token not a JWT", req: func(t *testing.T) *http.Request {
			return htRequest(htCluster, agentHeader(t), "not-a-token")
		}, wantCode: eksauth.CodeInvalidToken, wantStatus: 400, wantMsg: "not a JSON Web Token"},
		{name: "pod on another node than the caller", req: func(t *testing.T) *http.Request {
			c := vtPodClaims()
			c.kube()["node"] = map[string]any{"name": vtOtherNode, "uid": "n2"}
			return htRequest(htCluster, agentHeader(t), c.sign(t))
		}, wantCode: eksauth.CodeAccessDenied, wantStatus: 400, wantMsg: "runs on another node (node-2) than the caller (node-1)"},
		{name: "pod deleted", setup: func(e *htEnv) { e.pods.delete(vtPodNS, vtPodName) },
			wantCode: eksauth.CodeInvalidToken, wantStatus: 400, wantMsg: "the pod shop/cart-5d9f no longer exists"},
		{name: "pod replaced under its name", setup: func(e *htEnv) { e.pods.put(vtPodNS, vtPodName, "pod-uid-2", vtNode, vtPodSA) },
			wantCode: eksauth.CodeInvalidToken, wantStatus: 400, wantMsg: "the pod shop/cart-5d9f no longer exists"},
		{name: "pod elsewhere than its token says", setup: func(e *htEnv) { e.pods.put(vtPodNS, vtPodName, vtPodUID, vtOtherNode, vtPodSA) },
			wantCode: eksauth.CodeAccessDenied, wantStatus: 400, wantMsg: `runs on node "node-2"`},
		{name: "pod of another ServiceAccount than its token", setup: func(e *htEnv) { e.pods.put(vtPodNS, vtPodName, vtPodUID, vtNode, "other") },
			wantCode: eksauth.CodeInvalidToken, wantStatus: 400, wantMsg: `runs as ServiceAccount "other"`},
		{name: "API server down for the pod", setup: func(e *htEnv) { e.pods.err[vtPodNS+"/"+vtPodName] = apiDown },
			wantCode: eksauth.CodeServiceUnavailable, wantStatus: 503, wantMsg: "getting the pod shop/cart-5d9f failed"},
		{name: "API server too slow for the pod", setup: func(e *htEnv) { e.pods.err[vtPodNS+"/"+vtPodName] = context.DeadlineExceeded },
			wantCode: eksauth.CodeServiceUnavailable, wantStatus: 503, wantMsg: "did not answer in time"},
		{name: "no association", setup: func(e *htEnv) { delete(e.assoc, vtPodNS+"/"+vtPodSA) },
			wantCode: eksauth.CodeResourceNotFound, wantStatus: 404, wantMsg: "no PodIdentityAssociation for ServiceAccount shop/cart"},
		{name: "association of another namespace", setup: func(e *htEnv) {
			e.assoc[vtPodNS+"/"+vtPodSA] = &association.Association{Namespace: "attacker", Name: "steal",
				UID: "u", ServiceAccount: vtPodSA, RoleARN: htRole}
		}, wantCode: eksauth.CodeResourceNotFound, wantStatus: 404, wantMsg: "shop/cart"},
		{name: "STS refuses", setup: func(e *htEnv) {
			e.creds.err = eksauth.NewError(eksauth.CodeAccessDenied, "assuming role %s: AccessDenied: not authorized", htRole)
		}, wantCode: eksauth.CodeAccessDenied, wantStatus: 400, wantMsg: htRole},
		{name: "STS down", setup: func(e *htEnv) {
			e.creds.err = eksauth.NewError(eksauth.CodeServiceUnavailable, "STS unreachable")
		}, wantCode: eksauth.CodeServiceUnavailable, wantStatus: 503, wantMsg: "STS unreachable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newHTEnv(t)
			if tt.setup != nil {
				tt.setup(e)
			}
			var r *http.Request
			if tt.req != nil {
				r = tt.req(t)
			} else {
				r = htRequest(htCluster, agentHeader(t), podToken(t))
			}
			secrets := []string{htSecretKey, htSessionToken, strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")}
			body, err := io.ReadAll(r.Body)
			if err != nil {
				t.Fatal(err)
			}
			var in eksauth.Input
			if err := json.Unmarshal(body, &in); err != nil {
				t.Fatal(err)
			}
			secrets = append(secrets, in.Token)
			r.Body = io.NopCloser(bytes.NewReader(body))
			w := e.do(r)

			if w.Code != tt.wantStatus {
				t.Errorf("status %d; want %d (body %s)", w.Code, tt.wantStatus, w.Body)
			}
			if got := testutil.ToFloat64(e.metrics.Requests.WithLabelValues(tt.wantCode)); got != 1 {
				t.Errorf("podiam_auth_requests_total{code=%q} = %v; want 1", tt.wantCode, got)
			}
			if n := e.durationCount(t); n != 1 {
				t.Errorf("request_duration_seconds observed %d requests; want 1", n)
			}
			logs := e.logs.String()
			for _, s := range secrets {
				if s != "" && strings.Contains(logs, s) {
					t.Errorf("the log holds a token or secret (%.12s…): %s", s, logs)
				}
			}
			lines := e.logLines(t)
			if len(lines) != 1 {
				t.Fatalf("%d log lines; want 1: %s", len(lines), logs)
			}
			if tt.wantCode == CodeOK {
				checkIssued(t, w, lines[0], e)
				return
			}
			if got := w.Header().Get("X-Amzn-Errortype"); got != tt.wantCode {
				t.Errorf("X-Amzn-Errortype %q; want %q (body %s)", got, tt.wantCode, w.Body)
			}
			var eb struct{ Message string }
			if err := json.Unmarshal(w.Body.Bytes(), &eb); err != nil {
				t.Fatalf("error body %s: %v", w.Body, err)
			}
			if !strings.Contains(eb.Message, tt.wantMsg) {
				t.Errorf("message %q does not contain %q", eb.Message, tt.wantMsg)
			}
			if lines[0]["msg"] != "request refused" || lines[0]["code"] != tt.wantCode || lines[0]["reason"] != eb.Message {
				t.Errorf("refusal log line %v; want msg \"request refused\", code %s and the message as reason", lines[0], tt.wantCode)
			}
		})
	}
}

// checkIssued checks a successful answer and its audit line.
func checkIssued(t *testing.T, w *httptest.ResponseRecorder, audit map[string]any, e *htEnv) {
	t.Helper()
	var out eksauth.Output
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
		t.Fatalf("response %s: %v", w.Body, err)
	}
	want := eksauth.Output{
		Subject:  eksauth.Subject{Namespace: vtPodNS, ServiceAccount: vtPodSA},
		Audience: eksauth.Audience,
		PodIdentityAssociation: eksauth.PodIdentityAssociation{
			AssociationArn: "arn:aws:eks:us-west-2:111122223333:podidentityassociation/test-cluster/shop/cart-role",
			AssociationID:  "assoc-uid-1",
		},
		AssumedRoleUser: eksauth.AssumedRoleUser{Arn: "arn:aws:sts::111122223333:assumed-role/cart/" + htSession,
			AssumeRoleID: "AROAHT:" + htSession},
		Credentials: eksauth.Credentials{AccessKeyID: htAccessKey, SecretAccessKey: htSecretKey,
			SessionToken: htSessionToken, Expiration: vtNow.Add(time.Hour)},
	}
	out.Credentials.Expiration = out.Credentials.Expiration.UTC()
	if out != want {
		t.Errorf("response\n%+v\nwant\n%+v", out, want)
	}
	wantPod := Pod{Namespace: vtPodNS, ServiceAccount: vtPodSA, Name: vtPodName, UID: vtPodUID, NodeName: vtNode, Expiry: vtNow.Add(time.Hour)}
	if len(e.creds.calls) != 1 || e.creds.calls[0] != wantPod {
		t.Errorf("Credentials called with %+v; want once with %+v", e.creds.calls, wantPod)
	}
	wantAudit := map[string]any{
		"level": "INFO", "msg": "issued credentials", "node": vtNode, "namespace": vtPodNS,
		"serviceAccount": vtPodSA, "pod": vtPodName, "podUID": vtPodUID, "association": "shop/cart-role",
		"role": htRole, "sessionName": htSession, "cached": false,
	}
	delete(audit, "time")
	if fmt.Sprint(audit) != fmt.Sprint(wantAudit) {
		t.Errorf("audit line %v; want %v", audit, wantAudit)
	}
}

// TestHandlerRateLimit checks that a node over its rate is throttled while
// another node is not, and that throttled requests cost no pod GET and no
// issuance.
func TestHandlerRateLimit(t *testing.T) {
	e := newHTEnv(t)
	e.h.Limiter = NewNodeLimiter(rate.Every(time.Hour), 2)
	e.pods.put(vtAgentNS, "agent-2", "agent-uid-2", vtOtherNode, vtAgentSA)
	e.pods.put(vtPodNS, "cart-2", "pod-uid-2", vtOtherNode, vtPodSA)
	node1 := func() *http.Request {
		return htRequest(htCluster, "Bearer "+vtAgentClaims().sign(t), vtPodClaims().sign(t))
	}
	node2 := func() *http.Request {
		return htRequest(htCluster,
			"Bearer "+vtKubeClaims(vtAgentAud, vtAgentNS, vtAgentSA, "agent-2", "agent-uid-2", vtOtherNode).sign(t),
			vtKubeClaims(eksauth.Audience, vtPodNS, vtPodSA, "cart-2", "pod-uid-2", vtOtherNode).sign(t))
	}
	tests := []struct {
		req  func() *http.Request
		want int
	}{
		{node1, http.StatusOK},
		{node1, http.StatusOK},
		{node1, http.StatusTooManyRequests},
		{node2, http.StatusOK},
		{node1, http.StatusTooManyRequests},
	}
	for i, tt := range tests {
		w := e.do(tt.req())
		if w.Code != tt.want {
			t.Errorf("request %d: status %d; want %d (%s)", i, w.Code, tt.want, w.Body)
		}
		if w.Code == http.StatusTooManyRequests && w.Header().Get("X-Amzn-Errortype") != eksauth.CodeThrottling {
			t.Errorf("request %d: code %q; want %s", i, w.Header().Get("X-Amzn-Errortype"), eksauth.CodeThrottling)
		}
	}
	if got := testutil.ToFloat64(e.metrics.Requests.WithLabelValues(eksauth.CodeThrottling)); got != 2 {
		t.Errorf("%v throttled requests counted; want 2", got)
	}
	if n := e.pods.count(vtPodNS, vtPodName); n != 2 {
		t.Errorf("%d GETs of the pod; want 2 (none for throttled requests)", n)
	}
	if n := len(e.creds.calls); n != 3 {
		t.Errorf("%d issuances; want 3", n)
	}
}

// TestHandlerAgentPodCache checks that the agent pod is looked up once per
// agentPodTTL, and that its deletion takes effect when the entry expires.
func TestHandlerAgentPodCache(t *testing.T) {
	e := newHTEnv(t)
	req := func() *http.Request {
		return htRequest(htCluster, "Bearer "+vtAgentClaims().sign(t), vtPodClaims().sign(t))
	}
	steps := []struct {
		name     string
		do       func()
		want     int
		wantGets int // of the agent pod, so far
	}{
		{"first request looks the agent up", func() {}, http.StatusOK, 1},
		{"second within the TTL does not", func() { e.now = e.now.Add(agentPodTTL - time.Second) }, http.StatusOK, 1},
		{"deleted, still cached", func() { e.pods.delete(vtAgentNS, vtAgentPod) }, http.StatusOK, 1},
		{"the TTL passed: refused", func() { e.now = e.now.Add(time.Second) }, http.StatusForbidden, 2},
		{"the refusal is cached too", func() { e.now = e.now.Add(agentPodTTL - time.Second) }, http.StatusForbidden, 2},
		{"and asked again after the TTL", func() { e.now = e.now.Add(time.Second) }, http.StatusForbidden, 3},
	}
	for _, s := range steps {
		s.do()
		w := e.do(req())
		if w.Code != s.want {
			t.Errorf("%s: status %d; want %d (%s)", s.name, w.Code, s.want, w.Body)
		}
		if n := e.pods.count(vtAgentNS, vtAgentPod); n != s.wantGets {
			t.Errorf("%s: %d GETs of the agent pod; want %d", s.name, n, s.wantGets)
		}
	}
}

// TestHandlerAgentPodMerged sends a node's first burst at once: the requests
// share one GET of the agent pod instead of one each.
func TestHandlerAgentPodMerged(t *testing.T) {
	e := newHTEnv(t)
	e.pods.delay = 50 * time.Millisecond
	agent := "Bearer " + vtAgentClaims().sign(t)
	pod := vtPodClaims().sign(t)
	var wg sync.WaitGroup
	codes := make([]int, 32)
	for i := range codes {
		wg.Go(func() { codes[i] = e.do(htRequest(htCluster, agent, pod)).Code })
	}
	wg.Wait()
	for i, c := range codes {
		if c != http.StatusOK {
			t.Errorf("request %d: status %d; want 200", i, c)
		}
	}
	if n := e.pods.count(vtAgentNS, vtAgentPod); n != 1 {
		t.Errorf("%d GETs of the agent pod for 32 concurrent requests; want 1", n)
	}
}

// TestHandlerLeakedAgentToken replays the token of an agent pod that is gone
// (deleted, replaced, or moved to another node) in a loop: the node's rate
// limit applies before the agent pod is looked up, and the refusal is cached,
// so the loop costs one GET of the API server per agentPodTTL and is
// throttled like any node's requests.
func TestHandlerLeakedAgentToken(t *testing.T) {
	tests := []struct {
		name  string
		setup func(e *htEnv)
	}{
		{"deleted", func(e *htEnv) { e.pods.delete(vtAgentNS, vtAgentPod) }},
		{"another UID", func(e *htEnv) { e.pods.put(vtAgentNS, vtAgentPod, "new-uid", vtNode, vtAgentSA) }},
		{"another node", func(e *htEnv) { e.pods.put(vtAgentNS, vtAgentPod, vtAgentUID, vtOtherNode, vtAgentSA) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newHTEnv(t)
			e.h.Limiter = NewNodeLimiter(rate.Every(time.Hour), 3)
			tt.setup(e)
			header := "Bearer " + vtAgentClaims().sign(t)
			var codes []string
			for range 10 {
				w := e.do(htRequest(htCluster, header, vtPodClaims().sign(t)))
				codes = append(codes, w.Header().Get("X-Amzn-Errortype"))
			}
			want := []string{eksauth.CodeAccessDenied, eksauth.CodeAccessDenied, eksauth.CodeAccessDenied}
			for range 7 {
				want = append(want, eksauth.CodeThrottling)
			}
			if fmt.Sprint(codes) != fmt.Sprint(want) {
				t.Errorf("codes %v; want %v", codes, want)
			}
			if n := e.pods.count(vtAgentNS, vtAgentPod); n != 1 {
				t.Errorf("%d GETs of the agent pod; want 1", n)
			}
		})
	}
}

// TestHandlerTerminatedPod checks that a pod that has finished gets no
// credentials, though its token is still valid until the pod is deleted.
func TestHandlerTerminatedPod(t *testing.T) {
	tests := []struct {
		phase    corev1.PodPhase
		wantCode string
	}{
		{corev1.PodPending, CodeOK},
		{corev1.PodRunning, CodeOK},
		{corev1.PodSucceeded, eksauth.CodeInvalidToken},
		{corev1.PodFailed, eksauth.CodeInvalidToken},
	}
	for _, tt := range tests {
		t.Run(string(tt.phase), func(t *testing.T) {
			e := newHTEnv(t)
			e.pods.mu.Lock()
			e.pods.pods[vtPodNS+"/"+vtPodName].Status.Phase = tt.phase
			e.pods.mu.Unlock()
			w := e.do(htRequest(htCluster, "Bearer "+vtAgentClaims().sign(t), vtPodClaims().sign(t)))
			code := CodeOK
			if w.Code != http.StatusOK {
				code = w.Header().Get("X-Amzn-Errortype")
			}
			if code != tt.wantCode {
				t.Fatalf("code %s; want %s (%s)", code, tt.wantCode, w.Body)
			}
			if code != CodeOK && !strings.Contains(w.Body.String(), "pod shop/cart-5d9f has terminated") {
				t.Errorf("body %s; want it to say the pod has terminated", w.Body)
			}
			if code != CodeOK && len(e.creds.calls) != 0 {
				t.Error("credentials were issued")
			}
		})
	}
}

// TestHandlerRefusalLogLevel checks that refusals of callers not yet
// verified are logged at debug level (anyone who reaches the port could
// flood the log otherwise), and still counted, while those of a verified
// caller are warnings.
func TestHandlerRefusalLogLevel(t *testing.T) {
	tests := []struct {
		name      string
		req       func(t *testing.T) *http.Request
		wantLevel string
		wantCode  string
		noKeys    bool // the cluster's keys cannot be fetched
	}{
		// podiam's own dependency failed: a warning, even before the caller
		// is known.
		{"keys unavailable", func(t *testing.T) *http.Request {
			return htRequest(htCluster, "Bearer "+vtAgentClaims().sign(t), vtPodClaims().sign(t))
		}, "WARN", eksauth.CodeServiceUnavailable, true},
		{"no caller token", func(t *testing.T) *http.Request {
			return htRequest(htCluster, "", vtPodClaims().sign(t))
		}, "DEBUG", eksauth.CodeAccessDenied, false},
		{"forged caller token", func(t *testing.T) *http.Request {
			return htRequest(htCluster, "Bearer "+vtSignES256(t, vtOtherKey, vtKid(t), vtAgentClaims()), vtPodClaims().sign(t))
		}, "DEBUG", eksauth.CodeAccessDenied, false},
		{"another cluster", func(t *testing.T) *http.Request {
			return htRequest("other-cluster", "", vtPodClaims().sign(t))
		}, "DEBUG", eksauth.CodeResourceNotFound, false},
		{"verified caller, forged pod token", func(t *testing.T) *http.Request {
			return htRequest(htCluster, "Bearer "+vtAgentClaims().sign(t), vtSignES256(t, vtOtherKey, vtKid(t), vtPodClaims()))
		}, "WARN", eksauth.CodeInvalidToken, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newHTEnv(t)
			if tt.noKeys {
				e.h.Verifier.Keys = failingKeys{}
			}
			e.do(tt.req(t))
			lines := e.logLines(t)
			if len(lines) != 1 || lines[0]["level"] != tt.wantLevel || lines[0]["code"] != tt.wantCode {
				t.Errorf("log %v; want one %s line of code %s", lines, tt.wantLevel, tt.wantCode)
			}
			if got := testutil.ToFloat64(e.metrics.Requests.WithLabelValues(tt.wantCode)); got != 1 {
				t.Errorf("requests_total{code=%s} = %v; want 1", tt.wantCode, got)
			}
		})
	}
}

// TestHandlerAgentPodCacheBounded checks that the cache of agent pods does
// not grow past agentPodCacheMax, and makes room from expired entries.
func TestHandlerAgentPodCacheBounded(t *testing.T) {
	e := newHTEnv(t)
	for i := range agentPodCacheMax {
		e.h.agentPods[fmt.Sprint("uid-", i)] = agentPod{expires: e.now.Add(time.Second)}
	}
	c := Caller{Namespace: vtAgentNS, ServiceAccount: vtAgentSA, PodName: vtAgentPod, PodUID: vtAgentUID, NodeName: vtNode}
	if err := e.h.checkAgentPod(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	if n := len(e.h.agentPods); n != agentPodCacheMax {
		t.Errorf("%d entries; want %d (full of live entries: not cached)", n, agentPodCacheMax)
	}
	e.now = e.now.Add(time.Second)
	if err := e.h.checkAgentPod(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	if n := len(e.h.agentPods); n != 1 {
		t.Errorf("%d entries; want 1 (the expired ones swept)", n)
	}
}

// TestHandlerCachedAudit checks the cached attribute of the audit line.
func TestHandlerCachedAudit(t *testing.T) {
	e := newHTEnv(t)
	e.creds.cached = true
	if w := e.do(htRequest(htCluster, "Bearer "+vtAgentClaims().sign(t), vtPodClaims().sign(t))); w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	lines := e.logLines(t)
	if len(lines) != 1 || lines[0]["cached"] != true {
		t.Errorf("audit %v; want cached true", lines)
	}
}

// TestHandlerGarbage sends bodies and headers no agent sends: each gets a
// 4xx EKS Auth error, none reaches the credentials.
func TestHandlerGarbage(t *testing.T) {
	auth := "Bearer " + vtAgentClaims().sign(t)
	tests := []struct {
		name, body, contentType, authorization string
	}{
		{"empty body", "", "application/json", auth},
		{"not JSON", "{", "application/json", auth},
		{"null", "null", "application/json", auth},
		{"token null", `{"token":null}`, "application/json", auth},
		{"token a number", `{"token":1}`, "application/json", auth},
		{"binary", "\x00\xff\xfe{\"token\":", "application/json", auth},
		{"huge", `{"token":"` + strings.Repeat("a", eksauth.MaxRequestBody) + `"}`, "application/json", auth},
		{"JWT shape, junk parts", `{"token":"a.b.c"}`, "application/json", auth},
		{"JWT of 30,000 bytes", `{"token":"` + strings.Repeat("a", 30000) + `.b.c"}`, "application/json", auth},
		{"JSON parts, no signature", `{"token":"e30.e30.e30"}`, "application/json", auth},
		{"text/plain", `{"token":"a.b.c"}`, "text/plain", auth},
		{"garbage caller", `{"token":"a.b.c"}`, "application/json", "Bearer \x00\x01.\xff.."},
		{"caller token in the body", `{"token":"` + strings.TrimPrefix(auth, "Bearer ") + `"}`, "application/json", auth},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newHTEnv(t)
			r := httptest.NewRequest(http.MethodPost, eksauth.Path(htCluster), strings.NewReader(tt.body))
			r.Header.Set("Content-Type", tt.contentType)
			r.Header.Set("Authorization", tt.authorization)
			w := e.do(r)
			if w.Code < 400 || w.Code >= 500 || w.Header().Get("X-Amzn-Errortype") == "" {
				t.Errorf("status %d, code %q; want a 4xx EKS Auth error", w.Code, w.Header().Get("X-Amzn-Errortype"))
			}
			if len(e.creds.calls) != 0 {
				t.Error("credentials were issued")
			}
		})
	}
}

// TestNewHandlerRequiresParts checks that a wiring mistake is caught at
// start-up rather than on the first request: a missing part, or an empty
// setting (an empty issuer would accept tokens without iss).
func TestNewHandlerRequiresParts(t *testing.T) {
	tests := []struct {
		name   string
		change func(o *HandlerOptions)
	}{
		{"nothing", func(o *HandlerOptions) { *o = HandlerOptions{} }},
		{"no Verifier", func(o *HandlerOptions) { o.Verifier = nil }},
		{"no Pods", func(o *HandlerOptions) { o.Pods = nil }},
		{"no cluster name", func(o *HandlerOptions) { o.Cluster.Name = "" }},
		{"no issuer", func(o *HandlerOptions) { o.Verifier.Issuer = "" }},
		{"no agent audience", func(o *HandlerOptions) { o.Verifier.AgentAudience = "" }},
		{"no agent namespace", func(o *HandlerOptions) { o.Verifier.AgentNamespace = "" }},
		{"no agent ServiceAccount", func(o *HandlerOptions) { o.Verifier.AgentServiceAccount = "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newHTEnv(t) // a complete set of options, then one taken away
			o := e.h.HandlerOptions
			v := *o.Verifier
			o.Verifier = &v
			tt.change(&o)
			defer func() {
				if recover() == nil {
					t.Error("NewHandler did not panic")
				}
			}()
			NewHandler(o)
		})
	}
}

// TestAssociationARN checks the synthetic ARN of an association.
func TestAssociationARN(t *testing.T) {
	a := &association.Association{Namespace: "shop", Name: "cart"}
	tests := []struct {
		c    Cluster
		want string
	}{
		{Cluster{Name: "c1", Region: "eu-west-1", Account: "111122223333"},
			"arn:aws:eks:eu-west-1:111122223333:podidentityassociation/c1/shop/cart"},
		{Cluster{Name: "c1", ARN: "arn:aws-cn:eks:cn-north-1:111122223333:cluster/c1", Region: "cn-north-1", Account: "111122223333"},
			"arn:aws-cn:eks:cn-north-1:111122223333:podidentityassociation/c1/shop/cart"},
		{Cluster{Name: "c1", ARN: "not an arn"}, "arn:aws:eks:::podidentityassociation/c1/shop/cart"},
	}
	for _, tt := range tests {
		if got := AssociationARN(tt.c, a); got != tt.want {
			t.Errorf("AssociationARN(%+v) = %s; want %s", tt.c, got, tt.want)
		}
	}
}

// FuzzHandler sends arbitrary bodies and Authorization headers: the handler
// must answer each with credentials or an EKS Auth error, never panic, and
// never echo the token it was sent. The corpus in testdata holds requests
// with valid tokens of the fixed test keys (valid at vtNow) to start from.
func FuzzHandler(f *testing.F) {
	f.Add([]byte(`{"token":"e30.e30.e30"}`), "Bearer e30.e30.e30")
	f.Add([]byte(`{"token":"`+vtPodClaims().sign(f)+`"}`), "Bearer "+vtAgentClaims().sign(f))
	e := newHTEnv(f)
	f.Fuzz(func(t *testing.T, body []byte, authorization string) {
		e.logs.Reset()
		e.creds.calls = nil
		r := httptest.NewRequest(http.MethodPost, eksauth.Path(htCluster), bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Authorization", authorization)
		w := e.do(r)
		code := w.Header().Get("X-Amzn-Errortype")
		switch {
		case w.Code == http.StatusOK && code == "":
			if len(e.creds.calls) != 1 {
				t.Fatalf("200 with %d issuances", len(e.creds.calls))
			}
		case w.Code != http.StatusOK && code != "" && eksauth.StatusFor(code) == w.Code:
		case code == eksauth.CodeAccessDenied && w.Code == http.StatusForbidden &&
			strings.Contains(w.Body.String(), "caller token refused"):
			// A refusal of the caller's own token.
		case code == eksauth.CodeInvalidRequest && w.Code >= 400 && w.Code < 500:
			// DecodeRequest's own statuses: 413, 415.
		default:
			t.Fatalf("status %d with code %q: %s", w.Code, code, w.Body)
		}
		var in eksauth.Input
		if json.Unmarshal(body, &in) == nil && len(in.Token) >= 40 && code != "" {
			if strings.Contains(w.Body.String(), in.Token) || strings.Contains(e.logs.String(), in.Token) {
				t.Fatalf("the token was echoed: %s %s", w.Body, e.logs)
			}
		}
	})
}

// TestFuzzCorpusValid checks that the corpus' valid request still gets
// credentials: otherwise the fuzzer would never get past the token checks.
func TestFuzzCorpusValid(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzHandler", "valid"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 3 {
		t.Fatalf("corpus file has %d lines; want 3", len(lines))
	}
	body, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
	if err != nil {
		t.Fatal(err)
	}
	authorization, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[2], "string("), ")"))
	if err != nil {
		t.Fatal(err)
	}
	e := newHTEnv(t)
	r := httptest.NewRequest(http.MethodPost, eksauth.Path(htCluster), strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Authorization", authorization)
	if w := e.do(r); w.Code != http.StatusOK {
		t.Errorf("status %d: %s", w.Code, w.Body)
	}
}

// TestHandlerConcurrent serves requests from many goroutines at once, for
// the race detector: the agent-pod cache and the limiter are shared.
func TestHandlerConcurrent(t *testing.T) {
	e := newHTEnv(t)
	agent, pod := "Bearer "+vtAgentClaims().sign(t), vtPodClaims().sign(t)
	codes := make([]int, 32)
	var wg sync.WaitGroup
	for i := range codes {
		wg.Go(func() { codes[i] = e.do(htRequest(htCluster, agent, pod)).Code })
	}
	wg.Wait()
	for i, c := range codes {
		if c != http.StatusOK {
			t.Errorf("request %d: status %d", i, c)
		}
	}
	if got := testutil.ToFloat64(e.metrics.Requests.WithLabelValues(CodeOK)); got != float64(len(codes)) {
		t.Errorf("%v requests counted; want %d", got, len(codes))
	}
}

// failingKeys is a key set whose keys cannot be fetched.
type failingKeys struct{}

func (failingKeys) Verify(context.Context, *jwks.Token) error {
	return fmt.Errorf("reading the keys: %w", jwks.ErrFetch)
}
