package chart

// Variant is one meaningful values combination of the chart.
type Variant struct {
	// Name identifies the variant in test names.
	Name string
	// Values are merged over the chart's values.yaml.
	Values map[string]any
	// Deploy is the directory under deploy/ that `make manifests` writes
	// this variant's rendering into ("" if none).
	Deploy string
	// Doc is how to use the Deploy directory, written at the top of its
	// kustomization.yaml.
	Doc string
	// Settings are what users of the Deploy directory set (placeholders):
	// its kustomization.yaml shows an overlay that patches them, so that
	// nobody edits a generated file.
	Settings []Setting
}

// Setting is one value of a deploy/ directory's objects that its users set
// in an overlay: a flag or environment variable of the object's first
// container, or an annotation of the object. Exactly one of Flag, Env and
// Annotation is set.
type Setting struct {
	// Kind and Name name the object.
	Kind, Name string
	// Flag is a flag of the first container ("--cluster-name"): its
	// argument is replaced, or added when the rendering has none.
	Flag string
	// Env is an environment variable of the first container: its value is
	// replaced.
	Env string
	// Annotation is an annotation of the object, added or replaced.
	Annotation string
	// Value is the example value the overlay shows.
	Value string
}

// Placeholders of the plain manifests under deploy/: their kustomization.yaml
// says what to set. Valid values, so that deploy/ applies as it is.
const (
	placeholderCluster  = "my-cluster"
	placeholderAuthRole = "arn:aws:iam::111122223333:role/podiam-auth"
	placeholderSyncRole = "arn:aws:iam::111122223333:role/podiam-issuer-sync"
	placeholderIssuer   = "https://oidc-example.s3.us-east-1.amazonaws.com/cluster-1"
	placeholderBucket   = "s3://oidc-example/cluster-1"
	placeholderRegion   = "us-east-1"
)

// Variants returns every meaningful values combination: one per directory of
// deploy/ rendered from the chart, then the combinations only helm users get.
// Each call returns fresh maps, which callers may change.
func Variants() []Variant {
	// Plain manifests install one component per directory, each applied on
	// its own: the namespace where one is the first to need it, the CRD with
	// podiam auth (which writes the associations' status), as before.
	only := func(values map[string]any) map[string]any {
		v := map[string]any{
			"webhook": map[string]any{"enabled": false},
			"crds":    map[string]any{"install": false},
		}
		for k, val := range values {
			v[k] = val
		}
		return v
	}
	auth := func() map[string]any {
		return map[string]any{
			"enabled":        true,
			"clusterName":    placeholderCluster,
			"serviceAccount": map[string]any{"annotations": map[string]any{"eks.amazonaws.com/role-arn": placeholderAuthRole}},
		}
	}
	agent := func(backend string) map[string]any {
		return map[string]any{"enabled": true, "backend": backend, "clusterName": placeholderCluster}
	}
	// The namespace where the plain manifests create it: the agent of
	// deploy/agent/podiam runs there too, and needs privileged.
	namespace := func() map[string]any { return map[string]any{"create": true, "podSecurity": "privileged"} }
	issuerSync := func() map[string]any {
		return map[string]any{
			"enabled": true, "issuer": placeholderIssuer, "to": placeholderBucket, "region": placeholderRegion,
			"serviceAccount": map[string]any{"annotations": map[string]any{"eks.amazonaws.com/role-arn": placeholderSyncRole}},
		}
	}
	sts := func() map[string]any {
		return map[string]any{
			"enabled":       true,
			"tlsSecretName": "podiam-sts-tls",
			"config": map[string]any{"accounts": []any{map[string]any{
				"id":    "111122223333",
				"roles": []any{map[string]any{"name": "app", "trustPolicy": map[string]any{"Version": "2012-10-17", "Statement": []any{}}}},
			}}},
		}
	}
	return []Variant{
		// deploy/: one directory each.
		{Name: "webhook-self-managed", Deploy: "overlays/self-managed", Doc: docSelfManaged, Values: only(map[string]any{
			"namespace": namespace(),
			"webhook":   map[string]any{"certificates": map[string]any{"mode": "self-managed"}},
		})},
		{Name: "webhook-cert-manager", Deploy: "overlays/cert-manager", Doc: docCertManager, Values: only(map[string]any{
			"namespace": namespace(),
			"webhook":   map[string]any{"certificates": map[string]any{"mode": "cert-manager"}},
		})},
		{Name: "auth", Deploy: "auth", Doc: docAuth, Values: only(map[string]any{
			"namespace": namespace(),
			"crds":      map[string]any{"install": true},
			"auth":      auth(),
		}), Settings: []Setting{
			{Kind: "Deployment", Name: "podiam-auth", Flag: "--cluster-name", Value: "prod"},
			{Kind: "Deployment", Name: "podiam-auth", Flag: "--region", Value: "eu-west-1"},
			{Kind: "ServiceAccount", Name: "podiam-auth", Annotation: "eks.amazonaws.com/role-arn", Value: "arn:aws:iam::444455556666:role/podiam-auth"},
		}},
		// podiam auth of deploy/auth, in its namespace (the agent mounts its CA).
		{Name: "agent-podiam", Deploy: "agent/podiam", Doc: docAgentPodiam, Values: only(map[string]any{"agent": mergeInto(agent("podiam"),
			map[string]any{"podiam": map[string]any{"authURL": "https://podiam-auth." + ReleaseNamespace + ".svc"}})}),
			Settings: []Setting{{Kind: "DaemonSet", Name: "podiam-agent", Flag: "--cluster-name", Value: "prod"}}},
		// In place of Amazon's agent, where Amazon's runs.
		{Name: "agent-eks", Deploy: "agent/eks", Doc: docAgentEKS, Values: only(map[string]any{
			"namespaceOverride": "kube-system",
			"agent":             agent("eks"),
		}), Settings: []Setting{{Kind: "DaemonSet", Name: "podiam-agent", Flag: "--cluster-name", Value: "prod"}}},
		{Name: "issuer-sync", Deploy: "issuer-sync", Doc: docIssuerSync, Values: only(map[string]any{"issuerSync": issuerSync()}),
			Settings: []Setting{
				{Kind: "Deployment", Name: "podiam-issuer-sync", Flag: "--issuer", Value: "https://oidc.example.com/prod"},
				{Kind: "Deployment", Name: "podiam-issuer-sync", Flag: "--to", Value: "s3://my-bucket/prod"},
				{Kind: "Deployment", Name: "podiam-issuer-sync", Env: "AWS_REGION", Value: "eu-west-1"},
				{Kind: "ServiceAccount", Name: "podiam-issuer-sync", Annotation: "eks.amazonaws.com/role-arn", Value: "arn:aws:iam::444455556666:role/podiam-issuer-sync"},
			}},

		// helm users' combinations.
		{Name: "defaults", Values: map[string]any{}},
		// One release of podiam auth and its agent, without the webhook:
		// podiam auth's pods set up IRSA themselves (auth.roleArn), and the
		// agent takes podiam auth's cluster name.
		{Name: "auth-agent-podiam", Values: map[string]any{
			"webhook": map[string]any{"enabled": false},
			"auth":    map[string]any{"enabled": true, "clusterName": placeholderCluster, "region": placeholderRegion, "roleArn": placeholderAuthRole},
			"agent":   map[string]any{"enabled": true, "backend": "podiam"},
		}},
		{Name: "webhook-fail-closed", Values: map[string]any{
			"webhook": map[string]any{"failurePolicy": "Fail", "replicas": 3, "podDisruptionBudget": map[string]any{"minAvailable": 2}},
		}},
		{Name: "service-monitor", Values: map[string]any{
			"serviceMonitor": map[string]any{"enabled": true, "labels": map[string]any{"release": "prometheus"}},
		}},
		{Name: "sts", Values: map[string]any{"webhook": map[string]any{"enabled": false}, "crds": map[string]any{"install": false}, "sts": sts()}},
		{Name: "everything", Values: map[string]any{
			"namespace":        map[string]any{"create": true},
			"webhook":          map[string]any{"certificates": map[string]any{"mode": "cert-manager"}},
			"auth":             auth(),
			"agent":            agent("podiam"),
			"issuerSync":       mergeInto(issuerSync(), map[string]any{"roleArn": placeholderSyncRole, "serviceAccount": map[string]any{}}),
			"sts":              sts(),
			"serviceMonitor":   map[string]any{"enabled": true},
			"imagePullSecrets": []any{map[string]any{"name": "regcred"}},
		}},
	}
}

// mergeInto sets extra's keys in m and returns m.
func mergeInto(m, extra map[string]any) map[string]any {
	for k, v := range extra {
		m[k] = v
	}
	return m
}

// How to use each deploy/ directory (Variant.Doc).
const (
	docSelfManaged = `podiam webhook; podiam creates its own CA and serving certificate, keeps them
in the Secret podiam-webhook-tls, writes the CA into the webhook
configuration's caBundle and rotates both before they expire. Replicas share
the Secret.
  kubectl apply --server-side -k deploy/overlays/self-managed`

	docCertManager = `podiam webhook; cert-manager issues the serving certificate into the Secret
podiam-webhook-tls, mounted where podiam webhook reads it (--tls-cert/--tls-key
defaults); podiam reloads it when cert-manager renews it. cert-manager's CA
injector writes the caBundle of the webhook configuration.
  kubectl apply --server-side -k deploy/overlays/cert-manager`

	docAuth = `podiam auth: EKS Auth's AssumeRoleForPodIdentity for this cluster, with the
PodIdentityAssociation CRD. Node agents call it with their own ServiceAccount
token and a pod's token; it is the only component that holds AWS credentials.

  1. In an overlay (below): the cluster's name (the name the agents put in
     the request path; on EKS, the cluster's name; my-cluster is a
     placeholder) and STS's region (--cluster-arn on EKS, else --region;
     without one podiam auth stops at start with "no AWS region"). With
     helm: --set auth.clusterName=NAME,auth.region=REGION.
  2. Give podiam auth AWS credentials (its ServiceAccount's role-arn
     annotation, a placeholder: IRSA through the podiam webhook, installed
     first), and let each pod role trust that principal:
       podiam policy trust --pod-identity --principal <its ARN> --serviceaccount NS/NAME
  3. kubectl apply --server-side -k <your overlay>

It creates its own CA and serving certificate (Secret podiam-auth-tls) and
publishes the CA for the agents in ConfigMap podiam-auth-ca (key ca.crt).`

	docAgentPodiam = `podiam agent on any cluster, with podiam auth (deploy/auth) as its backend:
the node holds no AWS credentials; the agent proves itself to podiam auth
with its own projected ServiceAccount token (audience podiam-auth).

  1. Install podiam auth first (kubectl apply --server-side -k deploy/auth):
     it publishes its CA in the ConfigMap podiam-auth-ca, which the agent
     mounts (a ConfigMap volume must be in the pod's own namespace: hence the
     agent runs in podiam-system).
  2. In an overlay (below), set --cluster-name (the placeholder my-cluster)
     to podiam auth's (the agent puts it in the request path; another name
     gets ResourceNotFoundException). With helm: --set agent.clusterName=NAME.
  3. kubectl apply --server-side -k <your overlay>`

	docAgentEKS = `podiam agent on EKS, in place of Amazon's eks-pod-identity-agent: EKS Auth
is the backend, called with SigV4 and the node's AWS credentials (the node
role from the instance metadata, as Amazon's agent). Same namespace, ports
(80, probes 2703, metrics 2705) and link-local addresses as Amazon's.

  1. In an overlay (below), set --cluster-name (the placeholder my-cluster)
     to the EKS cluster's name. The region comes from the instance metadata.
  2. The node role needs eks-auth:AssumeRoleForPodIdentity (the managed
     policy AmazonEKSWorkerNodePolicy has it).
  3. Remove Amazon's agent (both cannot hold port 80 of a node):
       aws eks delete-addon --cluster-name <name> --addon-name eks-pod-identity-agent
  4. kubectl apply --server-side -k <your overlay>`

	docIssuerSync = `podiam oidc publish --interval: keeps the cluster's issuer documents
(discovery document and JWKS) published in an S3 bucket as signing keys rotate.

  1. Publish once by hand and register the provider with IAM (the command
     prints how): the Deployment's own AWS access depends on it.
  2. Create the IAM role of the ServiceAccount's role-arn annotation
     (s3:GetObject, s3:PutObject on the bucket's prefix, s3:ListBucket on the
     bucket; trust: podiam policy trust --serviceaccount
     podiam-system/podiam-issuer-sync). In an overlay (below), set it, --issuer,
     --to and AWS_REGION (placeholders). With helm: issuerSync.issuer, .to,
     .region, .roleArn.
  3. kubectl apply -k <your overlay>  (next to the webhook, in podiam-system)`
)
