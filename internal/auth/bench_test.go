package auth

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	ststypes "github.com/aws/aws-sdk-go-v2/service/sts/types"
	"github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podiam/podiam/internal/association"
	"github.com/podiam/podiam/internal/eksauth"
	"github.com/podiam/podiam/internal/jwks"
)

// BenchmarkHandler is podiam auth's own work per request, through ServeHTTP
// with the real Verifier (RS256 with a 2048-bit key, as kube-apiserver signs),
// the real credentials cache and a JSON audit log: no TLS, no network, no API
// server (the pod comes from memory) and an STS stub that answers at once.
// docs/benchmarks.md sets it against `make bench-auth`, which has all of
// those. Sub-benchmarks:
//   - cached: the credentials are in the cache (the warm round);
//   - sts: every request misses the cache (a new association each time), so
//     it pays for one AssumeRole through the credentials code (the cold round).
func BenchmarkHandler(b *testing.B) {
	for _, tt := range []struct {
		name  string
		fresh bool
	}{{"cached", false}, {"sts", true}} {
		b.Run(tt.name, func(b *testing.B) {
			e := newBTEnv(b, tt.fresh)
			req := func() *http.Request {
				r := httptest.NewRequest(http.MethodPost, eksauth.Path(btCluster), bytes.NewReader(e.body))
				r.Header.Set("Content-Type", "application/json")
				r.Header.Set("Authorization", "Bearer "+e.agentToken)
				return r
			}
			// The first request checks the set-up and fills the caches (the
			// agent pod's, the credentials of the cached case).
			first := httptest.NewRecorder()
			if e.serve(first, req()); first.Code != http.StatusOK {
				b.Fatalf("status %d: %s", first.Code, first.Body)
			}
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				e.serve(w, req())
				if w.Code != http.StatusOK {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
			}
			if tt.fresh && e.sts.calls.Load() < int64(b.N) {
				b.Fatalf("%d AssumeRole calls for %d requests: the cache was hit", e.sts.calls.Load(), b.N)
			}
		})
	}
}

const (
	btCluster = "bench"
	btIssuer  = "https://kubernetes.default.svc"
	btNode    = "node-1"
)

// btEnv is a handler with its tokens.
type btEnv struct {
	serve      func(http.ResponseWriter, *http.Request)
	agentToken string
	body       []byte
	sts        *btSTS
}

func newBTEnv(b *testing.B, fresh bool) *btEnv {
	b.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	const kid = "bench-key"
	doc, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &key.PublicKey, KeyID: kid, Algorithm: string(jose.RS256), Use: "sig"}}})
	if err != nil {
		b.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		b.Fatal(err)
	}
	sign := func(aud, ns, sa, pod, uid string) string {
		now := time.Now().Unix()
		claims, err := json.Marshal(map[string]any{
			"iss": btIssuer, "sub": "system:serviceaccount:" + ns + ":" + sa, "aud": []string{aud},
			"iat": now, "nbf": now, "exp": now + 3600,
			"kubernetes.io": map[string]any{
				"namespace":      ns,
				"serviceaccount": map[string]any{"name": sa, "uid": "sa-uid-" + sa},
				"pod":            map[string]any{"name": pod, "uid": uid},
				"node":           map[string]any{"name": btNode, "uid": "node-uid-1"},
			},
		})
		if err != nil {
			b.Fatal(err)
		}
		jws, err := signer.Sign(claims)
		if err != nil {
			b.Fatal(err)
		}
		tok, err := jws.CompactSerialize()
		if err != nil {
			b.Fatal(err)
		}
		return tok
	}
	pods := map[string]*corev1.Pod{
		"kube-system/podiam-agent-1": btPod("kube-system", "podiam-agent-1", "agent-uid", "podiam-agent"),
		"apps/web-1":                 btPod("apps", "web-1", "web-uid", "web"),
	}
	e := &btEnv{
		agentToken: sign(DefaultAgentAudience, "kube-system", "podiam-agent", "podiam-agent-1", "agent-uid"),
		sts:        &btSTS{},
	}
	if e.body, err = json.Marshal(eksauth.Input{Token: sign(eksauth.Audience, "apps", "web", "web-1", "web-uid")}); err != nil {
		b.Fatal(err)
	}
	cluster := Cluster{Name: btCluster, Region: "us-east-1", Account: "111122223333"}
	metrics := NewMetrics(prometheus.NewRegistry())
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	e.serve = NewHandler(HandlerOptions{
		Cluster: cluster,
		Verifier: &Verifier{
			Keys: jwks.NewKeySet(btJWKS(doc), jwks.Options{}), Issuer: btIssuer,
			AgentNamespace: "kube-system", AgentServiceAccount: "podiam-agent", AgentAudience: DefaultAgentAudience,
			Leeway: DefaultLeeway,
		},
		Pods: func(_ context.Context, namespace, name string) (*corev1.Pod, error) {
			return pods[namespace+"/"+name].DeepCopy(), nil // a client's Get decodes a new pod each time
		},
		Associations: &btAssociations{fresh: fresh},
		Credentials:  NewCredentials(CredentialsOptions{STS: e.sts, Cluster: cluster, Metrics: metrics, Logger: logger}),
		Metrics:      metrics,
		Logger:       logger,
	}).ServeHTTP
	return e
}

func btPod(ns, name, uid, sa string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid)},
		Spec:       corev1.PodSpec{NodeName: btNode, ServiceAccountName: sa},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
}

// btJWKS serves a fixed JWKS document.
type btJWKS []byte

func (d btJWKS) Fetch(context.Context) ([]byte, error) { return d, nil }

// btAssociations finds apps/web's association; with fresh, one with a new UID
// on every lookup, so that every request misses the credentials cache.
type btAssociations struct {
	fresh bool
	n     atomic.Int64
}

func (a *btAssociations) Lookup(namespace, serviceAccount string) (*association.Association, bool) {
	uid := "assoc-uid"
	if a.fresh {
		uid += strconv.FormatInt(a.n.Add(1), 10)
	}
	return &association.Association{Namespace: namespace, Name: serviceAccount, UID: types.UID(uid),
		ServiceAccount: serviceAccount, RoleARN: "arn:aws:iam::111122223333:role/" + serviceAccount}, true
}

// btSTS answers every AssumeRole at once with credentials valid for an hour.
type btSTS struct{ calls atomic.Int64 }

func (s *btSTS) AssumeRole(_ context.Context, in *sts.AssumeRoleInput, _ ...func(*sts.Options)) (*sts.AssumeRoleOutput, error) {
	s.calls.Add(1)
	return &sts.AssumeRoleOutput{
		Credentials: &ststypes.Credentials{
			AccessKeyId: aws.String("ASIABENCHBENCHBENCH1"), SecretAccessKey: aws.String("bench-secret"),
			SessionToken: aws.String("bench-session-token"), Expiration: aws.Time(time.Now().Add(time.Hour)),
		},
		AssumedRoleUser: &ststypes.AssumedRoleUser{
			Arn:           aws.String("arn:aws:sts::111122223333:assumed-role/web/" + aws.ToString(in.RoleSessionName)),
			AssumedRoleId: aws.String("AROABENCH:" + aws.ToString(in.RoleSessionName)),
		},
	}, nil
}
