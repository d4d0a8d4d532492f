package agent

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/podiam/podiam/test/testcluster"
	"github.com/podiam/podiam/test/testutil"
)

// forgotten records the UIDs a PodWatcher forgets.
type forgotten struct {
	mu   sync.Mutex
	uids []string
}

func (f *forgotten) forget(uid string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.uids = append(f.uids, uid)
}

func (f *forgotten) has(uid types.UID) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Contains(f.uids, string(uid))
}

func (f *forgotten) list() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.uids)
}

// TestPodWatcherForgetsThisNodesPods runs against a real API server: the
// watcher of node-a forgets a pod of node-a once it is deleted or has
// finished, never a running pod, nor any pod of node-b.
func TestPodWatcherForgetsThisNodesPods(t *testing.T) {
	c := testcluster.StartForTest(t, testcluster.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	ns := testutil.UniqueName("podwatch")
	if err := c.EnsureNamespace(ctx, ns, nil); err != nil {
		t.Fatal(err)
	}
	// The ServiceAccount admission plugin wants the pods' ServiceAccount to
	// exist; there is no controller manager to create "default".
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "app"}}
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	create := func(name, node string) *corev1.Pod {
		t.Helper()
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PodSpec{
				ServiceAccountName: "app", NodeName: node,
				Containers: []corev1.Container{{Name: "app", Image: "registry.example/app"}},
			},
		}
		got, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("creating pod %s: %v", name, err)
		}
		return got
	}
	// No kubelet finishes a graceful deletion: delete at once.
	del := func(p *corev1.Pod) {
		t.Helper()
		if err := cs.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
			t.Fatalf("deleting pod %s: %v", p.Name, err)
		}
	}

	running := create("running", "node-a")
	deleted := create("deleted", "node-a")
	finishing := create("finishing", "node-a")
	otherDeleted := create("other-deleted", "node-b")
	otherFinishing := create("other-finishing", "node-b")

	var got forgotten
	w := startPodWatcher(t, cs, "node-a", got.forget)
	testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, "the pod watcher to sync", w.HasSynced)
	if l := got.list(); len(l) != 0 {
		t.Fatalf("forgotten before anything happened: %q", l)
	}

	// node-b's changes first: once node-a's later ones have arrived,
	// node-b's would have too, had the watcher seen them.
	setPhase(t, ctx, cs, otherFinishing, corev1.PodFailed)
	del(otherDeleted)
	setPhase(t, ctx, cs, finishing, corev1.PodSucceeded)
	del(deleted)
	testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, "node-a's deleted and finished pods to be forgotten", func() (bool, string) {
		return got.has(deleted.UID) && got.has(finishing.UID), "forgotten " + strings.Join(got.list(), ",")
	})

	// An update of the finished pod does not forget it again.
	setPhase(t, ctx, cs, finishing, corev1.PodSucceeded)
	del(finishing)
	testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, "the finished pod's deletion", func() bool { return len(got.list()) >= 3 })

	for _, p := range []*corev1.Pod{running, otherDeleted, otherFinishing} {
		if got.has(p.UID) {
			t.Errorf("pod %s (node %s) was forgotten", p.Name, p.Spec.NodeName)
		}
	}
	if want := []string{string(finishing.UID), string(deleted.UID), string(finishing.UID)}; !slices.Equal(got.list(), want) {
		t.Errorf("forgotten %q, want %q (finished, deleted, the finished one deleted)", got.list(), want)
	}
}

// startPodWatcher runs a watcher of node until the test ends.
func startPodWatcher(t *testing.T, cs kubernetes.Interface, node string, forget func(string)) *PodWatcher {
	t.Helper()
	w, err := NewPodWatcher(PodWatchOptions{Client: cs, NodeName: node, Forget: forget})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return w
}

// setPhase writes pod's phase, as its kubelet would.
func setPhase(t *testing.T, ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod, phase corev1.PodPhase) {
	t.Helper()
	p, err := cs.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Status.Phase = phase
	// A later, unrelated status change, so that an update is sent even when
	// the phase is unchanged.
	p.Status.Message = time.Now().Format(time.RFC3339Nano)
	if _, err := cs.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("setting pod %s's phase to %s: %v", pod.Name, phase, err)
	}
}

// The event handlers, fed what an informer hands them (pure logic: the
// tombstone of a deletion the watch missed cannot be provoked reliably in a
// real API server).
func TestPodWatcherEvents(t *testing.T) {
	pod := func(uid string, phase corev1.PodPhase) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p-" + uid, UID: types.UID(uid)},
			Status: corev1.PodStatus{Phase: phase}}
	}
	tests := []struct {
		name  string
		event func(w *PodWatcher)
		want  []string
	}{
		{"add running", func(w *PodWatcher) { w.onChange(nil, pod("1", corev1.PodRunning)) }, nil},
		{"add finished", func(w *PodWatcher) { w.onChange(nil, pod("1", corev1.PodFailed)) }, []string{"1"}},
		{"update to succeeded", func(w *PodWatcher) { w.onChange(pod("1", corev1.PodRunning), pod("1", corev1.PodSucceeded)) }, []string{"1"}},
		{"update to failed", func(w *PodWatcher) { w.onChange(pod("1", corev1.PodPending), pod("1", corev1.PodFailed)) }, []string{"1"}},
		{"update of a finished pod", func(w *PodWatcher) { w.onChange(pod("1", corev1.PodFailed), pod("1", corev1.PodFailed)) }, nil},
		{"update while running", func(w *PodWatcher) { w.onChange(pod("1", corev1.PodPending), pod("1", corev1.PodRunning)) }, nil},
		{"delete", func(w *PodWatcher) { w.onDelete(pod("2", corev1.PodRunning)) }, []string{"2"}},
		{"delete missed by the watch", func(w *PodWatcher) {
			w.onDelete(cache.DeletedFinalStateUnknown{Key: "ns/p-3", Obj: pod("3", corev1.PodRunning)})
		}, []string{"3"}},
		{"not a pod", func(w *PodWatcher) { w.onDelete(cache.DeletedFinalStateUnknown{Key: "ns/x"}); w.onChange(nil, "x") }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got forgotten
			w := &PodWatcher{forget: got.forget, log: slog.New(slog.DiscardHandler)}
			tt.event(w)
			if !slices.Equal(got.list(), tt.want) {
				t.Errorf("forgotten %q, want %q", got.list(), tt.want)
			}
		})
	}
}

// The cached pod keeps only what the watcher reads.
func TestSlimPod(t *testing.T) {
	full := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: "u", ResourceVersion: "7",
			Labels: map[string]string{"a": "b"}, Annotations: map[string]string{"c": "d"}},
		Spec:   corev1.PodSpec{NodeName: "n", Containers: []corev1.Container{{Name: "app"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1"},
	}
	got, err := slimPod(full)
	if err != nil {
		t.Fatal(err)
	}
	want := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: "u", ResourceVersion: "7"},
		Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	if p := got.(*corev1.Pod); p.Name != want.Name || p.Namespace != want.Namespace || p.UID != want.UID ||
		p.ResourceVersion != want.ResourceVersion || p.Status.Phase != want.Status.Phase ||
		p.Labels != nil || p.Annotations != nil || len(p.Spec.Containers) != 0 || p.Status.PodIP != "" {
		t.Errorf("slimPod = %+v, want %+v", p, want)
	}
	tomb := cache.DeletedFinalStateUnknown{Key: "ns/p"}
	if got, _ := slimPod(tomb); got != tomb {
		t.Errorf("slimPod(tombstone) = %v, want it unchanged", got)
	}
}
