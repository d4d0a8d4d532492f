package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podiam/podiam/api/v1alpha1"
	"github.com/podiam/podiam/internal/eksauth"
	"github.com/podiam/podiam/test/testutil"
)

// agentNode is the node every agent of these tests runs on.
const agentNode = "node-a"

// appFixture is the set-up the agent tests share: podiam sts with role
// "app", trusted by ServiceAccount app of f.ns, which an association maps to
// it, and an agent pod on agentNode.
func appFixture(t *testing.T) *authFixture {
	t.Helper()
	ctx := ctxFor(t, 2*time.Minute)
	f := newAuthFixture(t, ctx, authFixtureOptions{nodes: []string{agentNode}, roles: func(f *authFixture) []stsRole {
		return []stsRole{{"app", f.podIdentityTrust("--serviceaccount", f.ns+"/app")}}
	}})
	newServiceAccount(t, ctx, f.ns, "app", nil)
	f.associate(f.ns, "app", v1alpha1.PodIdentityAssociationSpec{ServiceAccount: "app", RoleARN: authRoleARN("app")})
	return f
}

// podToken creates pod name of ServiceAccount sa on node and returns it with
// a token bound to it, audience pods.eks.amazonaws.com, as the webhook's
// projected volume gets it.
func (f *authFixture) podToken(sa, name, node string) (*corev1.Pod, string) {
	f.t.Helper()
	p := f.createPod(f.ns, sa, name, node)
	return p, f.token(f.ns, sa, p, eksauth.Audience)
}

// deletePod deletes pod at once (no kubelet confirms a deletion here).
func (f *authFixture) deletePod(p *corev1.Pod) {
	f.t.Helper()
	if err := client.CoreV1().Pods(p.Namespace).Delete(f.ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))}); err != nil {
		f.t.Fatalf("deleting pod %s/%s: %v", p.Namespace, p.Name, err)
	}
}

// TestAgentChain is Pod Identity end to end as an application sees it: the
// AWS SDK for Go v2's container credential provider sends the pod's token
// file to `podiam agent`, which checks it locally and calls `podiam auth`
// with its own token; podiam auth assumes the association's role at `podiam
// sts`, and the credentials sign GetCallerIdentity as the session EKS would
// name. Asked again, the agent answers from its cache (no call to podiam
// auth, none to STS); once the pod is deleted, the agent forgets its
// credentials and refuses that token itself, with no call to podiam auth.
// No log holds a token or a credential.
func TestAgentChain(t *testing.T) {
	t.Parallel()
	f := appFixture(t)
	ctx := f.ctx
	pod, token := f.podToken("app", "app-a", agentNode)
	tokenFile := f.writeToken("app-a", token)
	f.startAuth(false)
	a := f.startAgent(agentNode)

	// 1. The SDK's provider, behind the SDK's credentials cache, as
	// config.LoadDefaultConfig builds it.
	p := a.provider(tokenFile)
	creds := aws.NewCredentialsCache(p, func(o *aws.CredentialsCacheOptions) { o.ExpiryWindow = 5 * time.Minute })
	first, err := creds.Retrieve(ctx)
	if err != nil {
		t.Fatalf("the SDK's container credential provider, from podiam agent: %v", err)
	}
	f.secrets = append(f.secrets, first.SecretAccessKey, first.SessionToken)
	if !strings.HasPrefix(first.AccessKeyID, "ASIA") || first.SecretAccessKey == "" || first.SessionToken == "" ||
		first.AccountID != authAccount || !first.CanExpire {
		t.Errorf("credentials: key id %q, secret set %v, token set %v, account %q, can expire %v; want a session of account %s",
			first.AccessKeyID, first.SecretAccessKey != "", first.SessionToken != "", first.AccountID, first.CanExpire, authAccount)
	}
	id, err := f.stsClient(creds).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatalf("GetCallerIdentity with the agent's credentials: %v", err)
	}
	// EKS's session name: eks-<cluster>-<pod>-<uuid> (short enough here
	// not to be cut at 64).
	session := regexp.MustCompile(`^arn:aws:sts::` + authAccount + `:assumed-role/app/eks-` + regexp.QuoteMeta(f.clusterName) +
		`-app-a-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	if arn := aws.ToString(id.Arn); !session.MatchString(arn) {
		t.Errorf("GetCallerIdentity: %q, want %s", arn, session)
	}
	if n := f.stsAssumeRoleCalls(); n != 1 {
		t.Errorf("podiam sts answered %v AssumeRole calls, want 1", n)
	}

	// 2. Asked again (a provider without the SDK's cache): the agent's
	// cache answers, with the same credentials; neither podiam auth nor
	// STS is called.
	hits := a.metric("podiam_agent_cache_hits_total")
	again, err := f.retrieve(p)
	if err != nil {
		t.Fatalf("second retrieval: %v", err)
	}
	if again.AccessKeyID != first.AccessKeyID || again.SessionToken != first.SessionToken {
		t.Errorf("second retrieval: key %s, want the cached %s", again.AccessKeyID, first.AccessKeyID)
	}
	// The SDK's cache keeps an expiry moved ExpiryWindow earlier; this is
	// the agent's.
	if exp := time.Until(again.Expires); exp < 50*time.Minute || exp > 61*time.Minute {
		t.Errorf("credentials expire in %v, want about an hour (podiam auth's --session-duration)", exp.Round(time.Second))
	}
	if n := a.metric("podiam_agent_cache_hits_total"); n != hits+1 {
		t.Errorf("podiam_agent_cache_hits_total = %v after a second retrieval, want %v", n, hits+1)
	}
	for what, n := range map[string]float64{
		"podiam agent's backend calls":         a.backendCalls(""),
		"podiam auth's answers":                f.authMetric("podiam_auth_requests_total"),
		"podiam sts's AssumeRole calls":        f.stsAssumeRoleCalls(),
		"podiam agent's cache misses":          a.metric("podiam_agent_cache_misses_total"),
		"podiam agent's pods with credentials": a.metric("podiam_agent_cache_entries"),
	} {
		if n != 1 {
			t.Errorf("%s: %v after two retrievals for one pod, want 1", what, n)
		}
	}

	// 3. SPEC §6's answer, as the SDKs of every language read it.
	ans := a.get(token, "")
	if ans.status != http.StatusOK {
		t.Fatalf("GET /v1/credentials: %d %q, want 200", ans.status, ans.body)
	}
	if ans.contentType != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ans.contentType)
	}
	var body map[string]string
	if err := json.Unmarshal([]byte(ans.body), &body); err != nil {
		t.Fatalf("the answer is not a JSON object of strings: %v", err)
	}
	keys := make([]string, 0, len(body))
	for k := range body {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"AccessKeyId", "AccountId", "Expiration", "SecretAccessKey", "Token"}; !slices.Equal(keys, want) {
		t.Errorf("answer keys %v, want %v", keys, want)
	}
	if exp, err := time.Parse(time.RFC3339Nano, body["Expiration"]); err != nil || !exp.Equal(again.Expires) {
		t.Errorf("Expiration %q (%v), want RFC 3339 for %v", body["Expiration"], err, again.Expires)
	}
	if body["AccessKeyId"] != first.AccessKeyID || body["AccountId"] != authAccount {
		t.Errorf("AccessKeyId %q AccountId %q, want %q %q", body["AccessKeyId"], body["AccountId"], first.AccessKeyID, authAccount)
	}

	// 4. The pod is deleted: the agent's pod watcher drops its
	// credentials and remembers the pod as deleted, so the token (still
	// valid for an hour) is refused by the agent itself, without a call to
	// podiam auth.
	f.deletePod(pod)
	a.waitMetric(0, "podiam_agent_cache_entries")
	_, err = f.retrieve(p)
	var status interface{ HTTPStatusCode() int }
	if err == nil || !errors.As(err, &status) || status.HTTPStatusCode() != http.StatusForbidden ||
		!strings.Contains(err.Error(), "was deleted") {
		t.Errorf("retrieval for the deleted pod: %v, want HTTP 403 saying the pod was deleted", err)
	}
	if n := a.backendCalls(eksauth.CodeInvalidToken); n != 0 {
		t.Errorf("podiam_agent_backend_calls_total{result=%q} = %v, want 0 (the deleted pod's token is refused locally)", eksauth.CodeInvalidToken, n)
	}
	if n := f.authMetric("podiam_auth_requests_total", `code="`+eksauth.CodeInvalidToken+`"`); n != 0 {
		t.Errorf("podiam auth refused %v requests with %s, want 0", n, eksauth.CodeInvalidToken)
	}
	if n := f.stsAssumeRoleCalls(); n != 1 {
		t.Errorf("podiam sts answered %v AssumeRole calls, want still 1", n)
	}

	// 5. One issuance line in the agent's log, and no secret in any log.
	if n := a.issuanceLines("app-a"); n != 1 {
		t.Errorf("the agent logged %d issuances for pod app-a, want 1", n)
	}
	a.checkLogsClean()
}

// TestAgentRefuses sends `podiam agent` every request it must refuse, each
// checked for its HTTP status and what the plain-text message says: no
// token, garbage, an expired token, another audience, a forged signature,
// another cluster's token (with the same issuer or its own), another
// issuer's, a token not bound to a pod, one naming another node, a deleted
// pod's, a pod without association, and a Host header that is not the
// listen address; and a pod over its request rate, while another pod of the
// node is still served. A valid request first proves the set-up.
func TestAgentRefuses(t *testing.T) {
	t.Parallel()
	f := appFixture(t)
	newServiceAccount(t, f.ctx, f.ns, "unassociated", nil)
	appA, appAToken := f.podToken("app", "app-a", agentNode)
	_, appBToken := f.podToken("app", "app-b", "node-b")
	_, unassociated := f.podToken("unassociated", "unassociated-a", agentNode)
	gone, goneToken := f.podToken("app", "gone-a", agentNode)
	f.deletePod(gone)
	_, busyToken := f.podToken("app", "busy-a", agentNode)

	// Tokens kube-apiserver would not issue: app-a's claims re-signed.
	header, claims := jwtParts(t, appAToken)
	otherKey := newRSAKey(t)
	past := time.Now().Add(-3 * time.Hour).Unix()
	// The cluster's key signs the expired token and the other issuer's, so
	// that time and issuer are all that is wrong with them.
	expired := signJWT(t, header, withClaims(claims, map[string]any{"iat": past, "nbf": past, "exp": past + 3600}), cluster.ServiceAccountSigningKey())
	otherIssuer := signJWT(t, header, withClaims(claims, map[string]any{"iss": "https://oidc.other-cluster.example"}), cluster.ServiceAccountSigningKey())
	forged := signJWT(t, header, claims, otherKey) // the cluster's kid, another key
	// Another cluster's token, signed with its own key (a kid the agent
	// does not know, so it refetches the cluster's keys first): with the
	// same issuer, as clusters that keep the default issuer share it, and
	// with its own.
	otherKid := map[string]any{"alg": "RS256", "kid": "other-cluster"}
	otherCluster := signJWT(t, otherKid, claims, otherKey)
	otherClusterIssuer := signJWT(t, otherKid, withClaims(claims, map[string]any{"iss": "https://oidc.other-cluster.example"}), otherKey)
	f.secrets = append(f.secrets, expired, otherIssuer, forged, otherCluster, otherClusterIssuer)

	f.startAuth(false)
	a := f.startAgent(agentNode)
	if ans := a.get(appAToken, ""); ans.status != http.StatusOK {
		t.Fatalf("valid request: %d %q", ans.status, ans.body)
	}

	// backend: the refusal is podiam auth's (the pod and its association
	// are the API server's to know); the others are the agent's own, with
	// no call to podiam auth.
	tests := []struct {
		name       string
		token      string
		host       string // default the listen address
		backend    bool
		wantStatus int
		wantMsg    string
	}{
		{name: "no Authorization header", wantStatus: http.StatusBadRequest, wantMsg: "no Authorization header"},
		{name: "garbage", token: "not-a-token", wantStatus: http.StatusBadRequest, wantMsg: "not a JWT"},
		{name: "expired", token: expired, wantStatus: http.StatusBadRequest, wantMsg: "expired"},
		{name: "another audience", token: f.token(f.ns, "app", appA, "sts.amazonaws.com"), wantStatus: http.StatusForbidden, wantMsg: "audience"},
		{name: "forged signature", token: forged, wantStatus: http.StatusForbidden, wantMsg: "signature"},
		{name: "another cluster with the same issuer", token: otherCluster, wantStatus: http.StatusForbidden, wantMsg: "signature"},
		{name: "another cluster with its own issuer", token: otherClusterIssuer, wantStatus: http.StatusForbidden, wantMsg: "issuer"},
		{name: "another issuer with the cluster's key", token: otherIssuer, wantStatus: http.StatusForbidden, wantMsg: "issuer"},
		{name: "not bound to a pod", token: f.token(f.ns, "app", nil, eksauth.Audience), wantStatus: http.StatusForbidden, wantMsg: "not bound to a pod"},
		{name: "another node", token: appBToken, wantStatus: http.StatusForbidden, wantMsg: `names node "node-b"`},
		{name: "deleted pod", token: goneToken, backend: true, wantStatus: http.StatusForbidden, wantMsg: "no longer exists"},
		{name: "no association", token: unassociated, backend: true, wantStatus: http.StatusNotFound, wantMsg: "no Pod Identity association matches service account " + f.ns + "/unassociated"},
		{name: "wrong Host header", token: appAToken, host: "evil.example", wantStatus: http.StatusForbidden, wantMsg: `Host header "evil.example"`},
		{name: "Host of another port", token: appAToken, host: fmt.Sprintf("127.0.0.1:%d", a.port+1), wantStatus: http.StatusForbidden, wantMsg: "Host header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := a.backendCalls("")
			ans := a.get(tt.token, tt.host)
			switch {
			case ans.status == http.StatusOK:
				t.Errorf("got credentials, want %d with %q", tt.wantStatus, tt.wantMsg)
			case ans.status != tt.wantStatus || !strings.Contains(ans.body, tt.wantMsg):
				t.Errorf("got %d %q, want %d with %q", ans.status, ans.body, tt.wantStatus, tt.wantMsg)
			}
			want := 0.0
			if tt.backend {
				want = 1
			}
			if n := a.backendCalls("") - calls; n != want {
				t.Errorf("%v backend calls, want %v", n, want)
			}
			if ans.status != http.StatusOK && strings.HasPrefix(ans.contentType, "application/json") {
				t.Errorf("refusal as %q, want plain text", ans.contentType)
			}
		})
	}

	// A pod over its rate (--pod-burst 20, refilled at 10/s) gets 429;
	// another pod of the node is still served.
	limited := 0
	for range 40 {
		switch ans := a.get(busyToken, ""); {
		case ans.status == http.StatusTooManyRequests && strings.Contains(ans.body, "busy-a"):
			limited++
		case ans.status != http.StatusOK:
			t.Fatalf("pod busy-a: %d %q, want 200 or 429 naming the pod", ans.status, ans.body)
		}
	}
	if limited == 0 {
		t.Errorf("40 requests of pod busy-a at once: none refused with 429")
	}
	if ans := a.get(appAToken, ""); ans.status != http.StatusOK {
		t.Errorf("pod app-a while busy-a is limited: %d %q, want 200", ans.status, ans.body)
	}
	a.checkLogsClean()
}

// TestAgentBackendDown stops `podiam auth` once the agent holds a pod's
// credentials. With --max-credential-retention-before-renewal=1s the next
// request is answered with the cached credentials at once and starts a
// renewal in the background; the call fails, and the credentials, valid for
// most of an hour, keep being served, the failed calls counted. A pod the
// agent never served gets a clear error.
//
// Credentials served until they stop being servable, then refused, are not
// shown here: STS grants at least 15 minutes, and the agent serves
// credentials while more than 5.5 minutes are left, so that would take 9
// minutes of waiting.
func TestAgentBackendDown(t *testing.T) {
	t.Parallel()
	f := appFixture(t)
	_, token := f.podToken("app", "app-a", agentNode)
	_, lateToken := f.podToken("app", "late-a", agentNode)
	f.startAuth(false)
	a := f.startAgent(agentNode, "--max-credential-retention-before-renewal=1s")
	p := a.provider(f.writeToken("app-a", token))
	first, err := f.retrieve(p)
	if err != nil {
		t.Fatalf("first retrieval: %v", err)
	}
	renewalDue := time.Now().Add(1100 * time.Millisecond) // past the retention

	f.authProc.Stop()
	time.Sleep(time.Until(renewalDue))
	again, err := f.retrieve(p)
	if err != nil {
		t.Fatalf("retrieval with podiam auth down and still-valid credentials: %v", err)
	}
	if again.AccessKeyID != first.AccessKeyID {
		t.Errorf("with podiam auth down: key %s, want the cached %s", again.AccessKeyID, first.AccessKeyID)
	}
	// The renewal runs in the background: wait for its failure.
	a.waitMetric(1, "podiam_agent_backend_calls_total", `result="unreachable"`)
	if n := a.backendCalls("ok"); n != 1 {
		t.Errorf("podiam_agent_backend_calls_total{result=\"ok\"} = %v, want 1", n)
	}
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, "a WARN line for pod app-a: a failed renewal is logged", func() (bool, string) {
		n := a.logLines("WARN", "app-a")
		return n >= 1, fmt.Sprint(n)
	})

	// Nothing cached for this pod: a server error that says why.
	ans := a.get(lateToken, "")
	if ans.status != http.StatusInternalServerError || !strings.Contains(ans.body, "could not be reached") {
		t.Errorf("new pod with podiam auth down: %d %q, want 500 saying the credential service could not be reached", ans.status, ans.body)
	}
	a.checkLogsClean()
}
