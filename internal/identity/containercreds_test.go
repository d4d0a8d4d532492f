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

func TestContainerCredentialsSource(t *testing.T) {
	file := `{"identities": [{"namespace": "default", "serviceAccount": "app"}]}`
	assoc := setOf{"default/app": true, "default/web": true}
	tests := []struct {
		name     string
		cc       *ContainerCredentials
		ns, sa   string
		want     string
		contains bool
	}{
		{name: "nil set", cc: nil, ns: "default", sa: "app", want: ""},
		{name: "file only", cc: mustCC(t, file), ns: "default", sa: "app", want: SourceContainerCredentials, contains: true},
		{name: "the file is asked first", cc: mustCC(t, file).WithAssociations(assoc), ns: "default", sa: "app", want: SourceContainerCredentials, contains: true},
		{name: "association", cc: mustCC(t, file).WithAssociations(assoc), ns: "default", sa: "web", want: SourceAssociation, contains: true},
		{name: "association without file", cc: (*ContainerCredentials)(nil).WithAssociations(assoc), ns: "default", sa: "web", want: SourceAssociation, contains: true},
		{name: "neither", cc: mustCC(t, file).WithAssociations(assoc), ns: "default", sa: "db", want: ""},
		{name: "other namespace", cc: mustCC(t, file).WithAssociations(assoc), ns: "jobs", sa: "web", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.cc.Source(tt.ns, tt.sa); got != tt.want {
				t.Errorf("Source(%s, %s) = %q, want %q", tt.ns, tt.sa, got, tt.want)
			}
			if got := tt.cc.Contains(tt.ns, tt.sa); got != tt.contains {
				t.Errorf("Contains(%s, %s) = %v, want %v", tt.ns, tt.sa, got, tt.contains)
			}
		})
	}
}

func TestJoinAssociations(t *testing.T) {
	assoc := setOf{"default/web": true}
	first := mustCC(t, `{"identities": [{"namespace": "default", "serviceAccount": "app"}]}`)
	second := mustCC(t, `{"identities": [{"namespace": "default", "serviceAccount": "db"}]}`)
	cur := first
	join := JoinAssociations(func() *ContainerCredentials { return cur }, assoc)

	a := join()
	if !a.Contains("default", "app") || !a.Contains("default", "web") || a.Contains("default", "db") {
		t.Fatal("the join lacks the file's or the associations' ServiceAccounts")
	}
	if allocs := testing.AllocsPerRun(100, func() { join() }); allocs != 0 {
		t.Errorf("an unchanged file: %v allocations per call, want 0", allocs)
	}
	cur = second // the file changed
	if b := join(); b.Contains("default", "app") || !b.Contains("default", "db") || !b.Contains("default", "web") {
		t.Fatal("the join did not follow the file's new set")
	}
	if c := JoinAssociations(nil, assoc)(); !c.Contains("default", "web") || c.Len() != 0 {
		t.Fatal("without a file: want the associations only")
	}
}
