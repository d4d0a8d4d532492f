package certs

import (
	"context"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	admissionregistrationinformers "k8s.io/client-go/informers/admissionregistration/v1"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
)

// Retry and scheduling bounds of Run.
const (
	// retryBase and retryMax bound the exponential backoff after a failed
	// reconcile (also capped by CheckInterval), so a brief API error does not
	// keep the webhook unready for a whole interval.
	retryBase = time.Second
	retryMax  = time.Minute
	// minDelay keeps a due time in the past (clock skew between replicas and
	// the API server) from turning into a busy loop.
	minDelay = time.Second
)

// reconcileKey is the only work item: every change leads to the same full
// reconcile of the Secret, the caBundle and the served certificate, and the
// work queue folds changes that arrive while one runs into one more pass.
const reconcileKey = "certificates"

// Run keeps the certificates reconciled until ctx is done. It watches the
// Secret, the CA ConfigMap and the MutatingWebhookConfiguration, each by name
// through a metadata.name field selector (so RBAC can limit list and watch to
// those names), and reconciles when one changes: a caBundle or CA ConfigMap
// overwritten by another writer, or a Secret or ConfigMap deleted or
// corrupted, is repaired within seconds. It also reconciles when the next rotation is due and at least every
// CheckInterval, in case a watch misses something, and retries failures with
// backoff. One worker reconciles, so passes never overlap; writes happen only
// when content differs, so the events of its own writes end in a pass that
// writes nothing. Call it once.
func (m *Manager) Run(ctx context.Context) {
	backoff := workqueue.NewTypedItemExponentialFailureRateLimiter[string](retryBase, max(retryBase, min(retryMax, m.o.CheckInterval)))
	queue := workqueue.NewTypedRateLimitingQueue(backoff)
	// Reflector errors (a watch forbidden by RBAC, a dropped connection) go
	// to the Manager's logger.
	ctx = klog.NewContext(ctx, logr.FromSlogHandler(m.o.Logger.Handler()))
	var informers sync.WaitGroup
	for _, inf := range m.informers(func() { queue.Add(reconcileKey) }) {
		informers.Go(func() { inf.RunWithContext(ctx) })
	}
	go func() {
		<-ctx.Done()
		queue.ShutDown()
	}()
	queue.Add(reconcileKey)
	for m.processNext(ctx, queue, backoff) {
	}
	informers.Wait()
}

// processNext runs one reconcile from the queue and schedules the next; it
// returns false once the queue is shut down.
func (m *Manager) processNext(ctx context.Context, queue workqueue.TypedRateLimitingInterface[string], backoff workqueue.TypedRateLimiter[string]) bool {
	key, shutdown := queue.Get()
	if shutdown {
		return false
	}
	defer queue.Done(key)
	b, err := m.reconcile(ctx)
	if ctx.Err() != nil {
		return true // shutting down: the next Get returns shutdown
	}
	if err != nil {
		retryIn := backoff.When(key) // what queue.AddRateLimited would wait, to log it
		m.o.Logger.Error("reconciling webhook certificates", "error", err, "retryIn", retryIn.String())
		queue.AddAfter(key, retryIn)
		return true
	}
	queue.Forget(key) // resets the backoff
	queue.AddAfter(key, nextCheck(b, m.o.Now(), m.o.CheckInterval))
	return true
}

// nextCheck returns how long to wait before the next reconcile: until the
// bundle's next rotation or CA expiry, at most interval, at least minDelay.
func nextCheck(b *Bundle, now time.Time, interval time.Duration) time.Duration {
	due := now.Add(interval)
	if b != nil && len(b.CAs) > 0 && b.Cert != nil {
		due = minTime(due, renewAt(b.CAs[0]), renewAt(b.Cert))
		for _, ca := range b.CAs {
			due = minTime(due, ca.NotAfter)
		}
	}
	return max(minDelay, due.Sub(now))
}

func minTime(t time.Time, others ...time.Time) time.Time {
	for _, o := range others {
		if o.Before(t) {
			t = o
		}
	}
	return t
}

// informers returns the watches of the Secret and, when they are named, the
// CA ConfigMap and the MutatingWebhookConfiguration; each change calls
// enqueue.
func (m *Manager) informers(enqueue func()) []cache.SharedIndexInformer {
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { enqueue() },
		UpdateFunc: func(oldObj, newObj any) {
			// A relist delivers unchanged objects as updates: nothing to do.
			o, okOld := oldObj.(metav1.Object)
			n, okNew := newObj.(metav1.Object)
			if okOld && okNew && o.GetResourceVersion() == n.GetResourceVersion() {
				return
			}
			enqueue()
		},
		DeleteFunc: func(any) { enqueue() },
	}
	byName := func(name string) func(*metav1.ListOptions) {
		selector := fields.OneTermEqualSelector("metadata.name", name).String()
		return func(lo *metav1.ListOptions) { lo.FieldSelector = selector }
	}
	secrets := coreinformers.NewFilteredSecretInformer(m.o.Client, m.o.Namespace, 0, cache.Indexers{}, byName(m.o.SecretName))
	// Only the event matters: reconcile reads the Secret from the API server
	// (optimistic concurrency needs its latest version), so the informer's
	// copy need not hold the keys.
	mustSet(secrets.SetTransform(func(obj any) (any, error) {
		if s, ok := obj.(*corev1.Secret); ok {
			s.Data, s.StringData = nil, nil
		}
		return obj, nil
	}))
	mustAdd(secrets.AddEventHandler(handler))
	out := []cache.SharedIndexInformer{secrets}
	if m.o.CAConfigMapName != "" {
		cms := coreinformers.NewFilteredConfigMapInformer(m.o.Client, m.o.Namespace, 0, cache.Indexers{}, byName(m.o.CAConfigMapName))
		mustAdd(cms.AddEventHandler(handler))
		out = append(out, cms)
	}
	if m.o.WebhookConfigName != "" {
		cfgs := admissionregistrationinformers.NewFilteredMutatingWebhookConfigurationInformer(m.o.Client, 0, cache.Indexers{}, byName(m.o.WebhookConfigName))
		mustAdd(cfgs.AddEventHandler(handler))
		out = append(out, cfgs)
	}
	return out
}

// mustSet and mustAdd panic on errors that only an informer already started
// returns; these informers are new.
func mustSet(err error) {
	if err != nil {
		panic("certs: configuring informer: " + err.Error())
	}
}

func mustAdd(_ cache.ResourceEventHandlerRegistration, err error) {
	mustSet(err)
}
