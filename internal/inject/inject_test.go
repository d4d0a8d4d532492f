package inject

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"

	"github.com/podiam/podiam/internal/identity"
)

var update = flag.Bool("update", false, "rewrite golden files")

var keys = identity.NewKeys(identity.DefaultAnnotationPrefix)

func testConfig() *Config {
	return &Config{
		Keys:                     keys,
		TokenMountPath:           DefaultTokenMountPath,
		ContainerCredsMountPath:  DefaultContainerCredsMountPath,
		ContainerCredsVolumeName: DefaultContainerCredsVolumeName,
		ContainerCredsTokenPath:  DefaultContainerCredsTokenPath,
		ContainerCredsFullURI:    DefaultContainerCredsFullURI,
	}
}

const roleARN = "arn:aws:iam::111122223333:role/app"

var (
	irsa = identity.Identity{Mode: identity.ModeIRSA, RoleARN: roleARN, Audience: "sts.amazonaws.com", TokenExpiration: 86400}
	pi   = identity.Identity{Mode: identity.ModePodIdentity, Audience: "pods.eks.amazonaws.com", TokenExpiration: 86400}
)

const (
	irsaTokenFile = DefaultTokenMountPath + "/token"
	piTokenFile   = DefaultContainerCredsMountPath + "/eks-pod-identity-token"
	irsaVolume    = `{"name":"aws-iam-token","projected":{"sources":[{"serviceAccountToken":{"audience":"sts.amazonaws.com","expirationSeconds":86400,"path":"token"}}]}}`
)

// Result shapes read back from the patched pod.
type (
	envVarOut struct {
		Name      string          `json:"name"`
		Value     string          `json:"value"`
		ValueFrom json.RawMessage `json:"valueFrom"`
	}
	mountOut struct {
		Name      string `json:"name"`
		MountPath string `json:"mountPath"`
		ReadOnly  bool   `json:"readOnly"`
	}
	containerOut struct {
		Name         string      `json:"name"`
		Env          []envVarOut `json:"env"`
		VolumeMounts []mountOut  `json:"volumeMounts"`
	}
	podOut struct {
		Metadata struct {
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
		Spec struct {
			SecurityContext map[string]any    `json:"securityContext"`
			Volumes         []json.RawMessage `json:"volumes"`
			Containers      []containerOut    `json:"containers"`
			InitContainers  []containerOut    `json:"initContainers"`
		} `json:"spec"`
	}
)

// envList renders a container's env as NAME=value (NAME=<from> for valueFrom).
func envList(c containerOut) []string {
	var out []string
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			out = append(out, e.Name+"=<"+string(e.ValueFrom)+">")
			continue
		}
		out = append(out, e.Name+"="+e.Value)
	}
	return out
}

func mountList(c containerOut) []string {
	var out []string
	for _, m := range c.VolumeMounts {
		ro := ""
		if m.ReadOnly {
			ro = ":ro"
		}
		out = append(out, m.Name+"@"+m.MountPath+ro)
	}
	return out
}

func applyPatch(t *testing.T, pod, patch []byte) []byte {
	t.Helper()
	if patch == nil {
		return pod
	}
	p, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		t.Fatalf("decoding patch %s: %v", patch, err)
	}
	out, err := p.Apply(pod)
	if err != nil {
		t.Fatalf("applying patch %s: %v", patch, err)
	}
	return out
}

func TestInject(t *testing.T) {
	irsaPair := []string{"AWS_ROLE_ARN=" + roleARN, "AWS_WEB_IDENTITY_TOKEN_FILE=" + irsaTokenFile}
	irsaMount := "aws-iam-token@" + DefaultTokenMountPath + ":ro"
	tests := []struct {
		name   string
		pod    string
		id     identity.Identity
		config func(*Config)
		// Expected state after the patch, per container "name": env and mounts.
		env      map[string][]string
		mounts   map[string][]string
		volumes  []string // JSON of each volume, in order
		labels   map[string]string
		secCtx   map[string]any
		warnings []string
		skipped  [2]int // by annotation, by conflict
		noPatch  bool
	}{
		{
			name:    "no identity gives no patch",
			pod:     `{"spec":{"containers":[{"name":"app"}]}}`,
			id:      identity.Identity{Mode: identity.ModeNone},
			env:     map[string][]string{"app": nil},
			noPatch: true,
		},
		{
			name:    "IRSA on a bare pod creates env, mounts and volumes arrays",
			pod:     `{"spec":{"containers":[{"name":"app"}]}}`,
			id:      irsa,
			env:     map[string][]string{"app": irsaPair},
			mounts:  map[string][]string{"app": {irsaMount}},
			volumes: []string{irsaVolume},
		},
		{
			name: "IRSA appends to existing arrays",
			pod: `{"spec":{"volumes":[{"name":"data","emptyDir":{}}],"containers":[{"name":"app",
				"env":[{"name":"LOG","value":"1"}],"volumeMounts":[{"name":"data","mountPath":"/data"}]}]}}`,
			id:      irsa,
			env:     map[string][]string{"app": append([]string{"LOG=1"}, irsaPair...)},
			mounts:  map[string][]string{"app": {"data@/data", irsaMount}},
			volumes: []string{`{"name":"data","emptyDir":{}}`, irsaVolume},
		},
		{
			name:   "regional STS, region pair and session name, in order",
			pod:    `{"spec":{"containers":[{"name":"app"}]}}`,
			id:     identity.Identity{Mode: identity.ModeIRSA, RoleARN: roleARN, Audience: "sts.amazonaws.com", TokenExpiration: 3600, RegionalSTS: true, SessionNameFromPod: true},
			config: func(c *Config) { c.Region = "eu-west-1" },
			env: map[string][]string{"app": {"AWS_STS_REGIONAL_ENDPOINTS=regional", "AWS_DEFAULT_REGION=eu-west-1", "AWS_REGION=eu-west-1",
				"AWS_ROLE_ARN=" + roleARN, "AWS_WEB_IDENTITY_TOKEN_FILE=" + irsaTokenFile,
				`AWS_ROLE_SESSION_NAME=<{"fieldRef":{"fieldPath":"metadata.name"}}>`}},
			mounts:  map[string][]string{"app": {irsaMount}},
			volumes: []string{strings.Replace(irsaVolume, "86400", "3600", 1)},
		},
		{
			name: "the user's values win and pairs are added both or neither",
			pod: `{"spec":{"containers":[{"name":"app","env":[
				{"name":"AWS_REGION","value":"us-east-1"},
				{"name":"AWS_ROLE_ARN","value":"arn:aws:iam::999999999999:role/mine"},
				{"name":"AWS_STS_REGIONAL_ENDPOINTS","value":"legacy"}]}]}}`,
			id:     identity.Identity{Mode: identity.ModeIRSA, RoleARN: roleARN, Audience: "sts.amazonaws.com", TokenExpiration: 86400, RegionalSTS: true},
			config: func(c *Config) { c.Region = "eu-west-1" },
			env: map[string][]string{"app": {"AWS_REGION=us-east-1", "AWS_ROLE_ARN=arn:aws:iam::999999999999:role/mine",
				"AWS_STS_REGIONAL_ENDPOINTS=legacy"}},
			mounts:   map[string][]string{"app": {irsaMount}},
			volumes:  []string{irsaVolume},
			warnings: []string{`container "app" sets AWS_ROLE_ARN but not AWS_WEB_IDENTITY_TOKEN_FILE`},
		},
		{
			name:     "half of the container-credentials pair is reported",
			pod:      `{"spec":{"containers":[{"name":"app","env":[{"name":"AWS_CONTAINER_CREDENTIALS_FULL_URI","value":"http://127.0.0.1/creds"}]}]}}`,
			id:       pi,
			env:      map[string][]string{"app": {"AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1/creds"}},
			mounts:   map[string][]string{"app": {"eks-pod-identity-token@" + DefaultContainerCredsMountPath + ":ro"}},
			volumes:  []string{`{"name":"eks-pod-identity-token","projected":{"sources":[{"serviceAccountToken":{"audience":"pods.eks.amazonaws.com","expirationSeconds":86400,"path":"eks-pod-identity-token"}}]}}`},
			labels:   map[string]string{"eks.amazonaws.com/pod-identity": "enabled"},
			warnings: []string{"sets AWS_CONTAINER_CREDENTIALS_FULL_URI but not AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"},
		},
		{
			name: "inject-containers naming no container is reported",
			pod: `{"metadata":{"annotations":{"eks.amazonaws.com/inject-containers":"typo"}},
				"spec":{"containers":[{"name":"app"}]}}`,
			id:       irsa,
			env:      map[string][]string{"app": nil},
			skipped:  [2]int{1, 0},
			warnings: []string{"eks.amazonaws.com/inject-containers names no container"},
			noPatch:  true,
		},
		{
			name: "another volume at our path with a trailing slash is a conflict",
			pod: `{"spec":{"volumes":[{"name":"mine","emptyDir":{}}],"containers":[
				{"name":"app","volumeMounts":[{"name":"mine","mountPath":"/var/run/secrets/eks.amazonaws.com/serviceaccount/"}]}]}}`,
			id:       irsa,
			env:      map[string][]string{"app": nil},
			mounts:   map[string][]string{"app": {"mine@/var/run/secrets/eks.amazonaws.com/serviceaccount/"}},
			volumes:  []string{`{"name":"mine","emptyDir":{}}`},
			warnings: []string{`container "app" already uses`},
			skipped:  [2]int{0, 1},
			noPatch:  true,
		},
		{
			name: "a file mounted inside our path is a conflict",
			pod: `{"spec":{"volumes":[{"name":"mine","emptyDir":{}}],"containers":[
				{"name":"app","volumeMounts":[{"name":"mine","mountPath":"/var/run/secrets/eks.amazonaws.com/serviceaccount/token","subPath":"t"}]}]}}`,
			id:       irsa,
			env:      map[string][]string{"app": nil},
			mounts:   map[string][]string{"app": {"mine@/var/run/secrets/eks.amazonaws.com/serviceaccount/token"}},
			volumes:  []string{`{"name":"mine","emptyDir":{}}`},
			warnings: []string{`already uses "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"`},
			skipped:  [2]int{0, 1},
			noPatch:  true,
		},
		{
			name: "init containers and native sidecars are injected; unknown fields survive",
			pod: `{"spec":{"initContainers":[{"name":"migrate"},{"name":"proxy","restartPolicy":"Always",
				"startupProbe":{"grpc":{"port":9000,"service":"h"}},"futureField":{"x":1}}],"containers":[{"name":"app"}]}}`,
			id:      irsa,
			env:     map[string][]string{"app": irsaPair, "migrate": irsaPair, "proxy": irsaPair},
			mounts:  map[string][]string{"app": {irsaMount}, "migrate": {irsaMount}, "proxy": {irsaMount}},
			volumes: []string{irsaVolume},
		},
		{
			name: "skip-containers trims spaces",
			pod: `{"metadata":{"annotations":{"eks.amazonaws.com/skip-containers":" sidecar , istio-proxy "}},
				"spec":{"containers":[{"name":"app"},{"name":"sidecar"},{"name":"istio-proxy"}]}}`,
			id:      irsa,
			env:     map[string][]string{"app": irsaPair, "sidecar": nil, "istio-proxy": nil},
			mounts:  map[string][]string{"app": {irsaMount}},
			volumes: []string{irsaVolume},
			skipped: [2]int{2, 0},
		},
		{
			name: "inject-containers is an opt-in list, combined with skip-containers",
			pod: `{"metadata":{"annotations":{"eks.amazonaws.com/inject-containers":"app, worker","eks.amazonaws.com/skip-containers":"worker"}},
				"spec":{"initContainers":[{"name":"init"}],"containers":[{"name":"app"},{"name":"worker"},{"name":"proxy"}]}}`,
			id:      irsa,
			env:     map[string][]string{"app": irsaPair, "worker": nil, "proxy": nil, "init": nil},
			mounts:  map[string][]string{"app": {irsaMount}},
			volumes: []string{irsaVolume},
			skipped: [2]int{3, 0},
		},
		{
			name: "every container skipped gives no patch",
			pod: `{"metadata":{"annotations":{"eks.amazonaws.com/skip-containers":"app"}},
				"spec":{"containers":[{"name":"app"}]}}`,
			id:      irsa,
			env:     map[string][]string{"app": nil},
			skipped: [2]int{1, 0},
			noPatch: true,
		},
		{
			name:    "Windows by nodeSelector",
			pod:     `{"spec":{"nodeSelector":{"kubernetes.io/os":"windows"},"containers":[{"name":"app"}]}}`,
			id:      irsa,
			env:     map[string][]string{"app": {"AWS_ROLE_ARN=" + roleARN, `AWS_WEB_IDENTITY_TOKEN_FILE=C:\var\run\secrets\eks.amazonaws.com\serviceaccount\token`}},
			mounts:  map[string][]string{"app": {irsaMount}},
			volumes: []string{irsaVolume},
		},
		{
			name:    "Windows by beta nodeSelector",
			pod:     `{"spec":{"nodeSelector":{"beta.kubernetes.io/os":"windows"},"containers":[{"name":"app"}]}}`,
			id:      irsa,
			env:     map[string][]string{"app": {"AWS_ROLE_ARN=" + roleARN, `AWS_WEB_IDENTITY_TOKEN_FILE=C:\var\run\secrets\eks.amazonaws.com\serviceaccount\token`}},
			mounts:  map[string][]string{"app": {irsaMount}},
			volumes: []string{irsaVolume},
		},
		{
			name: "Windows by spec.os, Pod Identity",
			pod:  `{"spec":{"os":{"name":"windows"},"containers":[{"name":"app"}]}}`,
			id:   pi,
			env: map[string][]string{"app": {"AWS_CONTAINER_CREDENTIALS_FULL_URI=http://169.254.170.23/v1/credentials",
				`AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=C:\var\run\secrets\pods.eks.amazonaws.com\serviceaccount\eks-pod-identity-token`}},
			mounts:  map[string][]string{"app": {"eks-pod-identity-token@" + DefaultContainerCredsMountPath + ":ro"}},
			volumes: []string{`{"name":"eks-pod-identity-token","projected":{"sources":[{"serviceAccountToken":{"audience":"pods.eks.amazonaws.com","expirationSeconds":86400,"path":"eks-pod-identity-token"}}]}}`},
			labels:  map[string]string{"eks.amazonaws.com/pod-identity": "enabled"},
		},
		{
			name:    "Linux nodeSelector is not Windows",
			pod:     `{"spec":{"nodeSelector":{"kubernetes.io/os":"linux"},"containers":[{"name":"app"}]}}`,
			id:      irsa,
			env:     map[string][]string{"app": irsaPair},
			mounts:  map[string][]string{"app": {irsaMount}},
			volumes: []string{irsaVolume},
		},
		{
			name: "Pod Identity adds the label next to existing labels, with regional STS and region",
			pod:  `{"metadata":{"labels":{"app":"x"}},"spec":{"containers":[{"name":"app"}]}}`,
			id:   identity.Identity{Mode: identity.ModePodIdentity, Audience: "pods.eks.amazonaws.com", TokenExpiration: 86400, RegionalSTS: true},
			config: func(c *Config) {
				c.Region = "eu-west-1"
				c.ContainerCredsFullURI = "http://[fd00:ec2::23]/v1/credentials"
			},
			env: map[string][]string{"app": {"AWS_STS_REGIONAL_ENDPOINTS=regional", "AWS_DEFAULT_REGION=eu-west-1", "AWS_REGION=eu-west-1",
				"AWS_CONTAINER_CREDENTIALS_FULL_URI=http://[fd00:ec2::23]/v1/credentials", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=" + piTokenFile}},
			mounts:  map[string][]string{"app": {"eks-pod-identity-token@" + DefaultContainerCredsMountPath + ":ro"}},
			volumes: []string{`{"name":"eks-pod-identity-token","projected":{"sources":[{"serviceAccountToken":{"audience":"pods.eks.amazonaws.com","expirationSeconds":86400,"path":"eks-pod-identity-token"}}]}}`},
			labels:  map[string]string{"app": "x", "eks.amazonaws.com/pod-identity": "enabled"},
		},
		{
			name: "Pod Identity with custom volume name and token path",
			pod:  `{"spec":{"containers":[{"name":"app"}]}}`,
			id:   pi,
			config: func(c *Config) {
				c.ContainerCredsVolumeName = "pi-token"
				c.ContainerCredsTokenPath = "tok"
				c.ContainerCredsMountPath = "/pi"
			},
			env: map[string][]string{"app": {"AWS_CONTAINER_CREDENTIALS_FULL_URI=http://169.254.170.23/v1/credentials",
				"AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=/pi/tok"}},
			mounts:  map[string][]string{"app": {"pi-token@/pi:ro"}},
			volumes: []string{`{"name":"pi-token","projected":{"sources":[{"serviceAccountToken":{"audience":"pods.eks.amazonaws.com","expirationSeconds":86400,"path":"tok"}}]}}`},
			labels:  map[string]string{"eks.amazonaws.com/pod-identity": "enabled"},
		},
		{
			name:    "fsGroup is set when the pod has no securityContext",
			pod:     `{"spec":{"containers":[{"name":"app"}]}}`,
			id:      withFSGroup(irsa, 65534),
			env:     map[string][]string{"app": irsaPair},
			mounts:  map[string][]string{"app": {irsaMount}},
			volumes: []string{irsaVolume},
			secCtx:  map[string]any{"fsGroup": float64(65534)},
		},
		{
			name:    "fsGroup is added to an existing securityContext",
			pod:     `{"spec":{"securityContext":{"runAsUser":1000},"containers":[{"name":"app"}]}}`,
			id:      withFSGroup(irsa, 2000),
			env:     map[string][]string{"app": irsaPair},
			mounts:  map[string][]string{"app": {irsaMount}},
			volumes: []string{irsaVolume},
			secCtx:  map[string]any{"runAsUser": float64(1000), "fsGroup": float64(2000)},
		},
		{
			name:    "an existing fsGroup is kept",
			pod:     `{"spec":{"securityContext":{"fsGroup":1},"containers":[{"name":"app"}]}}`,
			id:      withFSGroup(irsa, 2000),
			env:     map[string][]string{"app": irsaPair},
			mounts:  map[string][]string{"app": {irsaMount}},
			volumes: []string{irsaVolume},
			secCtx:  map[string]any{"fsGroup": float64(1)},
		},
		{
			name: "a volume with our name but another source is a conflict: nothing is injected",
			pod: `{"spec":{"volumes":[{"name":"aws-iam-token","secret":{"secretName":"creds"}}],
				"containers":[{"name":"app"}]}}`,
			id:       irsa,
			env:      map[string][]string{"app": nil},
			volumes:  []string{`{"name":"aws-iam-token","secret":{"secretName":"creds"}}`},
			warnings: []string{`volume "aws-iam-token" that is not a token for audience "sts.amazonaws.com"`},
			skipped:  [2]int{0, 1},
			noPatch:  true,
		},
		{
			name: "a token volume for another audience is a conflict",
			pod: `{"spec":{"volumes":[{"name":"aws-iam-token","projected":{"sources":[{"serviceAccountToken":{"audience":"other","path":"token"}}]}}],
				"containers":[{"name":"app"}]}}`,
			id:       irsa,
			env:      map[string][]string{"app": nil},
			volumes:  []string{`{"name":"aws-iam-token","projected":{"sources":[{"serviceAccountToken":{"audience":"other","path":"token"}}]}}`},
			warnings: []string{"not a token for audience"},
			skipped:  [2]int{0, 1},
			noPatch:  true,
		},
		{
			name: "a container using our mount path for another volume is skipped, the others injected",
			pod: `{"spec":{"volumes":[{"name":"mine","emptyDir":{}}],"containers":[
				{"name":"app","volumeMounts":[{"name":"mine","mountPath":"/var/run/secrets/eks.amazonaws.com/serviceaccount"}]},
				{"name":"worker"}]}}`,
			id:       irsa,
			env:      map[string][]string{"app": nil, "worker": irsaPair},
			mounts:   map[string][]string{"app": {"mine@/var/run/secrets/eks.amazonaws.com/serviceaccount"}, "worker": {irsaMount}},
			volumes:  []string{`{"name":"mine","emptyDir":{}}`, irsaVolume},
			warnings: []string{`container "app" already uses "/var/run/secrets/eks.amazonaws.com/serviceaccount" for volume "mine"`},
			skipped:  [2]int{0, 1},
		},
		{
			name:     "a container mounting our volume elsewhere is skipped",
			pod:      `{"spec":{"containers":[{"name":"app","volumeMounts":[{"name":"aws-iam-token","mountPath":"/elsewhere"}]}]}}`,
			id:       irsa,
			env:      map[string][]string{"app": nil},
			mounts:   map[string][]string{"app": {"aws-iam-token@/elsewhere"}},
			warnings: []string{`container "app" mounts "aws-iam-token" at "/elsewhere"`},
			skipped:  [2]int{0, 1},
			noPatch:  true,
		},
		{
			name: "special characters in values are escaped",
			pod:  `{"spec":{"containers":[{"name":"app"}]}}`,
			id:   identity.Identity{Mode: identity.ModeIRSA, RoleARN: "arn:aws:iam::111122223333:role/a\"b\\c\u2028", Audience: "x\ny", TokenExpiration: 600},
			env: map[string][]string{"app": {"AWS_ROLE_ARN=arn:aws:iam::111122223333:role/a\"b\\c\u2028",
				"AWS_WEB_IDENTITY_TOKEN_FILE=" + irsaTokenFile}},
			mounts:  map[string][]string{"app": {irsaMount}},
			volumes: []string{`{"name":"aws-iam-token","projected":{"sources":[{"serviceAccountToken":{"audience":"x\ny","expirationSeconds":600,"path":"token"}}]}}`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			if tt.config != nil {
				tt.config(cfg)
			}
			pod, err := DecodePod([]byte(tt.pod))
			if err != nil {
				t.Fatal(err)
			}
			res := cfg.Inject(pod, tt.id)
			if (res.Patch == nil) != tt.noPatch {
				t.Fatalf("patch = %s, want none: %v", res.Patch, tt.noPatch)
			}
			if got := [2]int{res.SkippedByAnnotation, res.SkippedByConflict}; got != tt.skipped {
				t.Errorf("skipped (annotation, conflict) = %v, want %v", got, tt.skipped)
			}
			if len(res.Warnings) != len(tt.warnings) {
				t.Fatalf("warnings = %q, want %q", res.Warnings, tt.warnings)
			}
			for i, w := range tt.warnings {
				if !strings.Contains(res.Warnings[i], w) {
					t.Errorf("warning %d = %q, want it to contain %q", i, res.Warnings[i], w)
				}
			}

			patched := applyPatch(t, []byte(tt.pod), res.Patch)
			var out podOut
			if err := json.Unmarshal(patched, &out); err != nil {
				t.Fatal(err)
			}
			for _, c := range append(out.Spec.Containers, out.Spec.InitContainers...) {
				if want, ok := tt.env[c.Name]; ok && !reflect.DeepEqual(envList(c), want) {
					t.Errorf("container %s env\n got %q\nwant %q", c.Name, envList(c), want)
				}
				if want := tt.mounts[c.Name]; !reflect.DeepEqual(mountList(c), want) {
					t.Errorf("container %s mounts\n got %q\nwant %q", c.Name, mountList(c), want)
				}
			}
			var vols []string
			for _, v := range out.Spec.Volumes {
				var c bytes.Buffer
				_ = json.Compact(&c, v)
				vols = append(vols, c.String())
			}
			if !reflect.DeepEqual(vols, tt.volumes) {
				t.Errorf("volumes\n got %s\nwant %s", vols, tt.volumes)
			}
			if !reflect.DeepEqual(out.Metadata.Labels, tt.labels) {
				t.Errorf("labels = %v, want %v", out.Metadata.Labels, tt.labels)
			}
			if !reflect.DeepEqual(out.Spec.SecurityContext, tt.secCtx) {
				t.Errorf("securityContext = %v, want %v", out.Spec.SecurityContext, tt.secCtx)
			}
			assertSurvives(t, []byte(tt.pod), patched)

			// Idempotent: the patched pod needs nothing more.
			again, err := DecodePod(patched)
			if err != nil {
				t.Fatal(err)
			}
			if res2 := cfg.Inject(again, tt.id); res2.Patch != nil {
				t.Errorf("second injection patched again: %s", res2.Patch)
			}
		})
	}
}

func withFSGroup(id identity.Identity, g int64) identity.Identity {
	id.FSGroup = &g
	return id
}

// assertSurvives checks that every field of every original container is still
// in the patched pod, unchanged: the patch only adds.
func assertSurvives(t *testing.T, orig, patched []byte) {
	t.Helper()
	var a, b struct {
		Spec map[string]any `json:"spec"`
	}
	if err := json.Unmarshal(orig, &a); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(patched, &b); err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"containers", "initContainers"} {
		oc, _ := a.Spec[field].([]any)
		pc, _ := b.Spec[field].([]any)
		if len(oc) != len(pc) {
			t.Fatalf("%s: %d containers became %d", field, len(oc), len(pc))
		}
		for i := range oc {
			for k, v := range oc[i].(map[string]any) {
				got := pc[i].(map[string]any)[k]
				switch k {
				case "env", "volumeMounts": // may only grow, at the end
					ov, gv := v.([]any), got.([]any)
					if len(gv) < len(ov) || !reflect.DeepEqual(gv[:len(ov)], ov) {
						t.Errorf("%s[%d].%s: existing items changed: %v -> %v", field, i, k, ov, gv)
					}
				default:
					if !reflect.DeepEqual(got, v) {
						t.Errorf("%s[%d].%s changed: %v -> %v", field, i, k, v, got)
					}
				}
			}
		}
	}
}

// TestInjectGolden pins the exact patch for realistic pods, reviewed by hand.
func TestInjectGolden(t *testing.T) {
	tests := []struct {
		name string
		id   identity.Identity
	}{
		{"deployment-irsa", identity.Identity{Mode: identity.ModeIRSA, RoleARN: "arn:aws:iam::111122223333:role/orders-api",
			Audience: "sts.amazonaws.com", TokenExpiration: 86400, RegionalSTS: true}},
		{"deployment-pod-identity", pi},
		{"sidecars-irsa", withFSGroup(irsa, 65534)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			podFile := filepath.Join("testdata", strings.SplitN(tt.name, "-", 2)[0]+".pod.json")
			raw, err := os.ReadFile(podFile)
			if err != nil {
				t.Fatal(err)
			}
			pod, err := DecodePod(raw)
			if err != nil {
				t.Fatal(err)
			}
			cfg := testConfig()
			cfg.Region = "eu-west-1"
			res := cfg.Inject(pod, tt.id)
			var got bytes.Buffer
			if err := json.Indent(&got, res.Patch, "", "  "); err != nil {
				t.Fatalf("patch is not JSON: %v\n%s", err, res.Patch)
			}
			got.WriteByte('\n')
			golden := filepath.Join("testdata", tt.name+".patch.json")
			if *update {
				if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Errorf("patch differs from %s (run with -update after reviewing):\n%s", golden, got.String())
			}
			assertSurvives(t, raw, applyPatch(t, raw, res.Patch))
		})
	}
}

// FuzzInject checks, for any pod the decoder accepts, that the patch applies,
// only adds, and is idempotent.
func FuzzInject(f *testing.F) {
	for _, name := range []string{"deployment.pod.json", "sidecars.pod.json"} {
		raw, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw, false)
		f.Add(raw, true)
	}
	f.Add([]byte(`{"spec":{"containers":[{"name":"a","env":null}],"volumes":null}}`), false)
	f.Add([]byte(`{"metadata":{"annotations":{"eks.amazonaws.com/skip-containers":"a"}},"spec":{"containers":[{"name":"a"},{"name":"b"}]}}`), true)
	f.Fuzz(func(t *testing.T, raw []byte, podIdentity bool) {
		pod, err := DecodePod(raw)
		if err != nil {
			return
		}
		id := withFSGroup(irsa, 1000)
		if podIdentity {
			id = withFSGroup(pi, 1000)
		}
		cfg := testConfig()
		cfg.Region = "eu-west-1"
		res := cfg.Inject(pod, id)
		if res.Patch == nil {
			return
		}
		p, err := jsonpatch.DecodePatch(res.Patch)
		if err != nil {
			t.Fatalf("invalid patch %s: %v", res.Patch, err)
		}
		patched, err := p.Apply(raw)
		if err != nil {
			// The decoder accepts documents json-patch cannot address (for
			// example duplicate names); only a well-formed pod must apply.
			if json.Valid(raw) && !hasDuplicateNames(raw) {
				t.Fatalf("patch %s does not apply to %s: %v", res.Patch, raw, err)
			}
			return
		}
		again, err := DecodePod(patched)
		if err != nil {
			t.Fatalf("patched pod does not decode: %v", err)
		}
		if res2 := cfg.Inject(again, id); res2.Patch != nil {
			t.Fatalf("not idempotent: second patch %s", res2.Patch)
		}
	})
}

// hasDuplicateNames reports whether a JSON document repeats an object member.
func hasDuplicateNames(raw []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(raw))
	type frame struct {
		obj  bool
		seen map[string]bool
		key  bool // next string token is a key
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				stack = append(stack, &frame{obj: true, seen: map[string]bool{}, key: true})
				continue
			case '[':
				stack = append(stack, &frame{})
				continue
			default:
				stack = stack[:len(stack)-1]
			}
		case string:
			if top != nil && top.obj && top.key {
				if top.seen[v] {
					return true
				}
				top.seen[v] = true
				top.key = false
				continue
			}
		}
		if len(stack) > 0 && stack[len(stack)-1].obj {
			stack[len(stack)-1].key = true
		}
	}
}
