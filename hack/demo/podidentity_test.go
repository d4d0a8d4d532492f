package main

import (
	"strings"
	"testing"
)

// TestLogLine checks that the demo shows the log line it names (the agent's
// issuance, podiam auth's audit line), not another line of the log.
func TestLogLine(t *testing.T) {
	const (
		audit  = `{"level":"INFO","msg":"issued credentials","node":"node-a","pod":"web"}`
		issued = `{"level":"INFO","msg":"credentials issued","pod":"web","associationId":"a-1"}`
	)
	tests := []struct {
		name string
		log  []string
		msg  string
		want string
	}{
		{"only the audit line", []string{audit}, "issued credentials", audit},
		{"after other lines", []string{"plain text", `{"msg":"serving","port":8443}`, `{"msg":"issued credentials?"}`, audit}, "issued credentials", audit},
		{"the words in another message", []string{`{"msg":"refused","reason":"issued credentials"}`}, "issued credentials", ""},
		{"the agent's line among podiam auth's", []string{audit, `{"msg":"credentials served from cache"}`, issued}, "credentials issued", issued},
		{"the first of two", []string{issued, strings.Replace(issued, "a-1", "a-2", 1)}, "credentials issued", issued},
		{"none", []string{"{", `{"msg":"ready"}`}, "issued credentials", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := logLine(strings.Join(tt.log, "\n"), tt.msg); got != tt.want {
				t.Errorf("logLine(%q) = %q, want %q", tt.msg, got, tt.want)
			}
		})
	}
}
