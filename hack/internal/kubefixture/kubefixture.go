// Package kubefixture sets up what the programs under hack/ run podiam
// against on a real control plane (test/testcluster): the
// PodIdentityAssociation CRD, Nodes, ServiceAccounts, pods bound to a node
// that nothing schedules or runs, and their tokens from the TokenRequest API
// as the kubelet projects them; and it starts the podiam processes under
// test, their output in a log file, and waits for them to be ready.
package kubefixture

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/podiam/podiam/test/harness"
	"github.com/podiam/podiam/test/testutil"
)

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// InstallCRD applies deploy/crd's PodIdentityAssociation CRD with
// server-side apply as fieldManager and waits, up to a minute, until it is
// established.
func InstallCRD(ctx context.Context, cfg *rest.Config, fieldManager string) error {
	root, err := testutil.ModuleRoot()
	if err != nil {
		return err
	}
	path := filepath.Join(root, "deploy/crd/podiam.dev_podidentityassociations.yaml")
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	crd := &unstructured.Unstructured{}
	if err := utilyaml.NewYAMLOrJSONDecoder(f, 4096).Decode(&crd.Object); err != nil {
		return fmt.Errorf("decoding %s: %w", path, err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	crds := dyn.Resource(crdGVR)
	if _, err := crds.Apply(ctx, crd.GetName(), crd, metav1.ApplyOptions{FieldManager: fieldManager, Force: true}); err != nil {
		return fmt.Errorf("applying CRD %s: %w", crd.GetName(), err)
	}
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		got, err := crds.Get(ctx, crd.GetName(), metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
		for _, c := range conds {
			if m, _ := c.(map[string]any); m["type"] == "Established" && m["status"] == "True" {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("CRD %s not established: %w", crd.GetName(), err)
	}
	return nil
}

// CreateNode creates a Node object, so that tokens bound to a pod on it
// name the node, as on a real cluster.
func CreateNode(ctx context.Context, client kubernetes.Interface, name string) error {
	if _, err := client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating node %s: %w", name, err)
	}
	return nil
}

// CreateServiceAccount creates ServiceAccount ns/name, without annotations.
func CreateServiceAccount(ctx context.Context, client kubernetes.Interface, ns, name string) error {
	_, err := client.CoreV1().ServiceAccounts(ns).Create(ctx,
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("creating ServiceAccount %s/%s: %w", ns, name, err)
	}
	return nil
}

// CreatePod creates pod ns/name of ServiceAccount sa bound to node
// (spec.nodeName: nothing schedules or runs it) and returns it as created,
// with its UID.
func CreatePod(ctx context.Context, client kubernetes.Interface, ns, name, sa, node string) (*corev1.Pod, error) {
	p, err := client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{
			NodeName: node, ServiceAccountName: sa, AutomountServiceAccountToken: ptr.To(false),
			Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("creating pod %s/%s: %w", ns, name, err)
	}
	return p, nil
}

// BoundToken asks the TokenRequest API for a one-hour token of pod's
// ServiceAccount with audience, bound to the pod, as the kubelet projects
// it.
func BoundToken(ctx context.Context, client kubernetes.Interface, pod *corev1.Pod, audience string) (string, error) {
	tr, err := client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, pod.Spec.ServiceAccountName, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			Audiences:         []string{audience},
			ExpirationSeconds: ptr.To[int64](3600),
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("TokenRequest for %s/%s bound to pod %s: %w", pod.Namespace, pod.Spec.ServiceAccountName, pod.Name, err)
	}
	return tr.Status.Token, nil
}

// WriteBoundToken writes pod's BoundToken with audience to path (0600), as
// the kubelet writes a projected token for the pod to read.
func WriteBoundToken(ctx context.Context, client kubernetes.Interface, pod *corev1.Pod, audience, path string) error {
	token, err := BoundToken(ctx, client, pod, audience)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(token), 0o600); err != nil {
		return fmt.Errorf("writing the token of pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return nil
}

// Parallel runs f(0..n-1) on at most workers goroutines and returns the
// first error; after an error, the goroutine that met it takes no more.
// It bounds concurrent API requests while creating many objects.
func Parallel(n, workers int, f func(i int) error) error {
	var next atomic.Int64
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for range min(n, workers) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

// StartLogged starts bin (podiam, or a wrapper that execs it, such as
// taskset) with env and args, writing its output to the file logPath.
func StartLogged(bin, logPath string, env []string, args ...string) (*harness.Process, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("creating the log file: %w", err)
	}
	defer logf.Close() // the child has its own descriptor
	return harness.StartPodiam(bin, logf, env, args...)
}

// WriteLogTail writes the last 6 KiB of what's log, the file path, to w;
// nothing when there is no such file.
func WriteLogTail(w io.Writer, what, path string) {
	if path == "" {
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	if len(b) > 6<<10 {
		b = b[len(b)-6<<10:]
	}
	fmt.Fprintf(w, "--- end of the %s log (%s):\n%s\n", what, path, b)
}

// WaitReady polls url every 50 ms until it answers 200, for up to timeout;
// it fails at once when p, named what, exits.
func WaitReady(ctx context.Context, p *harness.Process, url, what string, timeout time.Duration) error {
	exited := false
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		select {
		case <-p.Exited():
			exited = true
			return false, fmt.Errorf("%s exited with status %d", what, p.ExitCode())
		default:
		}
		code, _, err := Get(ctx, url)
		return err == nil && code == http.StatusOK, nil
	})
	if err != nil && !exited {
		err = fmt.Errorf("%s not ready at %s: %w", what, url, err)
	}
	return err
}

// Get fetches url and returns its status and body.
func Get(ctx context.Context, url string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}
