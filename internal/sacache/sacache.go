// Package sacache is the webhook's ServiceAccount cache.
//
// It lists and watches ServiceAccounts through the metadata-only client (so secrets,
// image pull secrets and the like are never decoded) with a client-go Reflector, and
// keeps only each ServiceAccount's namespace, name and wanted annotations in a compact
// store: 100,000 ServiceAccounts take a few MiB of heap.
//
// A ServiceAccount missing from the cache (typically created a moment before its
// pod) is looked up in the API server directly, waiting at most the grace period;
// concurrent lookups of one ServiceAccount share one request.
package sacache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/podiam/podiam/internal/metrics"
)

// serviceAccounts is the resource the cache lists and watches.
var serviceAccounts = schema.GroupVersionResource{Version: "v1", Resource: "serviceaccounts"}

// Retry delays of direct lookups: short, because the whole lookup is bounded by the
// grace period, which is typically well under a second.
const (
	retryInitialDelay = 10 * time.Millisecond
	retryMaxDelay     = 200 * time.Millisecond
)

// Options configures a Cache.
type Options struct {
	// Client is the metadata-only client used to list, watch and get
	// ServiceAccounts.
	Client metadata.Interface
	// AnnotationKeys are the ServiceAccount annotation keys to keep (see
	// identity.Keys.ServiceAccountKeys); all other annotations are dropped.
	AnnotationKeys []string
	// GracePeriod is the longest a Lookup of a ServiceAccount missing from the cache
	// waits for a direct API lookup. Zero disables direct lookups: a miss is
	// reported as not found at once.
	GracePeriod time.Duration
	// ResyncPeriod is passed to the reflector. The cache has no event handlers to
	// replay to, so a resync does nothing and zero is the sensible value.
	ResyncPeriod time.Duration
	// Metrics receives lookup counts and the cached count; nil disables metrics.
	Metrics *metrics.Webhook
	// Logger receives the cache's and the reflector's logs; nil means
	// slog.Default().
	Logger *slog.Logger
}

// Cache holds the ServiceAccounts of the cluster, reduced to their name, namespace
// and wanted annotations. Its methods are safe for concurrent use.
//
// Metrics: every Lookup counts one source=cache lookup (found or not_found); one
// that then goes to the API server also counts one source=api lookup (found,
// not_found or error). Callers merged into one API request each count, so
// source=api counts lookups, not requests.
type Cache struct {
	client metadata.Interface
	grace  time.Duration
	resync time.Duration
	log    *slog.Logger
	store  *store

	flights singleflight.Group
	// testHookJoined, if set, is called when a Lookup has joined the flight of a
	// direct lookup (tests use it to know that callers share a flight).
	testHookJoined func(namespace, name string)

	// Counters resolved once, so that a cache hit does not allocate.
	cacheFound, cacheNotFound          prometheus.Counter
	apiFound, apiNotFound, apiErrorCnt prometheus.Counter
}

// New returns a Cache; call Run to fill it.
func New(opts Options) *Cache {
	c := &Cache{
		client: opts.Client,
		grace:  opts.GracePeriod,
		resync: opts.ResyncPeriod,
		log:    opts.Logger,
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	var onLen func(int)
	if m := opts.Metrics; m != nil {
		c.cacheFound = m.ServiceAccountLookups.WithLabelValues(metrics.LookupCache, metrics.LookupFound)
		c.cacheNotFound = m.ServiceAccountLookups.WithLabelValues(metrics.LookupCache, metrics.LookupNotFound)
		c.apiFound = m.ServiceAccountLookups.WithLabelValues(metrics.LookupAPI, metrics.LookupFound)
		c.apiNotFound = m.ServiceAccountLookups.WithLabelValues(metrics.LookupAPI, metrics.LookupNotFound)
		c.apiErrorCnt = m.ServiceAccountLookups.WithLabelValues(metrics.LookupAPI, metrics.LookupError)
		gauge := m.ServiceAccountsCached
		gauge.Set(0)
		onLen = func(n int) { gauge.Set(float64(n)) }
	}
	c.store = newStore(opts.AnnotationKeys, onLen)
	return c
}

// Run lists and watches ServiceAccounts, keeping the cache up to date, until ctx is
// done. Call it once.
func (c *Cache) Run(ctx context.Context) {
	lw := cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			return c.client.Resource(serviceAccounts).List(ctx, opts)
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			return c.client.Resource(serviceAccounts).Watch(ctx, opts)
		},
	}, c.client)
	logger := logr.FromSlogHandler(c.log.Handler())
	r := cache.NewReflectorWithOptions(lw, &metav1.PartialObjectMetadata{}, c.store, cache.ReflectorOptions{
		Name:            "serviceaccounts",
		TypeDescription: "ServiceAccount metadata",
		ResyncPeriod:    c.resync,
		Logger:          &logger,
	})
	r.RunWithContext(klog.NewContext(ctx, logger))
}

// HasSynced reports whether the initial list has been stored. Readiness waits for
// it.
func (c *Cache) HasSynced() bool { return c.store.synced.Load() }

// Len returns the number of cached ServiceAccounts.
func (c *Cache) Len() int { return c.store.len() }

// Lookup returns the wanted annotations of ServiceAccount namespace/name (a nil map
// if it has none) and whether the ServiceAccount exists. The returned map is shared
// and must not be modified; the cache never modifies it either.
//
// A cache hit does not allocate. On a miss, if the grace period is not zero, the
// ServiceAccount is looked up in the API server, waiting at most the grace period
// or until ctx is done; concurrent lookups of one ServiceAccount share one request,
// which the cancellation of one caller's ctx does not cancel. A ServiceAccount
// found this way is added to the cache. An error means the lookup failed or did
// not finish in time, so whether the ServiceAccount exists is unknown.
func (c *Cache) Lookup(ctx context.Context, namespace, name string) (map[string]string, bool, error) {
	k := key{namespace, name}
	if ann, ok := c.store.get(k); ok {
		inc(c.cacheFound)
		return ann, true, nil
	}
	inc(c.cacheNotFound)
	if c.grace <= 0 || name == "" {
		return nil, false, nil
	}
	return c.lookupAPI(ctx, k)
}

// fetched is the result of a direct lookup.
type fetched struct {
	ann   map[string]string
	found bool
}

func (c *Cache) lookupAPI(ctx context.Context, k key) (map[string]string, bool, error) {
	ch := c.flights.DoChan(k.String(), func() (any, error) {
		return c.fetch(ctx, k)
	})
	if c.testHookJoined != nil {
		c.testHookJoined(k.namespace, k.name)
	}
	// The flight is bounded by the grace period through its context; this bounds the
	// wait also if the client does not honour its context.
	wait, cancel := context.WithTimeout(ctx, c.grace)
	defer cancel()
	select {
	case res := <-ch:
		if res.Err != nil {
			inc(c.apiErrorCnt)
			return nil, false, fmt.Errorf("looking up ServiceAccount %s: %w", k, res.Err)
		}
		f := res.Val.(fetched)
		if !f.found {
			inc(c.apiNotFound)
			return nil, false, nil
		}
		inc(c.apiFound)
		return f.ann, true, nil
	case <-wait.Done():
		inc(c.apiErrorCnt)
		level := slog.LevelDebug // the grace period is over: the flight logs its failure
		if ctx.Err() != nil {
			level = slog.LevelWarn // the caller gave up
		}
		c.log.Log(ctx, level, "Gave up waiting for ServiceAccount lookup",
			"namespace", k.namespace, "name", k.name, "err", context.Cause(wait))
		return nil, false, fmt.Errorf("looking up ServiceAccount %s: %w", k, context.Cause(wait))
	}
}

// fetch gets k from the API server, retrying transient errors until the grace
// period is over. It runs once per flight, so its context is detached from the
// first caller's cancellation (keeping its values) and bounded by the grace period
// only.
func (c *Cache) fetch(parent context.Context, k key) (fetched, error) {
	if ann, ok := c.store.beginFetch(k); ok {
		// The reflector stored it since the caller's miss.
		return fetched{ann, true}, nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), c.grace)
	defer cancel()

	start := time.Now()
	delay := retryInitialDelay
	var timer *time.Timer
	for attempt := 1; ; attempt++ {
		obj, err := c.client.Resource(serviceAccounts).Namespace(k.namespace).Get(ctx, k.name, metav1.GetOptions{})
		switch {
		case err == nil:
			return fetched{c.store.endFetch(k, obj), true}, nil
		case apierrors.IsNotFound(err):
			c.store.endFetch(k, nil)
			return fetched{}, nil
		case !retriable(err) || ctx.Err() != nil:
			c.store.endFetch(k, nil)
			c.logFetchError(ctx, k, err, attempt, start)
			return fetched{}, err
		}
		if timer == nil {
			timer = time.NewTimer(delay)
			defer timer.Stop()
		} else {
			timer.Reset(delay)
		}
		select {
		case <-ctx.Done():
			c.store.endFetch(k, nil)
			err = fmt.Errorf("%w (last error: %w)", context.Cause(ctx), err)
			c.logFetchError(ctx, k, err, attempt, start)
			return fetched{}, err
		case <-timer.C:
		}
		delay = min(2*delay, retryMaxDelay)
	}
}

func (c *Cache) logFetchError(ctx context.Context, k key, err error, attempts int, start time.Time) {
	c.log.WarnContext(ctx, "ServiceAccount lookup in the API server failed",
		"namespace", k.namespace, "name", k.name, "attempts", attempts,
		"elapsed", time.Since(start), "gracePeriod", c.grace, "err", err)
}

// retriable reports whether a failed Get may succeed if repeated.
func retriable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	switch {
	case apierrors.IsForbidden(err), apierrors.IsUnauthorized(err), apierrors.IsBadRequest(err),
		apierrors.IsInvalid(err), apierrors.IsMethodNotSupported(err), apierrors.IsNotAcceptable(err),
		apierrors.IsUnsupportedMediaType(err), apierrors.IsGone(err):
		return false
	}
	return true
}

func inc(c prometheus.Counter) {
	if c != nil {
		c.Inc()
	}
}
