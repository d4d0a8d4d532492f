package main

import (
	"strings"
	"testing"
)

// TestDenialReason checks that the demo shows the denial of the reports
// ServiceAccount's token, not another denial logged before it.
func TestDenialReason(t *testing.T) {
	const reports = "system:serviceaccount:demo:reports"
	lines := map[string]string{
		"idp": `{"msg":"denied","code":"IDPCommunicationError","sub":"system:serviceaccount:demo:reports","reason":"fetch failed"}`,
		"app": `{"msg":"denied","code":"AccessDenied","sub":"system:serviceaccount:demo:app","reason":"app denied","explanation":"x"}`,
		"reports": `{"msg":"denied","code":"AccessDenied","sub":"system:serviceaccount:demo:reports",` +
			`"reason":"trust policy denies","explanation":"StringEquals sub"}`,
		"issued": `{"msg":"issued","code":"AccessDenied","sub":"system:serviceaccount:demo:reports","reason":"no"}`,
	}
	tests := []struct {
		name  string
		lines []string
		want  string
	}{
		{"only the reports denial", []string{"reports"}, "trust policy denies\nStringEquals sub"},
		{"after an IDP error and another subject's denial", []string{"idp", "app", "issued", "reports"}, "trust policy denies\nStringEquals sub"},
		{"no denial of reports", []string{"idp", "app"}, ""},
		{"not JSON", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log []string
			for _, l := range tt.lines {
				log = append(log, lines[l])
			}
			if tt.lines == nil {
				log = []string{"plain text", "{"}
			}
			if got := denialReason(strings.Join(log, "\n"), reports); got != tt.want {
				t.Errorf("denialReason = %q, want %q", got, tt.want)
			}
		})
	}
}
