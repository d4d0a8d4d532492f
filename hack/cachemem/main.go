// Command cachemem measures `podiam webhook`'s memory with many ServiceAccounts:
// it starts a local control plane, creates -n ServiceAccounts (1% with a role
// annotation) across -namespaces namespaces, runs the real webhook against it,
// waits until its cache holds them all, and prints the process's RSS and Go heap
// as its own /metrics reports them. Needs bin/ from `make tools`.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/podiam/podiam/test/harness"
	"github.com/podiam/podiam/test/testcluster"
)

func main() {
	n := flag.Int("n", 100000, "ServiceAccounts to create")
	namespaces := flag.Int("namespaces", 100, "namespaces to spread them over")
	workers := flag.Int("workers", 16, "concurrent create requests")
	flag.Parse()
	if err := run(*n, *namespaces, *workers); err != nil {
		fmt.Fprintln(os.Stderr, "cachemem:", err)
		os.Exit(1)
	}
}

func run(n, namespaces, workers int) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "podiam-cachemem-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin, err := harness.BuildPodiam(ctx, dir)
	if err != nil {
		return err
	}
	cluster, err := testcluster.Start(ctx, testcluster.Options{})
	if err != nil {
		return err
	}
	defer cluster.Stop()
	cfg := cluster.RESTConfig()
	cfg.QPS, cfg.Burst = 5000, 5000
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	for i := range namespaces {
		if err := cluster.EnsureNamespace(ctx, fmt.Sprintf("ns-%03d", i), nil); err != nil {
			return err
		}
	}
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{
					Name: fmt.Sprintf("app-%06d", i), Namespace: fmt.Sprintf("ns-%03d", i%namespaces),
					Labels: map[string]string{"app.kubernetes.io/name": fmt.Sprintf("app-%06d", i)}}}
				if i%100 == 0 {
					sa.Annotations = map[string]string{"eks.amazonaws.com/role-arn": fmt.Sprintf("arn:aws:iam::111122223333:role/app-%06d", i)}
				}
				if _, err := client.CoreV1().ServiceAccounts(sa.Namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return fmt.Errorf("creating ServiceAccounts: %w", err)
	}
	fmt.Printf("created %d ServiceAccounts in %s\n", n, time.Since(start).Round(time.Second))

	wh, err := harness.StartWebhook(ctx, harness.WebhookOptions{Binary: bin, Kubeconfig: cluster.Kubeconfig(),
		Namespace: "podiam-system", Dir: dir, Args: []string{"--profiling"}})
	if err != nil {
		return err
	}
	defer wh.Stop()
	want := float64(n + namespaces) // plus each namespace's default ServiceAccount
	deadline := time.Now().Add(5 * time.Minute)
	var m map[string]float64
	for {
		text, err := wh.Metrics(ctx)
		if err != nil {
			return err
		}
		m = parse(text)
		if m["podiam_webhook_serviceaccounts_cached"] >= want {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cache holds %v ServiceAccounts, want %v", m["podiam_webhook_serviceaccounts_cached"], want)
		}
		time.Sleep(500 * time.Millisecond)
	}
	// A heap profile with gc=1 forces a collection, so the numbers below are
	// what stays live, not the initial list's garbage.
	if err := forceGC(ctx, wh); err != nil {
		return err
	}
	text, err := wh.Metrics(ctx)
	if err != nil {
		return err
	}
	m = parse(text)
	mib := func(v float64) string { return strconv.FormatFloat(v/(1<<20), 'f', 1, 64) + " MiB" }
	fmt.Printf("cached ServiceAccounts %v\n", m["podiam_webhook_serviceaccounts_cached"])
	fmt.Printf("process RSS            %s\n", mib(m["process_resident_memory_bytes"]))
	fmt.Printf("Go heap in use         %s\n", mib(m["go_memstats_heap_inuse_bytes"]))
	fmt.Printf("Go heap allocated      %s\n", mib(m["go_memstats_heap_alloc_bytes"]))
	fmt.Printf("Go runtime total (sys) %s\n", mib(m["go_memstats_sys_bytes"]))
	return nil
}

func forceGC(ctx context.Context, wh *harness.Webhook) error {
	url := strings.Replace(wh.MetricsURL(), "/metrics", "/debug/pprof/heap?gc=1", 1)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("forcing a GC: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("forcing a GC: %s", resp.Status)
	}
	return nil
}

// parse reads unlabelled samples of a Prometheus text exposition.
func parse(text string) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || strings.Contains(line, "{") {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if v, err := strconv.ParseFloat(val, 64); err == nil {
			out[name] = v
		}
	}
	return out
}
