package e2e

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestProjectedToken: the token the kubelet would project into a mutated pod,
// requested with the TokenRequest API for the injected volume's audience and
// lifetime, is signed by the cluster's key and carries the claims STS checks.
func TestProjectedToken(t *testing.T) {
	t.Parallel()
	logsOnFailure(t, "shared", shared)
	ctx := ctxFor(t, time.Minute)
	const ns = "e2e-token"
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
	header, claims, err := verifyRS256(tr.Status.Token, cluster.ServiceAccountPublicKey())
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
	if _, _, err := verifyRS256(tampered, cluster.ServiceAccountPublicKey()); err == nil {
		t.Error("verifier accepted a tampered token")
	}
}

type jwtHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
}

type jwtClaims struct {
	Iss        string   `json:"iss"`
	Sub        string   `json:"sub"`
	Aud        []string `json:"aud"`
	Exp        int64    `json:"exp"`
	Iat        int64    `json:"iat"`
	Nbf        int64    `json:"nbf"`
	Kubernetes struct {
		Namespace      string `json:"namespace"`
		ServiceAccount struct {
			Name string `json:"name"`
			UID  string `json:"uid"`
		} `json:"serviceaccount"`
		Pod *struct {
			Name string `json:"name"`
			UID  string `json:"uid"`
		} `json:"pod"`
	} `json:"kubernetes.io"`
}

// verifyRS256 checks a compact JWS signed with RS256 by key and decodes it.
func verifyRS256(token string, key *rsa.PublicKey) (jwtHeader, jwtClaims, error) {
	var h jwtHeader
	var c jwtClaims
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return h, c, fmt.Errorf("%d parts, want 3", len(parts))
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return h, c, fmt.Errorf("header: %w", err)
	}
	if err := json.Unmarshal(hb, &h); err != nil {
		return h, c, fmt.Errorf("header: %w", err)
	}
	if h.Alg != "RS256" {
		return h, c, fmt.Errorf("alg %q, want RS256", h.Alg)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return h, c, fmt.Errorf("signature: %w", err)
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(key, crypto.SHA256, sum[:], sig); err != nil {
		return h, c, fmt.Errorf("signature: %w", err)
	}
	cb, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return h, c, fmt.Errorf("claims: %w", err)
	}
	if err := json.Unmarshal(cb, &c); err != nil {
		return h, c, fmt.Errorf("claims: %w", err)
	}
	if c.Iss == "" {
		return h, c, errors.New("no iss")
	}
	return h, c, nil
}
