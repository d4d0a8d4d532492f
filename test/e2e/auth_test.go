package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podiam/podiam/api/v1alpha1"
	"github.com/podiam/podiam/internal/eksauth"
	"github.com/podiam/podiam/test/testutil"
)

// TestAuthChain is Pod Identity end to end without AWS: the agent's own
// token and a pod's token, both from the TokenRequest API and bound to pods
// on one node, go through internal/eksauth's client (bearer token file) to
// `podiam auth`, which assumes the association's role at `podiam sts` as
// the user whose keys it holds; the credentials then sign GetCallerIdentity,
// which names the role and the session EKS would name. A second request for
// the same pod is served from the cache; role chaining (targetRoleArn, the
// session tags passing on to the target role's session) and
// disableSessionTags (a trust policy pinning sts:ExternalId) work through the
// same path; the audit line is logged and no secret is. podiam auth runs as
// the ServiceAccount of deploy/auth, with nothing but its shipped RBAC.
func TestAuthChain(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 2*time.Minute)
	const node = "node-a"
	// taggedTrust trusts the sessions of role from that carry the chain
	// ServiceAccount's tags. As IAM, podiam sts gives a role session
	// caller's aws:PrincipalTag/* all of the session's tags, and a chained
	// session holds only the transitive tags of the session it came from:
	// the target's trust sees the first session's tags, the probe's (for
	// the target session) those that passed on.
	taggedTrust := func(f *authFixture, from string) string {
		return `{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
  "Principal": {"AWS": "` + authRoleARN(from) + `"}, "Action": ["sts:AssumeRole", "sts:TagSession"],
  "Condition": {"StringEquals": {"aws:PrincipalTag/kubernetes-namespace": "` + f.ns + `",
    "aws:PrincipalTag/kubernetes-service-account": "chain"}}}]}`
	}
	f := newAuthFixture(t, ctx, authFixtureOptions{nodes: []string{node}, roles: func(f *authFixture) []stsRole {
		return []stsRole{
			{"app", f.podIdentityTrust("--serviceaccount", f.ns+"/app")},
			{"first", f.podIdentityTrust("--serviceaccount", f.ns+"/chain")},
			// The target role wants the first session's tags: podiam auth
			// assumes it with that session, which carries them.
			{"target", taggedTrust(f, "first")},
			// Assumed by the test with the target session's credentials:
			// the tags passed on to the target session (transitive).
			{"probe", taggedTrust(f, "target")},
			{"notags", f.podIdentityTrust("--external-id", f.externalID(f.ns, "notags"))},
		}
	}})
	for _, sa := range []string{"app", "chain", "notags"} {
		newServiceAccount(t, ctx, f.ns, sa, nil)
	}
	appAssoc := f.associate(f.ns, "app", v1alpha1.PodIdentityAssociationSpec{ServiceAccount: "app", RoleARN: authRoleARN("app")})
	f.associate(f.ns, "chain", v1alpha1.PodIdentityAssociationSpec{ServiceAccount: "chain", RoleARN: authRoleARN("first"),
		TargetRoleARN: authRoleARN("target"),
		Policy:        `{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}`})
	f.associate(f.ns, "notags", v1alpha1.PodIdentityAssociationSpec{ServiceAccount: "notags", RoleARN: authRoleARN("notags"), DisableSessionTags: true})

	tokens := map[string]string{} // pod tokens by pod name
	pods := map[string]*corev1.Pod{}
	for _, sa := range []string{"app", "chain", "notags"} {
		name := sa + "-a"
		pods[name] = f.createPod(f.ns, sa, name, node)
		tokens[name] = f.token(f.ns, sa, pods[name], eksauth.Audience)
	}
	// What the node check rests on: kube-apiserver names the pod's node in
	// the tokens it binds to a pod (no Node object needed).
	for name, tok := range map[string]string{"app-a": tokens["app-a"], "agent": f.agentTokenText(node)} {
		_, claims := jwtParts(t, tok)
		k, _ := claims["kubernetes.io"].(map[string]any)
		n, _ := k["node"].(map[string]any)
		if n["name"] != node {
			t.Fatalf("token of pod %s: kubernetes.io.node = %v, want name %q (kube-apiserver without ServiceAccountTokenPodNodeInfo?)", name, k["node"], node)
		}
	}

	f.startAuth(false)
	agent := f.agentClient(node)

	// 1. The exchange, and what the credentials are.
	begin := time.Now()
	out, err := f.assume(agent, tokens["app-a"])
	f.remember(out)
	if err != nil {
		t.Fatalf("AssumeRoleForPodIdentity for %s/app-a: %v", f.ns, err)
	}
	t.Logf("first issuance (STS call) in %v", time.Since(begin).Round(time.Millisecond))
	session := f.checkSession(out, "app", "app-a")
	if out.Subject != (eksauth.Subject{Namespace: f.ns, ServiceAccount: "app"}) || out.Audience != eksauth.Audience {
		t.Errorf("subject %+v audience %q, want {%s app} and %q", out.Subject, out.Audience, f.ns, eksauth.Audience)
	}
	// EKS's ARN shape, the association named by namespace and name; its
	// UID as the id.
	wantAssoc := eksauth.PodIdentityAssociation{
		AssociationArn: "arn:aws:eks:" + authRegion + ":" + authAccount + ":podidentityassociation/" + f.clusterName + "/" + f.ns + "/app",
		AssociationID:  string(appAssoc.UID),
	}
	if out.PodIdentityAssociation != wantAssoc {
		t.Errorf("podIdentityAssociation %+v, want %+v", out.PodIdentityAssociation, wantAssoc)
	}
	if exp := time.Until(out.Credentials.Expiration); exp < 50*time.Minute || exp > 61*time.Minute {
		t.Errorf("credentials expire in %v, want about an hour (--session-duration default)", exp.Round(time.Second))
	}
	if n := f.stsAssumeRoleCalls(); n != 1 {
		t.Errorf("podiam sts answered %v AssumeRole calls after the first request, want 1", n)
	}

	// 2. The same pod again: from the cache, no call to STS.
	again, err := f.assume(agent, tokens["app-a"])
	f.remember(again)
	if err != nil {
		t.Fatalf("second request: %v", err)
	}
	if again.Credentials.AccessKeyID != out.Credentials.AccessKeyID || again.AssumedRoleUser != out.AssumedRoleUser {
		t.Errorf("second request: key %s session %s, want the cached %s %s", again.Credentials.AccessKeyID,
			again.AssumedRoleUser.Arn, out.Credentials.AccessKeyID, out.AssumedRoleUser.Arn)
	}
	if n := f.stsAssumeRoleCalls(); n != 1 {
		t.Errorf("podiam sts answered %v AssumeRole calls after two requests for one pod, want 1", n)
	}
	if sts, cache := f.authMetric("podiam_auth_issuances_total", `source="sts"`), f.authMetric("podiam_auth_issuances_total", `source="cache"`); sts != 1 || cache != 1 {
		t.Errorf("podiam_auth_issuances_total: sts %v cache %v, want 1 and 1", sts, cache)
	}
	for _, check := range []string{"podidentityassociations", "certificate", "keys"} {
		if n := f.authMetric("podiam_auth_ready", `check="`+check+`"`); n != 1 {
			t.Errorf(`podiam_auth_ready{check=%q} = %v, want 1`, check, n)
		}
	}
	if exp := time.Unix(int64(f.authMetric("podiam_auth_certificate_expiry_timestamp_seconds")), 0); time.Until(exp) < time.Hour {
		t.Errorf("podiam_auth_certificate_expiry_timestamp_seconds says %v, want the serving certificate's NotAfter, in the future", exp)
	}

	// 3. targetRoleArn: the first role, then the target role with its
	// session (two AssumeRole calls), the session name kept; the target
	// session carries the first session's transitive tags (the probe role
	// wants them of its caller).
	chained, err := f.assume(agent, tokens["chain-a"])
	f.remember(chained)
	if err != nil {
		t.Fatalf("chained association: %v", err)
	}
	f.checkSession(chained, "target", "chain-a")
	if n := f.stsAssumeRoleCalls(); n != 3 {
		t.Errorf("podiam sts answered %v AssumeRole calls after the chained request, want 3", n)
	}
	if err := f.assumeRoleWith(chained.Credentials, authRoleARN("probe")); err != nil {
		t.Errorf("the target session assuming a role that wants its tags kubernetes-namespace=%s and kubernetes-service-account=chain: %v", f.ns, err)
	}

	// 4. disableSessionTags: no tags (the trust policy does not allow
	// sts:TagSession), the external id EKS would send.
	notags, err := f.assume(agent, tokens["notags-a"])
	f.remember(notags)
	if err != nil {
		t.Fatalf("association with disableSessionTags: %v", err)
	}
	f.checkSession(notags, "notags", "notags-a")

	// 5. The association's status: Ready, and the external id.
	if c := f.waitReadyCondition(f.ns, "app", metav1.ConditionTrue); c.ObservedGeneration != appAssoc.Generation || c.Reason != "RoleAssumed" {
		t.Errorf("Ready condition %+v, want reason RoleAssumed, observedGeneration %d", c, appAssoc.Generation)
	}
	testutil.Eventually(t, 10*time.Second, 100*time.Millisecond, "status.externalId of "+f.ns+"/notags", func() (bool, string) {
		_, p := f.condition(f.ns, "notags", v1alpha1.ConditionReady)
		return p.Status.ExternalID == f.externalID(f.ns, "notags"), fmt.Sprintf("%+v", p.Status)
	})

	// 6. One audit line per issuance, with what it names; no secret in
	// either log.
	var lines []map[string]any
	for _, l := range f.auditLines() {
		if l["pod"] == "app-a" {
			lines = append(lines, l)
		}
	}
	if len(lines) != 2 {
		t.Fatalf("audit lines for pod app-a: %d, want 2:\n%v", len(lines), lines)
	}
	for i, l := range lines {
		want := map[string]any{"node": node, "namespace": f.ns, "serviceAccount": "app", "pod": "app-a",
			"podUID": string(pods["app-a"].UID), "association": f.ns + "/app", "role": authRoleARN("app"),
			"sessionName": session, "cached": i == 1}
		for k, v := range want {
			if l[k] != v {
				t.Errorf("audit line %d: %s = %v, want %v\n%v", i, k, l[k], v, l)
			}
		}
	}
	f.checkLogsClean()
}

// TestAuthOwnCredentialsFromIRSA: podiam auth's own AWS credentials come
// from IRSA, as deploy/auth's IRSA annotation gives them (AWS_ROLE_ARN and a
// token of its ServiceAccount, audience sts.amazonaws.com, in
// AWS_WEB_IDENTITY_TOKEN_FILE), exchanged at `podiam sts`, which verifies the
// token with the cluster's keys; the pod's role trusts that role. Its
// AssumeRole calls are then role chaining, which STS limits to an hour:
// started with --session-duration=2h (the role itself allows 12h), podiam
// auth asks for an hour and warns, and the pod gets its role's credentials.
func TestAuthOwnCredentialsFromIRSA(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 2*time.Minute)
	const node = "node-a"
	f := newAuthFixture(t, ctx, authFixtureOptions{nodes: []string{node}, irsa: true, roleMaxSession: 12 * time.Hour,
		roles: func(f *authFixture) []stsRole {
			return []stsRole{{"app", f.podIdentityTrust("--serviceaccount", f.ns+"/app")}}
		}})
	newServiceAccount(t, ctx, f.ns, "app", nil)
	f.associate(f.ns, "app", v1alpha1.PodIdentityAssociationSpec{ServiceAccount: "app", RoleARN: authRoleARN("app")})
	pod := f.createPod(f.ns, "app", "app-a", node)
	token := f.token(f.ns, "app", pod, eksauth.Audience)

	f.startAuth(false, "--session-duration=2h")
	out, err := f.assume(f.agentClient(node), token)
	f.remember(out)
	if err != nil {
		t.Fatalf("AssumeRoleForPodIdentity with podiam auth's credentials from IRSA: %v", err)
	}
	f.checkSession(out, "app", "app-a")
	if exp := time.Until(out.Credentials.Expiration); exp < 50*time.Minute || exp > 61*time.Minute {
		t.Errorf("credentials expire in %v, want about an hour (--session-duration=2h capped for role chaining)", exp.Round(time.Second))
	}
	if n := metricSum(f.metrics(f.stsMetricsPort), "podiam_sts_calls_total", `action="AssumeRoleWithWebIdentity"`); n < 1 {
		t.Errorf("podiam sts answered %v AssumeRoleWithWebIdentity calls, want at least 1 (podiam auth's own credentials)", n)
	}

	// The warning names podiam auth's identity, the IRSA role's session,
	// and the duration it asks for instead.
	identity := "arn:aws:sts::" + authAccount + ":assumed-role/" + authIRSARole + "/"
	var warned bool
	for line := range strings.Lines(f.authLogs.String()) {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil || m["level"] != "WARN" {
			continue
		}
		id, _ := m["identity"].(string)
		if strings.HasPrefix(id, identity) && m["sessionDuration"] == "2h0m0s" && m["using"] == "1h0m0s" {
			warned = true
		}
	}
	if !warned {
		t.Errorf("no WARN line in podiam auth's log with identity %s…, sessionDuration 2h0m0s and using 1h0m0s", identity)
	}
	f.checkLogsClean()
}

// checkSession checks that out is a session of role for pod, named as EKS
// names it, and that its credentials sign GetCallerIdentity as that session.
// It returns the session name.
func (f *authFixture) checkSession(out *eksauth.Output, role, pod string) string {
	f.t.Helper()
	prefix := "arn:aws:sts::" + authAccount + ":assumed-role/" + role + "/"
	session, ok := strings.CutPrefix(out.AssumedRoleUser.Arn, prefix)
	if !ok {
		f.t.Fatalf("assumedRoleUser.arn = %q, want %s<session>", out.AssumedRoleUser.Arn, prefix)
	}
	// eks-<cluster>-<pod>-<uuid>, cut to 64 characters.
	full := "eks-" + f.clusterName + "-" + pod + "-"
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	if rest, ok := strings.CutPrefix(session, full); !ok || len(session) > 64 || (len(session) < 64 && !uuid.MatchString(rest)) {
		f.t.Errorf("session name %q, want %s<uuid> cut to 64 characters", session, full)
	}
	if !strings.HasPrefix(out.Credentials.AccessKeyID, "ASIA") || out.Credentials.SecretAccessKey == "" || out.Credentials.SessionToken == "" {
		f.t.Errorf("credentials: key id %q, secret set %v, session token set %v", out.Credentials.AccessKeyID,
			out.Credentials.SecretAccessKey != "", out.Credentials.SessionToken != "")
	}
	if arn := f.callerARN(out.Credentials); arn != out.AssumedRoleUser.Arn {
		f.t.Errorf("GetCallerIdentity with the credentials: %q, want %q", arn, out.AssumedRoleUser.Arn)
	}
	return session
}

// externalID is the sts:ExternalId EKS sends for an association with
// session tags disabled.
func (f *authFixture) externalID(ns, sa string) string {
	return authRegion + "/" + authAccount + "/" + f.clusterName + "/" + ns + "/" + sa
}

// agentTokenText is the agent token of node.
func (f *authFixture) agentTokenText(node string) string {
	f.t.Helper()
	b, err := os.ReadFile(f.agentTokens[node])
	if err != nil {
		f.t.Fatal(err)
	}
	return string(b)
}

// TestAuthRefuses sends `podiam auth` (self-managed certificates, trusted
// from the CA bundle it publishes) every request it must refuse, each with
// EKS Auth's error code and HTTP status, beside the valid requests of two
// nodes: caller tokens that are missing, of another ServiceAccount, not
// bound to a pod or for another audience; pod tokens that are forged,
// expired, for another audience, of another cluster or issuer, of a deleted
// or replaced pod, or of a pod on another node; no association, or one in
// another namespace; a role whose trust policy wants another namespace's
// tag (STS refuses; the association's status says so); another cluster's
// name in the path; and STS down.
func TestAuthRefuses(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 2*time.Minute)
	f := newAuthFixture(t, ctx, authFixtureOptions{nodes: []string{"node-a", "node-b"}, roles: func(f *authFixture) []stsRole {
		return []stsRole{
			{"app", f.podIdentityTrust("--serviceaccount", f.ns+"/app")},
			// Would let ns/elsewhere in, were the other namespace's
			// association (wrongly) used for it.
			{"elsewhere", f.podIdentityTrust("--serviceaccount", f.ns+"/elsewhere")},
			// Wants the tags of the other namespace's ServiceAccount.
			{"wrongns", f.podIdentityTrust("--serviceaccount", f.otherNS+"/wrongtag")},
		}
	}})
	for _, sa := range []string{"app", "unassociated", "elsewhere", "wrongtag"} {
		newServiceAccount(t, ctx, f.ns, sa, nil)
	}
	f.associate(f.ns, "app", v1alpha1.PodIdentityAssociationSpec{ServiceAccount: "app", RoleARN: authRoleARN("app")})
	f.associate(f.otherNS, "elsewhere", v1alpha1.PodIdentityAssociationSpec{ServiceAccount: "elsewhere", RoleARN: authRoleARN("elsewhere")})
	f.associate(f.ns, "wrongtag", v1alpha1.PodIdentityAssociationSpec{ServiceAccount: "wrongtag", RoleARN: authRoleARN("wrongns")})

	podToken := func(sa, name, node string) (*corev1.Pod, string) {
		p := f.createPod(f.ns, sa, name, node)
		return p, f.token(f.ns, sa, p, eksauth.Audience)
	}
	appA, appAToken := podToken("app", "app-a", "node-a")
	_, appBToken := podToken("app", "app-b", "node-b")
	_, unassociated := podToken("unassociated", "unassociated-a", "node-a")
	_, elsewhere := podToken("elsewhere", "elsewhere-a", "node-a")
	_, wrongtag := podToken("wrongtag", "wrongtag-a", "node-a")
	_, late := podToken("app", "late-a", "node-a") // asked for once STS is down
	// A deleted pod, and a pod deleted and created again under its name
	// (another UID). Grace period 0: no kubelet confirms a deletion here.
	gone, goneToken := podToken("app", "gone-a", "node-a")
	now := metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))}
	if err := client.CoreV1().Pods(f.ns).Delete(ctx, gone.Name, now); err != nil {
		t.Fatal(err)
	}
	replaced, replacedToken := podToken("app", "replaced-a", "node-a")
	if err := client.CoreV1().Pods(f.ns).Delete(ctx, replaced.Name, now); err != nil {
		t.Fatal(err)
	}
	f.createPod(f.ns, "app", replaced.Name, "node-a")

	// Tokens kube-apiserver would not issue: the claims of app-a's token
	// re-signed.
	header, claims := jwtParts(t, appAToken)
	otherKey := newRSAKey(t)
	past := time.Now().Add(-3 * time.Hour).Unix()
	forged := signJWT(t, header, claims, otherKey) // the cluster's kid, another key
	expired := signJWT(t, header, withClaims(claims, map[string]any{"iat": past, "nbf": past, "exp": past + 3600}), cluster.ServiceAccountSigningKey())
	otherCluster := signJWT(t, map[string]any{"alg": "RS256", "kid": "other-cluster"},
		withClaims(claims, map[string]any{"iss": "https://oidc.other-cluster.example"}), otherKey)
	otherIssuer := signJWT(t, header, withClaims(claims, map[string]any{"iss": "https://oidc.other-cluster.example"}), cluster.ServiceAccountSigningKey())
	f.secrets = append(f.secrets, forged, expired, otherCluster, otherIssuer)
	// The cluster's key signs the expired token and the other issuer's, so
	// that expiry and issuer are all that is wrong with them.
	for name, tok := range map[string]string{"expired": expired, "other issuer": otherIssuer} {
		if _, _, err := cluster.VerifyToken(tok); err != nil {
			t.Fatalf("%s token does not verify with the cluster's key: %v", name, err)
		}
	}

	f.startAuth(true)
	agentA, agentB := f.agentClient("node-a"), f.agentClient("node-b")
	noCaller := f.agentClient("")
	// Caller tokens that are not the agent's pod-bound token.
	otherSACaller := f.clientWithToken("other-sa", f.token(f.ns, "app", appA, "podiam-auth"))
	unboundCaller := f.clientWithToken("unbound", f.token(f.agentNS, agentSA, nil, "podiam-auth"))
	agentPodA, err := client.CoreV1().Pods(f.agentNS).Get(ctx, "agent-node-a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	otherAudCaller := f.clientWithToken("other-aud", f.token(f.agentNS, agentSA, agentPodA, eksauth.Audience))

	// The valid requests of both nodes first: the refusals below are not
	// an artifact of a broken set-up.
	for _, r := range []struct {
		agent *eksauth.Client
		token string
	}{{agentA, appAToken}, {agentB, appBToken}} {
		out, err := f.assume(r.agent, r.token)
		f.remember(out)
		if err != nil {
			t.Fatalf("valid request: %v", err)
		}
	}

	tests := []struct {
		name     string
		agent    *eksauth.Client
		token    string
		cluster  string // default the fixture's
		wantCode string
		// wantStatus is 403 for refusals of the caller itself, which the
		// agent tells from refusals of a pod; 0 means EKS Auth's status of
		// wantCode.
		wantStatus int
	}{
		{name: "no caller token", agent: noCaller, token: appAToken, wantCode: eksauth.CodeAccessDenied, wantStatus: http.StatusForbidden},
		{name: "caller token of another ServiceAccount", agent: otherSACaller, token: appAToken, wantCode: eksauth.CodeAccessDenied, wantStatus: http.StatusForbidden},
		{name: "caller token not bound to a pod", agent: unboundCaller, token: appAToken, wantCode: eksauth.CodeAccessDenied, wantStatus: http.StatusForbidden},
		{name: "caller token for another audience", agent: otherAudCaller, token: appAToken, wantCode: eksauth.CodeAccessDenied, wantStatus: http.StatusForbidden},
		{name: "pod token forged", agent: agentA, token: forged, wantCode: eksauth.CodeInvalidToken},
		{name: "pod token expired", agent: agentA, token: expired, wantCode: eksauth.CodeExpiredToken},
		{name: "pod token for another audience", agent: agentA, token: f.token(f.ns, "app", appA, "sts.amazonaws.com"), wantCode: eksauth.CodeInvalidToken},
		{name: "pod token of another cluster", agent: agentA, token: otherCluster, wantCode: eksauth.CodeInvalidToken},
		{name: "pod token of another issuer with the cluster's key", agent: agentA, token: otherIssuer, wantCode: eksauth.CodeInvalidToken},
		{name: "pod token of a deleted pod", agent: agentA, token: goneToken, wantCode: eksauth.CodeInvalidToken},
		{name: "pod token of a pod replaced under its name", agent: agentA, token: replacedToken, wantCode: eksauth.CodeInvalidToken},
		{name: "pod token of a pod on another node", agent: agentA, token: appBToken, wantCode: eksauth.CodeAccessDenied},
		{name: "no association", agent: agentA, token: unassociated, wantCode: eksauth.CodeResourceNotFound},
		{name: "association in another namespace", agent: agentA, token: elsewhere, wantCode: eksauth.CodeResourceNotFound},
		{name: "trust policy wants another namespace", agent: agentA, token: wrongtag, wantCode: eksauth.CodeAccessDenied},
		{name: "another cluster's name in the path", agent: agentA, token: appAToken, cluster: "other-cluster", wantCode: eksauth.CodeResourceNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.cluster
			if c == "" {
				c = f.clusterName
			}
			out, err := tt.agent.AssumeRoleForPodIdentity(ctx, c, tt.token)
			f.remember(out)
			status := tt.wantStatus
			if status == 0 {
				status = eksauth.StatusFor(tt.wantCode)
			}
			if msg := wantAuthError(err, tt.wantCode, status); msg != "" {
				t.Error(msg)
			}
		})
	}

	// STS's refusal names the role, and the association's status says why.
	_, err = f.assume(agentA, wrongtag)
	var e *eksauth.Error
	if !errors.As(err, &e) || !strings.Contains(e.Message, authRoleARN("wrongns")) || !strings.Contains(e.Message, "AccessDenied") {
		t.Errorf("STS refusal: %v, want a message naming %s and AccessDenied", err, authRoleARN("wrongns"))
	}
	f.waitReadyCondition(f.ns, "app", metav1.ConditionTrue)
	if c := f.waitReadyCondition(f.ns, "wrongtag", metav1.ConditionFalse); c.Reason != "AssumeRoleFailed" || !strings.Contains(c.Message, "AccessDenied") || !strings.Contains(c.Message, authRoleARN("wrongns")) {
		t.Errorf("Ready=False condition of %s/wrongtag: %+v, want reason AssumeRoleFailed and a message naming the role and STS's AccessDenied", f.ns, c)
	}

	// STS down: a pod not served before needs STS.
	f.stsProc.Stop()
	_, err = f.assume(agentA, late)
	if msg := wantAuthError(err, eksauth.CodeServiceUnavailable, http.StatusServiceUnavailable); msg != "" {
		t.Errorf("STS down: %s", msg)
	}
	if n := f.authMetric("podiam_auth_sts_calls_total", `result="unreachable"`); n < 1 {
		t.Errorf("podiam_auth_sts_calls_total{result=\"unreachable\"} = %v, want at least 1", n)
	}
	// A pod served before is still served from the cache.
	if _, err := f.assume(agentA, appAToken); err != nil {
		t.Errorf("cached credentials with STS down: %v", err)
	}
	for code, want := range map[string]float64{eksauth.CodeAccessDenied: 7, eksauth.CodeInvalidToken: 6, eksauth.CodeResourceNotFound: 3,
		eksauth.CodeExpiredToken: 1, eksauth.CodeServiceUnavailable: 1, "OK": 3} {
		if n := f.authMetric("podiam_auth_requests_total", `code="`+code+`"`); n != want {
			t.Errorf("podiam_auth_requests_total{code=%q} = %v, want %v", code, n, want)
		}
	}
	f.checkLogsClean()
}
