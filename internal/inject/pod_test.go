package inject

import (
	"reflect"
	"strings"
	"testing"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/podiam/podiam/internal/jsonscan"
)

func TestPodAccessors(t *testing.T) {
	tests := []struct {
		name, pod                string
		display, sa, ns          string
		windows                  bool
		hasAnnotations, hasLabel bool
	}{
		{name: "empty object", pod: `{}`, sa: "default"},
		{name: "generateName only", pod: `{"metadata":{"generateName":"web-","namespace":"shop"},"spec":{"serviceAccountName":"web"}}`,
			display: "web-", sa: "web", ns: "shop"},
		{name: "name wins over generateName", pod: `{"metadata":{"name":"web-1","generateName":"web-"}}`, display: "web-1", sa: "default"},
		{name: "windows by nodeSelector", pod: `{"spec":{"nodeSelector":{"kubernetes.io/os":"windows"}}}`, sa: "default", windows: true},
		{name: "windows by beta nodeSelector", pod: `{"spec":{"nodeSelector":{"beta.kubernetes.io/os":"windows"}}}`, sa: "default", windows: true},
		{name: "windows by spec.os", pod: `{"spec":{"os":{"name":"windows"}}}`, sa: "default", windows: true},
		{name: "linux by spec.os", pod: `{"spec":{"os":{"name":"linux"},"nodeSelector":{"kubernetes.io/os":"linux"}}}`, sa: "default"},
		{name: "labels and annotations", pod: `{"metadata":{"labels":{"a":"b"},"annotations":{"c":"d"}}}`, sa: "default",
			hasAnnotations: true, hasLabel: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := DecodePod([]byte(tt.pod))
			if err != nil {
				t.Fatal(err)
			}
			if p.DisplayName() != tt.display || p.ServiceAccountName() != tt.sa || p.Namespace() != tt.ns || p.IsWindows() != tt.windows {
				t.Errorf("got name %q sa %q ns %q windows %v", p.DisplayName(), p.ServiceAccountName(), p.Namespace(), p.IsWindows())
			}
			if (p.Annotations() != nil) != tt.hasAnnotations || (p.Labels() != nil) != tt.hasLabel {
				t.Errorf("annotations %v labels %v", p.Annotations(), p.Labels())
			}
		})
	}
}

func TestDecodePodErrors(t *testing.T) {
	for _, doc := range []string{``, `{`, `[]`, `{"spec":{"containers":"x"}}`, `{"metadata":{"labels":{"a":1}}}`, `{"spec":{"securityContext":{"fsGroup":"x"}}}`} {
		if _, err := DecodePod([]byte(doc)); err == nil || !strings.Contains(err.Error(), "decoding pod") {
			t.Errorf("DecodePod(%q) error = %v, want a decoding error", doc, err)
		}
	}
}

func TestDecodePodToleratesDuplicatesAndUnknownFields(t *testing.T) {
	p, err := DecodePod([]byte(`{"metadata":{"name":"a","name":"b"},"spec":{"futureField":[1,2],"containers":[{"name":"c","x":{}}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if p.DisplayName() != "b" || len(p.Spec.Containers) != 1 {
		t.Fatalf("decoded %+v", p)
	}
}

// TestPodSpecMatchesReflection checks the hand-written spec decoder against
// struct decoding by reflection, below the bounds: the same errors, values,
// and nil against empty lists.
func TestPodSpecMatchesReflection(t *testing.T) {
	type refSpec struct {
		ServiceAccountName string            `json:"serviceAccountName"`
		NodeSelector       map[string]string `json:"nodeSelector"`
		OS                 *struct {
			Name string `json:"name"`
		} `json:"os"`
		SecurityContext *struct {
			FSGroup *int64 `json:"fsGroup"`
		} `json:"securityContext"`
		Volumes        []volume         `json:"volumes"`
		Containers     []jsontext.Value `json:"containers"`
		InitContainers []jsontext.Value `json:"initContainers"`
	}
	for _, raw := range []string{
		`{}`,
		`{"spec":null}`,
		`{"spec":{}}`,
		`{"spec":{"serviceAccountName":"a","nodeSelector":{"k":"v"},"os":{"name":"linux"},"securityContext":{"fsGroup":1},` +
			`"volumes":[{"name":"v","projected":{"sources":[{"serviceAccountToken":{"audience":"a","path":"p"}}]}},null,{}],` +
			`"containers":[{},null],"initContainers":[]}}`,
		`{"spec":{"serviceAccountName":"a","volumes":[{"name":"v"}]},"spec":{"nodeSelector":{"k":"v"}}}`,
		`{"spec":{"serviceAccountName":"a"},"spec":null}`,
		`{"spec":{"volumes":[{"name":"v"}],"volumes":null,"containers":[{}],"containers":[]}}`,
		`{"spec":{"ServiceAccountName":"a","Volumes":[{}],"CONTAINERS":[{}],"s\u0065rviceAccountName":"b"}}`,
		`{"spec":{"volumes":{}}}`,
		`{"spec":{"volumes":[1]}}`,
		`{"spec":{"volumes":[{"name":1}]}}`,
		`{"spec":{"os":"linux"}}`,
		`{"spec":[]}`,
		`{"spec":{"volumes":[{}`,
	} {
		t.Run(raw, func(t *testing.T) {
			p, err := DecodePod([]byte(raw))
			var ref struct {
				Spec refSpec `json:"spec"`
			}
			refErr := json.Unmarshal([]byte(raw), &ref, jsonscan.Options)
			if (err != nil) != (refErr != nil) {
				t.Fatalf("error %v, reflection's %v", err, refErr)
			}
			if err != nil {
				return
			}
			s, r := p.Spec, ref.Spec
			if s.ServiceAccountName != r.ServiceAccountName || !reflect.DeepEqual(s.NodeSelector, r.NodeSelector) ||
				!reflect.DeepEqual(s.OS, r.OS) || !reflect.DeepEqual(s.SecurityContext, r.SecurityContext) {
				t.Errorf("got %+v, reflection %+v", s, r)
			}
			if !reflect.DeepEqual(s.Volumes, r.Volumes) || (s.Volumes == nil) != (r.Volumes == nil) {
				t.Errorf("volumes %+v, reflection %+v", s.Volumes, r.Volumes)
			}
			if len(s.Containers) != len(r.Containers) || (s.Containers == nil) != (r.Containers == nil) ||
				len(s.InitContainers) != len(r.InitContainers) || (s.InitContainers == nil) != (r.InitContainers == nil) {
				t.Errorf("containers %d/%d, reflection %d/%d", len(s.Containers), len(s.InitContainers), len(r.Containers), len(r.InitContainers))
			}
		})
	}
}
