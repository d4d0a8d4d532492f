package auth

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

func TestClusterFromARN(t *testing.T) {
	tests := []struct {
		name, arn, cluster string
		want               Cluster
		wantErr            string
	}{
		{"EKS", "arn:aws:eks:eu-west-1:111122223333:cluster/prod", "prod",
			Cluster{Name: "prod", ARN: "arn:aws:eks:eu-west-1:111122223333:cluster/prod", Region: "eu-west-1", Account: "111122223333"}, ""},
		{"another partition", "arn:aws-cn:eks:cn-north-1:111122223333:cluster/prod_1", "prod_1",
			Cluster{Name: "prod_1", ARN: "arn:aws-cn:eks:cn-north-1:111122223333:cluster/prod_1", Region: "cn-north-1", Account: "111122223333"}, ""},
		{"not an ARN", "prod", "prod", Cluster{}, "not an ARN"},
		{"other service", "arn:aws:ecs:eu-west-1:111122223333:cluster/prod", "prod", Cluster{}, `service "ecs", want eks`},
		{"no region", "arn:aws:eks::111122223333:cluster/prod", "prod", Cluster{}, "no region"},
		{"short account", "arn:aws:eks:eu-west-1:1111:cluster/prod", "prod", Cluster{}, `account "1111", want 12 digits`},
		{"not a cluster", "arn:aws:eks:eu-west-1:111122223333:nodegroup/prod/ng/1", "prod", Cluster{}, `resource "nodegroup/prod/ng/1", want cluster/<name>`},
		{"other cluster", "arn:aws:eks:eu-west-1:111122223333:cluster/staging", "prod", Cluster{}, `names cluster "staging", but the cluster's name is "prod"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ClusterFromARN(tt.arn, tt.cluster)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

// fakeCallerIdentity answers GetCallerIdentity with errs in turn, then with
// account and arn.
type fakeCallerIdentity struct {
	errs         []error
	account, arn string
	calls        atomic.Int32
}

func (f *fakeCallerIdentity) GetCallerIdentity(context.Context, *sts.GetCallerIdentityInput, ...func(*sts.Options)) (*sts.GetCallerIdentityOutput, error) {
	n := int(f.calls.Add(1))
	if n <= len(f.errs) {
		return nil, f.errs[n-1]
	}
	return &sts.GetCallerIdentityOutput{Account: aws.String(f.account), Arn: aws.String(f.arn)}, nil
}

// retryAtOnce is a Retrier that retries without waiting, up to 10 times.
func retryAtOnce(ctx context.Context, what string, fn func(context.Context) error) error {
	var err error
	for range 10 {
		if err = fn(ctx); err == nil {
			return nil
		}
	}
	return errors.New(what + ": " + err.Error())
}

// The cluster's region and account come from its ARN, else from STS's region
// and podiam auth's own account, asked again while STS fails.
func TestResolveCluster(t *testing.T) {
	const clusterARN = "arn:aws:eks:eu-west-1:111122223333:cluster/prod"
	fromARN := Cluster{Name: "prod", ARN: clusterARN, Region: "eu-west-1", Account: "111122223333"}
	tests := []struct {
		name      string
		in        Cluster
		duration  time.Duration
		sts       *fakeCallerIdentity
		want      Cluster
		wantCalls int32
		wantErr   string
	}{
		// Nothing to ask STS: start-up does not depend on it.
		{"from the ARN", fromARN, time.Hour, &fakeCallerIdentity{account: "999999999999"}, fromARN, 0, ""},
		// STS is asked even so: podiam auth's own identity may cap a duration over an hour.
		{"from the ARN, 2h sessions", fromARN, 2 * time.Hour, &fakeCallerIdentity{account: "999999999999"}, fromARN, 1, ""},
		{"from STS", Cluster{Name: "prod"}, time.Hour, &fakeCallerIdentity{account: "444455556666"},
			Cluster{Name: "prod", Region: "us-east-2", Account: "444455556666"}, 1, ""},
		{"STS fails twice first", Cluster{Name: "prod"}, time.Hour,
			&fakeCallerIdentity{errs: []error{errors.New("no credentials yet"), errors.New("connection refused")}, account: "444455556666"},
			Cluster{Name: "prod", Region: "us-east-2", Account: "444455556666"}, 3, ""},
		{"odd account", Cluster{Name: "prod"}, time.Hour, &fakeCallerIdentity{account: "12"}, Cluster{}, 10, `answered account "12"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.sts.arn = "arn:aws:iam::" + tt.sts.account + ":user/podiam-auth"
			got, callerARN, err := ResolveCluster(context.Background(), tt.in, "us-east-2", tt.duration, tt.sts, retryAtOnce)
			if n := tt.sts.calls.Load(); n != tt.wantCalls {
				t.Errorf("%d GetCallerIdentity calls, want %d", n, tt.wantCalls)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if wantARN := tt.sts.arn; (tt.wantCalls > 0 && callerARN != wantARN) || (tt.wantCalls == 0 && callerARN != "") {
				t.Errorf("caller %q, want %q", callerARN, tt.sts.arn)
			}
			if got != tt.want {
				t.Errorf("cluster %+v, want %+v", got, tt.want)
			}
		})
	}
}

// The session duration is capped at STS's role-chaining maximum when podiam
// auth's own identity is a role session.
func TestCapSessionDuration(t *testing.T) {
	const session = "arn:aws:sts::111122223333:assumed-role/podiam-auth/botocore-session-1"
	tests := []struct {
		name       string
		d          time.Duration
		callerARN  string
		want       time.Duration
		wantCapped bool
	}{
		{"role session, 12h", 12 * time.Hour, session, time.Hour, true},
		{"role session, 2h", 2 * time.Hour, session, time.Hour, true},
		{"role session, 1h", time.Hour, session, time.Hour, false},
		{"role session, 15m", 15 * time.Minute, session, 15 * time.Minute, false},
		{"GovCloud role session", 3 * time.Hour, "arn:aws-us-gov:sts::111122223333:assumed-role/podiam-auth/s", time.Hour, true},
		{"IAM user", 12 * time.Hour, "arn:aws:iam::111122223333:user/podiam-auth", 12 * time.Hour, false},
		{"root", 12 * time.Hour, "arn:aws:iam::111122223333:root", 12 * time.Hour, false},
		{"federated user", 12 * time.Hour, "arn:aws:sts::111122223333:federated-user/podiam", 12 * time.Hour, false},
		{"no ARN", 12 * time.Hour, "", 12 * time.Hour, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, capped := CapSessionDuration(tt.d, tt.callerARN)
			if got != tt.want || capped != tt.wantCapped {
				t.Errorf("CapSessionDuration = %s, %v; want %s, %v", got, capped, tt.want, tt.wantCapped)
			}
		})
	}
}
