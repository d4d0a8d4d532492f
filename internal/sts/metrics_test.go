package sts

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssts "github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
)

// TestMetrics checks the calls counted by action and result and the latency
// observed, and that a made-up action does not become a label.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	env := newTestEnv(t, func(o *Options) { o.Metrics = m })
	if _, err := env.webIdentity(t.Context(), roleARN("web"), "s1", env.token(t), 0); err != nil {
		t.Fatal(err)
	}
	_, _ = env.webIdentity(t.Context(), roleARN("web"), "s1", "not-a-token", 0)
	_, _ = env.client(nil).AssumeRoleWithWebIdentity(t.Context(), &awssts.AssumeRoleWithWebIdentityInput{
		RoleArn: aws.String(roleARN("web")), RoleSessionName: aws.String("s1"), WebIdentityToken: aws.String("x.y.z")},
		withBody("Action=Made-Up-Action&Version=2011-06-15"))
	for _, tt := range []struct {
		action, result string
		want           float64
	}{
		{actionWebIdentity, resultSuccess, 1},
		{actionWebIdentity, "InvalidIdentityToken", 1},
		{actionOther, "InvalidAction", 1},
	} {
		if got := promtest.ToFloat64(m.Calls.WithLabelValues(tt.action, tt.result)); got != tt.want {
			t.Errorf("calls{%s,%s} = %v, want %v", tt.action, tt.result, got, tt.want)
		}
	}
	if n := promtest.CollectAndCount(m.Calls); n != 3 {
		t.Errorf("%d call series, want 3", n)
	}
	if n := promtest.CollectAndCount(m.Duration); n != 4 { // the four pre-created actions
		t.Errorf("%d duration series, want 4", n)
	}
	m.ConfigReloaded(nil)
	if got := promtest.ToFloat64(m.ConfigReloads.WithLabelValues("ok")); got != 1 {
		t.Errorf("config reloads ok = %v", got)
	}
}
