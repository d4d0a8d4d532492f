package testcluster

import (
	"context"
	"errors"
	"testing"
	"time"
)

// StartForTest starts a cluster for t and stops it in t.Cleanup, logging the
// etcd and kube-apiserver log tails first if t failed. It fails t (never
// skips) when the cluster cannot start, including when the binaries are
// missing: run `make tools`.
func StartForTest(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	c, err := Start(ctx, opts)
	if err != nil {
		if errors.Is(err, ErrBinariesMissing) {
			t.Fatalf("testcluster: %v\nThese tests need a real control plane: run `make tools` (builds bin/etcd and bin/kube-apiserver from hack/tools, ~8 min the first time).", err)
		}
		t.Fatalf("testcluster: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("testcluster logs:\n%s", c.Logs())
		}
		if err := c.Stop(); err != nil {
			t.Errorf("testcluster: stop: %v", err)
		}
	})
	return c
}
