package auth

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/arn"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// clusterARNResource is the resource part of an EKS cluster ARN.
var clusterARNResource = regexp.MustCompile(`^cluster/(.+)$`)

// accountIDRE is an AWS account id.
var accountIDRE = regexp.MustCompile(`^[0-9]{12}$`)

// ClusterFromARN checks that clusterARN is
// arn:<partition>:eks:<region>:<account>:cluster/<name> with name the
// cluster's name, and returns the Cluster it describes: that name and ARN,
// and the ARN's region and account (those of external ids).
func ClusterFromARN(clusterARN, name string) (Cluster, error) {
	a, err := arn.Parse(clusterARN)
	if err != nil {
		return Cluster{}, fmt.Errorf("not an ARN: %w", err)
	}
	m := clusterARNResource.FindStringSubmatch(a.Resource)
	switch {
	case a.Service != "eks":
		return Cluster{}, fmt.Errorf("service %q, want eks", a.Service)
	case a.Region == "":
		return Cluster{}, errors.New("no region")
	case !accountIDRE.MatchString(a.AccountID):
		return Cluster{}, fmt.Errorf("account %q, want 12 digits", a.AccountID)
	case m == nil:
		return Cluster{}, fmt.Errorf("resource %q, want cluster/<name>", a.Resource)
	case m[1] != name:
		return Cluster{}, fmt.Errorf("names cluster %q, but the cluster's name is %q", m[1], name)
	}
	return Cluster{Name: name, ARN: clusterARN, Region: a.Region, Account: a.AccountID}, nil
}

// CallerIdentityAPI is the part of the STS client ResolveCluster needs.
type CallerIdentityAPI interface {
	GetCallerIdentity(ctx context.Context, in *sts.GetCallerIdentityInput, optFns ...func(*sts.Options)) (*sts.GetCallerIdentityOutput, error)
}

// Retrier calls fn until it succeeds or gives up, returning an error that
// names what was tried.
type Retrier func(ctx context.Context, what string, fn func(context.Context) error) error

// ResolveCluster completes c, the cluster as configured (Region and Account
// set only with an ARN, see ClusterFromARN), and returns podiam auth's own
// identity (its ARN) from one sts:GetCallerIdentity, made through retry:
// credentials may take a moment to appear. Without an ARN the cluster's
// region is stsRegion and its account podiam auth's own. The call is made only
// when its answer matters: without an ARN, or when sessionDuration is over
// what role chaining allows (CapSessionDuration needs the identity);
// otherwise start-up does not depend on STS and the returned ARN is empty.
func ResolveCluster(ctx context.Context, c Cluster, stsRegion string, sessionDuration time.Duration, api CallerIdentityAPI, retry Retrier) (Cluster, string, error) {
	if c.ARN != "" && sessionDuration <= maxChainedDuration {
		return c, "", nil
	}
	var callerARN string
	err := retry(ctx, "sts:GetCallerIdentity (podiam auth's own identity, and the account of external ids)",
		func(ctx context.Context) error {
			out, err := api.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
			if err != nil {
				return err
			}
			a := aws.ToString(out.Account)
			if !accountIDRE.MatchString(a) {
				return fmt.Errorf("answered account %q, not 12 digits", a)
			}
			callerARN = aws.ToString(out.Arn)
			if c.ARN == "" {
				c.Region, c.Account = stsRegion, a
			}
			return nil
		})
	return c, callerARN, err
}

// CapSessionDuration returns the session duration to ask of STS and whether
// it was capped: d, but at most what STS grants role chaining when podiam
// auth's own identity (callerARN) is itself a role session (IRSA, IAM Roles
// Anywhere, an assumed role), since its AssumeRole calls are then chaining.
func CapSessionDuration(d time.Duration, callerARN string) (time.Duration, bool) {
	a, err := arn.Parse(callerARN)
	if err != nil || a.Service != "sts" || !strings.HasPrefix(a.Resource, "assumed-role/") || d <= maxChainedDuration {
		return d, false
	}
	return maxChainedDuration, true
}
