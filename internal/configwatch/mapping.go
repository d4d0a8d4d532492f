package configwatch

import (
	"context"
	"crypto/sha256"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/podiam/podiam/internal/identity"
	"github.com/podiam/podiam/internal/metrics"
)

// Defaults for [MappingOptions], matching the Amazon EKS pod identity webhook.
const (
	DefaultConfigMapName = "pod-identity-webhook"
	DefaultConfigMapKey  = "config"
)

// MappingOptions configures a [MappingWatcher].
type MappingOptions struct {
	// Client is the Kubernetes client. Required.
	Client kubernetes.Interface
	// Namespace is the ConfigMap's namespace, normally the webhook's own namespace.
	// Empty means "default".
	Namespace string
	// Name is the ConfigMap's name. Empty means DefaultConfigMapName.
	Name string
	// Key is the ConfigMap data key that holds the JSON mapping. Empty means
	// DefaultConfigMapKey.
	Key string
	// ResyncPeriod is the informer resync period; zero disables resyncs. Resyncs of
	// unchanged content are ignored.
	ResyncPeriod time.Duration
	// Metrics receives reload counts and the entry count. Nil records nothing.
	Metrics *metrics.Webhook
	// Logger receives one line per reload or rejected update. Nil means slog.Default().
	Logger *slog.Logger
}

// MappingWatcher keeps the kOps-style ServiceAccount-to-role mapping current from one
// ConfigMap. It watches the ConfigMap with a client-go informer limited by a field
// selector on metadata.name (and also checks the name itself, since not every client
// honours field selectors).
//
// The value under the key is parsed by [identity.ParseMapping]:
//   - a valid value replaces the mapping;
//   - a ConfigMap without the key, or with an empty value, is an empty mapping;
//   - a deleted or absent ConfigMap is an empty mapping;
//   - a malformed value (bad JSON, a key without "/", an empty RoleARN, ...) is
//     logged and counted as an error, and the last good mapping stays in effect.
//
// The key is looked up in data first and then in binaryData.
type MappingWatcher struct {
	namespace, name, key string
	log                  *slog.Logger
	rec                  recorder
	informer             cache.SharedIndexInformer
	registration         cache.ResourceEventHandlerRegistration

	current atomic.Pointer[identity.Mapping]

	mu   sync.Mutex   // serialises apply; guards seen and last
	seen bool         // whether last is set
	last mappingState // last content looked at, good or bad
}

// mappingState identifies what the watcher last looked at, so that an unchanged
// ConfigMap (a resync, or an update to another key or to labels) is not re-parsed.
type mappingState struct {
	present bool // the ConfigMap exists
	hasKey  bool // it has the key
	sum     [sha256.Size]byte
}

// NewMappingWatcher creates a watcher for the ConfigMap described by o. It does not
// contact the API server until Run is called; until then Current returns an empty
// mapping. It panics if o.Client is nil.
func NewMappingWatcher(o MappingOptions) *MappingWatcher {
	if o.Client == nil {
		panic("configwatch: MappingOptions.Client is nil")
	}
	if o.Namespace == "" {
		o.Namespace = metav1.NamespaceDefault
	}
	if o.Name == "" {
		o.Name = DefaultConfigMapName
	}
	if o.Key == "" {
		o.Key = DefaultConfigMapKey
	}
	w := &MappingWatcher{
		namespace: o.Namespace,
		name:      o.Name,
		key:       o.Key,
		log: loggerOrDefault(o.Logger).With(
			"source", metrics.SourceConfigMap,
			"configmap", o.Namespace+"/"+o.Name,
			"key", o.Key),
		rec: recorder{m: o.Metrics, source: metrics.SourceConfigMap},
	}
	w.rec.init()
	selector := fields.OneTermEqualSelector("metadata.name", o.Name).String()
	w.informer = coreinformers.NewFilteredConfigMapInformer(o.Client, o.Namespace, o.ResyncPeriod,
		cache.Indexers{}, func(lo *metav1.ListOptions) { lo.FieldSelector = selector })
	reg, err := w.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { w.onUpsert(obj) },
		UpdateFunc: func(_, obj any) { w.onUpsert(obj) },
		DeleteFunc: w.onDelete,
	})
	if err != nil {
		// AddEventHandler fails only on an informer that has been stopped, and this
		// one has not been started yet.
		panic("configwatch: adding ConfigMap event handler: " + err.Error())
	}
	w.registration = reg
	return w
}

// Run runs the informer and blocks until ctx is done. Call it once.
func (w *MappingWatcher) Run(ctx context.Context) {
	w.log.Info("watching ConfigMap for the pod identity mapping")
	var wg sync.WaitGroup
	wg.Go(func() { w.informer.RunWithContext(ctx) })
	if w.WaitForSync(ctx) {
		w.noteSynced()
	}
	wg.Wait()
}

// HasSynced reports whether the initial list of the ConfigMap has been received and
// applied, so that Current reflects the cluster's state at start-up.
func (w *MappingWatcher) HasSynced() bool { return w.registration.HasSynced() }

// WaitForSync blocks until HasSynced is true or ctx is done, and reports whether the
// watcher synced. Run must be running (or be started) for it to return true.
func (w *MappingWatcher) WaitForSync(ctx context.Context) bool {
	return cache.WaitForCacheSync(ctx.Done(), w.HasSynced)
}

// Current returns the mapping in effect. It never blocks. The result may be nil,
// which is a valid, empty mapping.
func (w *MappingWatcher) Current() *identity.Mapping { return w.current.Load() }

// ours reports whether a ConfigMap is the watched one. The informer is namespaced
// and field-selected already; this guards against clients that ignore the selector.
func (w *MappingWatcher) ours(cm *corev1.ConfigMap) bool {
	return cm.Namespace == w.namespace && cm.Name == w.name
}

func (w *MappingWatcher) onUpsert(obj any) {
	cm, ok := obj.(*corev1.ConfigMap)
	if !ok || !w.ours(cm) {
		return
	}
	value, hasKey := cm.Data[w.key]
	raw := []byte(value)
	if !hasKey {
		raw, hasKey = cm.BinaryData[w.key]
	}
	w.apply(mappingState{present: true, hasKey: hasKey, sum: sha256.Sum256(raw)}, raw, cm.ResourceVersion)
}

func (w *MappingWatcher) onDelete(obj any) {
	switch o := obj.(type) {
	case *corev1.ConfigMap:
		if !w.ours(o) {
			return
		}
	case cache.DeletedFinalStateUnknown:
		if o.Key != w.namespace+"/"+w.name {
			return
		}
	default:
		return
	}
	w.apply(mappingState{}, nil, "")
}

// noteSynced logs once when the initial list did not contain the ConfigMap, so that
// an empty mapping at start-up is explained in the log.
func (w *MappingWatcher) noteSynced() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.seen {
		return
	}
	w.seen, w.last = true, mappingState{}
	w.log.Info("ConfigMap not found; the pod identity mapping is empty")
}

// apply parses raw and publishes it unless it is unchanged or malformed.
func (w *MappingWatcher) apply(st mappingState, raw []byte, resourceVersion string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.seen && st == w.last {
		return
	}
	w.seen, w.last = true, st

	if !st.present {
		w.current.Store(nil)
		w.rec.ok(0)
		w.log.Info("ConfigMap deleted; the pod identity mapping is now empty")
		return
	}
	m, err := identity.ParseMapping(raw)
	if err != nil {
		w.rec.fail()
		w.log.Error("rejected pod identity mapping; keeping the last good mapping",
			"resourceVersion", resourceVersion, "entries", w.current.Load().Len(), "err", err)
		return
	}
	w.current.Store(m)
	w.rec.ok(m.Len())
	if !st.hasKey {
		w.log.Info("ConfigMap has no mapping key; the pod identity mapping is empty",
			"resourceVersion", resourceVersion)
		return
	}
	w.log.Info("loaded pod identity mapping", "resourceVersion", resourceVersion, "entries", m.Len())
}
