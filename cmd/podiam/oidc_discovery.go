package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/podiam/podiam/internal/oidc"
)

// newOIDCDiscoveryCommand is `podiam oidc discovery`: the OpenID Connect
// discovery document of an issuer.
func newOIDCDiscoveryCommand() *cobra.Command {
	var (
		issuer, jwksURI, jwksFile, style string
		keys                             []string
	)
	cmd := &cobra.Command{
		Use:   "discovery --issuer URL [--jwks-uri URL] [--jwks FILE | --key FILE ...]",
		Short: "Print the OpenID Connect discovery document of the issuer",
		Long: `Print, on stdout, the discovery document (/.well-known/openid-configuration) of the
service-account issuer --issuer, the value of kube-apiserver's --service-account-issuer. It
must be an https:// URL with a host and no query, fragment or trailing "/" (AWS IAM refuses
the others).

--jwks-uri is where the JWKS is served; by default <issuer>/openid/v1/jwks, where
kube-apiserver serves it (self-hosted guides use <issuer>/keys.json).

The signing algorithms (id_token_signing_alg_values_supported) are those of the keys of
--jwks (a JWKS file, e.g. from 'podiam oidc jwks') or of --key (key files, as for
'podiam oidc jwks'). With neither, the document lists RS256: kube-apiserver signs with RS256
when its signing key is RSA, as kubeadm, kOps, EKS Anywhere and the AWS guides make it; a
cluster with an ECDSA key needs --jwks or --key.

--style apiserver (default) prints the fields kube-apiserver serves, byte for byte;
--style self-hosted adds "authorization_endpoint" and "claims_supported", as the
self-hosted guides write them. AWS accepts both. The document is compact JSON followed by
one newline.`,
		Example: `  # The document for an issuer hosted in S3, algorithms from the cluster's key
  podiam oidc discovery --issuer https://my-bucket.s3.eu-west-1.amazonaws.com/c1 \
    --key /etc/kubernetes/pki/sa.pub > openid-configuration

  # The self-hosted guides' document, JWKS at keys.json
  podiam oidc discovery --issuer https://oidc.example.com/c1 \
    --jwks-uri https://oidc.example.com/c1/keys.json --jwks keys.json --style self-hosted`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var set *oidc.JWKS
			switch {
			case jwksFile != "" && len(keys) > 0:
				return fmt.Errorf("--jwks and --key both give the algorithms: use one")
			case jwksFile != "":
				data, err := os.ReadFile(jwksFile)
				if err != nil {
					return fmt.Errorf("--jwks: %w", err)
				}
				if set, err = oidc.ParseJWKS(data); err != nil {
					return fmt.Errorf("--jwks %s: %w", jwksFile, err)
				}
			case len(keys) > 0:
				pubs, err := oidc.LoadKeys(keys...)
				if err != nil {
					return err
				}
				if set, err = oidc.NewJWKS(pubs, false); err != nil {
					return err
				}
			}
			d, err := oidc.NewDiscovery(issuer, jwksURI, set, oidc.Style(style))
			if err != nil {
				return err
			}
			out, err := d.Marshal()
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s\n", out)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&issuer, "issuer", "", "the service-account issuer `URL` (kube-apiserver's --service-account-issuer); required")
	f.StringVar(&jwksURI, "jwks-uri", "", "`URL` where the JWKS is served (default <issuer>/openid/v1/jwks)")
	f.StringVar(&jwksFile, "jwks", "", "JWKS `FILE` whose keys give the signing algorithms")
	f.StringArrayVar(&keys, "key", nil, "PEM key `FILE` whose keys give the signing algorithms (repeatable)")
	f.StringVar(&style, "style", string(oidc.StyleAPIServer), `field set: "apiserver" or "self-hosted"`)
	_ = cmd.MarkFlagRequired("issuer")
	return cmd
}
