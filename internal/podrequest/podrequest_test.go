package podrequest

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podiam/podiam/internal/policy"
)

func tokenVolume(name, aud string) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Audience: aud, Path: "token"}}}}}}
}

// TestOf reads what the webhook injected from pod objects.
func TestOf(t *testing.T) {
	const roleARN = "arn:aws:iam::444455556666:role/app"
	role := []corev1.EnvVar{{Name: RoleARNEnv, Value: roleARN}}
	saWith := func(aud string) *corev1.ServiceAccount {
		return &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{AudienceAnnotation: aud}}}
	}
	app := policy.ServiceAccount{Namespace: "apps", Name: "app"}
	def := policy.ServiceAccount{Namespace: "apps", Name: "default"}
	for _, tc := range []struct {
		name string
		spec corev1.PodSpec
		sa   *corev1.ServiceAccount
		want Facts
	}{
		{"irsa volume audience wins over the annotation", corev1.PodSpec{ServiceAccountName: "app",
			Volumes:    []corev1.Volume{tokenVolume(IRSAVolumeName, "api.example.com")},
			Containers: []corev1.Container{{Name: "a", Env: role}}}, saWith("ignored"),
			Facts{ServiceAccount: app, Action: policy.ActionAssumeRoleWithWebIdentity, Audience: "api.example.com", RoleARN: roleARN, RoleAccount: "444455556666", RolePartition: "aws"}},
		{"annotation fallback", corev1.PodSpec{ServiceAccountName: "app", Containers: []corev1.Container{{Name: "a"}}}, saWith("amazonaws.com"),
			Facts{ServiceAccount: app, Action: policy.ActionAssumeRoleWithWebIdentity, Audience: "amazonaws.com"}},
		{"default audience, role in an init container, default ServiceAccount", corev1.PodSpec{InitContainers: []corev1.Container{{Name: "i", Env: role}}}, nil,
			Facts{ServiceAccount: def, Action: policy.ActionAssumeRoleWithWebIdentity, Audience: policy.DefaultAudience, RoleARN: roleARN, RoleAccount: "444455556666", RolePartition: "aws"}},
		{"irsa volume that is not projected", corev1.PodSpec{ServiceAccountName: "app", Volumes: []corev1.Volume{{Name: IRSAVolumeName}}}, nil,
			Facts{ServiceAccount: app, Action: policy.ActionAssumeRoleWithWebIdentity, Audience: policy.DefaultAudience}},
		{"pod identity", corev1.PodSpec{ServiceAccountName: "app", Volumes: []corev1.Volume{tokenVolume(PodIdentityVolumeName, policy.PodIdentityService)}}, saWith("ignored"),
			Facts{ServiceAccount: app, Action: policy.ActionAssumeRole}},
		{"both volumes: IRSA", corev1.PodSpec{ServiceAccountName: "app", Volumes: []corev1.Volume{
			tokenVolume(PodIdentityVolumeName, policy.PodIdentityService), tokenVolume(IRSAVolumeName, "sts.amazonaws.com")}}, nil,
			Facts{ServiceAccount: app, Action: policy.ActionAssumeRoleWithWebIdentity, Audience: "sts.amazonaws.com"}},
		{"role in aws-cn", corev1.PodSpec{ServiceAccountName: "app",
			Containers: []corev1.Container{{Name: "a", Env: []corev1.EnvVar{{Name: RoleARNEnv, Value: "arn:aws-cn:iam::444455556666:role/app"}}}}}, nil,
			Facts{ServiceAccount: app, Action: policy.ActionAssumeRoleWithWebIdentity, Audience: policy.DefaultAudience,
				RoleARN: "arn:aws-cn:iam::444455556666:role/app", RoleAccount: "444455556666", RolePartition: "aws-cn"}},
		{"role in aws-us-gov", corev1.PodSpec{ServiceAccountName: "app",
			Containers: []corev1.Container{{Name: "a", Env: []corev1.EnvVar{{Name: RoleARNEnv, Value: "arn:aws-us-gov:iam::444455556666:role/app"}}}}}, nil,
			Facts{ServiceAccount: app, Action: policy.ActionAssumeRoleWithWebIdentity, Audience: policy.DefaultAudience,
				RoleARN: "arn:aws-us-gov:iam::444455556666:role/app", RoleAccount: "444455556666", RolePartition: "aws-us-gov"}},
		{"role that is not an ARN has no account", corev1.PodSpec{ServiceAccountName: "app",
			Containers: []corev1.Container{{Name: "a", Env: []corev1.EnvVar{{Name: RoleARNEnv, Value: "app"}}}}}, nil,
			Facts{ServiceAccount: app, Action: policy.ActionAssumeRoleWithWebIdentity, Audience: policy.DefaultAudience, RoleARN: "app"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "app-1", UID: types.UID("uid-1")}, Spec: tc.spec}
			tc.want.PodName, tc.want.PodUID = "app-1", "uid-1"
			if got := Of(pod, tc.sa); got != tc.want {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// TestSessionTags: the six tags of SPEC §6, unknown ones left out.
func TestSessionTags(t *testing.T) {
	sa := policy.ServiceAccount{Namespace: "apps", Name: "web"}
	for _, tc := range []struct {
		name    string
		facts   Facts
		cluster Cluster
		want    map[string]string
	}{
		{"pod in a named cluster", Facts{ServiceAccount: sa, PodName: "web-1", PodUID: "uid-1"},
			Cluster{Name: "prod", ARN: "arn:aws:eks:eu-west-1:111122223333:cluster/prod"},
			map[string]string{
				"eks-cluster-arn":            "arn:aws:eks:eu-west-1:111122223333:cluster/prod",
				"eks-cluster-name":           "prod",
				"kubernetes-namespace":       "apps",
				"kubernetes-service-account": "web",
				"kubernetes-pod-name":        "web-1",
				"kubernetes-pod-uid":         "uid-1",
			}},
		{"ServiceAccount only", Facts{ServiceAccount: sa}, Cluster{},
			map[string]string{"kubernetes-namespace": "apps", "kubernetes-service-account": "web"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.facts.SessionTags(tc.cluster); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got  %v\nwant %v", got, tc.want)
			}
		})
	}
}

// TestAssumeRoleRequests: every tag transitive, and sts:TagSession evaluated
// beside sts:AssumeRole when tags are present, as IAM does.
func TestAssumeRoleRequests(t *testing.T) {
	svc := policy.Principal{Type: "Service", ID: policy.PodIdentityService}
	tags := map[string]string{"kubernetes-service-account": "web", "kubernetes-namespace": "apps"}
	for _, tc := range []struct {
		name        string
		tags        map[string]string
		wantActions []string
		wantKeys    []string
	}{
		{"tags", tags, []string{policy.ActionAssumeRole, policy.ActionTagSession}, []string{"kubernetes-namespace", "kubernetes-service-account"}},
		{"no tags", nil, []string{policy.ActionAssumeRole}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reqs := AssumeRoleRequests(svc, tc.tags)
			var actions []string
			for _, r := range reqs {
				actions = append(actions, r.Action)
				if r.Principal != svc {
					t.Errorf("%s: principal %+v", r.Action, r.Principal)
				}
				if got := r.Context["sts:TransitiveTagKeys"]; !reflect.DeepEqual(got, tc.wantKeys) {
					t.Errorf("%s: sts:TransitiveTagKeys = %q, want %q", r.Action, got, tc.wantKeys)
				}
				if got := r.Context["aws:TagKeys"]; !reflect.DeepEqual(got, tc.wantKeys) {
					t.Errorf("%s: aws:TagKeys = %q, want %q", r.Action, got, tc.wantKeys)
				}
			}
			if !reflect.DeepEqual(actions, tc.wantActions) {
				t.Fatalf("actions %q, want %q", actions, tc.wantActions)
			}
			if len(reqs) == 2 && reflect.ValueOf(reqs[0].Context).Pointer() == reflect.ValueOf(reqs[1].Context).Pointer() {
				t.Error("the two requests share one Context map")
			}
		})
	}
}
