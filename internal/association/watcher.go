package association

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/podiam/podiam/api/v1alpha1"
)

// DefaultCheckInterval is how often a Watcher asks the API server whether the
// PodIdentityAssociation resource is served (installed, or still installed).
const DefaultCheckInterval = 30 * time.Second

// DefaultForbiddenGrace is how long listing must have been forbidden before
// the watcher gives up waiting and becomes ready with no associations: a
// ClusterRoleBinding applied with the Deployment takes a moment to reach the
// authorizer's cache.
const DefaultForbiddenGrace = 10 * time.Second

// Options configures a Watcher.
type Options struct {
	// Client lists and watches PodIdentityAssociations.
	Client dynamic.Interface
	// Discovery tells whether the resource is served (the CRD is installed).
	Discovery discovery.DiscoveryInterface
	// CheckInterval is how often the resource is looked for; zero means
	// DefaultCheckInterval.
	CheckInterval time.Duration
	// ForbiddenGrace is how long listing may be forbidden before the watcher is
	// ready without associations; zero means DefaultForbiddenGrace.
	ForbiddenGrace time.Duration
	// KeysOnly keeps of each association only what picking the winner needs
	// (namespace, name, UID, creation timestamp, ServiceAccount), for a user
	// that only asks whether a ServiceAccount has one (the webhook).
	KeysOnly bool
	// Gauge, if not nil, is set to the number of associations held.
	Gauge prometheus.Gauge
	// ResyncPeriod is passed to the reflector; zero, the sensible value, means
	// none.
	ResyncPeriod time.Duration
	// Logger receives the watcher's and the reflector's logs; nil means
	// slog.Default().
	Logger *slog.Logger
}

// Watcher keeps the cluster's PodIdentityAssociations, by (namespace,
// ServiceAccount), current. Its methods are safe for concurrent use.
//
// The CRD is optional: while the API server does not serve the resource, the
// watcher logs it once, has no associations, is ready (there is nothing to
// wait for), and looks again every CheckInterval; once the resource is served
// it lists and watches it. If the resource goes away (the CRD is deleted), the
// associations are forgotten and the watcher goes back to looking for it.
//
// Readiness (HasSynced) turns true once the state is known: the resource was
// found not served, or its first list is stored, or listing has been forbidden
// for ForbiddenGrace (the webhook's RBAC lacks list/watch on
// podidentityassociations, as a Deployment that switched images from the
// Amazon webhook has). A forbidden list is logged once; the reflector is then
// stopped and started again every CheckInterval, rather than left to back off
// for up to 30 s after the RBAC is granted. It never turns false again, so a
// CRD installed later does not make the ready replicas unready.
type Watcher struct {
	client   dynamic.Interface
	disc     discovery.DiscoveryInterface
	interval time.Duration
	grace    time.Duration
	resync   time.Duration
	log      *slog.Logger
	store    *store
	ready    atomic.Bool
	// forbiddenSince is when (Unix nanoseconds) listing started to be
	// forbidden, zero while it is not.
	forbiddenSince atomic.Int64
}

// New returns a Watcher; call Run to fill it.
func New(o Options) *Watcher {
	w := &Watcher{client: o.Client, disc: o.Discovery, interval: o.CheckInterval, grace: o.ForbiddenGrace,
		resync: o.ResyncPeriod, log: o.Logger}
	if w.interval <= 0 {
		w.interval = DefaultCheckInterval
	}
	if w.grace <= 0 {
		w.grace = DefaultForbiddenGrace
	}
	if w.log == nil {
		w.log = slog.Default()
	}
	w.log = w.log.With("resource", Resource.GroupResource().String())
	w.store = newStore(w.log, o.KeysOnly, o.Gauge)
	return w
}

// HasSynced reports whether the watcher knows the associations (see Watcher).
func (w *Watcher) HasSynced() bool {
	if w.ready.Load() || w.store.synced.Load() {
		return true
	}
	if w.forbiddenTooLong(w.forbiddenSince.Load()) {
		w.ready.Store(true) // sticky: a later successful list must not undo it
		return true
	}
	return false
}

// forbiddenTooLong reports whether listing, forbidden since since (Unix
// nanoseconds, zero for not forbidden), has been for the grace period.
func (w *Watcher) forbiddenTooLong(since int64) bool {
	return since != 0 && time.Since(time.Unix(0, since)) >= w.grace
}

// Lookup returns the association that wins for ServiceAccount
// namespace/serviceAccount. The result is shared and must not be modified.
func (w *Watcher) Lookup(namespace, serviceAccount string) (*Association, bool) {
	return w.store.lookup(namespace, serviceAccount)
}

// Contains reports whether ServiceAccount namespace/name has an association
// (identity.PodIdentitySet).
func (w *Watcher) Contains(namespace, name string) bool {
	_, ok := w.store.lookup(namespace, name)
	return ok
}

// Len returns the number of associations held.
func (w *Watcher) Len() int { return w.store.len() }

// Run keeps the associations current until ctx is done. Call it once.
func (w *Watcher) Run(ctx context.Context) {
	for ctx.Err() == nil {
		if !w.waitServed(ctx) {
			return
		}
		if w.forbiddenSince.Load() == 0 {
			w.log.Info("watching PodIdentityAssociations")
		}
		runCtx, cancel := context.WithCancel(ctx)
		go func() {
			defer cancel()
			// Stop the reflector once the resource is gone, rather than let it
			// retry a 404 for ever.
			_ = wait.PollUntilContextCancel(runCtx, w.interval, false, func(ctx context.Context) (bool, error) {
				served, err := w.served(ctx)
				return err == nil && !served, nil
			})
		}()
		w.runReflector(runCtx, cancel)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if w.forbiddenSince.Load() != 0 {
			// The reflector stopped itself on a forbidden list: try again
			// (the store keeps what an earlier list gave, if any).
			select {
			case <-ctx.Done():
				return
			case <-time.After(w.interval):
			}
			continue
		}
		w.store.clear()
		w.log.Warn("PodIdentityAssociations are no longer served (CRD deleted?); no ServiceAccount has an association until they are")
	}
}

// waitServed returns once the resource is served (true) or ctx is done (false).
// While it is not served the watcher is ready with no associations.
func (w *Watcher) waitServed(ctx context.Context) bool {
	logged := false
	err := wait.PollUntilContextCancel(ctx, w.interval, true, func(ctx context.Context) (bool, error) {
		served, err := w.served(ctx)
		switch {
		case err != nil:
			// Unknown: neither ready nor logged as absent; try again.
			w.log.Warn("cannot tell whether PodIdentityAssociations are served; retrying", "err", err, "retryIn", w.interval)
		case !served && !logged:
			logged = true
			w.ready.Store(true)
			w.log.Info("PodIdentityAssociations are not served (CRD not installed); no ServiceAccount has an association until they are",
				"checkInterval", w.interval)
		}
		return served, nil
	})
	return err == nil
}

// served asks discovery whether the API server serves the resource.
func (w *Watcher) served(ctx context.Context) (bool, error) { return Served(ctx, w.disc) }

// Served asks discovery whether the API server serves the
// PodIdentityAssociation resource (its CRD is installed and established).
// Discovery needs no RBAC beyond the default, so the answer does not depend on
// whether the caller may list the resource. Every component that waits for
// the CRD asks this one question, so that they all agree.
func Served(ctx context.Context, disc discovery.DiscoveryInterface) (bool, error) {
	type ctxDiscovery interface {
		ServerResourcesForGroupVersionWithContext(context.Context, string) (*metav1.APIResourceList, error)
	}
	if disc == nil {
		return false, errors.New("no discovery client to tell whether PodIdentityAssociations are served")
	}
	var (
		list *metav1.APIResourceList
		err  error
	)
	gv := Resource.GroupVersion().String()
	if d, ok := disc.(ctxDiscovery); ok {
		list, err = d.ServerResourcesForGroupVersionWithContext(ctx, gv)
	} else {
		list, err = disc.ServerResourcesForGroupVersion(gv)
	}
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("discovering %s: %w", gv, err)
	}
	return slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Name == Resource.Resource }), nil
}

// runReflector lists and watches the resource until ctx is done, or, after
// calling stop, once listing or watching is forbidden.
func (w *Watcher) runReflector(ctx context.Context, stop context.CancelFunc) {
	res := w.client.Resource(Resource)
	lw := cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			list, err := res.List(ctx, opts)
			w.checkForbidden(err, stop)
			return list, err
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			wi, err := res.Watch(ctx, opts)
			w.checkForbidden(err, stop)
			return wi, err
		},
	}, w.client)
	expected := &unstructured.Unstructured{}
	expected.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("PodIdentityAssociation"))
	logger := logr.FromSlogHandler(w.log.Handler())
	r := cache.NewReflectorWithOptions(lw, expected, w.store, cache.ReflectorOptions{
		Name:            "podidentityassociations",
		TypeDescription: "PodIdentityAssociation",
		ResyncPeriod:    w.resync,
		Logger:          &logger,
	})
	r.RunWithContext(klog.NewContext(ctx, logger))
}

// checkForbidden follows the outcome err of a list or watch: a forbidden one
// starts (and logs, once) or continues a forbidden period and stops the
// reflector; a successful one ends the period.
func (w *Watcher) checkForbidden(err error, stop context.CancelFunc) {
	switch {
	case apierrors.IsForbidden(err):
		if w.forbiddenSince.CompareAndSwap(0, time.Now().UnixNano()) {
			w.log.Error("cannot list PodIdentityAssociations (RBAC: grant list and watch on podidentityassociations.podiam.dev); no ServiceAccount has an association until then",
				"err", err, "readyAfter", w.grace, "retryIn", w.interval)
		}
		stop()
	case err == nil:
		if w.forbiddenTooLong(w.forbiddenSince.Swap(0)) {
			w.ready.Store(true) // keep the readiness the forbidden period gave
		}
	}
}
