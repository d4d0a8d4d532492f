package main

import (
	"bytes"
	"testing"
	"time"
)

// TestRunRejectsBadFlags exits 2 before starting anything.
func TestRunRejectsBadFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"pods not a multiple of nodes", []string{"-pods", "1001"}},
		{"fewer ServiceAccounts than namespaces", []string{"-serviceaccounts", "5", "-namespaces", "10"}},
		{"no callers for the same pod", []string{"-same", "0"}},
		{"an argument", []string{"extra"}},
		{"unknown flag", []string{"-nope"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := run(tt.args, &out, &errOut); code != 2 {
				t.Errorf("run(%q) = %d, want 2; stderr:\n%s", tt.args, code, errOut.String())
			}
		})
	}
}

// TestTimeline counts answers by each step, the last step holding them all.
func TestTimeline(t *testing.T) {
	ms := func(n ...int) []time.Duration {
		out := make([]time.Duration, len(n))
		for i, v := range n {
			out[i] = time.Duration(v) * time.Millisecond
		}
		return out
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		want   string
	}{
		{"empty", nil, ""},
		{"all in the first step", ms(1, 200, 500), "0.5s:3"},
		{"a gap", ms(100, 1600), "0.5s:1 1.0s:1 1.5s:1 2.0s:2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := timeline(tt.sorted, 500*time.Millisecond); got != tt.want {
				t.Errorf("timeline = %q, want %q", got, tt.want)
			}
		})
	}
}
