package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func seq(n int) []int64 {
	s := make([]int64, n)
	for i := range s {
		s[i] = int64(i + 1)
	}
	return s
}

func TestPercentile(t *testing.T) {
	tests := []struct {
		name string
		data []int64 // sorted
		p    float64
		want int64
	}{
		{"empty", nil, 50, 0},
		{"single p0", []int64{7}, 0, 7},
		{"single p50", []int64{7}, 50, 7},
		{"single p100", []int64{7}, 100, 7},
		{"two p50", []int64{1, 2}, 50, 1},
		{"two p51", []int64{1, 2}, 51, 2},
		{"four p25", []int64{10, 20, 30, 40}, 25, 10},
		{"four p75", []int64{10, 20, 30, 40}, 75, 30},
		{"four p76", []int64{10, 20, 30, 40}, 76, 40},
		{"ten p90", seq(10), 90, 9},
		{"ten p99", seq(10), 99, 10},
		{"100 p50", seq(100), 50, 50},
		{"100 p99", seq(100), 99, 99},
		{"100 p99.9", seq(100), 99.9, 100},
		{"1000 p99", seq(1000), 99, 990},
		// Float trap: 99.9/100*1000 is 999.0000000000001 in float64.
		{"1000 p99.9", seq(1000), 99.9, 999},
		{"1000 p90", seq(1000), 90, 900},
		{"1000 p100", seq(1000), 100, 1000},
		{"10000 p99.9", seq(10000), 99.9, 9990},
		{"10000 p99.99", seq(10000), 99.99, 9999},
		{"1001 p50", seq(1001), 50, 501},
		{"above 100 clamps", seq(10), 150, 10},
		{"negative clamps", seq(10), -1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.data, tt.p); got != tt.want {
				t.Errorf("percentile(n=%d, %v) = %d, want %d", len(tt.data), tt.p, got, tt.want)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	// Unsorted input: 1..1000 µs reversed.
	samples := make([]int64, 1000)
	for i := range samples {
		samples[i] = int64(1000-i) * int64(time.Microsecond)
	}
	got := summarize(samples)
	want := LatencySummary{
		Count: 1000,
		Min:   1 * time.Microsecond,
		Mean:  500500 * time.Nanosecond,
		P50:   500 * time.Microsecond,
		P90:   900 * time.Microsecond,
		P99:   990 * time.Microsecond,
		P999:  999 * time.Microsecond,
		Max:   1000 * time.Microsecond,
	}
	if got != want {
		t.Errorf("summarize = %+v\nwant %+v", got, want)
	}
	if got := summarize(nil); got != (LatencySummary{}) {
		t.Errorf("summarize(nil) = %+v, want zero", got)
	}
}

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
		Latency: LatencySummary{Count: 98, Min: 40 * time.Microsecond, P99: 1500 * time.Microsecond,
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
