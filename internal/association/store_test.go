package association

import (
	"io"
	"log/slog"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/cache"
)

// obj is an association object created at t0+age seconds.
func obj(ns, name, sa string, age int) *unstructured.Unstructured {
	u := unstructuredPIA(ns, name, sa, map[string]any{"roleArn": "arn:aws:iam::111122223333:role/" + name})
	u.SetCreationTimestamp(metav1.NewTime(t0.Add(time.Duration(age) * time.Second)))
	return u
}

// TestStore plays reflector events and checks, after each, the winner of
// every ServiceAccount asked about ("" for none).
func TestStore(t *testing.T) {
	type step struct {
		op   string // add, update, delete, tombstone, replace
		objs []*unstructured.Unstructured
		want map[string]string // "ns/sa" -> winning association's name
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{name: "add and delete", steps: []step{
			{op: "add", objs: []*unstructured.Unstructured{obj("ns", "a", "app", 0)}, want: map[string]string{"ns/app": "a", "ns/other": "", "other/app": ""}},
			{op: "delete", objs: []*unstructured.Unstructured{obj("ns", "a", "app", 0)}, want: map[string]string{"ns/app": ""}},
		}},
		{name: "the older wins; deleting it promotes the newer", steps: []step{
			{op: "add", objs: []*unstructured.Unstructured{obj("ns", "new", "app", 5)}, want: map[string]string{"ns/app": "new"}},
			{op: "add", objs: []*unstructured.Unstructured{obj("ns", "old", "app", 1)}, want: map[string]string{"ns/app": "old"}},
			{op: "delete", objs: []*unstructured.Unstructured{obj("ns", "old", "app", 1)}, want: map[string]string{"ns/app": "new"}},
		}},
		{name: "an update that moves to another ServiceAccount", steps: []step{
			{op: "add", objs: []*unstructured.Unstructured{obj("ns", "a", "app", 0)}, want: map[string]string{"ns/app": "a"}},
			{op: "update", objs: []*unstructured.Unstructured{obj("ns", "a", "web", 0)}, want: map[string]string{"ns/app": "", "ns/web": "a"}},
		}},
		{name: "a tombstone", steps: []step{
			{op: "add", objs: []*unstructured.Unstructured{obj("ns", "a", "app", 0)}, want: map[string]string{"ns/app": "a"}},
			{op: "tombstone", objs: []*unstructured.Unstructured{obj("ns", "a", "app", 0)}, want: map[string]string{"ns/app": ""}},
		}},
		{name: "an invalid update removes the previous version", steps: []step{
			{op: "add", objs: []*unstructured.Unstructured{obj("ns", "a", "app", 0)}, want: map[string]string{"ns/app": "a"}},
			{op: "update", objs: []*unstructured.Unstructured{obj("ns", "a", "", 0)}, want: map[string]string{"ns/app": ""}},
		}},
		{name: "replace drops what the list lacks and skips invalid items", steps: []step{
			{op: "add", objs: []*unstructured.Unstructured{obj("ns", "gone", "app", 0)}, want: map[string]string{"ns/app": "gone"}},
			{op: "replace", objs: []*unstructured.Unstructured{obj("ns", "b", "web", 3), obj("ns", "bad", "", 0), obj("ns", "a", "web", 4), obj("x", "c", "app", 0)},
				want: map[string]string{"ns/app": "", "ns/web": "b", "x/app": "c"}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(slog.New(slog.NewTextHandler(io.Discard, nil)))
			for i, st := range tt.steps {
				var err error
				switch st.op {
				case "add":
					err = s.Add(st.objs[0])
				case "update":
					err = s.Update(st.objs[0])
				case "delete":
					err = s.Delete(st.objs[0])
				case "tombstone":
					err = s.Delete(cache.DeletedFinalStateUnknown{Key: "ns/" + st.objs[0].GetName(), Obj: st.objs[0]})
				case "replace":
					list := make([]any, len(st.objs))
					for j, o := range st.objs {
						list[j] = o
					}
					err = s.Replace(list, "1")
					if !s.synced.Load() {
						t.Errorf("step %d: not synced after Replace", i)
					}
				}
				if err != nil {
					t.Fatalf("step %d (%s): %v", i, st.op, err)
				}
				for key, want := range st.want {
					ns, sa, _ := cache.SplitMetaNamespaceKey(key)
					got, ok := s.lookup(ns, sa)
					if (want == "") == ok || (ok && got.Name != want) {
						t.Errorf("step %d (%s): lookup(%s) = %+v, %v; want %q", i, st.op, key, got, ok, want)
					}
				}
			}
		})
	}
}
