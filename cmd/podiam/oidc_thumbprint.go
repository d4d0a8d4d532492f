package main

import (
	"crypto/x509"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/podiam/podiam/internal/oidc"
)

func newOIDCThumbprintCommand() *cobra.Command {
	var caFile string
	var noDiscovery bool
	cmd := &cobra.Command{
		Use:   "thumbprint ISSUER [ISSUER...]",
		Short: "Print the TLS thumbprints IAM asks for when registering the issuer",
		Long: `Prints, one per line, the thumbprints of an IAM OIDC provider: the lowercase
hex SHA-1 of the last certificate (the top of the chain) that the TLS server of
the issuer's jwks_uri host sends, and of the issuer's host where it differs; at
most 5. Each argument is an issuer URL, as given to kube-apiserver's
--service-account-issuer: its discovery document is fetched to find the
jwks_uri. With --no-discovery the arguments are taken as they are (before the
documents are published).

A server that sends only its own certificate gets that certificate's
thumbprint, as IAM computes it too: it changes whenever the certificate is
renewed. IAM ignores thumbprints for hosts whose certificate a CA it trusts
issued (S3, CloudFront), but requires them otherwise. Hosts are reached
directly, without a proxy, as IAM reaches them; their chain must verify against
the system roots, plus --ca-file for a private CA.`,
		Example: `  podiam oidc thumbprint https://oidc.example.com/clusters/prod

  # A private CA, before the documents are published:
  podiam oidc thumbprint --no-discovery --ca-file ca.crt https://issuer.internal:8443

  # Straight into the registration:
  aws iam create-open-id-connect-provider --url https://oidc.example.com/clusters/prod \
    --client-id-list sts.amazonaws.com \
    --thumbprint-list $(podiam oidc thumbprint https://oidc.example.com/clusters/prod)`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			useFallbackRoots() // the issuer's public certificate
			roots, err := rootsWithCAFile(caFile)
			if err != nil {
				return err
			}
			urls := args
			if !noDiscovery {
				urls = nil
				for _, issuer := range args {
					u, err := oidc.IssuerURLs(cmd.Context(), issuer, roots)
					if err != nil {
						return fmt.Errorf("%w (--no-discovery takes the URL as it is)", err)
					}
					urls = append(urls, u...)
				}
			}
			tps, err := oidc.Thumbprints(cmd.Context(), urls, roots)
			if err != nil {
				return err
			}
			for _, tp := range tps {
				fmt.Fprintln(cmd.OutOrStdout(), tp)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&caFile, "ca-file", "", "PEM file of CA certificates trusted in addition to the system roots")
	cmd.Flags().BoolVar(&noDiscovery, "no-discovery", false, "take the arguments as the URLs to hash, without fetching the discovery document")
	return cmd
}

// rootsWithCAFile returns the system roots plus the certificates in caFile
// (none when empty).
func rootsWithCAFile(caFile string) (*x509.CertPool, error) {
	if caFile == "" {
		return nil, nil // the system roots
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool() // no system roots here: the file alone
	}
	data, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("--ca-file: %w", err)
	}
	if !roots.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("--ca-file %s: no PEM certificate in it", caFile)
	}
	return roots, nil
}
