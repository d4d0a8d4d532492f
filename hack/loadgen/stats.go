package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/podiam/podiam/hack/internal/benchstat"
)

// blockSize is the number of latency samples per recorder block. Samples are
// stored in fixed-size blocks so that growing the recorder in the middle of a
// run never copies (and never stalls a worker on a large memmove).
const blockSize = 1 << 16

// recorder stores exact per-request latencies (nanoseconds) for one worker.
// It is not safe for concurrent use: every worker owns one.
type recorder struct {
	blocks [][]int64
	n      int
}

// newRecorder returns a recorder with room pre-allocated for about expected
// samples.
func newRecorder(expected int) *recorder {
	r := &recorder{}
	for i := 0; i < (expected+blockSize-1)/blockSize; i++ {
		r.blocks = append(r.blocks, make([]int64, 0, blockSize))
	}
	return r
}

func (r *recorder) record(d time.Duration) {
	b := r.n / blockSize
	if b == len(r.blocks) {
		r.blocks = append(r.blocks, make([]int64, 0, blockSize))
	}
	r.blocks[b] = append(r.blocks[b], int64(d))
	r.n++
}

func (r *recorder) len() int { return r.n }

// appendTo appends all samples to dst.
func (r *recorder) appendTo(dst []int64) []int64 {
	for _, b := range r.blocks {
		dst = append(dst, b...)
	}
	return dst
}

// Failed reports whether any measured request failed.
func (r *Result) Failed() int64 {
	return r.TransportErrors + r.StatusErrors + r.BodyErrors
}

// writeText prints a human-readable report.
func writeText(w io.Writer, r *Result) error {
	l := r.Latency
	_, err := fmt.Fprintf(w,
		"target      %s (client=%s, connections=%d, warmup=%s, duration=%s, max-requests=%d)\n"+
			"requests    %d measured, %d ok, %d failed (transport %d, status %d, body %d), reconnects %d\n"+
			"elapsed     %.3fs\n"+
			"throughput  %.1f req/s\n"+
			"latency     min %s  mean %s  p50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n",
		r.URL, r.Client, r.Concurrency, r.Warmup, r.Duration, r.MaxRequests,
		r.Requests, r.OK, r.Failed(), r.TransportErrors, r.StatusErrors, r.BodyErrors, r.Reconnects,
		r.Elapsed.Seconds(),
		r.Throughput,
		benchstat.FormatDuration(l.Min), benchstat.FormatDuration(l.Mean), benchstat.FormatDuration(l.P50), benchstat.FormatDuration(l.P90), benchstat.FormatDuration(l.P99), benchstat.FormatDuration(l.P999), benchstat.FormatDuration(l.Max))
	if err != nil {
		return err
	}
	for _, e := range r.ErrorSamples {
		if _, err := fmt.Fprintf(w, "error       %s\n", e); err != nil {
			return err
		}
	}
	return nil
}

type jsonLatency struct {
	Count  int64   `json:"count"`
	MinUS  float64 `json:"min_us"`
	MeanUS float64 `json:"mean_us"`
	P50US  float64 `json:"p50_us"`
	P90US  float64 `json:"p90_us"`
	P99US  float64 `json:"p99_us"`
	P999US float64 `json:"p99_9_us"`
	MaxUS  float64 `json:"max_us"`
}

type jsonErrors struct {
	Transport int64    `json:"transport"`
	Status    int64    `json:"status"`
	Body      int64    `json:"body"`
	Samples   []string `json:"samples,omitempty"`
}

type jsonResult struct {
	URL         string      `json:"url"`
	Client      string      `json:"client"`
	Concurrency int         `json:"concurrency"`
	WarmupS     float64     `json:"warmup_s"`
	DurationS   float64     `json:"duration_s"`
	MaxRequests int64       `json:"max_requests"`
	Requests    int64       `json:"requests"`
	OK          int64       `json:"ok"`
	Failed      int64       `json:"failed"`
	Errors      jsonErrors  `json:"errors"`
	Reconnects  int64       `json:"reconnects"`
	ElapsedS    float64     `json:"elapsed_s"`
	RPS         float64     `json:"throughput_rps"`
	Latency     jsonLatency `json:"latency"`
	Pass        *bool       `json:"pass,omitempty"`
	FailReasons []string    `json:"fail_reasons,omitempty"`
}

func us(d time.Duration) float64 { return math.Round(float64(d)/1e1) / 1e2 } // µs, 2 decimals

// writeJSON prints the result as one JSON object. pass/reasons are the
// verdict of the optional -min-rps/-max-p99 thresholds (pass nil: none set).
func writeJSON(w io.Writer, r *Result, pass *bool, reasons []string) error {
	l := r.Latency
	out := jsonResult{
		URL:         r.URL,
		Client:      r.Client,
		Concurrency: r.Concurrency,
		WarmupS:     r.Warmup.Seconds(),
		DurationS:   r.Duration.Seconds(),
		MaxRequests: r.MaxRequests,
		Requests:    r.Requests,
		OK:          r.OK,
		Failed:      r.Failed(),
		Errors: jsonErrors{
			Transport: r.TransportErrors,
			Status:    r.StatusErrors,
			Body:      r.BodyErrors,
			Samples:   r.ErrorSamples,
		},
		Reconnects: r.Reconnects,
		ElapsedS:   r.Elapsed.Seconds(),
		RPS:        math.Round(r.Throughput*10) / 10,
		Latency: jsonLatency{
			Count: int64(l.Count), MinUS: us(l.Min), MeanUS: us(l.Mean), P50US: us(l.P50), P90US: us(l.P90),
			P99US: us(l.P99), P999US: us(l.P999), MaxUS: us(l.Max),
		},
		Pass:        pass,
		FailReasons: reasons,
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
