package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/podiam/podiam/hack/internal/benchstat"
)

func TestRecorderBlocks(t *testing.T) {
	r := newRecorder(10) // one block pre-allocated, must grow past it
	n := 2*blockSize + 5
	for i := 0; i < n; i++ {
		r.record(time.Duration(i))
	}
	if r.len() != n {
		t.Fatalf("len = %d, want %d", r.len(), n)
	}
	all := r.appendTo(nil)
	if len(all) != n {
		t.Fatalf("appendTo len = %d, want %d", len(all), n)
	}
	for i, v := range all {
		if v != int64(i) {
			t.Fatalf("sample %d = %d", i, v)
		}
	}
}

func TestOutputFormats(t *testing.T) {
	res := &Result{
		URL: "https://127.0.0.1:8443/mutate", Client: ClientRaw, Concurrency: 4,
		Warmup: time.Second, Duration: 10 * time.Second,
		Requests: 100, OK: 98, StatusErrors: 2, Elapsed: time.Second, Throughput: 98,
		Latency: benchstat.Summary{Count: 98, Min: 40 * time.Microsecond, P99: 1500 * time.Microsecond,
			P999: 1999500 * time.Nanosecond, Max: 12 * time.Millisecond},
		ErrorSamples: []string{"status 500, want 200"},
	}
	var text bytes.Buffer
	if err := writeText(&text, res); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"98.0 req/s", "p99 1.500ms", "p99.9 2.000ms", "max 12.00ms", "min 40.0µs", "status 2", "status 500, want 200"} {
		if !strings.Contains(text.String(), s) {
			t.Errorf("text output lacks %q:\n%s", s, text.String())
		}
	}
	pass, reasons := checkThresholds(res, 10000, 2*time.Millisecond)
	if pass || len(reasons) != 2 {
		t.Errorf("checkThresholds = %v %q, want fail with 2 reasons", pass, reasons)
	}
	var js bytes.Buffer
	if err := writeJSON(&js, res, &pass, reasons); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(js.Bytes(), &m); err != nil {
		t.Fatalf("invalid JSON: %v\n%s", err, js.String())
	}
	lat := m["latency"].(map[string]any)
	if lat["p99_us"] != 1500.0 || lat["min_us"] != 40.0 || m["failed"] != 2.0 || m["pass"] != false {
		t.Errorf("unexpected JSON: %s", js.String())
	}
}
