package main

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// golden compares got with testdata/name, or writes it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test -update rewrites it):\n%s", path, diffHint([]byte(got), want))
	}
}

// TestTableGolden renders testdata/values.yaml, which has every case Rows
// handles: headings, documented and undocumented maps, multi-line
// descriptions, (type) and @default, every value type, a key with dots.
func TestTableGolden(t *testing.T) {
	values, err := os.ReadFile("testdata/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rows, err := Rows(values)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "table.golden.md", Table(rows))
}

func TestRows(t *testing.T) {
	for _, tc := range []struct {
		name    string
		values  string
		want    []Row
		wantErr string
	}{
		{name: "empty file", values: ""},
		{
			name:   "leaf",
			values: "# -- The tag.\ntag: v1\n",
			want:   []Row{{Key: "tag", Type: "string", Default: "`\"v1\"`", Description: "The tag."}},
		},
		{
			name:   "undocumented leaf still listed",
			values: "replicas: 3\n",
			want:   []Row{{Key: "replicas", Type: "int", Default: "`3`"}},
		},
		{
			name:   "plain comment is no description",
			values: "# The tag.\ntag: v1\n",
			want:   []Row{{Key: "tag", Type: "string", Default: "`\"v1\"`"}},
		},
		{
			name:   "undocumented map of documented keys has no row",
			values: "a:\n  # -- B.\n  b: true\n",
			want:   []Row{{Key: "a.b", Type: "bool", Default: "`true`", Description: "B."}},
		},
		{
			name:   "documented map of documented keys: a row without default",
			values: "# -- A.\na:\n  # -- B.\n  b: 1.5\n",
			want:   []Row{{Key: "a", Type: "object", Description: "A."}, {Key: "a.b", Type: "float", Default: "`1.5`", Description: "B."}},
		},
		{
			name:   "map without documented keys is one row",
			values: "# -- Resources.\nres:\n  limits:\n    memory: 1Gi\n",
			want:   []Row{{Key: "res", Type: "object", Default: "`{\"limits\":{\"memory\":\"1Gi\"}}`", Description: "Resources."}},
		},
		{
			name:   "type and default overrides",
			values: "# -- (int) Port; none by default.\n# @default -- chosen at install\nport: null\n",
			want:   []Row{{Key: "port", Type: "int", Default: "chosen at install", Description: "Port; none by default."}},
		},
		{
			name:   "alias",
			values: "# -- A.\na: &x [1]\n# -- B.\nb: *x\n",
			want:   []Row{{Key: "a", Type: "list", Default: "`[1]`", Description: "A."}, {Key: "b", Type: "list", Default: "`[1]`", Description: "B."}},
		},
		{name: "not a mapping", values: "- a\n", wantErr: "values must be a YAML mapping"},
		{name: "not YAML", values: "a: [\n", wantErr: "parsing values"},
		{name: "non-string key", values: "? [a]\n: 1\n", wantErr: "a key that is not a string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Rows([]byte(tc.values))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("rows %+v\nwant %+v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("row %d = %+v\nwant %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestParseComment(t *testing.T) {
	for _, tc := range []struct {
		text string
		want comment
	}{
		{"", comment{}},
		{"# just a note", comment{}},
		{"# -- One line.", comment{documented: true, description: "One line."}},
		{"# --", comment{documented: true}},
		{"# --no space is not the marker", comment{}},
		{"# Heading\n\n# -- Text\n# goes on.", comment{documented: true, description: "Text goes on."}},
		{"# -- (list) Flags.\n# @default -- see below", comment{documented: true, typ: "list", description: "Flags.", defaultText: "see below"}},
		{"#   --   Spaces.  ", comment{documented: true, description: "Spaces."}},
		{"# -- Of a key commented out.\n# old: 1\n# -- Of this key.", comment{documented: true, description: "Of this key."}},
	} {
		t.Run(tc.text, func(t *testing.T) {
			if got := parseComment(tc.text); got != tc.want {
				t.Errorf("parseComment(%q) = %+v, want %+v", tc.text, got, tc.want)
			}
		})
	}
}

func TestTableEscapes(t *testing.T) {
	got := Table([]Row{{Key: "a", Type: "string", Default: "`\"x|y\"`", Description: "one | two\nthree"}})
	want := "| `a` | string | `\"x\\|y\"` | one \\| two three |\n"
	if !strings.HasSuffix(got, want) {
		t.Errorf("Table = %q, want it to end with %q", got, want)
	}
}

func TestSplice(t *testing.T) {
	const table = "| new |\n"
	for _, tc := range []struct {
		name, readme, want, wantErr string
	}{
		{name: "replaces between the markers", readme: "a\n<!-- values:begin -->\nold\nold\n<!-- values:end -->\nb\n", want: "a\n<!-- values:begin -->\n| new |\n<!-- values:end -->\nb\n"},
		{name: "empty table so far", readme: "<!-- values:begin --><!-- values:end -->", want: "<!-- values:begin -->\n| new |\n<!-- values:end -->"},
		{name: "no markers", readme: "a\n", wantErr: "lacks the markers"},
		{name: "no end marker", readme: "<!-- values:begin -->\n", wantErr: "lacks the markers"},
		{name: "markers reversed", readme: "<!-- values:end -->\n<!-- values:begin -->\n", wantErr: "comes before"},
		{name: "markers twice", readme: "<!-- values:begin --><!-- values:end --><!-- values:begin --><!-- values:end -->", wantErr: "more than once"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Splice([]byte(tc.readme), table)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("Splice = %q, want %q", got, tc.want)
			}
			again, err := Splice(got, table)
			if err != nil || string(again) != string(got) {
				t.Errorf("splicing twice changed it: %q (%v)", again, err)
			}
		})
	}
}
