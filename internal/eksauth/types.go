// Package eksauth is EKS Auth's wire format (AssumeRoleForPodIdentity), both
// sides: the request, response and error types and the helpers that serve them
// (used by `podiam auth`), and a client that calls either EKS Auth (SigV4,
// service "eks-auth") or `podiam auth` (a bearer token), used by the agent.
//
// The protocol is AWS rest-json: POST /clusters/{clusterName}/assume-role-for-pod-identity
// with {"token":…}; errors carry their code in the X-Amzn-Errortype header.
package eksauth

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
)

// SigningName is the SigV4 service name of EKS Auth.
const SigningName = "eks-auth"

// Audience is the audience EKS Auth requires of pod tokens and echoes back.
const Audience = "pods.eks.amazonaws.com"

// Input is the body of an AssumeRoleForPodIdentity request.
type Input struct {
	// Token is the pod's projected ServiceAccount token (a JWT).
	Token string `json:"token"`
}

// Output is the body of a successful AssumeRoleForPodIdentity response.
type Output struct {
	Subject                Subject                `json:"subject"`
	Audience               string                 `json:"audience"`
	PodIdentityAssociation PodIdentityAssociation `json:"podIdentityAssociation"`
	AssumedRoleUser        AssumedRoleUser        `json:"assumedRoleUser"`
	Credentials            Credentials            `json:"credentials"`
}

// Subject is the ServiceAccount the credentials were issued for.
type Subject struct {
	Namespace      string `json:"namespace"`
	ServiceAccount string `json:"serviceAccount"`
}

// PodIdentityAssociation identifies the association that matched.
type PodIdentityAssociation struct {
	AssociationArn string `json:"associationArn"`
	AssociationID  string `json:"associationId"`
}

// AssumedRoleUser is the assumed role's session (as STS returns it).
type AssumedRoleUser struct {
	Arn          string `json:"arn"`
	AssumeRoleID string `json:"assumeRoleId"`
}

// Credentials are the temporary credentials. On the wire Expiration is a
// JSON number of seconds since the epoch (rest-json's default timestamp
// format), which may carry a fraction.
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	Expiration      time.Time
}

// credentialsWire is Credentials as it is encoded.
type credentialsWire struct {
	AccessKeyID     string      `json:"accessKeyId"`
	SecretAccessKey string      `json:"secretAccessKey"`
	SessionToken    string      `json:"sessionToken"`
	Expiration      json.Number `json:"expiration"`
}

// MarshalJSON writes Expiration as whole epoch seconds, or with a fraction
// when it has one.
func (c Credentials) MarshalJSON() ([]byte, error) {
	w := credentialsWire{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken}
	switch {
	case c.Expiration.IsZero():
		w.Expiration = "0"
	case c.Expiration.Nanosecond() == 0:
		w.Expiration = json.Number(strconv.FormatInt(c.Expiration.Unix(), 10))
	default:
		secs := float64(c.Expiration.UnixNano()) / 1e9
		w.Expiration = json.Number(strconv.FormatFloat(secs, 'f', -1, 64))
	}
	return json.Marshal(w)
}

// UnmarshalJSON reads Expiration as epoch seconds, integer or fractional
// (exponent forms such as 1.7E9 included, as Java services write them).
func (c *Credentials) UnmarshalJSON(data []byte) error {
	var w credentialsWire
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	exp, err := parseEpochSeconds(string(w.Expiration))
	if err != nil {
		return fmt.Errorf("credentials.expiration: %w", err)
	}
	*c = Credentials{AccessKeyID: w.AccessKeyID, SecretAccessKey: w.SecretAccessKey, SessionToken: w.SessionToken, Expiration: exp}
	return nil
}

// maxEpochSeconds bounds accepted expirations (year 9999) so that a hostile
// number cannot overflow time arithmetic.
const maxEpochSeconds = 253402300799

// parseEpochSeconds parses a JSON number of seconds since the epoch.
func parseEpochSeconds(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, fmt.Errorf("missing")
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 || n > maxEpochSeconds {
			return time.Time{}, fmt.Errorf("%d out of range", n)
		}
		return time.Unix(n, 0).UTC(), nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || f < 0 || f > maxEpochSeconds {
		return time.Time{}, fmt.Errorf("%q is not epoch seconds", s)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(math.Round(frac*1e9))).UTC(), nil
}
