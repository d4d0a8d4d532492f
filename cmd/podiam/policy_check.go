package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"

	"github.com/podiam/podiam/internal/podrequest"
	"github.com/podiam/podiam/internal/policy"
)

// Exit codes of `podiam policy check`, so that scripts can tell a denial from
// a check that could not be made.
const (
	exitAllowed  = 0
	exitDenied   = 1
	exitNoAnswer = 2
)

// noAnswer wraps err with exit code exitNoAnswer.
func noAnswer(err error) error { return &exitError{code: exitNoAnswer, err: err} }

type policyCheckFlags struct {
	trustPolicy, issuer, account, partition string
	serviceAccount, action, principal       string
	audiences, tags                         []string
	pod, kubeconfig                         string
}

// newPolicyCheckCommand evaluates a trust policy against the request a pod
// (or a ServiceAccount) would make, and explains a denial.
func newPolicyCheckCommand() *cobra.Command {
	var f policyCheckFlags
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Say whether a trust policy lets a ServiceAccount or a pod assume the role, and why not",
		Long: `Evaluates a role's trust policy the way IAM does, for the request a pod
would make, and explains the decision: for a denial, which statement and which
condition failed, the value expected, the value the request carries, and the
change that would fix it.

IRSA (--action sts:AssumeRoleWithWebIdentity, the default): the request of a
token with sub system:serviceaccount:NAMESPACE:NAME and aud --audience
(default sts.amazonaws.com; repeat the flag for a token whose aud is a list)
from the OIDC provider of --issuer in --account.

Pod Identity (--action sts:AssumeRole): the request of principal Service
pods.eks.amazonaws.com, or --principal, with the session tags EKS attaches
(kubernetes-namespace and kubernetes-service-account from --serviceaccount,
the others from --tag K=V, which also overrides them). As IAM does, a request
with session tags must also be allowed sts:TagSession; both are evaluated.

--pod NAMESPACE/NAME reads the pod from the cluster instead: its ServiceAccount,
the audience of its aws-iam-token volume (else the ServiceAccount's
eks.amazonaws.com/audience annotation, else sts.amazonaws.com), the role it
will assume (AWS_ROLE_ARN, printed; its account and partition are the
defaults of --account and --partition),
its name and uid (Pod Identity tags), and whether the webhook gave it IRSA or
Pod Identity (the default --action). Without --issuer it asks the API server
for its service-account issuer.

Exit status: 0 allowed, 1 denied, 2 no answer (bad flags, an unreadable or
invalid policy, a pod that cannot be read).`,
		Example: `  # Would the pods of ServiceAccount apps/web get the role?
  podiam policy check --trust-policy trust.json --account 111122223333 \
    --issuer https://oidc.example.com/cluster-1 --serviceaccount apps/web

  # The same for a running pod, with the audience it was given:
  podiam policy check --trust-policy trust.json --pod apps/web-7d4b9c-x2x8q --kubeconfig ~/.kube/config

  # Pod Identity, with the cluster's session tags:
  podiam policy check --trust-policy trust.json --action sts:AssumeRole --serviceaccount apps/web \
    --tag eks-cluster-name=prod

  # Straight from podiam policy trust:
  podiam policy trust --pod-identity --serviceaccount apps/web |
    podiam policy check --trust-policy - --action sts:AssumeRole --serviceaccount apps/web`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return noAnswer(fmt.Errorf("unexpected arguments %q: every input is a flag", args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runPolicyCheck(cmd.Context(), cmd.InOrStdin(), cmd.OutOrStdout(), f)
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return noAnswer(err) })
	fs := cmd.Flags()
	fs.StringVar(&f.trustPolicy, "trust-policy", "", "the role's trust policy, a JSON file; - reads stdin")
	fs.StringVar(&f.issuer, "issuer", "", "IRSA: the cluster's service-account issuer, https://… (with --pod: the API server's)")
	fs.StringVar(&f.account, "account", "", "IRSA: the 12-digit account of the role and its OIDC provider (with --pod: the account of AWS_ROLE_ARN)")
	fs.StringVar(&f.partition, "partition", "", "IRSA: the AWS partition of the provider ARN: aws, aws-cn, aws-us-gov, … (default aws; with --pod: the partition of AWS_ROLE_ARN)")
	fs.StringVar(&f.serviceAccount, "serviceaccount", "", "NAMESPACE/NAME of the ServiceAccount making the request")
	fs.StringArrayVar(&f.audiences, "audience", nil, "IRSA: the aud of the token; repeatable for a list (default sts.amazonaws.com; with --pod: the pod's)")
	fs.StringVar(&f.action, "action", "", "sts:AssumeRoleWithWebIdentity (IRSA) or sts:AssumeRole (Pod Identity) (default IRSA; with --pod: what the pod was given)")
	fs.StringArrayVar(&f.tags, "tag", nil, "Pod Identity: a session tag KEY=VALUE (eks-cluster-name=prod); repeatable")
	fs.StringVar(&f.principal, "principal", "", "Pod Identity: the AWS principal (ARN) that calls sts:AssumeRole instead of pods.eks.amazonaws.com")
	fs.StringVar(&f.pod, "pod", "", "NAMESPACE/NAME of a pod to read the request from, instead of --serviceaccount")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "with --pod: kubeconfig file; empty means in-cluster, then $KUBECONFIG")
	return cmd
}

// runPolicyCheck reads the trust policy and the requester the flags name,
// evaluates every request podrequest makes of them and prints each with its
// explanation; a denial is an exitError with exitDenied, no answer one with
// exitNoAnswer.
func runPolicyCheck(ctx context.Context, stdin io.Reader, out io.Writer, f policyCheckFlags) error {
	if ctx == nil {
		ctx = context.Background()
	}
	if f.trustPolicy == "" {
		return noAnswer(errors.New("--trust-policy is required"))
	}
	if (f.pod == "") == (f.serviceAccount == "") {
		return noAnswer(errors.New("name the requester with exactly one of --serviceaccount NAMESPACE/NAME and --pod NAMESPACE/NAME"))
	}
	if f.kubeconfig != "" && f.pod == "" {
		return noAnswer(errors.New("--kubeconfig is for --pod"))
	}
	doc, err := readPolicyFile(stdin, f.trustPolicy)
	if err != nil {
		return noAnswer(err)
	}
	pol, err := policy.Parse(doc)
	if err != nil {
		return noAnswer(fmt.Errorf("trust policy %s: %w", f.trustPolicy, err))
	}

	o := podrequest.Overrides{
		Action: f.action, Partition: f.partition, Account: f.account, Issuer: f.issuer,
		Audiences: f.audiences, Principal: f.principal, Tags: f.tags,
	}
	var facts podrequest.Facts
	if f.pod != "" {
		facts, err = readPod(ctx, f, o)
	} else {
		facts, err = podrequest.ServiceAccountFacts(f.serviceAccount)
	}
	if err != nil {
		return noAnswer(err)
	}
	reqs, err := podrequest.Requests(facts, o)
	if err != nil {
		return noAnswer(err)
	}

	sa, action := facts.ServiceAccount, podrequest.Action(facts, o)
	switch {
	case facts.RoleARN != "":
		fmt.Fprintf(out, "pod %s: ServiceAccount %s, role %s\n", f.pod, sa, facts.RoleARN)
	case f.pod != "" && action == policy.ActionAssumeRoleWithWebIdentity:
		fmt.Fprintf(out, "pod %s: ServiceAccount %s, no %s: the webhook gave it no IRSA role (is the ServiceAccount annotated with eks.amazonaws.com/role-arn?)\n", f.pod, sa, podrequest.RoleARNEnv)
	}
	denied := false
	for _, r := range reqs {
		d, err := pol.Evaluate(r)
		if err != nil {
			return noAnswer(fmt.Errorf("evaluating %s: %w", f.trustPolicy, err))
		}
		writeRequest(out, r)
		fmt.Fprintln(out, strings.TrimRight(d.Explain(), "\n"))
		fmt.Fprintln(out)
		denied = denied || !d.Allowed
	}
	if denied {
		fmt.Fprintf(out, "DENIED: %s by ServiceAccount %s\n", action, sa)
		return &exitError{code: exitDenied}
	}
	fmt.Fprintf(out, "ALLOWED: %s by ServiceAccount %s\n", action, sa)
	return nil
}

// writeRequest prints the request's action, principal and condition keys,
// sorted, so that the explanation below can be read against them.
func writeRequest(out io.Writer, r policy.Request) {
	fmt.Fprintf(out, "request: %s by %s %s\n", r.Action, r.Principal.Type, r.Principal.ID)
	for _, k := range slices.Sorted(maps.Keys(r.Context)) {
		fmt.Fprintf(out, "  %s = %s\n", k, strings.Join(r.Context[k], ", "))
	}
}

// maxPolicySize bounds what is read of a trust policy; IAM's own limit is a
// few KiB, so a larger input is a wrong file, not a policy.
const maxPolicySize = 1 << 20

// readPolicyFile reads name, or stdin for "-", refusing more than
// maxPolicySize bytes rather than parsing a truncated document.
func readPolicyFile(stdin io.Reader, name string) ([]byte, error) {
	r, shown := stdin, "from stdin"
	if name != "-" {
		file, err := os.Open(name)
		if err != nil {
			return nil, fmt.Errorf("reading the trust policy: %w", err)
		}
		defer file.Close()
		r, shown = file, name
	}
	b, err := io.ReadAll(io.LimitReader(r, maxPolicySize+1))
	if err != nil {
		return nil, fmt.Errorf("reading the trust policy %s: %w", shown, err)
	}
	if len(b) > maxPolicySize {
		return nil, fmt.Errorf("the trust policy %s is larger than 1 MiB: not a trust policy (IAM allows a few KiB)", shown)
	}
	return b, nil
}

// readPod reads the requester from the pod --pod names (and, when its
// request needs it, the cluster's issuer).
func readPod(ctx context.Context, f policyCheckFlags, o podrequest.Overrides) (podrequest.Facts, error) {
	ns, name, ok := strings.Cut(f.pod, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return podrequest.Facts{}, fmt.Errorf("--pod %q: want NAMESPACE/NAME", f.pod)
	}
	cfg, err := restConfig(f.kubeconfig, "")
	if err != nil {
		return podrequest.Facts{}, err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return podrequest.Facts{}, fmt.Errorf("kubernetes client: %w", err)
	}
	return podrequest.ReadForRequest(ctx, client, ns, name, o)
}
