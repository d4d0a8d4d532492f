// Command podiam gives pods on any Kubernetes cluster their own AWS IAM role.
// This package only wires flags to the packages under internal/.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/podiam/podiam/internal/version"
)

func main() {
	if err := newRootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "podiam:", err)
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "podiam",
		Short:         "AWS IAM roles for Kubernetes pods, on any cluster",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newWebhookCommand(), &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), version.String())
		},
	})
	return root
}
