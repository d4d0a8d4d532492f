// Command chartdoc writes the values table of a chart's README from its
// values.yaml, helm-docs style: each key's "# --" comment is its description
// (see Rows for which keys get a row). The table goes between the README's
// markers <!-- values:begin --> and <!-- values:end -->.
//
//	go run ./hack/chartdoc -values charts/podiam/values.yaml -readme charts/podiam/README.md
//	go run ./hack/chartdoc -check ...   # exit 1 if the README is stale
//
// `make chart-docs` runs it.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "chartdoc:", err)
		os.Exit(1)
	}
}

// errStale is -check's answer when the README differs from what would be
// generated.
var errStale = errors.New("the values table is stale")

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("chartdoc", flag.ContinueOnError)
	valuesPath := fs.String("values", "charts/podiam/values.yaml", "the chart's values.yaml")
	readmePath := fs.String("readme", "charts/podiam/README.md", "the README holding the table between the markers")
	check := fs.Bool("check", false, "write nothing; fail if the README is not what would be written")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	values, err := os.ReadFile(*valuesPath)
	if err != nil {
		return fmt.Errorf("reading values: %w", err)
	}
	rows, err := Rows(values)
	if err != nil {
		return fmt.Errorf("%s: %w", *valuesPath, err)
	}
	readme, err := os.ReadFile(*readmePath)
	if err != nil {
		return fmt.Errorf("reading the README: %w", err)
	}
	want, err := Splice(readme, Table(rows))
	if err != nil {
		return fmt.Errorf("%s: %w", *readmePath, err)
	}
	if bytes.Equal(readme, want) {
		return nil
	}
	if *check {
		return fmt.Errorf("%s: %w (run make chart-docs):\n%s", *readmePath, errStale, diffHint(readme, want))
	}
	if err := os.WriteFile(*readmePath, want, 0o644); err != nil {
		return fmt.Errorf("writing the README: %w", err)
	}
	_, err = fmt.Fprintf(stdout, "%s: values table updated (%d keys)\n", *readmePath, len(rows))
	return err
}

// diffHint shows the first line that differs, with its number: enough to
// see which key changed without a diff tool.
func diffHint(have, want []byte) string {
	h := strings.Split(string(have), "\n")
	w := strings.Split(string(want), "\n")
	for i := 0; i < len(h) || i < len(w); i++ {
		var hl, wl string
		if i < len(h) {
			hl = h[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if hl != wl {
			return fmt.Sprintf("  line %d\n  - %s\n  + %s", i+1, hl, wl)
		}
	}
	return ""
}
