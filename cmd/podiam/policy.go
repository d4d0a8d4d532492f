package main

import "github.com/spf13/cobra"

// newPolicyCommand groups the IAM trust-policy commands.
func newPolicyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Write and check IAM trust policies for pods",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newPolicyTrustCommand(), newPolicyCheckCommand())
	return cmd
}
