package main

import (
	"bytes"
	"encoding/json"
	"runtime"
	"strings"
	"testing"

	"github.com/podiam/podiam/internal/version"
)

func TestVersionOutput(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		check   func(t *testing.T, out string)
		wantErr string
	}{
		{name: "one line", args: []string{"version"}, check: func(t *testing.T, out string) {
			if out != version.String()+"\n" || strings.Count(out, "\n") != 1 {
				t.Errorf("printed %q, want %q", out, version.String()+"\n")
			}
		}},
		{name: "json", args: []string{"version", "-o", "json"}, check: func(t *testing.T, out string) {
			var got version.Info
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, out)
			}
			if got != version.Get() || got.Platform != runtime.GOOS+"/"+runtime.GOARCH {
				t.Errorf("printed %+v, want %+v", got, version.Get())
			}
		}},
		{name: "long flag", args: []string{"version", "--output=json"}, check: func(t *testing.T, out string) {
			if !strings.HasPrefix(out, "{") {
				t.Errorf("printed %q", out)
			}
		}},
		{name: "yaml is not a format", args: []string{"version", "-o", "yaml"}, wantErr: `--output "yaml": want json`},
		{name: "no arguments", args: []string{"version", "extra"}, wantErr: "unknown command"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			root := newRootCommand()
			root.SetOut(&out)
			root.SetErr(&bytes.Buffer{})
			root.SetArgs(tc.args)
			err := root.Execute()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, out.String())
		})
	}
}
