package e2e

import (
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podiam/podiam/test/testutil"
)

// TestProjectedToken: the token the kubelet would project into a mutated pod,
// requested with the TokenRequest API for the injected volume's audience and
// lifetime, is signed by the cluster's key and carries the claims STS checks.
func TestProjectedToken(t *testing.T) {
	t.Parallel()
	logsOnFailure(t, "shared", shared)
	ctx := ctxFor(t, time.Minute)
	ns := testutil.UniqueName("e2e-token")
	newNamespace(t, ctx, ns, nil)
	sa := newServiceAccount(t, ctx, ns, "app", map[string]string{
		annoRoleARN: "arn:aws:iam::111122223333:role/token", annoExpiration: "3600"})
	pod := createPod(t, ctx, client, ns, simplePod("app"))
	src := tokenSource(t, pod, irsaVolume)
	if src.ExpirationSeconds == nil || *src.ExpirationSeconds != 3600 || src.Audience != defaultAud {
		t.Fatalf("projection = {%q %v}, want {%q 3600}", src.Audience, deref(src.ExpirationSeconds), defaultAud)
	}

	tr, err := client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa.Name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			Audiences:         []string{src.Audience},
			ExpirationSeconds: src.ExpirationSeconds,
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest: %v", err)
	}
	header, claims, err := cluster.VerifyToken(tr.Status.Token)
	if err != nil {
		t.Fatalf("token does not verify with the cluster's signing key: %v", err)
	}
	if header.Alg != "RS256" || header.Kid != cluster.ServiceAccountKeyID() {
		t.Errorf("header = %+v, want alg RS256 kid %q", header, cluster.ServiceAccountKeyID())
	}
	if claims.Iss != cluster.IssuerURL() {
		t.Errorf("iss = %q, want %q", claims.Iss, cluster.IssuerURL())
	}
	if want := "system:serviceaccount:" + ns + ":app"; claims.Sub != want {
		t.Errorf("sub = %q, want %q", claims.Sub, want)
	}
	if !slices.Equal(claims.Aud, []string{src.Audience}) {
		t.Errorf("aud = %q, want [%q]", claims.Aud, src.Audience)
	}
	if d := claims.Exp - claims.Iat; d != *src.ExpirationSeconds {
		t.Errorf("exp-iat = %d, want %d", d, *src.ExpirationSeconds)
	}
	if now := time.Now().Unix(); claims.Iat > now+5 || claims.Iat < now-60 || claims.Nbf > now+5 {
		t.Errorf("iat %d nbf %d not around now %d", claims.Iat, claims.Nbf, now)
	}
	k := claims.Kubernetes
	if k.Namespace != ns || k.ServiceAccount.Name != "app" || k.ServiceAccount.UID != string(sa.UID) ||
		k.Pod == nil || k.Pod.Name != pod.Name || k.Pod.UID != string(pod.UID) {
		t.Errorf("kubernetes.io claims = %+v, want namespace %s serviceaccount app/%s pod %s/%s", k, ns, sa.UID, pod.Name, pod.UID)
	}

	// The verifier itself must reject a token that was tampered with.
	parts := strings.Split(tr.Status.Token, ".")
	forged, _ := json.Marshal(map[string]any{"iss": claims.Iss, "sub": "system:serviceaccount:kube-system:admin", "aud": claims.Aud, "exp": claims.Exp})
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(forged) + "." + parts[2]
	if _, _, err := cluster.VerifyToken(tampered); err == nil {
		t.Error("verifier accepted a tampered token")
	}
}
