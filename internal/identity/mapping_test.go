package identity

import (
	"strings"
	"testing"
)

func TestParseMappingErrors(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{
		{"bad JSON", `{"default/app": `, "decoding mapping"},
		{"not an object", `["default/app"]`, "decoding mapping"},
		{"key without slash", `{"app": {"RoleARN": "arn:aws:iam::111122223333:role/a"}}`, `key "app": want namespace/name`},
		{"empty namespace", `{"/app": {"RoleARN": "arn:aws:iam::111122223333:role/a"}}`, `key "/app"`},
		{"empty name", `{"default/": {"RoleARN": "arn:aws:iam::111122223333:role/a"}}`, `key "default/"`},
		{"two slashes", `{"a/b/c": {"RoleARN": "arn:aws:iam::111122223333:role/a"}}`, `key "a/b/c"`},
		{"no role", `{"default/app": {"Audience": "x"}}`, "RoleARN is empty"},
		{"negative expiration", `{"default/app": {"RoleARN": "r", "TokenExpiration": -1}}`, "TokenExpiration -1 is negative"},
		{"bad pattern", `{"team-[/app": {"RoleARN": "r"}}`, "bad namespace pattern"},
		{"wrong type", `{"default/app": {"RoleARN": 5}}`, "decoding mapping"},
		{"one bad key rejects all", `{"default/ok": {"RoleARN": "r"}, "bad": {"RoleARN": "r"}}`, `key "bad"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ParseMapping([]byte(tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParseMapping error = %v, want it to contain %q", err, tt.want)
			}
			if m != nil {
				t.Errorf("ParseMapping returned a mapping with an error")
			}
		})
	}
}

func TestMappingLookup(t *testing.T) {
	m := mustMapping(t, `{
		"default/app":  {"RoleARN": "exact"},
		"*/app":        {"RoleARN": "any-namespace"},
		"team-*/app":   {"RoleARN": "team-namespace"},
		"team-a/*":     {"RoleARN": "team-a-any"},
		"team-*/*":     {"RoleARN": "team-any"},
		"*/web-?":      {"RoleARN": "web-single-char"},
		"Default/Case": {"RoleARN": "case-sensitive"}
	}`)
	if m.Len() != 7 {
		t.Fatalf("Len = %d, want 7", m.Len())
	}
	tests := []struct {
		ns, name, wantRole, wantKey string
	}{
		{"default", "app", "exact", "default/app"},
		{"other", "app", "any-namespace", "*/app"},
		{"team-b", "app", "team-namespace", "team-*/app"},
		{"team-a", "app", "team-namespace", "team-*/app"}, // 8 literals beat team-a/*'s 7
		{"team-a", "db", "team-a-any", "team-a/*"},
		{"team-c", "db", "team-any", "team-*/*"},
		{"x", "web-1", "web-single-char", "*/web-?"},
		{"x", "web-12", "", ""},
		{"default", "case", "", ""},
		{"other", "nothing", "", ""},
	}
	for _, tt := range tests {
		e, key, ok := m.Lookup(tt.ns, tt.name)
		if e.RoleARN != tt.wantRole || key != tt.wantKey || ok != (tt.wantRole != "") {
			t.Errorf("Lookup(%s, %s) = %q, %q, %v; want %q, %q", tt.ns, tt.name, e.RoleARN, key, ok, tt.wantRole, tt.wantKey)
		}
	}
}

func TestMappingDeterministicTies(t *testing.T) {
	// Same literal counts and same namespace literals: the key order decides,
	// whatever the map iteration order was.
	for range 20 {
		m := mustMapping(t, `{"a*/x*": {"RoleARN": "first"}, "a*/*x": {"RoleARN": "second"}}`)
		if e, _, _ := m.Lookup("ab", "xx"); e.RoleARN != "second" {
			t.Fatalf("tie resolved to %q, want the lexically first key", e.RoleARN)
		}
	}
}

func TestParseMappingEmptyAndNil(t *testing.T) {
	for _, doc := range []string{"", "  \n", "{}"} {
		m, err := ParseMapping([]byte(doc))
		if err != nil || m.Len() != 0 {
			t.Errorf("ParseMapping(%q) = %v, %v; want empty", doc, m.Len(), err)
		}
	}
	var m *Mapping
	if _, _, ok := m.Lookup("a", "b"); ok || m.Len() != 0 {
		t.Error("nil mapping is not empty")
	}
}

func TestParseMappingFieldsCaseInsensitive(t *testing.T) {
	// The Amazon webhook decodes with encoding/json, which matches field names
	// case-insensitively; ConfigMaps in the wild rely on it.
	m := mustMapping(t, `{"default/app": {"rolearn": "r", "audience": "a", "useRegionalSts": true, "tokenExpiration": 900}}`)
	e, _, ok := m.Lookup("default", "app")
	if !ok || e.RoleARN != "r" || e.Audience != "a" || e.UseRegionalSTS == nil || !*e.UseRegionalSTS || e.TokenExpiration != 900 {
		t.Fatalf("entry = %+v", e)
	}
}

func FuzzParseMapping(f *testing.F) {
	f.Add([]byte(`{"default/app": {"RoleARN": "arn:aws:iam::111122223333:role/a", "Audience": "x", "UseRegionalSTS": true, "TokenExpiration": 900}}`))
	f.Add([]byte(`{"*/app": {"RoleARN": "r"}, "team-[a-c]/*": {"RoleARN": "r"}}`))
	f.Add([]byte(`{"app": {}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseMapping(data)
		if err != nil {
			if m != nil {
				t.Fatal("mapping returned with an error")
			}
			return
		}
		// Every key of an accepted mapping must be usable.
		for _, p := range m.patterns {
			m.Lookup(p.namespace, p.name)
		}
		m.Lookup("default", "app")
	})
}
