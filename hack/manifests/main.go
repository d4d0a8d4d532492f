// Command manifests writes the plain manifests under deploy/ from the Helm
// chart charts/podiam (`make manifests`), one directory per values variant of
// test/chart, and with -check fails when deploy/ differs from a fresh
// rendering (`make manifests-check`), naming each file.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/podiam/podiam/test/chart"
)

func main() {
	check := flag.Bool("check", false, "only compare deploy/ with a fresh rendering; exit 1 naming each file that differs")
	flag.Parse()
	if err := run(chart.ModuleRoot(), *check, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "manifests:", err)
		os.Exit(1)
	}
}

// run checks (check) or writes the generated files under root, printing
// each file it changes to out.
func run(root string, check bool, out io.Writer) error {
	if check {
		return chart.Check(root)
	}
	changed, err := chart.Write(root)
	if err != nil {
		return err
	}
	for _, p := range changed {
		fmt.Fprintln(out, "updated", p)
	}
	return nil
}
