package auth

import (
	"fmt"
	"testing"
	"time"
)

type testEntry struct{ expires time.Time }

func (e testEntry) expiry() time.Time { return e.expires }

// TestPutBounded fills a cache of 3 and checks what a fourth put does.
func TestPutBounded(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	live, dead := testEntry{now.Add(time.Second)}, testEntry{now}
	tests := []struct {
		name     string
		existing []testEntry
		want     []string // keys held afterwards
	}{
		{"room left", []testEntry{live, live}, []string{"k0", "k1", "new"}},
		{"full of live entries: not stored", []testEntry{live, live, live}, []string{"k0", "k1", "k2"}},
		{"full, one expired: dropped, stored", []testEntry{live, dead, live}, []string{"k0", "k2", "new"}},
		{"full, all expired", []testEntry{dead, dead, dead}, []string{"new"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := map[string]testEntry{}
			for i, e := range tt.existing {
				m[fmt.Sprint("k", i)] = e
			}
			putBounded(m, "new", live, 3, now)
			if len(m) != len(tt.want) {
				t.Fatalf("holds %v, want keys %v", m, tt.want)
			}
			for _, k := range tt.want {
				if _, ok := m[k]; !ok {
					t.Errorf("key %s missing from %v", k, m)
				}
			}
		})
	}
}
