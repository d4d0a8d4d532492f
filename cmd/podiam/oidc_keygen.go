package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/podiam/podiam/internal/oidc"
)

// newOIDCKeygenCommand is `podiam oidc keygen`: a new service-account
// signing key pair for kube-apiserver.
func newOIDCKeygenCommand() *cobra.Command {
	var out, typ string
	cmd := &cobra.Command{
		Use:   "keygen --out DIR [--type rsa|ecdsa]",
		Short: "Create a service-account signing key pair for kube-apiserver",
		Long: `Create a new service-account token signing key in DIR/sa.key (mode 0600) and its
public key in DIR/sa.pub, the names kubeadm uses, and print the kube-apiserver flags that
use them. DIR is created if needed. An existing sa.key or sa.pub is never overwritten.

--type rsa (default) makes an RSA 2048 key (RS256 tokens), what kube-apiserver, kubeadm and
the AWS guides expect; --type ecdsa makes an ECDSA P-256 key (ES256 tokens).

To rotate keys, keep the old public key in a second --service-account-key-file until the
tokens it signed have expired, and publish both ('podiam oidc jwks --key old --key new').`,
		Example: `  podiam oidc keygen --out /etc/kubernetes/pki
  podiam oidc keygen --out ./keys --type ecdsa`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			g, err := oidc.GenerateKeyPair(out, oidc.KeyType(typ))
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), `Wrote %s (private, mode 0600) and %s (public); kid %s.
Start kube-apiserver with:
  --service-account-signing-key-file=%s
  --service-account-key-file=%s
and --service-account-issuer set to the issuer's https:// URL; publish the public key with
  podiam oidc jwks --key %s
`, g.PrivateFile, g.PublicFile, g.KeyID, g.PrivateFile, g.PublicFile, g.PublicFile)
			return err
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "`DIR` to write sa.key and sa.pub into; required")
	cmd.Flags().StringVar(&typ, "type", string(oidc.KeyTypeRSA), `key type: "rsa" (RSA 2048) or "ecdsa" (P-256)`)
	_ = cmd.MarkFlagRequired("out")
	return cmd
}
