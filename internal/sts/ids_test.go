package sts

import (
	"regexp"
	"testing"
)

func TestIDs(t *testing.T) {
	tests := []struct {
		name, id string
		want     *regexp.Regexp
	}{
		{"role", RoleID("111122223333", "/", "app"), regexp.MustCompile(`^AROA[A-Z2-7]{17}$`)},
		{"role with path", RoleID("111122223333", "/team/", "app"), regexp.MustCompile(`^AROA[A-Z2-7]{17}$`)},
		{"user", UserID("111122223333", "ci"), regexp.MustCompile(`^AIDA[A-Z2-7]{17}$`)},
	}
	for _, tc := range tests {
		if !tc.want.MatchString(tc.id) {
			t.Errorf("%s id %q does not match %s", tc.name, tc.id, tc.want)
		}
	}
	// Stable across calls (restarts, replicas), distinct for distinct roles.
	if RoleID("111122223333", "/", "app") != tests[0].id {
		t.Error("RoleID is not deterministic")
	}
	seen := map[string]string{}
	for _, in := range [][3]string{
		{"111122223333", "/", "app"}, {"111122223333", "/team/", "app"}, {"444455556666", "/", "app"},
		{"111122223333", "/", "app2"}, {"111122223333", "/a/", "pp"},
	} {
		id := RoleID(in[0], in[1], in[2])
		if prev, dup := seen[id]; dup {
			t.Errorf("RoleID%v = RoleID%s = %s", in, prev, id)
		}
		seen[id] = "(" + in[0] + " " + in[1] + " " + in[2] + ")"
	}
}

func TestNewAccessKeyID(t *testing.T) {
	re := regexp.MustCompile(`^ASIA[A-Z2-7]{16}$`)
	seen := map[string]bool{}
	for range 1000 {
		id, err := NewAccessKeyID()
		if err != nil {
			t.Fatal(err)
		}
		if !re.MatchString(id) {
			t.Fatalf("access key id %q does not match %s", id, re)
		}
		if seen[id] {
			t.Fatalf("access key id %q drawn twice", id)
		}
		seen[id] = true
	}
}
