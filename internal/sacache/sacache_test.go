package sacache

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/fake"

	"github.com/podiam/podiam/internal/metrics"
	"github.com/podiam/podiam/test/testutil"
)

var discard = slog.New(slog.DiscardHandler)

// newFake returns a fake metadata client serving objs. The fake needs
// PartialObjectMetadata in its scheme; the objects' TypeMeta (v1 ServiceAccount)
// maps them to the serviceaccounts resource.
func newFake(objs ...runtime.Object) *fake.FakeMetadataClient {
	scheme := fake.NewTestScheme()
	if err := metav1.AddMetaToScheme(scheme); err != nil {
		panic(err)
	}
	return fake.NewSimpleMetadataClient(scheme, objs...)
}

// hookedClient calls before ahead of every ServiceAccount Get, with the Get's
// context; an error from before is returned instead of calling the API. Unlike the
// fake's reactors it sees the context, so tests can check which context a lookup
// uses.
type hookedClient struct {
	metadata.Interface
	before func(ctx context.Context, namespace, name string) error
}

func (c hookedClient) Resource(gvr schema.GroupVersionResource) metadata.Getter {
	return hookedGetter{c.Interface.Resource(gvr), c.before}
}

type hookedGetter struct {
	metadata.Getter
	before func(ctx context.Context, namespace, name string) error
}

func (g hookedGetter) Namespace(ns string) metadata.ResourceInterface {
	return hookedResource{g.Getter.Namespace(ns), ns, g.before}
}

type hookedResource struct {
	metadata.ResourceInterface
	namespace string
	before    func(ctx context.Context, namespace, name string) error
}

func (r hookedResource) Get(ctx context.Context, name string, opts metav1.GetOptions, sub ...string) (*metav1.PartialObjectMetadata, error) {
	if err := r.before(ctx, r.namespace, name); err != nil {
		return nil, err
	}
	return r.ResourceInterface.Get(ctx, name, opts, sub...)
}

// Every wait for an asynchronous update polls (testutil.Eventually) this often,
// failing the test after a generous deadline.
const (
	waitTimeout  = 10 * time.Second
	pollInterval = 2 * time.Millisecond
)

// run starts c.Run until the test ends and waits for the first sync.
func run(t *testing.T, c *Cache) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	testutil.Eventually(t, waitTimeout, pollInterval, "the first sync", c.HasSynced)
}

type result struct {
	ann   map[string]string
	found bool
	// failed: Lookup returned an error (existence unknown).
	failed bool
}

func (r result) equal(o result) bool {
	return r.found == o.found && r.failed == o.failed && maps.Equal(r.ann, o.ann) && (r.ann == nil) == (o.ann == nil)
}

func lookup(c *Cache, namespace, name string) result {
	ann, found, err := c.Lookup(context.Background(), namespace, name)
	return result{ann, found, err != nil}
}

// value returns the value of a counter or gauge. (prometheus/testutil would need a
// module that go.sum does not have.)
func value(t testing.TB, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	t.Fatalf("unsupported metric %v", c.Desc())
	return 0
}

// lookups returns the lookup counters by "source/result".
func lookups(t testing.TB, m *metrics.Webhook) map[string]float64 {
	out := map[string]float64{}
	for _, src := range []string{metrics.LookupCache, metrics.LookupAPI} {
		for _, res := range []string{metrics.LookupFound, metrics.LookupNotFound, metrics.LookupError} {
			if v := value(t, m.ServiceAccountLookups.WithLabelValues(src, res)); v != 0 {
				out[src+"/"+res] = v
			}
		}
	}
	return out
}

func getCalls(f *fake.FakeMetadataClient) int {
	n := 0
	for _, a := range f.Actions() {
		if a.GetVerb() == "get" && a.GetResource() == serviceAccounts {
			n++
		}
	}
	return n
}

func TestRunInitialSync(t *testing.T) {
	arn := map[string]string{roleARN: "arn1"}
	tests := []struct {
		name    string
		objects []runtime.Object
		want    map[key]result
	}{
		{name: "empty cluster", want: map[key]result{{"ns", "a"}: {}}},
		{
			name: "annotated, unannotated and unrelated",
			objects: []runtime.Object{
				sa("ns", "a", map[string]string{roleARN: "arn1", "other": "dropped"}),
				sa("ns", "b", nil),
				sa("ns2", "a", map[string]string{"other": "dropped"}),
			},
			want: map[key]result{
				{"ns", "a"}:       {ann: arn, found: true},
				{"ns", "b"}:       {ann: nil, found: true},
				{"ns2", "a"}:      {ann: nil, found: true},
				{"ns", "missing"}: {},
				{"ns3", "a"}:      {},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := newFake(tt.objects...)
			m := metrics.NewWebhook(prometheus.NewRegistry())
			c := New(Options{Client: client, AnnotationKeys: wantedKeys, Metrics: m, Logger: discard})
			if c.HasSynced() {
				t.Fatal("synced before Run")
			}
			run(t, c)
			if c.Len() != len(tt.objects) {
				t.Errorf("Len() = %d, want %d", c.Len(), len(tt.objects))
			}
			if g := value(t, m.ServiceAccountsCached); g != float64(len(tt.objects)) {
				t.Errorf("cached gauge = %v, want %d", g, len(tt.objects))
			}
			for k, want := range tt.want {
				if got := lookup(c, k.namespace, k.name); !got.equal(want) {
					t.Errorf("Lookup(%v) = %+v, want %+v", k, got, want)
				}
			}
			if n := getCalls(client); n != 0 {
				t.Errorf("%d API calls with a zero grace period", n)
			}
		})
	}
}

func TestRunWatchEvents(t *testing.T) {
	client := newFake(sa("ns", "initial", nil))
	tracker := client.Tracker()
	m := metrics.NewWebhook(prometheus.NewRegistry())
	c := New(Options{Client: client, AnnotationKeys: wantedKeys, Metrics: m, Logger: discard})
	run(t, c)

	// Steps run in order against one cache; each waits for its event to arrive.
	steps := []struct {
		name    string
		do      func() error
		key     key
		want    result
		wantLen int
	}{
		{
			name: "add annotated",
			do: func() error {
				return tracker.Create(serviceAccounts, sa("ns", "a", map[string]string{roleARN: "arn1", "x": "y"}), "ns")
			},
			key:     key{"ns", "a"},
			want:    result{ann: map[string]string{roleARN: "arn1"}, found: true},
			wantLen: 2,
		},
		{
			name: "add with unrelated annotations only",
			do: func() error {
				return tracker.Create(serviceAccounts, sa("ns2", "b", map[string]string{"x": "y"}), "ns2")
			},
			key:     key{"ns2", "b"},
			want:    result{ann: nil, found: true},
			wantLen: 3,
		},
		{
			name: "update changes annotations",
			do: func() error {
				return tracker.Update(serviceAccounts, sa("ns", "a", map[string]string{roleARN: "arn2", audience: "aud"}), "ns")
			},
			key:     key{"ns", "a"},
			want:    result{ann: map[string]string{roleARN: "arn2", audience: "aud"}, found: true},
			wantLen: 3,
		},
		{
			name:    "update removes annotations",
			do:      func() error { return tracker.Update(serviceAccounts, sa("ns", "a", map[string]string{"x": "y"}), "ns") },
			key:     key{"ns", "a"},
			want:    result{ann: nil, found: true},
			wantLen: 3,
		},
		{
			name:    "delete",
			do:      func() error { return tracker.Delete(serviceAccounts, "ns", "a") },
			key:     key{"ns", "a"},
			want:    result{},
			wantLen: 2,
		},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		var got result
		testutil.Eventually(t, waitTimeout, pollInterval, st.name, func() bool {
			got = lookup(c, st.key.namespace, st.key.name)
			return got.equal(st.want)
		})
		if c.Len() != st.wantLen {
			t.Errorf("%s: Len() = %d, want %d", st.name, c.Len(), st.wantLen)
		}
		if g := value(t, m.ServiceAccountsCached); g != float64(st.wantLen) {
			t.Errorf("%s: cached gauge = %v, want %d", st.name, g, st.wantLen)
		}
	}
	if n := getCalls(client); n != 0 {
		t.Errorf("%d API calls with a zero grace period", n)
	}
}

func TestLookupAPI(t *testing.T) {
	unavailable := apierrors.NewServiceUnavailable("try again")
	tests := []struct {
		name    string
		grace   time.Duration
		objects []runtime.Object
		// fail returns the error of the n-th Get (from 1), or nil to call the API.
		fail        func(ctx context.Context, n int) error
		lookupName  string
		want        result
		wantCalls   int // exact, or the minimum if minCalls
		minCalls    bool
		wantMetrics map[string]float64
		wantLen     int
	}{
		{
			name:        "found in the API and cached",
			grace:       time.Minute,
			objects:     []runtime.Object{sa("ns", "a", map[string]string{roleARN: "arn1", "x": "y"})},
			lookupName:  "a",
			want:        result{ann: map[string]string{roleARN: "arn1"}, found: true},
			wantCalls:   1,
			wantMetrics: map[string]float64{"cache/not_found": 1, "api/found": 1},
			wantLen:     1,
		},
		{
			name:        "found without wanted annotations",
			grace:       time.Minute,
			objects:     []runtime.Object{sa("ns", "a", nil)},
			lookupName:  "a",
			want:        result{ann: nil, found: true},
			wantCalls:   1,
			wantMetrics: map[string]float64{"cache/not_found": 1, "api/found": 1},
			wantLen:     1,
		},
		{
			name:        "not found",
			grace:       time.Minute,
			lookupName:  "a",
			want:        result{},
			wantCalls:   1,
			wantMetrics: map[string]float64{"cache/not_found": 1, "api/not_found": 1},
		},
		{
			name:        "zero grace period makes no API call",
			objects:     []runtime.Object{sa("ns", "a", nil)},
			lookupName:  "a",
			want:        result{},
			wantCalls:   0,
			wantMetrics: map[string]float64{"cache/not_found": 1},
		},
		{
			name:        "empty name makes no API call",
			grace:       time.Minute,
			lookupName:  "",
			want:        result{},
			wantCalls:   0,
			wantMetrics: map[string]float64{"cache/not_found": 1},
		},
		{
			name:    "transient errors are retried",
			grace:   time.Minute,
			objects: []runtime.Object{sa("ns", "a", map[string]string{roleARN: "arn1"})},
			fail: func(_ context.Context, n int) error {
				if n <= 2 {
					return unavailable
				}
				return nil
			},
			lookupName:  "a",
			want:        result{ann: map[string]string{roleARN: "arn1"}, found: true},
			wantCalls:   3,
			wantMetrics: map[string]float64{"cache/not_found": 1, "api/found": 1},
			wantLen:     1,
		},
		{
			name:    "permanent error is not retried",
			grace:   time.Minute,
			objects: []runtime.Object{sa("ns", "a", nil)},
			fail: func(context.Context, int) error {
				return apierrors.NewForbidden(serviceAccounts.GroupResource(), "a", errors.New("no"))
			},
			lookupName:  "a",
			want:        result{failed: true},
			wantCalls:   1,
			wantMetrics: map[string]float64{"cache/not_found": 1, "api/error": 1},
		},
		{
			name:        "transient errors until the grace period ends",
			grace:       100 * time.Millisecond,
			objects:     []runtime.Object{sa("ns", "a", nil)},
			fail:        func(context.Context, int) error { return unavailable },
			lookupName:  "a",
			want:        result{failed: true},
			wantCalls:   2,
			minCalls:    true,
			wantMetrics: map[string]float64{"cache/not_found": 1, "api/error": 1},
		},
		{
			name:    "API slower than the grace period",
			grace:   50 * time.Millisecond,
			objects: []runtime.Object{sa("ns", "a", nil)},
			fail: func(ctx context.Context, _ int) error {
				<-ctx.Done() // the lookup's own deadline must end it
				return ctx.Err()
			},
			lookupName:  "a",
			want:        result{failed: true},
			wantCalls:   1,
			wantMetrics: map[string]float64{"cache/not_found": 1, "api/error": 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			client := hookedClient{Interface: newFake(tt.objects...), before: func(ctx context.Context, _, _ string) error {
				n := int(calls.Add(1))
				if tt.fail != nil {
					return tt.fail(ctx, n)
				}
				return nil
			}}
			m := metrics.NewWebhook(prometheus.NewRegistry())
			// Not running: the cache stays empty, as for a ServiceAccount created a
			// moment before its pod.
			c := New(Options{Client: client, AnnotationKeys: wantedKeys, GracePeriod: tt.grace, Metrics: m, Logger: discard})

			if got := lookup(c, "ns", tt.lookupName); !got.equal(tt.want) {
				t.Errorf("Lookup = %+v, want %+v", got, tt.want)
			}
			n := int(calls.Load())
			if n != tt.wantCalls && !(tt.minCalls && n > tt.wantCalls) {
				t.Errorf("%d API calls, want %d", n, tt.wantCalls)
			}
			if got := lookups(t, m); !maps.Equal(got, tt.wantMetrics) {
				t.Errorf("lookup metrics = %v, want %v", got, tt.wantMetrics)
			}
			if c.Len() != tt.wantLen {
				t.Errorf("Len() = %d, want %d", c.Len(), tt.wantLen)
			}
			if g := value(t, m.ServiceAccountsCached); g != float64(tt.wantLen) {
				t.Errorf("cached gauge = %v, want %d", g, tt.wantLen)
			}
			if tt.wantLen > 0 {
				// The next pod hits the cache.
				if got := lookup(c, "ns", tt.lookupName); !got.equal(tt.want) {
					t.Errorf("second Lookup = %+v, want %+v", got, tt.want)
				}
				if int(calls.Load()) != n {
					t.Error("second Lookup called the API")
				}
				if v := value(t, m.ServiceAccountLookups.WithLabelValues(metrics.LookupCache, metrics.LookupFound)); v != 1 {
					t.Errorf("cache/found = %v, want 1", v)
				}
			}
		})
	}
}

// gate blocks Gets until released, counting them.
type gate struct {
	calls   atomic.Int32
	release chan struct{}
}

func newGate() *gate { return &gate{release: make(chan struct{})} }

func (g *gate) before(ctx context.Context, _, _ string) error {
	g.calls.Add(1)
	select {
	case <-g.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// joined counts callers that joined a lookup flight.
func joined(c *Cache) *atomic.Int32 {
	var n atomic.Int32
	c.testHookJoined = func(string, string) { n.Add(1) }
	return &n
}

func TestLookupMergesConcurrentMisses(t *testing.T) {
	const callers = 8
	tests := []struct {
		name    string
		objects []runtime.Object
		want    result
		metric  string
	}{
		{
			name:    "found",
			objects: []runtime.Object{sa("ns", "a", map[string]string{roleARN: "arn1"})},
			want:    result{ann: map[string]string{roleARN: "arn1"}, found: true},
			metric:  metrics.LookupFound,
		},
		{name: "not found", want: result{}, metric: metrics.LookupNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGate()
			m := metrics.NewWebhook(prometheus.NewRegistry())
			c := New(Options{
				Client:         hookedClient{Interface: newFake(tt.objects...), before: g.before},
				AnnotationKeys: wantedKeys, GracePeriod: time.Minute, Metrics: m, Logger: discard,
			})
			nJoined := joined(c)

			results := make([]result, callers)
			var wg sync.WaitGroup
			for i := range callers {
				wg.Go(func() { results[i] = lookup(c, "ns", "a") })
			}
			testutil.Eventually(t, waitTimeout, pollInterval, "all callers to join", func() bool { return nJoined.Load() == callers })
			close(g.release)
			wg.Wait()

			if n := g.calls.Load(); n != 1 {
				t.Errorf("%d API calls for %d concurrent lookups, want 1", n, callers)
			}
			for i, got := range results {
				if !got.equal(tt.want) {
					t.Errorf("caller %d: Lookup = %+v, want %+v", i, got, tt.want)
				}
			}
			if v := value(t, m.ServiceAccountLookups.WithLabelValues(metrics.LookupAPI, tt.metric)); v != callers {
				t.Errorf("api/%s = %v, want %d", tt.metric, v, callers)
			}
		})
	}
}

func TestLookupCallerCancelDoesNotCancelFlight(t *testing.T) {
	g := newGate()
	m := metrics.NewWebhook(prometheus.NewRegistry())
	c := New(Options{
		Client:         hookedClient{Interface: newFake(sa("ns", "a", map[string]string{roleARN: "arn1"})), before: g.before},
		AnnotationKeys: wantedKeys, GracePeriod: time.Minute, Metrics: m, Logger: discard,
	})
	nJoined := joined(c)

	// The first caller starts the flight, then gives up.
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan result, 1)
	go func() {
		ann, ok, _ := c.Lookup(ctx, "ns", "a")
		first <- result{ann: ann, found: ok}
	}()
	testutil.Eventually(t, waitTimeout, pollInterval, "the first caller to join", func() bool { return nJoined.Load() == 1 })
	second := make(chan result, 1)
	go func() { second <- lookup(c, "ns", "a") }()
	testutil.Eventually(t, waitTimeout, pollInterval, "the second caller to join", func() bool { return nJoined.Load() == 2 })

	cancel()
	if got := <-first; !got.equal(result{}) {
		t.Errorf("cancelled caller got %+v, want not found", got)
	}
	close(g.release)
	if got, want := <-second, (result{ann: map[string]string{roleARN: "arn1"}, found: true}); !got.equal(want) {
		t.Errorf("other caller got %+v, want %+v", got, want)
	}
	if n := g.calls.Load(); n != 1 {
		t.Errorf("%d API calls, want 1", n)
	}
	want := map[string]float64{"cache/not_found": 2, "api/error": 1, "api/found": 1}
	if got := lookups(t, m); !maps.Equal(got, want) {
		t.Errorf("lookup metrics = %v, want %v", got, want)
	}
	if c.Len() != 1 {
		t.Errorf("Len() = %d, want 1 (the flight's result is cached)", c.Len())
	}
}

func TestLookupAfterSyncUsesAPIForNewServiceAccount(t *testing.T) {
	// A ServiceAccount the watch has not delivered yet: the API knows it, the
	// cache does not. The hooked client hides Creates from the watch by creating
	// the object only in a second fake that serves Gets.
	watched := newFake()
	direct := newFake(sa("ns", "new", map[string]string{roleARN: "arn1"}))
	client := splitClient{Interface: watched, get: direct}
	m := metrics.NewWebhook(prometheus.NewRegistry())
	c := New(Options{Client: client, AnnotationKeys: wantedKeys, GracePeriod: time.Minute, Metrics: m, Logger: discard})
	run(t, c)

	want := result{ann: map[string]string{roleARN: "arn1"}, found: true}
	if got := lookup(c, "ns", "new"); !got.equal(want) {
		t.Fatalf("Lookup = %+v, want %+v", got, want)
	}
	if got := lookup(c, "ns", "new"); !got.equal(want) {
		t.Fatalf("second Lookup = %+v, want %+v", got, want)
	}
	if n := getCalls(direct); n != 1 {
		t.Errorf("%d API calls, want 1", n)
	}
	// The watch stays authoritative: its delete removes the entry.
	if err := watched.Tracker().Create(serviceAccounts, sa("ns", "new", nil), "ns"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, waitTimeout, pollInterval, "the watch's add", func() bool { return lookup(c, "ns", "new").equal(result{ann: nil, found: true}) })
	if err := watched.Tracker().Delete(serviceAccounts, "ns", "new"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, waitTimeout, pollInterval, "the watch's delete", func() bool { return c.Len() == 0 })
}

// splitClient lists and watches through Interface and gets through get.
type splitClient struct {
	metadata.Interface
	get metadata.Interface
}

// IsWatchListSemanticsUnSupported tells the reflector, like the fake does, to list
// and then watch rather than stream the initial list.
func (splitClient) IsWatchListSemanticsUnSupported() bool { return true }

func (c splitClient) Resource(gvr schema.GroupVersionResource) metadata.Getter {
	return splitGetter{c.Interface.Resource(gvr), c.get.Resource(gvr)}
}

type splitGetter struct {
	metadata.Getter
	get metadata.Getter
}

func (g splitGetter) Namespace(ns string) metadata.ResourceInterface {
	return splitResource{g.Getter.Namespace(ns), g.get.Namespace(ns)}
}

type splitResource struct {
	metadata.ResourceInterface
	get metadata.ResourceInterface
}

func (r splitResource) Get(ctx context.Context, name string, opts metav1.GetOptions, sub ...string) (*metav1.PartialObjectMetadata, error) {
	return r.get.Get(ctx, name, opts, sub...)
}

func TestLookupHitDoesNotAllocate(t *testing.T) {
	c := New(Options{AnnotationKeys: wantedKeys, Metrics: metrics.NewWebhook(prometheus.NewRegistry()), Logger: discard})
	if err := c.store.Replace([]any{sa("ns", "a", map[string]string{roleARN: "arn1"}), sa("ns", "b", nil)}, ""); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, name := range []string{"a", "b"} {
		allocs := testing.AllocsPerRun(100, func() {
			if _, ok, _ := c.Lookup(ctx, "ns", name); !ok {
				t.Fatal("miss")
			}
		})
		if allocs != 0 {
			t.Errorf("Lookup hit of ns/%s allocates %v times", name, allocs)
		}
	}
}

func newBenchCache(b *testing.B) *Cache {
	c := New(Options{AnnotationKeys: wantedKeys, Metrics: metrics.NewWebhook(prometheus.NewRegistry()), Logger: discard})
	if err := c.store.Replace(fill100k(), "1"); err != nil {
		b.Fatal(err)
	}
	return c
}

// BenchmarkLookupHit measures a cache hit in a cache of 100,000 ServiceAccounts.
func BenchmarkLookupHit(b *testing.B) {
	c := newBenchCache(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if ann, ok, _ := c.Lookup(ctx, "ns-000", "app-000000"); !ok || ann == nil {
			b.Fatal("miss")
		}
	}
}

// BenchmarkLookupHitParallel measures cache hits from all CPUs at once, as
// concurrent admission requests do.
func BenchmarkLookupHitParallel(b *testing.B) {
	c := newBenchCache(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, ok, _ := c.Lookup(ctx, "ns-001", "app-000001"); !ok {
				b.Fatal("miss")
			}
		}
	})
}
