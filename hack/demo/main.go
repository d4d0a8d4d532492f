// Command demo is `make demo`: it starts a real control plane (etcd and
// kube-apiserver from bin/), runs `podiam webhook` with a self-managed
// certificate, creates a ServiceAccount with a role annotation and a pod, and
// prints what the pod got. It stops everything before it exits.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/podiam/podiam/test/harness"
	"github.com/podiam/podiam/test/testcluster"
	"github.com/podiam/podiam/test/testutil"
)

const (
	webhookNamespace = "podiam-system"
	appNamespace     = "demo"
	roleARN          = "arn:aws:iam::111122223333:role/demo-app"
	configName       = "podiam-webhook"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "podiam-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	fmt.Println("podiam demo")
	bin, err := harness.BuildPodiam(ctx, dir)
	if err != nil {
		return err
	}
	cluster, err := testcluster.Start(ctx, testcluster.Options{IssuerURL: "https://oidc.demo.podiam.example"})
	if err != nil {
		return err
	}
	defer cluster.Stop()
	fmt.Printf("  control plane   etcd + kube-apiserver at %s, ready in %s\n", cluster.URL(), cluster.StartupTime().Round(100*time.Millisecond))

	client, err := kubernetes.NewForConfig(cluster.RESTConfig())
	if err != nil {
		return err
	}
	for _, ns := range []string{webhookNamespace, appNamespace} {
		if err := cluster.EnsureNamespace(ctx, ns, nil); err != nil {
			return err
		}
	}
	ports, err := testutil.FreePorts(2)
	if err != nil {
		return err
	}
	url := fmt.Sprintf("https://127.0.0.1:%d/mutate", ports[0])
	// Registered without a caBundle: podiam writes its own CA into it.
	if err := harness.Register(ctx, client, harness.Registration{Name: configName, URL: url,
		SkipLabel: "eks.amazonaws.com/skip-pod-identity-webhook"}); err != nil {
		return err
	}
	wh, err := harness.StartWebhook(ctx, harness.WebhookOptions{
		Binary: bin, Kubeconfig: cluster.Kubeconfig(), Namespace: webhookNamespace, SelfManaged: true, Dir: dir,
		Port: ports[0], MetricsPort: ports[1], Args: []string{"--webhook-config-name=" + configName},
	})
	if err != nil {
		return err
	}
	defer wh.Stop()
	if err := waitCABundle(ctx, client); err != nil {
		return fmt.Errorf("%w\nwebhook logs:\n%s", err, wh.Logs())
	}
	fmt.Printf("  webhook         podiam webhook at %s, own CA written into the caBundle of %s\n", url, configName)

	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: appNamespace,
		Annotations: map[string]string{"eks.amazonaws.com/role-arn": roleARN}}}
	if _, err := client.CoreV1().ServiceAccounts(appNamespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		return err
	}
	fmt.Printf("  ServiceAccount  %s/app  eks.amazonaws.com/role-arn: %s\n", appNamespace, roleARN)

	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: appNamespace},
		Spec: corev1.PodSpec{ServiceAccountName: "app", Containers: []corev1.Container{{Name: "app", Image: "public.ecr.aws/aws-cli/aws-cli"}}}}
	created, err := client.CoreV1().Pods(appNamespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("creating pod: %w\nwebhook logs:\n%s", err, wh.Logs())
	}
	fmt.Printf("  Pod             %s/app got:\n", appNamespace)
	for _, e := range created.Spec.Containers[0].Env {
		fmt.Printf("    env    %s=%s\n", e.Name, e.Value)
	}
	var tokenVol *corev1.ServiceAccountTokenProjection
	for _, v := range created.Spec.Volumes {
		if v.Name == "aws-iam-token" && v.Projected != nil && len(v.Projected.Sources) > 0 {
			tokenVol = v.Projected.Sources[0].ServiceAccountToken
			fmt.Printf("    volume %s: projected ServiceAccount token, audience %s, %ds, file %s\n",
				v.Name, tokenVol.Audience, *tokenVol.ExpirationSeconds, tokenVol.Path)
		}
	}
	for _, m := range created.Spec.Containers[0].VolumeMounts {
		if m.Name == "aws-iam-token" {
			fmt.Printf("    mount  %s at %s (read-only: %v)\n", m.Name, m.MountPath, m.ReadOnly)
		}
	}
	if tokenVol == nil {
		return fmt.Errorf("the pod got no token volume\nwebhook logs:\n%s", wh.Logs())
	}

	// What the kubelet would write into the volume: a token bound to the pod.
	tr, err := client.CoreV1().ServiceAccounts(appNamespace).CreateToken(ctx, "app", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{tokenVol.Audience}, ExpirationSeconds: tokenVol.ExpirationSeconds,
			BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: created.Name, UID: created.UID}},
	}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	_, claims, err := cluster.VerifyToken(tr.Status.Token)
	if err != nil {
		return err
	}
	fmt.Printf("  token           signature verified with the cluster's key; claims:\n")
	if claims.Kubernetes.Pod == nil {
		return errors.New("the token is not bound to the pod")
	}
	fmt.Printf("    iss %v\n    sub %v\n    aud %v\n    exp in %s\n    pod %v\n", claims.Iss, claims.Sub, claims.Aud,
		time.Until(time.Unix(claims.Exp, 0)).Round(time.Minute), claims.Kubernetes.Pod.Name)
	fmt.Println("  done: stopping the webhook and the control plane")
	return nil
}

func waitCABundle(ctx context.Context, client kubernetes.Interface) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		cfg, err := client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, configName, metav1.GetOptions{})
		if err == nil && len(cfg.Webhooks) > 0 && len(cfg.Webhooks[0].ClientConfig.CABundle) > 0 {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("podiam did not write the caBundle within 30s")
}
