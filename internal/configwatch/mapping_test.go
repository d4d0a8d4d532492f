package configwatch

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"

	"github.com/podiam/podiam/internal/identity"
	"github.com/podiam/podiam/internal/metrics"
	"github.com/podiam/podiam/test/testutil"
)

const (
	testNS   = "podiam-system"
	roleApp  = "arn:aws:iam::111122223333:role/app"
	roleCI   = "arn:aws:iam::111122223333:role/ci"
	roleEvil = "arn:aws:iam::444455556666:role/evil"
)

// Every wait for an asynchronous update polls (testutil.Eventually) this often,
// for at most waitTimeout; tests never assert after a fixed sleep.
const (
	waitTimeout  = 15 * time.Second
	pollInterval = 5 * time.Millisecond
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// value reads a counter or gauge. It stands in for prometheus/testutil.ToFloat64,
// whose diff dependency is not in go.sum.
func value(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	panic("not a counter or gauge")
}

func reloads(m *metrics.Webhook, source, result string) float64 {
	return value(m.ConfigReloads.WithLabelValues(source, result))
}

func entries(m *metrics.Webhook, source string) float64 {
	return value(m.ConfigEntries.WithLabelValues(source))
}

func configMap(ns, name string, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: data}
}

func cfg(value string) map[string]string { return map[string]string{"config": value} }

const (
	mappingApp   = `{"default/app":{"RoleARN":"` + roleApp + `"}}`
	mappingTwo   = `{"default/app":{"RoleARN":"` + roleApp + `"},"team-*/ci-*":{"RoleARN":"` + roleCI + `"}}`
	mappingEvil  = `{"default/app":{"RoleARN":"` + roleEvil + `"},"default/other":{"RoleARN":"` + roleEvil + `"}}`
	mappingCI    = `{"team-a/ci-runner":{"RoleARN":"` + roleCI + `"}}`
	mappingBad   = `{"default/app":{"RoleARN":`
	mappingNoKey = `{"app":{"RoleARN":"` + roleApp + `"}}`
)

// mappingWant describes the expected state after a step.
type mappingWant struct {
	len     int
	lookups map[string]string // "ns/name" -> RoleARN, "" for no match
	ok, err float64           // cumulative reload counts
}

func checkMapping(m *identity.Mapping, met *metrics.Webhook, want mappingWant) bool {
	if m.Len() != want.len ||
		reloads(met, metrics.SourceConfigMap, metrics.ResultOK) != want.ok ||
		reloads(met, metrics.SourceConfigMap, metrics.ResultError) != want.err ||
		entries(met, metrics.SourceConfigMap) != float64(want.len) {
		return false
	}
	for key, role := range want.lookups {
		ns, name, _ := strings.Cut(key, "/")
		e, _, found := m.Lookup(ns, name)
		if found != (role != "") || e.RoleARN != role {
			return false
		}
	}
	return true
}

func describeMapping(w *MappingWatcher, met *metrics.Webhook) string {
	return fmt.Sprintf("len=%d ok=%v err=%v entries=%v", w.Current().Len(),
		reloads(met, metrics.SourceConfigMap, metrics.ResultOK),
		reloads(met, metrics.SourceConfigMap, metrics.ResultError),
		entries(met, metrics.SourceConfigMap))
}

// startMappingWatcher runs a watcher on client until the test ends and waits for it
// to sync.
func startMappingWatcher(t *testing.T, client kubernetes.Interface) (*MappingWatcher, *metrics.Webhook) {
	t.Helper()
	met := metrics.NewWebhook(prometheus.NewRegistry())
	w := NewMappingWatcher(MappingOptions{
		Client: client, Namespace: testNS, Name: DefaultConfigMapName, Key: DefaultConfigMapKey,
		Metrics: met, Logger: testLogger(t),
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	syncCtx, syncCancel := context.WithTimeout(ctx, waitTimeout)
	defer syncCancel()
	if !w.WaitForSync(syncCtx) {
		t.Fatal("watcher did not sync")
	}
	if !w.HasSynced() {
		t.Fatal("HasSynced is false after WaitForSync")
	}
	return w, met
}

func TestMappingWatcher(t *testing.T) {
	client := fake.NewClientset(configMap(testNS, DefaultConfigMapName, cfg(mappingApp)))
	w, met := startMappingWatcher(t, client)
	cms := client.CoreV1().ConfigMaps(testNS)
	ctx := t.Context()

	update := func(data map[string]string, labels map[string]string) func(t *testing.T) {
		return func(t *testing.T) {
			cm := configMap(testNS, DefaultConfigMapName, data)
			cm.Labels = labels
			if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	create := func(ns, name string, data map[string]string) func(t *testing.T) {
		return func(t *testing.T) {
			if _, err := client.CoreV1().ConfigMaps(ns).Create(ctx, configMap(ns, name, data), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	appOnly := map[string]string{"default/app": roleApp, "team-a/ci-runner": ""}

	// Steps run in order against one watcher; counts are cumulative. A step whose
	// effect must be "nothing" is followed by a step with a visible effect, and the
	// exact reload counts there prove the ignored event was not applied (events of
	// one watch arrive in order).
	steps := []struct {
		name string
		do   func(t *testing.T)
		want mappingWant
	}{
		{"initial ConfigMap parsed", nil,
			mappingWant{1, appOnly, 1, 0}},
		{"update picked up", update(cfg(mappingTwo), nil),
			mappingWant{2, map[string]string{"default/app": roleApp, "team-a/ci-runner": roleCI}, 2, 0}},
		{"bad JSON keeps last good", update(cfg(mappingBad), nil),
			mappingWant{2, map[string]string{"team-a/ci-runner": roleCI}, 2, 1}},
		{"key without slash keeps last good", update(cfg(mappingNoKey), nil),
			mappingWant{2, map[string]string{"team-a/ci-runner": roleCI}, 2, 2}},
		{"unchanged bad content is not re-reported", update(cfg(mappingNoKey), map[string]string{"touched": "yes"}),
			mappingWant{2, map[string]string{"team-a/ci-runner": roleCI}, 2, 2}},
		{"other name in namespace ignored", create(testNS, "other", cfg(mappingEvil)),
			mappingWant{2, map[string]string{"team-a/ci-runner": roleCI}, 2, 2}},
		{"same name in other namespace ignored", create("elsewhere", DefaultConfigMapName, cfg(mappingEvil)),
			mappingWant{2, map[string]string{"team-a/ci-runner": roleCI}, 2, 2}},
		{"valid update after ignored events", update(cfg(mappingCI), nil),
			mappingWant{1, map[string]string{"team-a/ci-runner": roleCI, "default/app": "", "default/other": ""}, 3, 2}},
		{"missing key is empty", update(map[string]string{"other": mappingApp}, nil),
			mappingWant{0, map[string]string{"team-a/ci-runner": "", "default/app": ""}, 4, 2}},
		{"key restored", update(cfg(mappingApp), nil),
			mappingWant{1, appOnly, 5, 2}},
		{"delete clears", func(t *testing.T) {
			if err := cms.Delete(ctx, DefaultConfigMapName, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}, mappingWant{0, map[string]string{"default/app": ""}, 6, 2}},
		{"bad JSON after delete keeps empty", create(testNS, DefaultConfigMapName, cfg(mappingBad)),
			mappingWant{0, map[string]string{"default/app": ""}, 6, 3}},
		{"recreated", update(cfg(mappingApp), nil),
			mappingWant{1, appOnly, 7, 3}},
	}
	for _, s := range steps {
		if s.do != nil {
			s.do(t)
		}
		testutil.Eventually(t, waitTimeout, pollInterval, s.name, func() (bool, string) {
			return checkMapping(w.Current(), met, s.want), describeMapping(w, met)
		})
	}
}

func TestMappingWatcherAbsentAtStart(t *testing.T) {
	client := fake.NewClientset()
	w, met := startMappingWatcher(t, client)
	if !checkMapping(w.Current(), met, mappingWant{0, map[string]string{"default/app": ""}, 0, 0}) {
		t.Fatalf("after sync without ConfigMap: %s", describeMapping(w, met))
	}
	if _, err := client.CoreV1().ConfigMaps(testNS).Create(t.Context(),
		configMap(testNS, DefaultConfigMapName, cfg(mappingApp)), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	want := mappingWant{1, map[string]string{"default/app": roleApp}, 1, 0}
	testutil.Eventually(t, waitTimeout, pollInterval, "created ConfigMap", func() (bool, string) {
		return checkMapping(w.Current(), met, want), describeMapping(w, met)
	})
}

func TestMappingWatcherHandlers(t *testing.T) {
	// Drive the handlers directly: this covers the name filter regardless of
	// whether a client honours the field selector, and the delete tombstone.
	good := configMap(testNS, DefaultConfigMapName, cfg(mappingApp))
	binary := configMap(testNS, DefaultConfigMapName, nil)
	binary.BinaryData = map[string][]byte{"config": []byte(mappingTwo)}
	tests := []struct {
		name    string
		events  func(w *MappingWatcher)
		wantLen int
		ok, err float64
	}{
		{"add", func(w *MappingWatcher) { w.onUpsert(good) }, 1, 1, 0},
		{"add twice counts once", func(w *MappingWatcher) { w.onUpsert(good); w.onUpsert(good.DeepCopy()) }, 1, 1, 0},
		{"other name ignored", func(w *MappingWatcher) {
			w.onUpsert(configMap(testNS, "other", cfg(mappingApp)))
		}, 0, 0, 0},
		{"other namespace ignored", func(w *MappingWatcher) {
			w.onUpsert(configMap("elsewhere", DefaultConfigMapName, cfg(mappingApp)))
		}, 0, 0, 0},
		{"not a ConfigMap ignored", func(w *MappingWatcher) { w.onUpsert(&corev1.Secret{}) }, 0, 0, 0},
		{"binaryData", func(w *MappingWatcher) { w.onUpsert(binary) }, 2, 1, 0},
		{"delete of other name ignored", func(w *MappingWatcher) {
			w.onUpsert(good)
			w.onDelete(configMap(testNS, "other", nil))
		}, 1, 1, 0},
		{"delete", func(w *MappingWatcher) { w.onUpsert(good); w.onDelete(good) }, 0, 2, 0},
		{"delete twice counts once", func(w *MappingWatcher) {
			w.onUpsert(good)
			w.onDelete(good)
			w.onDelete(cache.DeletedFinalStateUnknown{Key: testNS + "/" + DefaultConfigMapName})
		}, 0, 2, 0},
		{"tombstone", func(w *MappingWatcher) {
			w.onUpsert(good)
			w.onDelete(cache.DeletedFinalStateUnknown{Key: testNS + "/" + DefaultConfigMapName, Obj: good})
		}, 0, 2, 0},
		{"tombstone of other name ignored", func(w *MappingWatcher) {
			w.onUpsert(good)
			w.onDelete(cache.DeletedFinalStateUnknown{Key: testNS + "/other"})
		}, 1, 1, 0},
		{"bad then good", func(w *MappingWatcher) {
			w.onUpsert(configMap(testNS, DefaultConfigMapName, cfg(mappingBad)))
			w.onUpsert(good)
		}, 1, 1, 1},
		{"empty value is empty", func(w *MappingWatcher) {
			w.onUpsert(good)
			w.onUpsert(configMap(testNS, DefaultConfigMapName, cfg("  ")))
		}, 0, 2, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			met := metrics.NewWebhook(prometheus.NewRegistry())
			w := NewMappingWatcher(MappingOptions{
				Client: fake.NewClientset(), Namespace: testNS, Metrics: met, Logger: testLogger(t),
			})
			tt.events(w)
			if got := w.Current().Len(); got != tt.wantLen {
				t.Errorf("Len = %d, want %d", got, tt.wantLen)
			}
			if got := reloads(met, metrics.SourceConfigMap, metrics.ResultOK); got != tt.ok {
				t.Errorf("ok reloads = %v, want %v", got, tt.ok)
			}
			if got := reloads(met, metrics.SourceConfigMap, metrics.ResultError); got != tt.err {
				t.Errorf("error reloads = %v, want %v", got, tt.err)
			}
			if got := entries(met, metrics.SourceConfigMap); got != float64(tt.wantLen) {
				t.Errorf("entries = %v, want %d", got, tt.wantLen)
			}
		})
	}
}

func TestNewMappingWatcherDefaults(t *testing.T) {
	w := NewMappingWatcher(MappingOptions{Client: fake.NewClientset()})
	if w.namespace != metav1.NamespaceDefault || w.name != DefaultConfigMapName || w.key != DefaultConfigMapKey {
		t.Errorf("defaults = %q %q %q", w.namespace, w.name, w.key)
	}
	if w.Current() != nil || w.Current().Len() != 0 {
		t.Error("Current before Run is not an empty mapping")
	}
	if w.HasSynced() {
		t.Error("HasSynced before Run")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if w.WaitForSync(ctx) {
		t.Error("WaitForSync with a done context and no Run reported success")
	}
}

func TestNewMappingWatcherNilClientPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("no panic")
		}
	}()
	NewMappingWatcher(MappingOptions{})
}
