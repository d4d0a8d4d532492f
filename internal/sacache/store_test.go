package sacache

import (
	"fmt"
	"maps"
	"runtime"
	"slices"
	"testing"
	"unsafe"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
)

const (
	roleARN  = "eks.amazonaws.com/role-arn"
	audience = "eks.amazonaws.com/audience"
)

var wantedKeys = []string{roleARN, audience, "eks.amazonaws.com/sts-regional-endpoints",
	"eks.amazonaws.com/token-expiration", "eks.amazonaws.com/role-session-name", "eks.amazonaws.com/fs-group"}

// sa returns ServiceAccount metadata as the metadata client returns it.
func sa(namespace, name string, annotations map[string]string) *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
		ObjectMeta: metav1.ObjectMeta{
			Namespace:   namespace,
			Name:        name,
			Annotations: annotations,
		},
	}
}

// storeItems returns the store's content as "namespace/name" → annotations.
func storeItems(s *store) map[string]map[string]string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]map[string]string, len(s.items))
	for k, v := range s.items {
		out[k.String()] = v
	}
	return out
}

func TestFilter(t *testing.T) {
	tests := []struct {
		name   string
		wanted []string
		in     map[string]string
		want   map[string]string
	}{
		{name: "nil", wanted: wantedKeys, in: nil, want: nil},
		{name: "unrelated only", wanted: wantedKeys, in: map[string]string{"a": "b", "kubectl.kubernetes.io/last-applied-configuration": "{}"}, want: nil},
		{name: "some wanted", wanted: wantedKeys,
			in:   map[string]string{roleARN: "arn:aws:iam::1:role/r", "other": "x"},
			want: map[string]string{roleARN: "arn:aws:iam::1:role/r"}},
		{name: "empty value kept", wanted: wantedKeys, in: map[string]string{audience: ""}, want: map[string]string{audience: ""}},
		{name: "prefix is not enough", wanted: wantedKeys, in: map[string]string{"eks.amazonaws.com/other": "x"}, want: nil},
		{name: "duplicate and empty wanted keys", wanted: []string{roleARN, roleARN, ""},
			in:   map[string]string{roleARN: "r", "": "empty key"},
			want: map[string]string{roleARN: "r"}},
		{name: "no wanted keys", wanted: nil, in: map[string]string{roleARN: "r"}, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(tt.wanted, nil)
			got := s.filter(tt.in)
			if !maps.Equal(got, tt.want) || (got == nil) != (tt.want == nil) {
				t.Errorf("filter(%v) = %#v, want %#v", tt.in, got, tt.want)
			}
		})
	}
}

func TestStoreEvents(t *testing.T) {
	arn1 := map[string]string{roleARN: "arn1"}
	type op struct {
		kind string // add, update, delete, replace
		obj  any
		list []any
	}
	tests := []struct {
		name string
		ops  []op
		want map[string]map[string]string
	}{
		{
			name: "add keeps only wanted annotations",
			ops:  []op{{kind: "add", obj: sa("ns", "a", map[string]string{roleARN: "arn1", "x": "y"})}},
			want: map[string]map[string]string{"ns/a": arn1},
		},
		{
			name: "add without wanted annotations stores nil",
			ops:  []op{{kind: "add", obj: sa("ns", "a", map[string]string{"x": "y"})}},
			want: map[string]map[string]string{"ns/a": nil},
		},
		{
			name: "update changes annotations",
			ops: []op{
				{kind: "add", obj: sa("ns", "a", nil)},
				{kind: "update", obj: sa("ns", "a", map[string]string{roleARN: "arn1"})},
			},
			want: map[string]map[string]string{"ns/a": arn1},
		},
		{
			name: "update removes annotations",
			ops: []op{
				{kind: "add", obj: sa("ns", "a", map[string]string{roleARN: "arn1"})},
				{kind: "update", obj: sa("ns", "a", map[string]string{"x": "y"})},
			},
			want: map[string]map[string]string{"ns/a": nil},
		},
		{
			name: "delete",
			ops: []op{
				{kind: "add", obj: sa("ns", "a", nil)},
				{kind: "add", obj: sa("ns", "b", nil)},
				{kind: "delete", obj: sa("ns", "a", nil)},
			},
			want: map[string]map[string]string{"ns/b": nil},
		},
		{
			name: "delete of unknown is a no-op",
			ops:  []op{{kind: "add", obj: sa("ns", "a", nil)}, {kind: "delete", obj: sa("ns", "zz", nil)}},
			want: map[string]map[string]string{"ns/a": nil},
		},
		{
			name: "DeletedFinalStateUnknown by key",
			ops: []op{
				{kind: "add", obj: sa("ns", "a", arn1)},
				{kind: "delete", obj: cache.DeletedFinalStateUnknown{Key: "ns/a", Obj: sa("other", "wrong", nil)}},
			},
			want: map[string]map[string]string{},
		},
		{
			name: "DeletedFinalStateUnknown by object",
			ops: []op{
				{kind: "add", obj: sa("ns", "a", arn1)},
				{kind: "delete", obj: cache.DeletedFinalStateUnknown{Obj: sa("ns", "a", nil)}},
			},
			want: map[string]map[string]string{},
		},
		{
			name: "pointer to DeletedFinalStateUnknown",
			ops: []op{
				{kind: "add", obj: sa("ns", "a", arn1)},
				{kind: "delete", obj: &cache.DeletedFinalStateUnknown{Key: "ns/a"}},
			},
			want: map[string]map[string]string{},
		},
		{
			name: "replace drops everything else",
			ops: []op{
				{kind: "add", obj: sa("ns", "a", arn1)},
				{kind: "replace", list: []any{sa("ns", "b", nil), sa("ns2", "a", map[string]string{roleARN: "arn1", "x": "y"})}},
			},
			want: map[string]map[string]string{"ns/b": nil, "ns2/a": arn1},
		},
		{
			name: "replace with duplicates keeps the last",
			ops:  []op{{kind: "replace", list: []any{sa("ns", "a", nil), sa("ns", "a", arn1)}}},
			want: map[string]map[string]string{"ns/a": arn1},
		},
		{
			name: "cluster-scoped key",
			ops:  []op{{kind: "add", obj: sa("", "a", arn1)}},
			want: map[string]map[string]string{"/a": arn1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gauge := -1
			s := newStore(wantedKeys, func(n int) { gauge = n })
			for _, o := range tt.ops {
				var err error
				switch o.kind {
				case "add":
					err = s.Add(o.obj)
				case "update":
					err = s.Update(o.obj)
				case "delete":
					err = s.Delete(o.obj)
				case "replace":
					err = s.Replace(o.list, "7")
				default:
					t.Fatalf("bad op %q", o.kind)
				}
				if err != nil {
					t.Fatalf("%s(%v): %v", o.kind, o.obj, err)
				}
			}
			got := storeItems(s)
			if !maps.EqualFunc(got, tt.want, func(a, b map[string]string) bool {
				return maps.Equal(a, b) && (a == nil) == (b == nil)
			}) {
				t.Errorf("items = %v, want %v", got, tt.want)
			}
			if gauge != len(tt.want) {
				t.Errorf("onLen reported %d, want %d", gauge, len(tt.want))
			}
			if s.len() != len(tt.want) {
				t.Errorf("len() = %d, want %d", s.len(), len(tt.want))
			}
			// Every namespace in use is interned once with the right count.
			counts := map[string]int{}
			for k := range got {
				ns, _, _ := cache.SplitMetaNamespaceKey(k)
				counts[ns]++
			}
			s.mu.RLock()
			for ns, r := range s.ns {
				if r.n != counts[ns] || r.s != ns {
					t.Errorf("interned %q = %+v, want count %d", ns, r, counts[ns])
				}
			}
			if len(s.ns) != len(counts) {
				t.Errorf("interned namespaces %v, want %v", s.ns, counts)
			}
			s.mu.RUnlock()
		})
	}
}

func TestStoreErrors(t *testing.T) {
	s := newStore(wantedKeys, nil)
	for _, obj := range []any{"not an object", 42} {
		if err := s.Add(obj); err == nil {
			t.Errorf("Add(%v) succeeded", obj)
		}
		if err := s.Delete(obj); err == nil {
			t.Errorf("Delete(%v) succeeded", obj)
		}
		if err := s.Replace([]any{sa("ns", "a", nil), obj}, ""); err == nil {
			t.Errorf("Replace with %v succeeded", obj)
		}
	}
	if err := s.Delete(cache.DeletedFinalStateUnknown{Key: "a/b/c"}); err == nil {
		t.Error("Delete with a malformed key succeeded")
	}
	if s.len() != 0 || s.synced.Load() {
		t.Errorf("failed operations changed the store: len %d, synced %v", s.len(), s.synced.Load())
	}
}

func TestStoreSyncedOnFirstReplace(t *testing.T) {
	s := newStore(wantedKeys, nil)
	if err := s.Add(sa("ns", "a", nil)); err != nil {
		t.Fatal(err)
	}
	if s.synced.Load() {
		t.Fatal("synced before Replace")
	}
	if err := s.Replace(nil, "1"); err != nil {
		t.Fatal(err)
	}
	if !s.synced.Load() {
		t.Fatal("not synced after an empty Replace")
	}
}

func TestStoreValuesAreImmutable(t *testing.T) {
	s := newStore(wantedKeys, nil)
	if err := s.Add(sa("ns", "a", map[string]string{roleARN: "old"})); err != nil {
		t.Fatal(err)
	}
	got, _ := s.get(key{"ns", "a"})
	if err := s.Update(sa("ns", "a", map[string]string{roleARN: "new", audience: "aud"})); err != nil {
		t.Fatal(err)
	}
	if err := s.Replace([]any{sa("ns", "a", map[string]string{roleARN: "newer"})}, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(sa("ns", "a", nil)); err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{roleARN: "old"}; !maps.Equal(got, want) {
		t.Errorf("a returned map changed to %v, want %v", got, want)
	}
}

func TestStoreKeepsNoDecodedMemory(t *testing.T) {
	s := newStore(wantedKeys, nil)
	objs := []*metav1.PartialObjectMetadata{
		sa("team-a", "one", map[string]string{roleARN: "arn1"}),
		sa("team-a", "two", nil),
	}
	if err := s.Replace([]any{objs[0]}, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(objs[1]); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(objs[1]); err != nil { // overwrite an existing key
		t.Fatal(err)
	}
	inObject := func(p *byte) bool {
		for _, o := range objs {
			for _, str := range []string{o.Namespace, o.Name, o.Annotations[roleARN]} {
				if str != "" && unsafe.StringData(str) == p {
					return true
				}
			}
		}
		return false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var nsData []*byte
	for k, ann := range s.items {
		nsData = append(nsData, unsafe.StringData(k.namespace))
		if inObject(unsafe.StringData(k.namespace)) || inObject(unsafe.StringData(k.name)) {
			t.Errorf("key %v shares memory with the decoded object", k)
		}
		for _, v := range ann {
			if inObject(unsafe.StringData(v)) {
				t.Errorf("annotation value of %v shares memory with the decoded object", k)
			}
		}
	}
	if len(nsData) != 2 || nsData[0] != nsData[1] {
		t.Errorf("namespace strings are not shared: %v", nsData)
	}
}

func TestStoreFetch(t *testing.T) {
	arn := map[string]string{roleARN: "arn1"}
	tests := []struct {
		name    string
		before  func(s *store) // before beginFetch
		during  func(s *store) // between beginFetch and endFetch
		fetched *metav1.PartialObjectMetadata
		wantHit bool // beginFetch finds the key
		want    map[string]map[string]string
	}{
		{
			name:    "found is inserted",
			fetched: sa("ns", "a", map[string]string{roleARN: "arn1", "x": "y"}),
			want:    map[string]map[string]string{"ns/a": arn},
		},
		{
			name: "not found inserts nothing",
			want: map[string]map[string]string{},
		},
		{
			name:    "stored before the fetch is returned",
			before:  func(s *store) { _ = s.Add(sa("ns", "a", arn)) },
			wantHit: true,
			want:    map[string]map[string]string{"ns/a": arn},
		},
		{
			name:    "deleted by the watch during the fetch is not resurrected",
			during:  func(s *store) { _ = s.Add(sa("ns", "a", nil)); _ = s.Delete(sa("ns", "a", nil)) },
			fetched: sa("ns", "a", arn),
			want:    map[string]map[string]string{},
		},
		{
			name:    "watch event during the fetch wins",
			during:  func(s *store) { _ = s.Add(sa("ns", "a", nil)) },
			fetched: sa("ns", "a", arn),
			want:    map[string]map[string]string{"ns/a": nil},
		},
		{
			name:    "replace during the fetch wins",
			during:  func(s *store) { _ = s.Replace([]any{sa("ns", "b", nil)}, "") },
			fetched: sa("ns", "a", arn),
			want:    map[string]map[string]string{"ns/b": nil},
		},
		{
			name:    "events for other keys do not matter",
			during:  func(s *store) { _ = s.Add(sa("ns", "b", nil)); _ = s.Delete(sa("ns", "b", nil)) },
			fetched: sa("ns", "a", arn),
			want:    map[string]map[string]string{"ns/a": arn},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(wantedKeys, nil)
			k := key{"ns", "a"}
			if tt.before != nil {
				tt.before(s)
			}
			_, hit := s.beginFetch(k)
			if hit != tt.wantHit {
				t.Fatalf("beginFetch hit = %v, want %v", hit, tt.wantHit)
			}
			if !hit {
				if tt.during != nil {
					tt.during(s)
				}
				ann := s.endFetch(k, tt.fetched)
				if tt.fetched != nil && !maps.Equal(ann, s.filter(tt.fetched.Annotations)) {
					t.Errorf("endFetch returned %v", ann)
				}
			}
			if got := storeItems(s); !maps.EqualFunc(got, tt.want, maps.Equal) {
				t.Errorf("items = %v, want %v", got, tt.want)
			}
			if len(s.pending) != 0 {
				t.Errorf("pending not cleared: %v", s.pending)
			}
		})
	}
}

func TestStoreInterface(t *testing.T) {
	s := newStore(wantedKeys, nil)
	if err := s.Replace([]any{
		sa("ns", "a", map[string]string{roleARN: "arn1", "x": "y"}),
		sa("ns", "b", nil),
	}, "10"); err != nil {
		t.Fatal(err)
	}
	if rv := s.LastStoreSyncResourceVersion(); rv != "10" {
		t.Errorf("resource version after Replace = %q", rv)
	}
	obj := sa("ns", "c", nil)
	obj.ResourceVersion = "11"
	if err := s.Add(obj); err != nil {
		t.Fatal(err)
	}
	if rv := s.LastStoreSyncResourceVersion(); rv != "11" {
		t.Errorf("resource version after Add = %q", rv)
	}
	s.Bookmark("12")
	if rv := s.LastStoreSyncResourceVersion(); rv != "12" {
		t.Errorf("resource version after Bookmark = %q", rv)
	}
	if err := s.Resync(); err != nil {
		t.Errorf("Resync: %v", err)
	}

	keys := s.ListKeys()
	slices.Sort(keys)
	if want := []string{"ns/a", "ns/b", "ns/c"}; !slices.Equal(keys, want) {
		t.Errorf("ListKeys() = %v, want %v", keys, want)
	}
	if n := len(s.List()); n != 3 {
		t.Errorf("List() has %d items, want 3", n)
	}

	got, ok, err := s.GetByKey("ns/a")
	if err != nil || !ok {
		t.Fatalf("GetByKey(ns/a) = %v, %v, %v", got, ok, err)
	}
	m := got.(*metav1.PartialObjectMetadata)
	if m.Namespace != "ns" || m.Name != "a" || !maps.Equal(m.Annotations, map[string]string{roleARN: "arn1"}) {
		t.Errorf("GetByKey(ns/a) = %+v", m.ObjectMeta)
	}
	m.Annotations[roleARN] = "mutated" // must not reach the store
	if ann, _ := s.get(key{"ns", "a"}); ann[roleARN] != "arn1" {
		t.Errorf("mutating a returned object changed the store: %v", ann)
	}
	if _, ok, err := s.Get(sa("ns", "b", nil)); !ok || err != nil {
		t.Errorf("Get(ns/b) = %v, %v", ok, err)
	}
	if _, ok, err := s.GetByKey("ns/missing"); ok || err != nil {
		t.Errorf("GetByKey(ns/missing) = %v, %v", ok, err)
	}
	if _, _, err := s.GetByKey("a/b/c"); err == nil {
		t.Error("GetByKey with a malformed key succeeded")
	}
}

func TestTransform(t *testing.T) {
	s := newStore(wantedKeys, nil)
	in := sa("ns", "a", map[string]string{roleARN: "arn1", "x": "y"})
	in.ResourceVersion = "5"
	in.UID = types.UID("uid")
	in.Labels = map[string]string{"l": "v"}
	in.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	out, err := s.Transformer()(in)
	if err != nil {
		t.Fatal(err)
	}
	m := out.(*metav1.PartialObjectMetadata)
	want := sa("ns", "a", map[string]string{roleARN: "arn1"})
	want.ResourceVersion = "5"
	if m.Namespace != want.Namespace || m.Name != want.Name || m.ResourceVersion != want.ResourceVersion ||
		m.TypeMeta != want.TypeMeta || !maps.Equal(m.Annotations, want.Annotations) ||
		m.UID != "" || m.Labels != nil || m.ManagedFields != nil {
		t.Errorf("transform = %+v", m)
	}
	// Other objects pass through.
	if out, err := s.Transformer()("x"); out != "x" || err != nil {
		t.Errorf("transform(x) = %v, %v", out, err)
	}
}

// fill100k returns the Replace list of a realistic cluster: 100,000
// ServiceAccounts in 100 namespaces, 1% of them with a role ARN, each with the
// metadata a real ServiceAccount has.
func fill100k() []any {
	const total, namespaces = 100_000, 100
	list := make([]any, 0, total)
	for i := range total {
		o := sa(fmt.Sprintf("ns-%03d", i%namespaces), fmt.Sprintf("app-%06d", i), nil)
		o.UID = types.UID(fmt.Sprintf("6f1c2b4e-0000-4000-8000-%012d", i))
		o.ResourceVersion = fmt.Sprint(1000 + i)
		o.CreationTimestamp = metav1.Unix(1700000000, 0)
		o.Labels = map[string]string{"app.kubernetes.io/name": o.Name}
		if i%100 == 0 {
			o.Annotations = map[string]string{
				roleARN: fmt.Sprintf("arn:aws:iam::123456789012:role/app-%06d", i),
				"kubectl.kubernetes.io/last-applied-configuration": `{"apiVersion":"v1","kind":"ServiceAccount"}`,
			}
		}
		list = append(list, o)
	}
	return list
}

// heapAlloc returns the live heap after a full collection.
func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// measure100k fills a store with fill100k through Replace, the reflector's path,
// and returns the heap bytes the store holds afterwards. The input objects are
// garbage once Replace returns, so they are not counted; if the store kept any of
// their memory, that would be.
func measure100k(tb testing.TB) float64 {
	base := heapAlloc()
	s := newStore(wantedKeys, nil)
	if err := s.Replace(fill100k(), "1"); err != nil {
		tb.Fatal(err)
	}
	used := float64(heapAlloc()) - float64(base)
	if n := s.len(); n != 100_000 {
		tb.Fatalf("store has %d items", n)
	}
	runtime.KeepAlive(s)
	return used
}

// TestCacheMemory100k checks the memory target: 100,000 ServiceAccounts in at most
// 40 MiB of heap.
func TestCacheMemory100k(t *testing.T) {
	if testing.Short() {
		t.Skip("fills 100,000 entries")
	}
	const limit = 40 << 20
	used := measure100k(t)
	t.Logf("cache heap: %.1f MiB for 100,000 ServiceAccounts (%.0f B each)", used/(1<<20), used/100_000)
	if used > limit {
		t.Errorf("cache takes %.1f MiB, want at most %d MiB", used/(1<<20), limit>>20)
	}
}

// BenchmarkCacheMemory100k reports the heap held by a cache of 100,000
// ServiceAccounts (1% annotated) in MiB and in bytes per ServiceAccount.
func BenchmarkCacheMemory100k(b *testing.B) {
	var total float64
	for range b.N {
		total += measure100k(b)
	}
	b.ReportMetric(total/float64(b.N)/(1<<20), "heap-MiB")
	b.ReportMetric(total/float64(b.N)/100_000, "heap-B/sa")
}
