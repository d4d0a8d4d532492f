package association

import (
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/tools/cache"
)

// saKey identifies a ServiceAccount.
type saKey struct{ namespace, name string }

// store is the cache.ReflectorStore of the watcher: the reduced associations
// by "namespace/name", and for each ServiceAccount its candidates and the
// winner, recomputed on every change of one of them so a lookup is one map
// read. The reflector calls it from one goroutine; lookups run concurrently.
type store struct {
	log      *slog.Logger
	keysOnly bool             // keep only what picking the winner needs (see Options.KeysOnly)
	gauge    prometheus.Gauge // set to the number of associations held; may be nil
	synced   atomic.Bool      // the first Replace (the initial list) is done

	mu      sync.RWMutex
	items   map[string]*Association
	bySA    map[saKey][]*Association
	winners map[saKey]*Association
}

var _ cache.ReflectorStore = (*store)(nil)

func newStore(log *slog.Logger, keysOnly bool, gauge prometheus.Gauge) *store {
	s := &store{log: log, keysOnly: keysOnly, gauge: gauge}
	s.reset()
	return s
}

// decode reduces obj as the store keeps it.
func (s *store) decode(obj any) (*Association, error) {
	a, err := decode(obj)
	if err == nil && s.keysOnly {
		a = a.keys()
	}
	return a, err
}

// reportLocked sets the gauge; under the lock, so that concurrent changes
// report in the order they were made.
func (s *store) reportLocked() {
	if s.gauge != nil {
		s.gauge.Set(float64(len(s.items)))
	}
}

func (s *store) reset() {
	s.items = map[string]*Association{}
	s.bySA = map[saKey][]*Association{}
	s.winners = map[saKey]*Association{}
}

// lookup returns the winning association of namespace/serviceAccount.
func (s *store) lookup(namespace, serviceAccount string) (*Association, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	a, ok := s.winners[saKey{namespace, serviceAccount}]
	return a, ok
}

func (s *store) len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.items)
}

// Add stores obj. An object that cannot be decoded is logged and dropped
// rather than returned as an error: the reflector would only log it too, and
// a bad object must not keep the good ones from being served.
func (s *store) Add(obj any) error {
	a, err := s.decode(obj)
	if err != nil {
		s.log.Warn("ignoring PodIdentityAssociation", "err", err)
		// Whatever the key held before no longer applies.
		return s.Delete(obj)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.removeLocked(a.Key())
	s.putLocked(a)
	s.reportLocked()
	return nil
}

// Update stores obj in place of its previous version.
func (s *store) Update(obj any) error { return s.Add(obj) }

// Delete forgets obj, which may be a cache.DeletedFinalStateUnknown.
func (s *store) Delete(obj any) error {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
		if d.Key != "" {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.removeLocked(d.Key)
			s.reportLocked()
			return nil
		}
	}
	k, err := cache.MetaNamespaceKeyFunc(obj)
	if err != nil {
		s.log.Warn("ignoring deletion of an unexpected object", "err", err)
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.removeLocked(k)
	s.reportLocked()
	return nil
}

// Replace swaps the whole content for list (a fresh list from the API server).
func (s *store) Replace(list []any, _ string) error {
	s.mu.Lock()
	s.reset()
	for _, obj := range list {
		a, err := s.decode(obj)
		if err != nil {
			s.log.Warn("ignoring PodIdentityAssociation", "err", err)
			continue
		}
		s.putLocked(a)
	}
	s.reportLocked()
	s.mu.Unlock()
	s.synced.Store(true)
	return nil
}

// Resync does nothing: nothing listens to the store's events.
func (s *store) Resync() error { return nil }

// clear forgets everything (the resource is no longer served).
func (s *store) clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reset()
	s.reportLocked()
}

func (s *store) putLocked(a *Association) {
	s.items[a.Key()] = a
	k := saKey{a.Namespace, a.ServiceAccount}
	s.bySA[k] = append(s.bySA[k], a)
	s.pickLocked(k)
}

func (s *store) removeLocked(key string) {
	old, ok := s.items[key]
	if !ok {
		return
	}
	delete(s.items, key)
	k := saKey{old.Namespace, old.ServiceAccount}
	s.bySA[k] = slices.DeleteFunc(s.bySA[k], func(c *Association) bool { return c == old })
	s.pickLocked(k)
}

// pickLocked recomputes the winner of k.
func (s *store) pickLocked(k saKey) {
	cands := s.bySA[k]
	if len(cands) == 0 {
		delete(s.bySA, k)
		delete(s.winners, k)
		return
	}
	s.winners[k] = Winner(cands)
}
