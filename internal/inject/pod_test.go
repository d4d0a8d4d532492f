package inject

import (
	"strings"
	"testing"
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
