package main

import "github.com/spf13/cobra"

// newOIDCCommand groups the issuer-side commands: documents, keys,
// publishing, serving and the thumbprint.
func newOIDCCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "oidc",
		Short: "Make the cluster an OpenID Connect provider that AWS IAM trusts",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(
		newOIDCJWKSCommand(),
		newOIDCDiscoveryCommand(),
		newOIDCKeygenCommand(),
		newOIDCPublishCommand(),
		newOIDCThumbprintCommand(),
		newOIDCServeCommand(),
	)
	return cmd
}
