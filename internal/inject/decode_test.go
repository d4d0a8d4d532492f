package inject

import (
	"reflect"
	"slices"
	"testing"

	"github.com/go-json-experiment/json"

	"github.com/podiam/podiam/internal/identity"
	"github.com/podiam/podiam/internal/jsonscan"
)

// refContainer is container decoded by reflection, as before the hand-written
// decoder: the decoder must give the same result for any input.
type refContainer struct {
	Name string `json:"name"`
	Env  []struct {
		Name string `json:"name"`
	} `json:"env"`
	VolumeMounts []struct {
		Name      string `json:"name"`
		MountPath string `json:"mountPath"`
	} `json:"volumeMounts"`
}

// sameAsReflection decodes raw as a container list both ways and reports a
// difference: in whether it fails, in values, or in nil against empty lists
// (which the patch tells apart). Of the env, the decoder keeps only the first
// variable of each name in envNames: so is reflection's result filtered.
func sameAsReflection(t *testing.T, raw []byte) {
	t.Helper()
	var got []container
	gotErr := json.Unmarshal(raw, &got, jsonscan.Options)
	var want []refContainer
	wantErr := json.Unmarshal(raw, &want, jsonscan.Options)
	if (gotErr != nil) != (wantErr != nil) {
		t.Fatalf("%s: error %v, reflection's %v", raw, gotErr, wantErr)
	}
	if gotErr != nil {
		return
	}
	if len(got) != len(want) || (got == nil) != (want == nil) {
		t.Fatalf("%s: %d containers (nil %v), reflection %d (nil %v)", raw, len(got), got == nil, len(want), want == nil)
	}
	for i, w := range want {
		w.Env = injectedEnvOnly(w.Env)
		g := got[i]
		conv := refContainer{Name: g.Name}
		if g.Env != nil {
			conv.Env = make([]struct {
				Name string `json:"name"`
			}, len(g.Env))
			for j, e := range g.Env {
				conv.Env[j].Name = e.Name
			}
		}
		if g.VolumeMounts != nil {
			conv.VolumeMounts = make([]struct {
				Name      string `json:"name"`
				MountPath string `json:"mountPath"`
			}, len(g.VolumeMounts))
			for j, m := range g.VolumeMounts {
				conv.VolumeMounts[j].Name, conv.VolumeMounts[j].MountPath = m.Name, m.MountPath
			}
		}
		if !reflect.DeepEqual(conv, w) {
			t.Fatalf("%s: container %d = %+v, reflection %+v", raw, i, conv, w)
		}
	}
}

// injectedEnvOnly keeps the first of each variable named in envNames, in order.
func injectedEnvOnly(env []struct {
	Name string `json:"name"`
}) []struct {
	Name string `json:"name"`
} {
	if env == nil {
		return nil
	}
	out := env[:0:0]
	seen := map[string]bool{}
	for _, e := range env {
		if slices.Contains(envNames[:], e.Name) && !seen[e.Name] {
			seen[e.Name] = true
			out = append(out, e)
		}
	}
	return out
}

var decodeSeeds = []string{
	`[{"env":[{"name":"AWS_REGION"},{"name":"A"},{"name":"AWS_ROLE_ARN","value":"x"},{"name":"AWS_REGION"},{"name":"AWS_\u0052EGION"}]}]`,
	`[{"env":[{"name":"AWS_REGION","name":"A"},{"name":"A","name":"AWS_ROLE_ARN"},{"name":null},{"name":"AWS_REGION "}]}]`,
	`[{"env":[{"name":"AWS_REGION"},{"name":1}]}]`,
	`[{"env":[{"name":"AWS_REGION"},{"value":{"x":[}}]}]`,
	`[{"name":"app","image":"app:1","env":[{"name":"A","value":"1"},{"name":"B","valueFrom":{"fieldRef":{"fieldPath":"metadata.name"}}}],` +
		`"volumeMounts":[{"name":"data","mountPath":"/data","readOnly":true}],"livenessProbe":{"httpGet":{"path":"/","port":8080}},` +
		`"resources":{"limits":{"cpu":"1"}},"ports":[{"containerPort":80}]}]`,
	`[]`,
	`null`,
	`[null]`,
	`[{}]`,
	`[{"env":null,"volumeMounts":null}]`,
	`[{"env":[],"volumeMounts":[]}]`,
	`[{"env":[null,{"name":null}],"volumeMounts":[null]}]`,
	`[{"name":"a","name":"b","env":[{"name":"X"}],"env":[{"name":"Y"},{"name":"Z"}]}]`,
	`[{"n\u0061me":"escaped","\u0065nv":[{"\u006eame":"E"}]}]`,
	`[{"Name":"case","ENV":[{"name":"x"}],"volumemounts":[{"name":"m"}]}]`,
	`[{"name":1}]`,
	`[{"env":{"name":"x"}}]`,
	`[{"env":["x"]}]`,
	`[{"volumeMounts":[{"mountPath":["x"]}]}]`,
	`[1]`,
	`["c"]`,
	`[[]]`,
	`[{"unknown":{"deep":[1,{"a":[null,true]}]},"name":"after"}]`,
	`[{"unknown":{"deep":[1,{"a":[null,true}]}]`,
	`[{"name":"x"`,
	`[{"name":"\xff"}]`,
	`[{"name" "x"}]`,
}

func TestDecodeContainersMatchesReflection(t *testing.T) {
	for _, raw := range decodeSeeds {
		t.Run(raw, func(t *testing.T) { sameAsReflection(t, []byte(raw)) })
	}
}

// FuzzDecodeContainers checks the hand-written container decoder against
// reflection for any input.
func FuzzDecodeContainers(f *testing.F) {
	for _, raw := range decodeSeeds {
		f.Add([]byte(raw))
	}
	f.Fuzz(func(t *testing.T, raw []byte) { sameAsReflection(t, raw) })
}

// TestEnvNamesCoverInjectedVariables checks that decoding keeps every env var
// that injection may add: one it dropped would be added a second time.
func TestEnvNamesCoverInjectedVariables(t *testing.T) {
	cfg := testConfig()
	cfg.Region = "eu-west-1"
	pod := &Pod{}
	for _, id := range []identity.Identity{
		{Mode: identity.ModeIRSA, RoleARN: "arn", RegionalSTS: true, SessionNameFromPod: true},
		{Mode: identity.ModePodIdentity},
	} {
		for _, g := range cfg.envFor(pod, id, cfg.target(id)) {
			for _, v := range g.vars {
				if !slices.Contains(envNames[:], v.name) {
					t.Errorf("%s (mode %s) is not in envNames", v.name, id.Mode)
				}
			}
		}
	}
}
