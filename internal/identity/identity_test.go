package identity

import (
	"reflect"
	"strings"
	"testing"
)

var keys = NewKeys(DefaultAnnotationPrefix)

func testResolver() *Resolver {
	return &Resolver{Keys: keys, Defaults: Defaults{
		Audience:                     "sts.amazonaws.com",
		RegionalSTS:                  false,
		TokenExpiration:              86400,
		ContainerCredentialsAudience: "pods.eks.amazonaws.com",
	}}
}

func mustMapping(t *testing.T, doc string) *Mapping {
	t.Helper()
	m, err := ParseMapping([]byte(doc))
	if err != nil {
		t.Fatalf("ParseMapping: %v", err)
	}
	return m
}

func mustCC(t *testing.T, doc string) *ContainerCredentials {
	t.Helper()
	c, err := ParseContainerCredentials([]byte(doc))
	if err != nil {
		t.Fatalf("ParseContainerCredentials: %v", err)
	}
	return c
}

func i64(n int64) *int64 { return &n }

// setOf is a PodIdentitySet of "namespace/name" keys, as associations give.
type setOf map[string]bool

func (s setOf) Contains(namespace, name string) bool { return s[namespace+"/"+name] }

const role = "arn:aws:iam::111122223333:role/app"

func TestResolve(t *testing.T) {
	mapping := `{
		"default/app":   {"RoleARN": "arn:aws:iam::111122223333:role/mapped", "Audience": "mapped-aud", "UseRegionalSTS": true, "TokenExpiration": 7200},
		"default/noaud": {"RoleARN": "arn:aws:iam::111122223333:role/noaud"},
		"*/shared":      {"RoleARN": "arn:aws:iam::111122223333:role/shared", "UseRegionalSTS": false},
		"default/named": {"RoleARN": "team/named"}
	}`
	cc := `{"identities": [{"namespace": "default", "serviceAccount": "pi"}]}`
	// ServiceAccounts with a PodIdentityAssociation; "pi" is in the file too.
	associated := setOf{"default/assoc": true, "default/assoc-annotated": true, "default/pi": true, "other/plain": true}
	tests := []struct {
		name     string
		sa       string // ServiceAccount name in namespace "default"
		saAnn    map[string]string
		podAnn   map[string]string
		defaults func(*Defaults)
		compose  *ARNComposer
		want     Identity
		warnings []string // substrings, in order
	}{
		{
			name: "no identity",
			sa:   "plain",
			want: Identity{Mode: ModeNone},
		},
		{
			name:  "ServiceAccount annotation with flag defaults",
			sa:    "annotated",
			saAnn: map[string]string{keys.RoleARN: role},
			want:  Identity{Mode: ModeIRSA, RoleARN: role, Audience: "sts.amazonaws.com", TokenExpiration: 86400, Source: "annotation"},
		},
		{
			name: "all ServiceAccount annotations",
			sa:   "annotated",
			saAnn: map[string]string{keys.RoleARN: role, keys.Audience: "custom", keys.RegionalSTS: "true",
				keys.TokenExpiration: "3600", keys.RoleSessionName: "pod-name", keys.FSGroup: "65534"},
			want: Identity{Mode: ModeIRSA, RoleARN: role, Audience: "custom", RegionalSTS: true, TokenExpiration: 3600,
				SessionNameFromPod: true, FSGroup: i64(65534), Source: "annotation"},
		},
		{
			name:  "annotation wins over mapping",
			sa:    "app",
			saAnn: map[string]string{keys.RoleARN: role},
			want:  Identity{Mode: ModeIRSA, RoleARN: role, Audience: "sts.amazonaws.com", TokenExpiration: 86400, Source: "annotation"},
		},
		{
			name: "mapping entry with every field",
			sa:   "app",
			want: Identity{Mode: ModeIRSA, RoleARN: "arn:aws:iam::111122223333:role/mapped", Audience: "mapped-aud",
				RegionalSTS: true, TokenExpiration: 7200, Source: "mapping default/app"},
		},
		{
			name: "mapping entry without audience gets the flag audience",
			sa:   "noaud",
			want: Identity{Mode: ModeIRSA, RoleARN: "arn:aws:iam::111122223333:role/noaud", Audience: "sts.amazonaws.com",
				TokenExpiration: 86400, Source: "mapping default/noaud"},
		},
		{
			name:     "mapping without UseRegionalSTS uses the flag default",
			sa:       "noaud",
			defaults: func(d *Defaults) { d.RegionalSTS = true },
			want: Identity{Mode: ModeIRSA, RoleARN: "arn:aws:iam::111122223333:role/noaud", Audience: "sts.amazonaws.com",
				RegionalSTS: true, TokenExpiration: 86400, Source: "mapping default/noaud"},
		},
		{
			name:     "mapping UseRegionalSTS false beats flag true",
			sa:       "shared",
			defaults: func(d *Defaults) { d.RegionalSTS = true },
			want: Identity{Mode: ModeIRSA, RoleARN: "arn:aws:iam::111122223333:role/shared", Audience: "sts.amazonaws.com",
				TokenExpiration: 86400, Source: "mapping */shared"},
		},
		{
			name:  "ServiceAccount annotations override mapping fields",
			sa:    "app",
			saAnn: map[string]string{keys.Audience: "sa-aud", keys.RegionalSTS: "false", keys.TokenExpiration: "900"},
			want: Identity{Mode: ModeIRSA, RoleARN: "arn:aws:iam::111122223333:role/mapped", Audience: "sa-aud",
				TokenExpiration: 900, Source: "mapping default/app"},
		},
		{
			name:   "pod token-expiration beats ServiceAccount and mapping",
			sa:     "app",
			saAnn:  map[string]string{keys.TokenExpiration: "900"},
			podAnn: map[string]string{keys.TokenExpiration: "1200"},
			want: Identity{Mode: ModeIRSA, RoleARN: "arn:aws:iam::111122223333:role/mapped", Audience: "mapped-aud",
				RegionalSTS: true, TokenExpiration: 1200, Source: "mapping default/app"},
		},
		{
			name:     "token expiration below 600 is raised with a warning",
			sa:       "annotated",
			saAnn:    map[string]string{keys.RoleARN: role},
			podAnn:   map[string]string{keys.TokenExpiration: "60"},
			want:     Identity{Mode: ModeIRSA, RoleARN: role, Audience: "sts.amazonaws.com", TokenExpiration: 600, Source: "annotation"},
			warnings: []string{"60s is below the minimum; using 600s"},
		},
		{
			name:     "token expiration above 2^32 is lowered with a warning",
			sa:       "annotated",
			saAnn:    map[string]string{keys.RoleARN: role, keys.TokenExpiration: "9999999999"},
			want:     Identity{Mode: ModeIRSA, RoleARN: role, Audience: "sts.amazonaws.com", TokenExpiration: 1 << 32, Source: "annotation"},
			warnings: []string{"above the maximum"},
		},
		{
			name:     "non-integer pod token-expiration falls through to the ServiceAccount's",
			sa:       "annotated",
			saAnn:    map[string]string{keys.RoleARN: role, keys.TokenExpiration: "3600"},
			podAnn:   map[string]string{keys.TokenExpiration: "1h"},
			want:     Identity{Mode: ModeIRSA, RoleARN: role, Audience: "sts.amazonaws.com", TokenExpiration: 3600, Source: "annotation"},
			warnings: []string{`token-expiration="1h" is not an integer`},
		},
		{
			name:     "non-integer everywhere means the flag default",
			sa:       "annotated",
			saAnn:    map[string]string{keys.RoleARN: role, keys.TokenExpiration: "x"},
			podAnn:   map[string]string{keys.TokenExpiration: "y"},
			want:     Identity{Mode: ModeIRSA, RoleARN: role, Audience: "sts.amazonaws.com", TokenExpiration: 86400, Source: "annotation"},
			warnings: []string{`"y" is not an integer`, `"x" is not an integer`},
		},
		{
			name:     "sts-regional-endpoints other than true/false means the flag default",
			sa:       "annotated",
			saAnn:    map[string]string{keys.RoleARN: role, keys.RegionalSTS: "yes"},
			defaults: func(d *Defaults) { d.RegionalSTS = true },
			want:     Identity{Mode: ModeIRSA, RoleARN: role, Audience: "sts.amazonaws.com", RegionalSTS: true, TokenExpiration: 86400, Source: "annotation"},
			warnings: []string{`sts-regional-endpoints="yes"`},
		},
		{
			name:     "malformed role ARN is injected with a warning",
			sa:       "annotated",
			saAnn:    map[string]string{keys.RoleARN: "app-role"},
			want:     Identity{Mode: ModeIRSA, RoleARN: "app-role", Audience: "sts.amazonaws.com", TokenExpiration: 86400, Source: "annotation"},
			warnings: []string{`role ARN "app-role" does not look like`},
		},
		{
			name:  "role ARN in another partition with a path is fine",
			sa:    "annotated",
			saAnn: map[string]string{keys.RoleARN: "arn:aws-us-gov:iam::111122223333:role/team/app"},
			want: Identity{Mode: ModeIRSA, RoleARN: "arn:aws-us-gov:iam::111122223333:role/team/app", Audience: "sts.amazonaws.com",
				TokenExpiration: 86400, Source: "annotation"},
		},
		{
			name:   "pod role-session-name beats ServiceAccount's",
			sa:     "annotated",
			saAnn:  map[string]string{keys.RoleARN: role, keys.RoleSessionName: "pod-name"},
			podAnn: map[string]string{keys.RoleSessionName: "none"},
			want:   Identity{Mode: ModeIRSA, RoleARN: role, Audience: "sts.amazonaws.com", TokenExpiration: 86400, Source: "annotation"},
		},
		{
			name:     "role-session-name flag applies to every IRSA pod",
			sa:       "annotated",
			saAnn:    map[string]string{keys.RoleARN: role},
			defaults: func(d *Defaults) { d.SessionNameFromPod = true },
			want: Identity{Mode: ModeIRSA, RoleARN: role, Audience: "sts.amazonaws.com", TokenExpiration: 86400,
				SessionNameFromPod: true, Source: "annotation"},
		},
		{
			name:     "unknown role-session-name value is ignored with a warning",
			sa:       "annotated",
			saAnn:    map[string]string{keys.RoleARN: role},
			podAnn:   map[string]string{keys.RoleSessionName: "my-session"},
			want:     Identity{Mode: ModeIRSA, RoleARN: role, Audience: "sts.amazonaws.com", TokenExpiration: 86400, Source: "annotation"},
			warnings: []string{`role-session-name="my-session"`},
		},
		{
			name:   "pod fs-group beats ServiceAccount's",
			sa:     "annotated",
			saAnn:  map[string]string{keys.RoleARN: role, keys.FSGroup: "1000"},
			podAnn: map[string]string{keys.FSGroup: "2000"},
			want: Identity{Mode: ModeIRSA, RoleARN: role, Audience: "sts.amazonaws.com", TokenExpiration: 86400,
				FSGroup: i64(2000), Source: "annotation"},
		},
		{
			name:     "bad fs-group is ignored with a warning",
			sa:       "annotated",
			saAnn:    map[string]string{keys.RoleARN: role},
			podAnn:   map[string]string{keys.FSGroup: "-1"},
			want:     Identity{Mode: ModeIRSA, RoleARN: role, Audience: "sts.amazonaws.com", TokenExpiration: 86400, Source: "annotation"},
			warnings: []string{`fs-group="-1"`},
		},
		{
			name:    "role name in the annotation is composed into an ARN",
			sa:      "annotated",
			saAnn:   map[string]string{keys.RoleARN: "team/app"},
			compose: &ARNComposer{Partition: "aws-cn", AccountID: "444455556666"},
			want: Identity{Mode: ModeIRSA, RoleARN: "arn:aws-cn:iam::444455556666:role/team/app", Audience: "sts.amazonaws.com",
				TokenExpiration: 86400, Source: "annotation"},
		},
		{
			name:    "role name in the mapping is composed into an ARN",
			sa:      "named",
			compose: &ARNComposer{Partition: "aws", AccountID: "444455556666"},
			want: Identity{Mode: ModeIRSA, RoleARN: "arn:aws:iam::444455556666:role/team/named", Audience: "sts.amazonaws.com",
				TokenExpiration: 86400, Source: "mapping default/named"},
		},
		{
			name:    "a full ARN is kept when composing",
			sa:      "annotated",
			saAnn:   map[string]string{keys.RoleARN: role},
			compose: &ARNComposer{Partition: "aws-cn", AccountID: "444455556666"},
			want:    Identity{Mode: ModeIRSA, RoleARN: role, Audience: "sts.amazonaws.com", TokenExpiration: 86400, Source: "annotation"},
		},
		{
			name:     "without composing, a role name is injected as given, with a warning",
			sa:       "annotated",
			saAnn:    map[string]string{keys.RoleARN: "team/app"},
			want:     Identity{Mode: ModeIRSA, RoleARN: "team/app", Audience: "sts.amazonaws.com", TokenExpiration: 86400, Source: "annotation"},
			warnings: []string{`role ARN "team/app" does not look like`},
		},
		{
			name:  "container credentials beat IRSA",
			sa:    "pi",
			saAnn: map[string]string{keys.RoleARN: role, keys.RegionalSTS: "true", keys.TokenExpiration: "7200"},
			want: Identity{Mode: ModePodIdentity, Audience: "pods.eks.amazonaws.com", RegionalSTS: true, TokenExpiration: 7200,
				Source: "container-credentials"},
		},
		{
			name:   "container credentials honour fs-group",
			sa:     "pi",
			podAnn: map[string]string{keys.FSGroup: "1000"},
			want: Identity{Mode: ModePodIdentity, Audience: "pods.eks.amazonaws.com", TokenExpiration: 86400,
				FSGroup: i64(1000), Source: "container-credentials"},
		},
		{
			name: "association gives Pod Identity",
			sa:   "assoc",
			want: Identity{Mode: ModePodIdentity, Audience: "pods.eks.amazonaws.com", TokenExpiration: 86400, Source: "association"},
		},
		{
			name:  "association wins over a role annotation",
			sa:    "assoc-annotated",
			saAnn: map[string]string{keys.RoleARN: role, keys.TokenExpiration: "3600"},
			want:  Identity{Mode: ModePodIdentity, Audience: "pods.eks.amazonaws.com", TokenExpiration: 3600, Source: "association"},
		},
		{
			name: "association of another namespace does not count",
			sa:   "plain",
			want: Identity{Mode: ModeNone},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := testResolver()
			if tt.defaults != nil {
				tt.defaults(&r.Defaults)
			}
			r.Defaults.ComposeRoleARN = tt.compose
			got, warnings := r.Resolve(Input{
				Namespace: "default", ServiceAccount: tt.sa,
				PodAnnotations: tt.podAnn, SAAnnotations: tt.saAnn,
				Mapping: mustMapping(t, mapping), ContainerCredentials: mustCC(t, cc).WithAssociations(associated),
			})
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("identity\n got %+v\nwant %+v", got, tt.want)
			}
			if len(warnings) != len(tt.warnings) {
				t.Fatalf("warnings = %q, want %d matching %q", warnings, len(tt.warnings), tt.warnings)
			}
			for i, w := range tt.warnings {
				if !strings.Contains(warnings[i], w) {
					t.Errorf("warning %d = %q, want it to contain %q", i, warnings[i], w)
				}
			}
		})
	}
}

func TestResolveNilSources(t *testing.T) {
	got, warnings := testResolver().Resolve(Input{Namespace: "default", ServiceAccount: "app"})
	if got.Mode != ModeNone || len(warnings) != 0 {
		t.Fatalf("Resolve with nil sources = %+v, %q; want ModeNone and no warnings", got, warnings)
	}
}

func TestNewKeysPrefix(t *testing.T) {
	k := NewKeys("example.com")
	if k.RoleARN != "example.com/role-arn" || k.SkipContainers != "example.com/skip-containers" ||
		k.SkipLabel != "example.com/skip-pod-identity-webhook" {
		t.Fatalf("NewKeys(example.com) = %+v", k)
	}
	for _, key := range k.ServiceAccountKeys() {
		if !strings.HasPrefix(key, "example.com/") {
			t.Errorf("ServiceAccount key %q lacks the prefix", key)
		}
	}
}
