package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// copyTestdata copies testdata's values.yaml and README.md (with a stale
// table) into a directory of the test's own.
func copyTestdata(t *testing.T) (values, readme string) {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"values.yaml", "README.md"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "values.yaml"), filepath.Join(dir, "README.md")
}

// TestRunWritesThenChecks: the write mode puts the table into the README
// (golden), after which -check passes; a changed value makes -check fail
// with a hint and leaves the README alone.
func TestRunWritesThenChecks(t *testing.T) {
	values, readme := copyTestdata(t)
	args := []string{"-values", values, "-readme", readme}

	err := run(append([]string{"-check"}, args...), &bytes.Buffer{})
	if !errors.Is(err, errStale) {
		t.Fatalf("-check on the stale testdata README: %v, want %v", err, errStale)
	}

	var out bytes.Buffer
	if err := run(args, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "values table updated (17 keys)") {
		t.Errorf("printed %q", out.String())
	}
	written, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "README.golden.md", string(written))

	out.Reset()
	if err := run(append([]string{"-check"}, args...), &out); err != nil {
		t.Fatalf("-check right after writing: %v", err)
	}
	if err := run(args, &out); err != nil || out.Len() != 0 {
		t.Errorf("writing an up-to-date README: printed %q, error %v", out.String(), err)
	}

	data, err := os.ReadFile(values)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(values, bytes.Replace(data, []byte("replicas: 2"), []byte("replicas: 3"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	err = run(append([]string{"-check"}, args...), &out)
	if !errors.Is(err, errStale) || !strings.Contains(err.Error(), "make chart-docs") ||
		!strings.Contains(err.Error(), "- | `webhook.replicas` | int | `2`") || !strings.Contains(err.Error(), "+ | `webhook.replicas` | int | `3`") {
		t.Fatalf("-check after a change: %v", err)
	}
	if after, _ := os.ReadFile(readme); !bytes.Equal(after, written) {
		t.Error("-check wrote the README")
	}
}

func TestRunErrors(t *testing.T) {
	values, readme := copyTestdata(t)
	noMarkers := filepath.Join(t.TempDir(), "README.md")
	if err := os.WriteFile(noMarkers, []byte("# chart\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	badValues := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(badValues, []byte("- a list\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing")
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"missing values", []string{"-values", missing, "-readme", readme}, "reading values"},
		{"missing README", []string{"-values", values, "-readme", missing}, "reading the README"},
		{"README without markers", []string{"-values", values, "-readme", noMarkers}, "lacks the markers"},
		{"values not a mapping", []string{"-values", badValues, "-readme", readme}, badValues + ": values must be a YAML mapping"},
		{"stray argument", []string{"-values", values, "extra"}, "unexpected arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := run(tc.args, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}
