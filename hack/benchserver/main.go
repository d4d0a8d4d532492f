// Command benchserver prepares what hack/bench-tls.sh measures the released
// `podiam webhook` binary against: a local control plane (etcd and
// kube-apiserver, built by `make tools`), the ServiceAccount of the benchmark's
// pod with its role annotation, and a serving certificate for 127.0.0.1. It
// writes shell assignments (KUBECONFIG, TLS_CERT, TLS_KEY, CA_CERT, PORT,
// METRICS_PORT) to -env, then runs until SIGTERM or SIGINT and stops the
// control plane.
//
// The webhook itself is started by the script, with the command line a
// Deployment gives it, so that what is measured is the binary with its
// informer cache, JSON logs and metrics, not a re-assembly of its parts.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podiam/podiam/internal/certs"
	"github.com/podiam/podiam/internal/identity"
	"github.com/podiam/podiam/test/testcluster"
	"github.com/podiam/podiam/test/testutil"
)

// The ServiceAccount of internal/webhook/testdata/review-deployment-3c.json.
const (
	benchNamespace      = "shop"
	benchServiceAccount = "orders-api"
	benchRoleARN        = "arn:aws:iam::111122223333:role/orders-api"
)

func main() {
	dir := flag.String("dir", "", "directory for the certificate files (required)")
	env := flag.String("env", "", "file the shell assignments are written to, last (required)")
	flag.Parse()
	if *dir == "" || *env == "" {
		fmt.Fprintln(os.Stderr, "benchserver: -dir and -env are required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, *dir, *env); err != nil {
		fmt.Fprintln(os.Stderr, "benchserver:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, dir, envFile string) error {
	startCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	cluster, err := testcluster.Start(startCtx, testcluster.Options{})
	if err != nil {
		return err
	}
	defer cluster.Stop()
	if err := cluster.EnsureNamespace(startCtx, benchNamespace, nil); err != nil {
		return err
	}
	client, err := cluster.Clientset()
	if err != nil {
		return err
	}
	keys := identity.NewKeys(identity.DefaultAnnotationPrefix)
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{
		Name: benchServiceAccount, Namespace: benchNamespace,
		Annotations: map[string]string{keys.RoleARN: benchRoleARN, keys.RegionalSTS: "true"},
	}}
	if _, err := client.CoreV1().ServiceAccounts(benchNamespace).Create(startCtx, sa, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating ServiceAccount %s/%s: %w", benchNamespace, benchServiceAccount, err)
	}
	if err := writeCertificate(dir); err != nil {
		return err
	}
	ports, err := testutil.FreePorts(2)
	if err != nil {
		return err
	}
	vars := fmt.Sprintf("KUBECONFIG=%q\nTLS_CERT=%q\nTLS_KEY=%q\nCA_CERT=%q\nPORT=%d\nMETRICS_PORT=%d\n",
		cluster.Kubeconfig(), filepath.Join(dir, certs.KeyTLSCert), filepath.Join(dir, certs.KeyTLSKey),
		filepath.Join(dir, certs.KeyCACert), ports[0], ports[1])
	// Written whole under another name and renamed, so the script never reads
	// half a file.
	if err := os.WriteFile(envFile+".tmp", []byte(vars), 0o600); err != nil {
		return err
	}
	if err := os.Rename(envFile+".tmp", envFile); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

// writeCertificate writes a CA and a serving certificate for 127.0.0.1 (ECDSA
// P-256, as the self-managed mode issues) into dir.
func writeCertificate(dir string) error {
	pol := certs.Policy{CAValidity: 24 * time.Hour, CertValidity: 24 * time.Hour, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}
	b, err := certs.NewBundle(pol, time.Now())
	if err != nil {
		return err
	}
	data, err := b.Encode()
	if err != nil {
		return err
	}
	for _, k := range []string{certs.KeyTLSCert, certs.KeyTLSKey, certs.KeyCACert} {
		if err := os.WriteFile(filepath.Join(dir, k), data[k], 0o600); err != nil {
			return fmt.Errorf("writing %s: %w", k, err)
		}
	}
	return nil
}
