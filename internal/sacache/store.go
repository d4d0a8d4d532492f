package sacache

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

// key identifies a ServiceAccount. The namespace string is interned by the store,
// so the many ServiceAccounts of one namespace share its bytes.
type key struct {
	namespace, name string
}

// String returns the cache.Store key "namespace/name".
func (k key) String() string { return k.namespace + "/" + k.name }

// nsRef is an interned namespace string and the number of items that use it.
type nsRef struct {
	s string
	n int
}

// store is a compact cache.Store of ServiceAccounts fed by a cache.Reflector. It keeps
// only each ServiceAccount's namespace, name and wanted annotations: the value is nil
// for a ServiceAccount without any wanted annotation, and otherwise a small map that
// is never modified once stored (updates replace it), so it can be handed out without
// copying.
//
// The reflector calls Add, Update, Delete, Replace and Resync from one goroutine;
// direct API lookups insert concurrently through beginFetch/endFetch.
type store struct {
	// wanted lists the annotation keys to keep. Its strings are the ones stored as
	// map keys, so kept annotations never hold a private copy of their key.
	wanted []string
	// onLen, if set, is called with the new item count after every change, with
	// the lock held (it feeds a gauge).
	onLen func(int)

	synced atomic.Bool

	mu    sync.RWMutex
	items map[key]map[string]string
	ns    map[string]nsRef
	// pending holds the keys being looked up in the API server. The value turns true
	// when the reflector changes the key (or replaces everything) during the lookup;
	// the lookup's result is then older than or equal to what the reflector knows
	// and must not be inserted (it could resurrect a deleted ServiceAccount).
	pending map[key]bool
	// rv is the latest resource version seen (cache.Store's
	// LastStoreSyncResourceVersion).
	rv string
}

var (
	_ cache.Store             = (*store)(nil)
	_ cache.TransformingStore = (*store)(nil)
)

func newStore(wanted []string, onLen func(int)) *store {
	w := make([]string, 0, len(wanted))
	seen := make(map[string]bool, len(wanted))
	for _, k := range wanted {
		if k != "" && !seen[k] {
			seen[k] = true
			w = append(w, k)
		}
	}
	return &store{
		wanted:  w,
		onLen:   onLen,
		items:   map[key]map[string]string{},
		ns:      map[string]nsRef{},
		pending: map[key]bool{},
	}
}

// filter returns the wanted annotations of all, or nil if there are none. Values are
// copied so that the result does not keep the decoded object's memory alive.
func (s *store) filter(all map[string]string) map[string]string {
	if len(all) == 0 {
		return nil
	}
	n := 0
	for _, k := range s.wanted {
		if _, ok := all[k]; ok {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	out := make(map[string]string, n)
	for _, k := range s.wanted {
		if v, ok := all[k]; ok {
			out[k] = strings.Clone(v)
		}
	}
	return out
}

// decode extracts the key and wanted annotations from a ServiceAccount object. The
// key's strings are not interned yet.
func (s *store) decode(obj any) (key, map[string]string, error) {
	if m, ok := obj.(*metav1.PartialObjectMetadata); ok {
		return key{m.Namespace, m.Name}, s.filter(m.Annotations), nil
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return key{}, nil, fmt.Errorf("sacache: unexpected object %T: %w", obj, err)
	}
	return key{m.GetNamespace(), m.GetName()}, s.filter(m.GetAnnotations()), nil
}

// resourceVersion returns the resource version of obj, or "" if it has none.
func resourceVersion(obj any) string {
	switch o := obj.(type) {
	case *metav1.PartialObjectMetadata:
		return o.ResourceVersion
	case cache.DeletedFinalStateUnknown, *cache.DeletedFinalStateUnknown:
		return ""
	}
	if m, err := meta.Accessor(obj); err == nil {
		return m.GetResourceVersion()
	}
	return ""
}

// setRVLocked records rv as the latest resource version if it is not empty.
// s.mu must be held for writing.
func (s *store) setRVLocked(rv string) {
	if rv != "" {
		s.rv = rv
	}
}

// objectKey returns the key of obj, which may be a cache.DeletedFinalStateUnknown.
func objectKey(obj any) (key, error) {
	switch o := obj.(type) {
	case cache.DeletedFinalStateUnknown:
		if o.Key != "" {
			return parseKey(o.Key)
		}
		return objectKey(o.Obj)
	case *cache.DeletedFinalStateUnknown:
		return objectKey(*o)
	case *metav1.PartialObjectMetadata:
		return key{o.Namespace, o.Name}, nil
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return key{}, fmt.Errorf("sacache: unexpected object %T: %w", obj, err)
	}
	return key{m.GetNamespace(), m.GetName()}, nil
}

func parseKey(s string) (key, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(s)
	if err != nil {
		return key{}, err
	}
	return key{ns, name}, nil
}

// intern returns the shared copy of namespace in table, counting one more user.
func intern(table map[string]nsRef, namespace string) string {
	r, ok := table[namespace]
	if !ok {
		r.s = strings.Clone(namespace)
	}
	r.n++
	table[r.s] = r
	return r.s
}

// release counts one user less of the interned namespace and forgets it at zero.
func release(table map[string]nsRef, namespace string) {
	r, ok := table[namespace]
	if !ok {
		return
	}
	if r.n--; r.n <= 0 {
		delete(table, namespace)
		return
	}
	table[namespace] = r
}

// put stores ann under k in items, interning the namespace through table.
// It is used with s.mu held for writing, or on maps not yet published.
func put(items map[key]map[string]string, table map[string]nsRef, k key, ann map[string]string) {
	// Assigning to an existing key also overwrites the stored key's strings, so the
	// key is always made compact first; only a new key counts as a namespace user.
	if _, ok := items[k]; ok {
		k.namespace = table[k.namespace].s
	} else {
		k.namespace = intern(table, k.namespace)
	}
	k.name = strings.Clone(k.name)
	items[k] = ann
}

// reflectorChangedLocked records that the reflector changed k with obj: a
// lookup of k in flight must not insert its older result, and obj's resource
// version is the latest seen. s.mu must be held for writing.
func (s *store) reflectorChangedLocked(k key, obj any) {
	s.setRVLocked(resourceVersion(obj))
	if len(s.pending) == 0 {
		return
	}
	if _, ok := s.pending[k]; ok {
		s.pending[k] = true
	}
}

func (s *store) lenChangedLocked() {
	if s.onLen != nil {
		s.onLen(len(s.items))
	}
}

// Add inserts or replaces a ServiceAccount.
func (s *store) Add(obj any) error {
	k, ann, err := s.decode(obj)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reflectorChangedLocked(k, obj)
	put(s.items, s.ns, k, ann)
	s.lenChangedLocked()
	return nil
}

// Update is Add.
func (s *store) Update(obj any) error { return s.Add(obj) }

// Delete removes a ServiceAccount; obj may be a cache.DeletedFinalStateUnknown.
func (s *store) Delete(obj any) error {
	k, err := objectKey(obj)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reflectorChangedLocked(k, obj)
	if _, ok := s.items[k]; ok {
		delete(s.items, k)
		release(s.ns, k.namespace)
		s.lenChangedLocked()
	}
	return nil
}

// Replace swaps the whole content for list in one step: the new map is built
// without the lock, so lookups are not blocked while a large list is converted.
// The first Replace marks the store as synced.
func (s *store) Replace(list []any, rv string) error {
	items := make(map[key]map[string]string, len(list))
	ns := make(map[string]nsRef)
	for _, obj := range list {
		k, ann, err := s.decode(obj)
		if err != nil {
			return err
		}
		put(items, ns, k, ann)
	}
	s.mu.Lock()
	s.items, s.ns = items, ns
	s.setRVLocked(rv)
	for k := range s.pending {
		s.pending[k] = true
	}
	s.lenChangedLocked()
	s.mu.Unlock()
	s.synced.Store(true)
	return nil
}

// Bookmark records rv as the latest resource version seen.
func (s *store) Bookmark(rv string) {
	s.mu.Lock()
	s.setRVLocked(rv)
	s.mu.Unlock()
}

// LastStoreSyncResourceVersion returns the latest resource version seen.
func (s *store) LastStoreSyncResourceVersion() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.rv
}

// Resync does nothing: there are no event handlers to replay to.
func (s *store) Resync() error { return nil }

// Transformer strips objects to the kept fields before the reflector buffers them
// (during a streaming initial list), so the peak memory of a sync stays small.
func (s *store) Transformer() cache.TransformFunc { return s.transform }

func (s *store) transform(obj any) (any, error) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj, nil
	}
	return &metav1.PartialObjectMetadata{
		TypeMeta: m.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Namespace:       m.Namespace,
			Name:            m.Name,
			ResourceVersion: m.ResourceVersion,
			Annotations:     s.filter(m.Annotations),
		},
	}, nil
}

// get returns the wanted annotations of k and whether k is stored. It does not
// allocate.
func (s *store) get(k key) (map[string]string, bool) {
	s.mu.RLock()
	ann, ok := s.items[k]
	s.mu.RUnlock()
	return ann, ok
}

func (s *store) len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.items)
}

// beginFetch is called before looking k up in the API server. If k was stored
// meanwhile it returns its annotations and true; otherwise it registers k as
// pending, and the caller must call endFetch.
func (s *store) beginFetch(k key) (map[string]string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ann, ok := s.items[k]; ok {
		return ann, true
	}
	s.pending[k] = false
	return nil, false
}

// endFetch ends the lookup of k. If obj is not nil (the ServiceAccount was found)
// and the reflector has not changed k during the lookup, obj is stored, so later
// pods hit the cache; the reflector's own events stay authoritative. It returns the
// wanted annotations of obj.
func (s *store) endFetch(k key, obj *metav1.PartialObjectMetadata) map[string]string {
	var ann map[string]string
	if obj != nil {
		ann = s.filter(obj.Annotations)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	touched := s.pending[k]
	delete(s.pending, k)
	if obj == nil || touched {
		return ann
	}
	if _, ok := s.items[k]; !ok {
		put(s.items, s.ns, k, ann)
		s.lenChangedLocked()
	}
	return ann
}

func (s *store) object(k key, ann map[string]string) *metav1.PartialObjectMetadata {
	var a map[string]string
	if ann != nil {
		a = make(map[string]string, len(ann))
		for k, v := range ann {
			a[k] = v
		}
	}
	return &metav1.PartialObjectMetadata{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
		ObjectMeta: metav1.ObjectMeta{Namespace: k.namespace, Name: k.name, Annotations: a},
	}
}

// List returns the stored ServiceAccounts as *metav1.PartialObjectMetadata.
func (s *store) List() []any {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]any, 0, len(s.items))
	for k, ann := range s.items {
		out = append(out, s.object(k, ann))
	}
	return out
}

// ListKeys returns the "namespace/name" keys of the stored ServiceAccounts.
func (s *store) ListKeys() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]string, 0, len(s.items))
	for k := range s.items {
		out = append(out, k.String())
	}
	return out
}

// Get returns the stored ServiceAccount with the key of obj.
func (s *store) Get(obj any) (any, bool, error) {
	k, err := objectKey(obj)
	if err != nil {
		return nil, false, err
	}
	return s.getObject(k)
}

// GetByKey returns the stored ServiceAccount with key "namespace/name".
func (s *store) GetByKey(k string) (any, bool, error) {
	pk, err := parseKey(k)
	if err != nil {
		return nil, false, err
	}
	return s.getObject(pk)
}

func (s *store) getObject(k key) (any, bool, error) {
	ann, ok := s.get(k)
	if !ok {
		return nil, false, nil
	}
	return s.object(k, ann), true, nil
}
