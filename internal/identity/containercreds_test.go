package identity

import (
	"strings"
	"testing"
)

func TestParseContainerCredentials(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		wantErr string
		want    []string // namespace/name present
		absent  []string
	}{
		{name: "empty file", doc: "", absent: []string{"default/app"}},
		{name: "whitespace", doc: " \n\t", absent: []string{"default/app"}},
		{name: "no identities", doc: `{}`, absent: []string{"default/app"}},
		{
			name: "identities", doc: `{"identities": [{"namespace": "default", "serviceAccount": "app"}, {"namespace": "jobs", "serviceAccount": "batch"}]}`,
			want: []string{"default/app", "jobs/batch"}, absent: []string{"default/batch", "jobs/app"},
		},
		{name: "unknown fields are ignored", doc: `{"identities": [{"namespace": "a", "serviceAccount": "b", "roleArn": "x"}], "version": 2}`, want: []string{"a/b"}},
		{name: "half-written", doc: `{"identities": [{"namespace": "default", "serv`, wantErr: "decoding container credentials config"},
		{name: "missing serviceAccount", doc: `{"identities": [{"namespace": "default"}]}`, wantErr: "identities[0]: namespace and serviceAccount are required"},
		{name: "wrong type", doc: `{"identities": {"namespace": "default"}}`, wantErr: "decoding"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cc, err := ParseContainerCredentials([]byte(tt.doc))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || cc != nil {
					t.Fatalf("ParseContainerCredentials = %v, %v; want error containing %q", cc, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range tt.want {
				ns, name, _ := strings.Cut(k, "/")
				if !cc.Contains(ns, name) {
					t.Errorf("%s missing", k)
				}
			}
			for _, k := range tt.absent {
				ns, name, _ := strings.Cut(k, "/")
				if cc.Contains(ns, name) {
					t.Errorf("%s present", k)
				}
			}
			if cc.Len() != len(tt.want) {
				t.Errorf("Len = %d, want %d", cc.Len(), len(tt.want))
			}
		})
	}
	var nilSet *ContainerCredentials
	if nilSet.Contains("a", "b") || nilSet.Len() != 0 {
		t.Error("nil set is not empty")
	}
}

func FuzzParseContainerCredentials(f *testing.F) {
	f.Add([]byte(`{"identities": [{"namespace": "default", "serviceAccount": "app"}]}`))
	f.Add([]byte(`{"identities": [{"namespace": "default"`))
	f.Fuzz(func(t *testing.T, data []byte) {
		cc, err := ParseContainerCredentials(data)
		if (err == nil) == (cc == nil) {
			t.Fatalf("result %v with error %v", cc, err)
		}
	})
}
