package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/podiam/podiam/internal/version"
)

// newVersionCommand prints the build: one line, or a JSON object for scripts
// (an image's tests, an upgrade check).
func newVersionCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit, build date, Go version and platform",
		Example: `  podiam version
  podiam version -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info := version.Get()
			switch output {
			case "":
				_, err := fmt.Fprintln(cmd.OutOrStdout(), info.String())
				return err
			case "json":
				_, err := fmt.Fprintf(cmd.OutOrStdout(), "%s\n", info.JSON())
				return err
			default:
				return fmt.Errorf("--output %q: want json, or nothing for one line", output)
			}
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", `output format: "json", or empty for one line`)
	return cmd
}
