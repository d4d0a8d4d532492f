package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/podiam/podiam/internal/oidc"
)

// newOIDCJWKSCommand is `podiam oidc jwks`: the JWKS kube-apiserver would
// serve for a set of key files.
func newOIDCJWKSCommand() *cobra.Command {
	var (
		keys   []string
		legacy bool
	)
	cmd := &cobra.Command{
		Use:   "jwks --key FILE [--key FILE ...]",
		Short: "Print the JWKS (JSON Web Key Set) of service-account signing keys",
		Long: `Print, on stdout, the JSON Web Key Set that kube-apiserver serves at /openid/v1/jwks for
the given keys: the files of its --service-account-key-file flags (or of
--service-account-signing-key-file). Each file holds one or more PEM blocks: RSA (2048 bits
or more) or ECDSA P-256/P-384/P-521 keys as PUBLIC KEY, RSA PUBLIC KEY, RSA PRIVATE KEY,
PRIVATE KEY (PKCS#8), EC PRIVATE KEY or CERTIFICATE. Private keys are reduced to their public
half; nothing private is printed.

Each key gets the kid, alg (RS256, ES256, ES384, ES512) and use ("sig") kube-apiserver gives
it, with the same bytes. Keys are sorted by kid and a key given twice appears once, so the
output does not depend on the order of the files (kube-apiserver lists keys in flag order).
The document is compact JSON followed by one newline.

--legacy-empty-kid adds a copy of each RSA key with "kid": "", which AWS STS needs to verify
tokens that carry no kid (clusters before Kubernetes 1.16).`,
		Example: `  # The JWKS of a kubeadm cluster's key, as a file to publish
  podiam oidc jwks --key /etc/kubernetes/pki/sa.pub > keys.json

  # During a key rotation: old and new public keys, plus the legacy empty kid
  podiam oidc jwks --key old/sa.pub --key new/sa.pub --legacy-empty-kid`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(keys) == 0 {
				return fmt.Errorf("no --key given: name the public (or private) key files of kube-apiserver's --service-account-key-file")
			}
			pubs, err := oidc.LoadKeys(keys...)
			if err != nil {
				return err
			}
			set, err := oidc.NewJWKS(pubs, legacy)
			if err != nil {
				return err
			}
			out, err := set.Marshal()
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s\n", out)
			return err
		},
	}
	cmd.Flags().StringArrayVar(&keys, "key", nil, "PEM `FILE` with one or more keys (repeatable)")
	cmd.Flags().BoolVar(&legacy, "legacy-empty-kid", false, `also list each RSA key with "kid": "", for tokens without a kid (Kubernetes before 1.16)`)
	return cmd
}
