package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/podiam/podiam/internal/policy"
)

// newPolicyTrustCommand writes IRSA and Pod Identity trust policies.
func newPolicyTrustCommand() *cobra.Command {
	var (
		o   policy.TrustOptions
		sas []string
	)
	var style string
	cmd := &cobra.Command{
		Use:   "trust",
		Short: "Write the trust policy of an IAM role for ServiceAccounts (IRSA or Pod Identity)",
		Long: `Writes the trust policy of an IAM role on stdout, as indented JSON.

IRSA (the default): principal Federated, the cluster's OIDC provider
(arn:<partition>:iam::<account>:oidc-provider/<issuer without https://>), action
sts:AssumeRoleWithWebIdentity, and conditions on the token's claims:
  --style eksctl  "<issuer>:sub" and "<issuer>:aud" (audience sts.amazonaws.com,
                  or --audience), as eksctl, the AWS console and the
                  terraform-aws-modules IRSA module write it;
  --style kops    "<issuer>:sub" only, as kOps writes it (kOps registers its
                  provider with the client ID amazonaws.com, which IAM checks
                  against the token's audience itself).
A namespace or name may hold the IAM wildcards * and ?: the subjects are then
matched with StringLike. Several --serviceaccount flags give one list of
subjects; when one of them is a pattern all are listed under StringLike, which
matches the exact ones exactly (IAM ANDs the operators of a statement, so
splitting them between StringEquals and StringLike would allow nobody).

--pod-identity: the EKS Pod Identity policy (principal Service
pods.eks.amazonaws.com, actions sts:AssumeRole and sts:TagSession), or with
--principal the same for another AWS principal (podiam's credential broker).
--serviceaccount then adds conditions on the session tags
aws:RequestTag/kubernetes-namespace and aws:RequestTag/kubernetes-service-account,
so that only those ServiceAccounts can assume the role. ServiceAccounts of
different namespaces get one statement per namespace: one list of namespaces
beside one list of names would also allow the cross pairs. Associations with
disableSessionTags send no tags: --external-id pins the role to their
sts:ExternalId (<region>/<account>/<cluster>/<namespace>/<service account>, in
the association's status) instead.`,
		Example: `  # IRSA for one ServiceAccount, as eksctl writes it:
  podiam policy trust --account 111122223333 \
    --issuer https://oidc.example.com/cluster-1 --serviceaccount kube-system/ebs-csi-controller-sa

  # kOps style, several ServiceAccounts, one of them a pattern:
  podiam policy trust --style kops --account 111122223333 \
    --issuer https://bucket.s3.eu-west-1.amazonaws.com/cluster-1 \
    --serviceaccount apps/web --serviceaccount 'batch/job-*'

  # EKS Pod Identity, limited to one ServiceAccount by its session tags:
  podiam policy trust --pod-identity --serviceaccount apps/web

  # Pod Identity through podiam auth, whose own role is the principal:
  podiam policy trust --pod-identity --principal arn:aws:iam::111122223333:role/podiam-auth \
    --serviceaccount apps/web`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Style = policy.TrustStyle(style)
			o.ServiceAccounts = nil
			for _, s := range sas {
				sa, err := policy.ParseServiceAccount(s)
				if err != nil {
					return fmt.Errorf("--serviceaccount: %w", err)
				}
				o.ServiceAccounts = append(o.ServiceAccounts, sa)
			}
			doc, err := policy.Trust(o)
			if err != nil {
				return fmt.Errorf("trust policy: %w", err)
			}
			_, err = cmd.OutOrStdout().Write(doc)
			return err
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.Account, "account", "", "IRSA: the 12-digit AWS account of the role and of the OIDC provider")
	fs.StringVar(&o.Issuer, "issuer", "", "IRSA: the cluster's service-account issuer (kube-apiserver --service-account-issuer), https://…")
	fs.StringArrayVar(&sas, "serviceaccount", nil, "NAMESPACE/NAME allowed to assume the role; * and ? are wildcards; repeatable")
	fs.StringVar(&style, "style", "", "IRSA: eksctl (conditions on :sub and :aud) or kops (:sub only) (default eksctl)")
	fs.StringVar(&o.Audience, "audience", "", "IRSA, eksctl style: the audience of the pods' tokens (default sts.amazonaws.com)")
	fs.StringVar(&o.Partition, "partition", "", "IRSA: the AWS partition of the provider ARN: aws, aws-cn, aws-us-gov (default aws)")
	fs.BoolVar(&o.PodIdentity, "pod-identity", false, "write the EKS Pod Identity trust policy (sts:AssumeRole and sts:TagSession) instead of IRSA")
	fs.StringArrayVar(&o.ExternalIDs, "external-id", nil, "with --pod-identity: pin the role to this sts:ExternalId (of an association with disableSessionTags, from its status) instead of session tags; repeatable")
	fs.StringVar(&o.Principal, "principal", "", "with --pod-identity: the AWS principal (role ARN or account id) that assumes the role instead of pods.eks.amazonaws.com")
	return cmd
}
