package association

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"
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
			s := newStore(slog.New(slog.NewTextHandler(io.Discard, nil)), false, nil)
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

// TestStoreKeysOnly checks what each form keeps of an association: the full
// one everything `podiam auth` needs, the keys-only one (the webhook's) only
// what picking the winner needs.
func TestStoreKeysOnly(t *testing.T) {
	o := unstructuredPIA("ns", "a", "app", map[string]any{"roleArn": "arn:aws:iam::111122223333:role/a",
		"targetRoleArn": "arn:aws:iam::444455556666:role/t", "disableSessionTags": true, "policy": `{"Version":"2012-10-17"}`})
	o.SetUID("uid-a")
	o.SetCreationTimestamp(metav1.NewTime(t0))
	keys := Association{Namespace: "ns", Name: "a", UID: "uid-a", CreationTimestamp: t0.UTC(), ServiceAccount: "app"}
	full := keys
	full.RoleARN, full.TargetRoleARN, full.DisableSessionTags, full.Policy =
		"arn:aws:iam::111122223333:role/a", "arn:aws:iam::444455556666:role/t", true, `{"Version":"2012-10-17"}`
	tests := []struct {
		name     string
		keysOnly bool
		want     Association
	}{
		{name: "full", want: full},
		{name: "keys only", keysOnly: true, want: keys},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(slog.New(slog.DiscardHandler), tt.keysOnly, nil)
			for _, op := range []string{"add", "replace"} {
				var err error
				if op == "add" {
					err = s.Add(o)
				} else {
					err = s.Replace([]any{o}, "1")
				}
				if err != nil {
					t.Fatal(err)
				}
				got, ok := s.lookup("ns", "app")
				if !ok || *got != tt.want {
					t.Errorf("after %s: lookup = %+v, %v; want %+v", op, got, ok, tt.want)
				}
			}
		})
	}
}

// TestStoreGauge checks that the gauge follows every change of the number of
// associations held, those that lose for their ServiceAccount included.
func TestStoreGauge(t *testing.T) {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "associations"})
	s := newStore(slog.New(slog.DiscardHandler), true, g)
	steps := []struct {
		name string
		do   func() error
		want float64
	}{
		{"add", func() error { return s.Add(obj("ns", "a", "app", 0)) }, 1},
		{"add a loser", func() error { return s.Add(obj("ns", "b", "app", 1)) }, 2},
		{"update", func() error { return s.Update(obj("ns", "b", "web", 1)) }, 2},
		{"delete", func() error { return s.Delete(obj("ns", "a", "app", 0)) }, 1},
		{"tombstone", func() error {
			return s.Delete(cache.DeletedFinalStateUnknown{Key: "ns/b", Obj: obj("ns", "b", "web", 1)})
		}, 0},
		{"replace", func() error {
			return s.Replace([]any{obj("ns", "a", "app", 0), obj("ns", "b", "app", 1), obj("x", "c", "app", 2)}, "2")
		}, 3},
		{"clear", func() error { s.clear(); return nil }, 0},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got := promtestutil.ToFloat64(g); got != st.want {
			t.Errorf("after %s: gauge = %v; want %v", st.name, got, st.want)
		}
	}
}
