package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/podiam/podiam/internal/eksauth"
)

// credentialLifetime is how long the stand-in's credentials last: EKS
// Auth's 6 hours, so nothing is renewed during a run.
const credentialLifetime = 6 * time.Hour

// eksAuthStandIn answers AssumeRoleForPodIdentity in EKS Auth's wire format
// (internal/eksauth's server side) on loopback, for `podiam agent
// --backend=eks`. It verifies neither the SigV4 signature nor the token's:
// it checks that the request is signed (an Authorization header of SigV4's
// form and X-Amz-Date) and reads the pod from the token's claims, so that
// each answer names the pod's ServiceAccount and association. It counts
// every call, which is what the benchmark checks.
type eksAuthStandIn struct {
	clusterName string
	calls       atomic.Int64 // every request
	refused     atomic.Int64 // requests answered with an error
	conns       atomic.Int64 // connections the agent opened
	srv         *http.Server
	url         string
}

// startStandIn listens on a free loopback port and serves until stop.
func startStandIn(clusterName string) (*eksAuthStandIn, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening for the EKS Auth stand-in: %w", err)
	}
	s := &eksAuthStandIn{clusterName: clusterName, url: "http://" + ln.Addr().String()}
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, ConnState: func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

func (s *eksAuthStandIn) stop() { _ = s.srv.Close() }

// ServeHTTP answers one AssumeRoleForPodIdentity call.
func (s *eksAuthStandIn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.calls.Add(1)
	out, eerr := s.answer(r)
	if eerr != nil {
		s.refused.Add(1)
		eksauth.WriteError(w, eerr)
		return
	}
	eksauth.WriteResponse(w, out)
}

func (s *eksAuthStandIn) answer(r *http.Request) (*eksauth.Output, *eksauth.Error) {
	if !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 Credential=") || r.Header.Get("X-Amz-Date") == "" {
		return nil, eksauth.NewError("MissingAuthenticationTokenException", "the request is not signed with SigV4")
	}
	cluster, in, eerr := eksauth.DecodeRequest(r)
	if eerr != nil {
		return nil, eerr
	}
	if cluster != s.clusterName {
		return nil, eksauth.NewError(eksauth.CodeResourceNotFound, "no cluster %q", cluster)
	}
	k, err := podClaims(in.Token)
	if err != nil {
		return nil, eksauth.NewError(eksauth.CodeInvalidToken, "%v", err)
	}
	ns, sa, pod := k.Namespace, k.ServiceAccount.Name, k.Pod.Name
	id := "a-" + ns + "-" + sa
	return &eksauth.Output{
		Subject:  eksauth.Subject{Namespace: ns, ServiceAccount: sa},
		Audience: eksauth.Audience,
		PodIdentityAssociation: eksauth.PodIdentityAssociation{
			AssociationArn: "arn:aws:eks:" + region + ":" + accountID + ":podidentityassociation/" + s.clusterName + "/" + id,
			AssociationID:  id,
		},
		AssumedRoleUser: eksauth.AssumedRoleUser{
			Arn:          "arn:aws:sts::" + accountID + ":assumed-role/" + sa + "/eks-" + s.clusterName + "-" + pod,
			AssumeRoleID: "AROABENCHSTANDIN0001:eks-" + s.clusterName + "-" + pod,
		},
		Credentials: eksauth.Credentials{
			AccessKeyID:     "ASIABENCHSTANDIN0001",
			SecretAccessKey: "c3RhbmQtaW4tc2VjcmV0LW5vdC1hLXJlYWwta2V5",
			// As long as a real session token, so the answers are as big.
			SessionToken: strings.Repeat("IQoJb3JpZ2luX2VjEBench", 40),
			Expiration:   time.Now().Add(credentialLifetime).Truncate(time.Second),
		},
	}, nil
}

// kubeClaims is the kubernetes.io claim of a pod-bound token.
type kubeClaims struct {
	Namespace      string `json:"namespace"`
	ServiceAccount struct {
		Name string `json:"name"`
	} `json:"serviceaccount"`
	Pod struct {
		Name string `json:"name"`
		UID  string `json:"uid"`
	} `json:"pod"`
}

// podClaims reads the kubernetes.io claim of a JWT without verifying it
// (the agent has; the stand-in only names the pod).
func podClaims(token string) (kubeClaims, error) {
	var k kubeClaims
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return k, fmt.Errorf("the token is not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return k, fmt.Errorf("decoding the token's payload: %w", err)
	}
	var claims struct {
		Kube *kubeClaims `json:"kubernetes.io"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return k, fmt.Errorf("decoding the token's claims: %w", err)
	}
	if claims.Kube == nil || claims.Kube.Namespace == "" || claims.Kube.ServiceAccount.Name == "" || claims.Kube.Pod.Name == "" {
		return k, fmt.Errorf("the token has no kubernetes.io claim naming a pod")
	}
	return *claims.Kube, nil
}
