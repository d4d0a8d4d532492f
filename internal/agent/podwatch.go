package agent

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// PodWatchOptions configure a PodWatcher. Client, NodeName and Forget are
// required.
type PodWatchOptions struct {
	// Client lists and watches the pods (RBAC: list and watch on pods).
	Client kubernetes.Interface
	// NodeName is this node: only pods with spec.nodeName equal to it are
	// watched (a field selector, so the API server filters them).
	NodeName string
	// Forget is called with the UID of a pod of this node once it is deleted
	// or has finished (phase Succeeded or Failed); Handler.Forget.
	Forget func(podUID string)
	// Logger receives the watcher's logs; slog.Default() when nil.
	Logger *slog.Logger
}

// PodWatcher follows the pods of this node and calls Forget for each one
// that is gone, so that the agent drops its credentials instead of renewing
// them (Amazon's agent#171).
//
// It watches full pods, not metadata only: a pod that finished (a Job's, an
// evicted one) stays in the API server until it is deleted, and only its
// phase says that its containers will never ask again. Each pod is cut down
// to its name, UID and phase as it arrives (a transform), so the cache holds
// a few hundred bytes per pod, as a metadata-only one would.
type PodWatcher struct {
	informer cache.SharedIndexInformer
	forget   func(string)
	log      *slog.Logger
}

// NewPodWatcher returns a watcher; call Run to start it.
func NewPodWatcher(opts PodWatchOptions) (*PodWatcher, error) {
	if opts.Client == nil || opts.NodeName == "" || opts.Forget == nil {
		return nil, fmt.Errorf("pod watcher: Client, NodeName and Forget are required")
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	selector := fields.OneTermEqualSelector("spec.nodeName", opts.NodeName).String()
	pods := opts.Client.CoreV1().Pods(metav1.NamespaceAll)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, lo metav1.ListOptions) (runtime.Object, error) {
			lo.FieldSelector = selector
			return pods.List(ctx, lo)
		},
		WatchFuncWithContext: func(ctx context.Context, lo metav1.ListOptions) (watch.Interface, error) {
			lo.FieldSelector = selector
			return pods.Watch(ctx, lo)
		},
	}
	inf := cache.NewSharedIndexInformerWithOptions(lw, &corev1.Pod{}, cache.SharedIndexInformerOptions{})
	if err := inf.SetTransform(slimPod); err != nil {
		return nil, fmt.Errorf("pod watcher: %w", err)
	}
	w := &PodWatcher{informer: inf, forget: opts.Forget, log: log.With("node", opts.NodeName)}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { w.onChange(nil, obj) },
		UpdateFunc: w.onChange,
		DeleteFunc: w.onDelete,
	}); err != nil {
		return nil, fmt.Errorf("pod watcher: %w", err)
	}
	return w, nil
}

// Run lists and watches the pods until ctx is done. Call it once.
func (w *PodWatcher) Run(ctx context.Context) {
	logger := logr.FromSlogHandler(w.log.Handler())
	w.informer.RunWithContext(klog.NewContext(ctx, logger))
}

// HasSynced reports whether the first list of the node's pods is in; the
// agent's readiness waits for it.
func (w *PodWatcher) HasSynced() bool { return w.informer.HasSynced() }

// onChange forgets a pod that has just finished (or that had finished before
// the first list: forgetting is cheap and idempotent).
func (w *PodWatcher) onChange(oldObj, newObj any) {
	pod, ok := newObj.(*corev1.Pod)
	if !ok || !finished(pod) {
		return
	}
	if old, ok := oldObj.(*corev1.Pod); ok && finished(old) {
		return // already forgotten
	}
	w.log.Debug("forgetting a finished pod", "namespace", pod.Namespace, "pod", pod.Name, "uid", pod.UID, "phase", pod.Status.Phase)
	w.forget(string(pod.UID))
}

// onDelete forgets a deleted pod, also one whose deletion the watch missed
// (the informer's DeletedFinalStateUnknown after a relist).
func (w *PodWatcher) onDelete(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	w.log.Debug("forgetting a deleted pod", "namespace", pod.Namespace, "pod", pod.Name, "uid", pod.UID)
	w.forget(string(pod.UID))
}

// finished reports whether none of the pod's containers will run again.
func finished(pod *corev1.Pod) bool {
	return pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
}

// slimPod keeps only what the watcher reads (and what the informer needs:
// the key and resourceVersion).
func slimPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil // a DeletedFinalStateUnknown holds an already slim pod
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID, ResourceVersion: pod.ResourceVersion,
		},
		Status: corev1.PodStatus{Phase: pod.Status.Phase},
	}, nil
}
