package sts

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awssts "github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/aws-sdk-go-v2/service/sts/types"
)

// TestAssumeRole assumes a role as a user with session tags, a transitive tag and
// a source identity, then chains into another role with that session, through
// the SDK.
func TestAssumeRole(t *testing.T) {
	env := newTestEnv(t)
	before := time.Now().Truncate(time.Second)
	out, err := env.userClient().AssumeRole(t.Context(), &awssts.AssumeRoleInput{
		RoleArn: aws.String(roleARN("deploy")), RoleSessionName: aws.String("build-7"), DurationSeconds: aws.Int32(7200),
		Tags:              []types.Tag{{Key: aws.String("team"), Value: aws.String("payments")}, {Key: aws.String("run"), Value: aws.String("7")}},
		TransitiveTagKeys: []string{"team"}, SourceIdentity: aws.String("alice"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := aws.ToString(out.AssumedRoleUser.Arn), "arn:aws:sts::"+testAccount+":assumed-role/deploy/build-7"; got != want {
		t.Errorf("Arn = %q, want %q", got, want)
	}
	if got, want := aws.ToString(out.AssumedRoleUser.AssumedRoleId), RoleID(testAccount, "/", "deploy")+":build-7"; got != want {
		t.Errorf("AssumedRoleId = %q, want %q", got, want)
	}
	if exp := aws.ToTime(out.Credentials.Expiration); exp.Before(before.Add(2 * time.Hour)) {
		t.Errorf("Expiration = %v, want two hours from now", exp)
	}
	if aws.ToString(out.SourceIdentity) != "alice" || out.PackedPolicySize == nil {
		t.Errorf("SourceIdentity = %q, PackedPolicySize = %v", aws.ToString(out.SourceIdentity), out.PackedPolicySize)
	}

	// Role chaining: the session assumes another role, for at most an hour.
	c := out.Credentials
	session := env.client(credentials.NewStaticCredentialsProvider(*c.AccessKeyId, *c.SecretAccessKey, *c.SessionToken))
	_, err = session.AssumeRole(t.Context(), &awssts.AssumeRoleInput{RoleArn: aws.String(roleARN("chain")),
		RoleSessionName: aws.String("hop"), DurationSeconds: aws.Int32(7200)})
	wantAPIError(t, err, "ValidationError", "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.")
	chained, err := session.AssumeRole(t.Context(), &awssts.AssumeRoleInput{RoleArn: aws.String(roleARN("chain")),
		RoleSessionName: aws.String("hop")})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := aws.ToString(chained.AssumedRoleUser.Arn), "arn:aws:sts::"+testAccount+":assumed-role/chain/hop"; got != want {
		t.Errorf("chained Arn = %q, want %q", got, want)
	}
	// The transitive tag and the source identity carried over; the other tag did not.
	cc := chained.Credentials
	sess, _, err := env.sealer.Lookup(*cc.AccessKeyId, *cc.SessionToken)
	if err != nil {
		t.Fatal(err)
	}
	if !sess.Chained || sess.SourceIdentity != "alice" || !slices.Equal(sess.Tags, []Tag{{Key: "team", Value: "payments"}}) ||
		!slices.Equal(sess.TransitiveTagKeys, []string{"team"}) {
		t.Errorf("chained session = %+v, want chained, source identity alice, transitive tag team=payments", sess)
	}
}

// TestAssumeRoleDenied checks AWS's answers to AssumeRole calls the trust
// policies or the parameters refuse, and that the log says why.
func TestAssumeRoleDenied(t *testing.T) {
	ci, other := "arn:aws:iam::"+testAccount+":user/ci", "arn:aws:iam::"+testAccount+":user/other"
	denied := func(caller, action, role string) string {
		return "User: " + caller + " is not authorized to perform: " + action + " on resource: " + roleARN(role)
	}
	tests := []struct {
		name        string
		otherUser   bool
		in          awssts.AssumeRoleInput
		wantCode    string
		wantMessage string
		wantLog     string
	}{{
		name:      "a user the trust policy does not name",
		otherUser: true,
		in:        awssts.AssumeRoleInput{RoleArn: aws.String(roleARN("deploy"))},
		wantCode:  "AccessDenied", wantMessage: denied(other, "sts:AssumeRole", "deploy"), wantLog: "user/other",
	}, {
		name:     "a role not in the config",
		in:       awssts.AssumeRoleInput{RoleArn: aws.String(roleARN("missing"))},
		wantCode: "AccessDenied", wantMessage: denied(ci, "sts:AssumeRole", "missing"), wantLog: "no role",
	}, {
		name:     "tags without sts:TagSession",
		in:       awssts.AssumeRoleInput{RoleArn: aws.String(roleARN("notags")), Tags: []types.Tag{{Key: aws.String("k"), Value: aws.String("v")}}},
		wantCode: "AccessDenied", wantMessage: denied(ci, "sts:TagSession", "notags"), wantLog: "sts:TagSession",
	}, {
		name:     "no ExternalId",
		in:       awssts.AssumeRoleInput{RoleArn: aws.String(roleARN("external"))},
		wantCode: "AccessDenied", wantMessage: denied(ci, "sts:AssumeRole", "external"), wantLog: "sts:ExternalId",
	}, {
		name:     "wrong ExternalId",
		in:       awssts.AssumeRoleInput{RoleArn: aws.String(roleARN("external")), ExternalId: aws.String("team-41")},
		wantCode: "AccessDenied", wantMessage: denied(ci, "sts:AssumeRole", "external"), wantLog: "team-41",
	}, {
		name:     "duration over the role's maximum",
		in:       awssts.AssumeRoleInput{RoleArn: aws.String(roleARN("deploy")), DurationSeconds: aws.Int32(10800)},
		wantCode: "ValidationError", wantMessage: "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
		wantLog: "maxSessionDuration 7200",
	}, {
		name: "tag key too long and session name too short",
		in: awssts.AssumeRoleInput{RoleArn: aws.String(roleARN("deploy")), RoleSessionName: aws.String("x"),
			Tags: []types.Tag{{Key: aws.String(strings.Repeat("k", 129)), Value: aws.String("v")}}},
		wantCode: "ValidationError",
		wantMessage: "2 validation errors detected: Value 'x' at 'roleSessionName' failed to satisfy constraint: Member must have length greater than or equal to 2; " +
			"Value '" + strings.Repeat("k", 129) + "' at 'tags.1.member.key' failed to satisfy constraint: Member must have length less than or equal to 128",
		wantLog: "parameter validation",
	}, {
		name:     "session policy that is not a policy",
		in:       awssts.AssumeRoleInput{RoleArn: aws.String(roleARN("deploy")), Policy: aws.String(`{"Statement":`)},
		wantCode: "MalformedPolicyDocument", wantMessage: "The policy is not in the valid JSON format.", wantLog: "session policy",
	}, {
		name:     "not a role ARN",
		in:       awssts.AssumeRoleInput{RoleArn: aws.String("arn:aws:iam::" + testAccount + ":user/ci")},
		wantCode: "ValidationError", wantMessage: "arn:aws:iam::" + testAccount + ":user/ci is invalid", wantLog: "not an IAM role ARN",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newTestEnv(t)
			client := env.userClient()
			if tt.otherUser {
				client = env.client(credentials.NewStaticCredentialsProvider(otherKeyID, otherSecret, ""))
			}
			in := tt.in
			if in.RoleSessionName == nil {
				in.RoleSessionName = aws.String("s1")
			}
			_, err := client.AssumeRole(t.Context(), &in)
			wantAPIError(t, err, tt.wantCode, tt.wantMessage)
			if tt.wantCode == "AccessDenied" && httpStatus(err) != http.StatusForbidden {
				t.Errorf("AccessDenied with HTTP status other than 403: %v", err)
			}
			if logs := env.logs.String(); !strings.Contains(logs, `"msg":"denied"`) || !strings.Contains(logs, tt.wantLog) {
				t.Errorf("log lacks the denial with %q:\n%s", tt.wantLog, logs)
			}
		})
	}

	// The same calls succeed once the missing part is there.
	env := newTestEnv(t)
	for _, in := range []*awssts.AssumeRoleInput{
		{RoleArn: aws.String(roleARN("notags")), RoleSessionName: aws.String("s1")},
		{RoleArn: aws.String(roleARN("external")), RoleSessionName: aws.String("s1"), ExternalId: aws.String("team-42")},
	} {
		if _, err := env.userClient().AssumeRole(t.Context(), in); err != nil {
			t.Errorf("AssumeRole %s: %v", *in.RoleArn, err)
		}
	}
}

// TestAssumeRoleChainedPrincipal checks the condition keys a role session
// brings when it assumes another role: aws:PrincipalArn is its role's ARN with
// the role's path, and a request tag may not reuse the key of a transitive tag
// the session passes on.
func TestAssumeRoleChainedPrincipal(t *testing.T) {
	env := newTestEnv(t)
	session := func(role string, in *awssts.AssumeRoleInput) *awssts.Client {
		t.Helper()
		in.RoleArn, in.RoleSessionName = aws.String(role), aws.String("first")
		out, err := env.userClient().AssumeRole(t.Context(), in)
		if err != nil {
			t.Fatal(err)
		}
		c := out.Credentials
		return env.client(credentials.NewStaticCredentialsProvider(*c.AccessKeyId, *c.SecretAccessKey, *c.SessionToken))
	}

	pathed := session("arn:aws:iam::"+testAccount+":role/team/pathed", &awssts.AssumeRoleInput{})
	if _, err := pathed.AssumeRole(t.Context(), &awssts.AssumeRoleInput{RoleArn: aws.String(roleARN("afterpath")),
		RoleSessionName: aws.String("hop")}); err != nil {
		t.Errorf("a session of role/team/pathed assuming a role that trusts that ARN: %v", err)
	}

	tagged := session(roleARN("deploy"), &awssts.AssumeRoleInput{
		Tags: []types.Tag{{Key: aws.String("team"), Value: aws.String("payments")}}, TransitiveTagKeys: []string{"team"}})
	tests := []struct {
		name    string
		key     string
		wantErr bool
	}{
		{name: "the transitive tag's key", key: "team", wantErr: true},
		{name: "the same key in another case", key: "Team", wantErr: true},
		{name: "another key", key: "run"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := tagged.AssumeRole(t.Context(), &awssts.AssumeRoleInput{RoleArn: aws.String(roleARN("chain")),
				RoleSessionName: aws.String("hop"), Tags: []types.Tag{{Key: aws.String(tt.key), Value: aws.String("other")}}})
			if !tt.wantErr {
				if err != nil {
					t.Fatal(err)
				}
				sess, _, err := env.sealer.Lookup(*out.Credentials.AccessKeyId, *out.Credentials.SessionToken)
				if err != nil {
					t.Fatal(err)
				}
				if want := []Tag{{Key: "team", Value: "payments"}, {Key: tt.key, Value: "other"}}; !slices.Equal(sess.Tags, want) {
					t.Errorf("tags = %v, want %v", sess.Tags, want)
				}
				return
			}
			wantAPIError(t, err, codeInvalidParameterValue, messageTransitiveTagOverride)
			if httpStatus(err) != http.StatusBadRequest {
				t.Errorf("HTTP status %d, want 400", httpStatus(err))
			}
		})
	}
}
