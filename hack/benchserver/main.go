// Command benchserver serves podiam's admission handler over TLS with an
// in-memory ServiceAccount source, for the throughput measurement of
// hack/bench-tls.sh. Everything but the ServiceAccount cache (a map lookup in
// both) is the code `podiam webhook` runs.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/podiam/podiam/internal/certs"
	"github.com/podiam/podiam/internal/identity"
	"github.com/podiam/podiam/internal/inject"
	"github.com/podiam/podiam/internal/metrics"
	"github.com/podiam/podiam/internal/webhook"
)

type staticSAs map[[2]string]map[string]string

func (s staticSAs) Lookup(_ context.Context, ns, name string) (map[string]string, bool, error) {
	a, ok := s[[2]string{ns, name}]
	return a, ok, nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	flag.Parse()
	if err := run(*addr); err != nil {
		fmt.Fprintln(os.Stderr, "benchserver:", err)
		os.Exit(1)
	}
}

func run(addr string) error {
	cert, err := selfSigned()
	if err != nil {
		return err
	}
	tlsCfg, err := webhook.TLSConfig("1.2", "", func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil })
	if err != nil {
		return err
	}
	keys := identity.NewKeys(identity.DefaultAnnotationPrefix)
	reg := prometheus.NewRegistry()
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil)) // as in production, one line per pod is formatted
	h := &webhook.Handler{
		Resolver: &identity.Resolver{Keys: keys, Defaults: identity.Defaults{
			Audience: "sts.amazonaws.com", TokenExpiration: 86400, ContainerCredentialsAudience: "pods.eks.amazonaws.com"}},
		Injector: &inject.Config{Keys: keys, TokenMountPath: inject.DefaultTokenMountPath, Region: "eu-west-1",
			ContainerCredsMountPath: inject.DefaultContainerCredsMountPath, ContainerCredsVolumeName: inject.DefaultContainerCredsVolumeName,
			ContainerCredsTokenPath: inject.DefaultContainerCredsTokenPath, ContainerCredsFullURI: inject.DefaultContainerCredsFullURI},
		ServiceAccounts: staticSAs{{"shop", "orders-api"}: {keys.RoleARN: "arn:aws:iam::111122223333:role/orders-api", keys.RegionalSTS: "true"}},
		Metrics:         metrics.NewWebhook(reg),
		Logger:          logger,
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr().String())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	srv := &webhook.Server{Mutate: h, TLS: tlsCfg, Gatherer: reg, Logger: logger}
	return srv.Serve(ctx, ln, nil)
}

func selfSigned() (tls.Certificate, error) {
	pol := certs.Policy{CAValidity: time.Hour, CertValidity: time.Hour, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}
	now := time.Now()
	b, err := certs.NewBundle(pol, now)
	if err != nil {
		return tls.Certificate{}, err
	}
	c, err := b.TLSCertificate()
	if err != nil {
		return tls.Certificate{}, err
	}
	return *c, nil
}
