//go:build linux

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestPageCache writes a file (its pages are then in the page cache), evicts
// it and reads the page cache again, on the real kernel.
func TestPageCache(t *testing.T) {
	page := os.Getpagesize()
	tests := []struct {
		name string
		size int
	}{
		{"empty", 0},
		{"part of a page", 100},
		{"pages and a part", 64*page + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "f")
			if err := os.WriteFile(path, bytes.Repeat([]byte{'x'}, tt.size), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := filePageCache(path)
			if err != nil {
				t.Fatal(err)
			}
			if got != (pageCache{Resident: int64(tt.size), Size: int64(tt.size)}) {
				t.Errorf("just written: %+v, want all of %d bytes resident", got, tt.size)
			}
			left, err := evictPageCache(path)
			if err != nil {
				t.Fatal(err)
			}
			if left != (pageCache{Size: int64(tt.size)}) {
				t.Errorf("evicted: %+v, want none of %d bytes resident", left, tt.size)
			}
		})
	}
	if _, err := filePageCache(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("no error for a missing file")
	}
}
