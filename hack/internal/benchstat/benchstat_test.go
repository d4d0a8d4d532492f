package benchstat

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
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
		name   string
		sorted []int64
		p      float64
		want   int64
	}{
		{"empty", nil, 50, 0},
		{"single p0", []int64{7}, 0, 7},
		{"single p50", []int64{7}, 50, 7},
		{"single p100", []int64{7}, 100, 7},
		{"two p50", []int64{1, 2}, 50, 1},
		{"two p51", []int64{1, 2}, 51, 2},
		{"four p25", []int64{10, 20, 30, 40}, 25, 10},
		{"median of four is the second", []int64{1, 2, 3, 4}, 50, 2},
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
		{"1000 p0 is the min", seq(1000), 0, 1},
		{"10000 p99.9", seq(10000), 99.9, 9990},
		{"10000 p99.99", seq(10000), 99.99, 9999},
		{"1001 p50", seq(1001), 50, 501},
		{"above 100 clamps", seq(10), 150, 10},
		{"negative clamps", seq(10), -1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("Percentile(n=%d, p%v) = %d, want %d", len(tt.sorted), tt.p, got, tt.want)
			}
		})
	}
}

// TestPercentileDurations checks that time.Durations, as the programs keep
// their latencies, get the same nearest rank as nanoseconds.
func TestPercentileDurations(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", []time.Duration{time.Second}, 99, time.Second},
		{"p50 of 100", hundred, 50, 50 * time.Millisecond},
		{"p99 of 100", hundred, 99, 99 * time.Millisecond},
		{"p1 of 100", hundred, 1, time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("Percentile(p%v) = %v, want %v", tt.p, got, tt.want)
			}
		})
	}
}

// TestSummarize checks the distribution of unsorted samples.
func TestSummarize(t *testing.T) {
	reversed := make([]int64, 1000) // 1..1000 µs, reversed
	for i := range reversed {
		reversed[i] = int64(1000-i) * int64(time.Microsecond)
	}
	tests := []struct {
		name    string
		samples []int64
		want    Summary
	}{
		{"none", nil, Summary{}},
		{"four", []int64{4000, 1000, 3000, 2000}, Summary{Count: 4, Min: time.Microsecond, Mean: 2500 * time.Nanosecond,
			P50: 2 * time.Microsecond, P90: 4 * time.Microsecond, P99: 4 * time.Microsecond, P999: 4 * time.Microsecond, Max: 4 * time.Microsecond}},
		{"a thousand reversed", reversed, Summary{Count: 1000, Min: time.Microsecond, Mean: 500500 * time.Nanosecond,
			P50: 500 * time.Microsecond, P90: 900 * time.Microsecond, P99: 990 * time.Microsecond, P999: 999 * time.Microsecond, Max: 1000 * time.Microsecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Summarize(tt.samples); got != tt.want {
				t.Errorf("Summarize = %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseStatCPU(t *testing.T) {
	tests := []struct {
		name    string
		stat    string
		want    time.Duration
		wantErr bool
	}{
		// utime 250, stime 50 ticks; the comm holds a space and a parenthesis.
		{"comm with spaces", "42 (podiam (x) y) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0", 3 * time.Second, false},
		{"truncated", "42 (podiam) S 1 2", 0, true},
		{"no comm", "garbage", 0, true},
		{"not a number", "42 (p) S 1 42 42 0 -1 4194560 100 0 0 0 x 50 0", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatCPU(tt.stat)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseStatCPU = %v, %v; want %v, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseStatusMemory(t *testing.T) {
	tests := []struct {
		name    string
		status  string
		want    Memory
		wantErr bool
	}{
		{"all four", "Name:\tpodiam\nVmHWM:\t   55512 kB\nVmRSS:\t   44288 kB\nRssAnon:\t   15872 kB\nRssFile:\t   28416 kB\n",
			Memory{RSS: 44288 << 10, Peak: 55512 << 10, Anon: 15872 << 10, File: 28416 << 10}, false},
		{"missing RssFile", "VmHWM:\t1 kB\nVmRSS:\t1 kB\nRssAnon:\t1 kB\n", Memory{}, true},
		{"bad unit", "VmHWM:\t1 MB\nVmRSS:\t1 kB\nRssAnon:\t1 kB\nRssFile:\t1 kB\n", Memory{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatusMemory(tt.status)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseStatusMemory = %+v, %v; want %+v, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestMetricsSum(t *testing.T) {
	m := ParseMetrics(`# HELP podiam_agent_backend_calls_total x
# TYPE podiam_agent_backend_calls_total counter
podiam_agent_backend_calls_total{result="ok"} 250
podiam_agent_backend_calls_total{result="error"} 3
podiam_agent_cache_hits_total 1e+06
podiam_sts_calls_total{action="AssumeRole",result="success"} 1000
podiam_sts_calls_total{action="AssumeRole",result="AccessDenied"} 2
podiam_sts_calls_total{action="GetCallerIdentity",result="success"} 7
not a sample
`)
	tests := []struct {
		name   string
		metric string
		labels []string
		want   float64
	}{
		{"every series", "podiam_agent_backend_calls_total", nil, 253},
		{"one label", "podiam_agent_backend_calls_total", []string{`result="ok"`}, 250},
		{"no labels", "podiam_agent_cache_hits_total", nil, 1e6},
		{"absent", "podiam_agent_cache_misses_total", nil, 0},
		{"two labels", "podiam_sts_calls_total", []string{`action="AssumeRole"`, `result="success"`}, 1000},
		{"every result of one action", "podiam_sts_calls_total", []string{`action="AssumeRole"`}, 1002},
		{"name is not a prefix match", "podiam_sts_calls", nil, 0},
		{"absent label value", "podiam_sts_calls_total", []string{`action="Other"`}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := m.Sum(tt.metric, tt.labels...); got != tt.want {
				t.Errorf("Sum(%s, %v) = %v, want %v", tt.metric, tt.labels, got, tt.want)
			}
		})
	}
}

// TestScrape reads a /metrics endpoint, and refuses an answer that is not one.
func TestScrape(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		want    float64
		wantErr bool
	}{
		{"metrics", http.StatusOK, 3, false},
		{"not ready", http.StatusServiceUnavailable, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(tt.status)
				fmt.Fprint(w, "podiam_agent_backend_calls_total{result=\"ok\"} 3\n")
			}))
			defer srv.Close()
			m, err := Scrape(context.Background(), srv.URL+"/metrics")
			if (err != nil) != tt.wantErr {
				t.Fatalf("Scrape error %v, want error %v", err, tt.wantErr)
			}
			if got := m.Sum("podiam_agent_backend_calls_total"); got != tt.want {
				t.Errorf("Sum = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestErrors counts failures by kind, keeps each kind's first message
// (through Merge too) and prints the kinds in order.
func TestErrors(t *testing.T) {
	type failure struct{ kind, msg string }
	tests := []struct {
		name      string
		own, more []failure
		wantTotal int
		want      string
	}{
		{"none", nil, nil, 0, ""},
		{"one kind", []failure{{"transport", "refused"}, {"transport", "reset"}}, nil, 2,
			"load: 2 × transport, first: refused\n"},
		{"kinds in order", []failure{{"status 500", "boom"}, {"status 403", "no"}}, nil, 2,
			"load: 1 × status 403, first: no\nload: 1 × status 500, first: boom\n"},
		{"merged", []failure{{"transport", "refused"}}, []failure{{"transport", "reset"}, {"transport", "eof"}, {"status 429", "slow down"}}, 4,
			"load: 1 × status 429, first: slow down\nload: 3 × transport, first: refused\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e, more Errors
			for _, f := range tt.own {
				e.Add(f.kind, f.msg)
			}
			for _, f := range tt.more {
				more.Add(f.kind, f.msg)
			}
			e.Merge(&more)
			var out bytes.Buffer
			e.Write(&out, "load")
			if e.Total() != tt.wantTotal || out.String() != tt.want {
				t.Errorf("Total %d, Write:\n%s\nwant %d,\n%s", e.Total(), out.String(), tt.wantTotal, tt.want)
			}
		})
	}
}
