// Package benchstat is what the load generators under hack/ measure with:
// exact latency percentiles, a process's CPU time and memory from /proc, and
// counters read from a Prometheus text exposition.
package benchstat

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Percentile is the p-th percentile (0 < p <= 100) of sorted by the
// nearest-rank method: the smallest sample such that at least p % of all
// samples are less than or equal to it. It always returns an observed sample
// and 0 for no samples. p is resolved to 1e-4 of a percent and the rank is
// computed in integers, so p99.9 of 1,000 samples is the 999th, not the
// 1,000th through float rounding. Samples are nanoseconds or
// time.Durations.
func Percentile[T ~int64](sorted []T, p float64) T {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	ppm := int64(math.Round(p * 10000)) // parts per million
	if ppm <= 0 {
		return sorted[0]
	}
	if ppm >= 1000000 {
		return sorted[n-1]
	}
	rank := max((ppm*int64(n)+999999)/1000000, 1) // ceil(p/100 * n), 1-based
	return sorted[rank-1]
}

// Summary is a latency distribution.
type Summary struct {
	Count                               int
	Min, Mean, P50, P90, P99, P999, Max time.Duration
}

// Summarize sorts samples (nanoseconds) in place and summarizes them.
func Summarize(samples []int64) Summary {
	if len(samples) == 0 {
		return Summary{}
	}
	slices.Sort(samples)
	var sum float64
	for _, s := range samples {
		sum += float64(s)
	}
	pct := func(p float64) time.Duration { return time.Duration(Percentile(samples, p)) }
	return Summary{
		Count: len(samples),
		Min:   time.Duration(samples[0]),
		Mean:  time.Duration(sum / float64(len(samples))),
		P50:   pct(50), P90: pct(90), P99: pct(99), P999: pct(99.9),
		Max: time.Duration(samples[len(samples)-1]),
	}
}

// FormatDuration writes a latency with µs resolution below 1 ms.
func FormatDuration(d time.Duration) string {
	switch {
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	case d >= time.Millisecond:
		return fmt.Sprintf("%.3fms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.1fµs", float64(d)/1e3)
	}
}

// Errors counts failed requests by kind and keeps the first message of each
// kind. The zero value is empty and ready.
type Errors struct {
	count map[string]int
	first map[string]string
}

// Add counts one failure of kind with message msg.
func (e *Errors) Add(kind, msg string) {
	if e.count == nil {
		e.count, e.first = map[string]int{}, map[string]string{}
	}
	if _, ok := e.first[kind]; !ok {
		e.first[kind] = msg
	}
	e.count[kind]++
}

// Merge adds other's counts; a kind's first message stays e's if it has one.
func (e *Errors) Merge(other *Errors) {
	for kind, n := range other.count {
		e.Add(kind, other.first[kind])
		e.count[kind] += n - 1
	}
}

// Total is the number of failures of every kind.
func (e *Errors) Total() int {
	n := 0
	for _, c := range e.count {
		n += c
	}
	return n
}

// Write prints, by kind in order, "label: N × kind, first: message".
func (e *Errors) Write(w io.Writer, label string) {
	for _, kind := range slices.Sorted(maps.Keys(e.count)) {
		fmt.Fprintf(w, "%s: %d × %s, first: %s\n", label, e.count[kind], kind, e.first[kind])
	}
}

// clockTick is USER_HZ, the unit of /proc/<pid>/stat's CPU times: 100 on
// every Linux architecture Go supports.
const clockTick = 100

// ProcessCPU is the user+system CPU time process pid has used, from
// /proc/<pid>/stat (10 ms resolution).
func ProcessCPU(pid int) (time.Duration, error) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("reading the CPU time of process %d: %w", pid, err)
	}
	return parseStatCPU(string(stat))
}

// parseStatCPU reads utime+stime from a /proc/<pid>/stat line.
func parseStatCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc stat line %.40q", stat)
	}
	// After the comm: state(0) ppid(1) … utime(11) stime(12).
	fields := strings.Fields(stat[i+1:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("malformed /proc stat line %.40q", stat)
	}
	u, uerr := strconv.ParseInt(fields[11], 10, 64)
	s, serr := strconv.ParseInt(fields[12], 10, 64)
	if uerr != nil || serr != nil {
		return 0, fmt.Errorf("malformed /proc stat times %q %q", fields[11], fields[12])
	}
	return time.Duration(u+s) * time.Second / clockTick, nil
}

// Memory is a process's resident memory, from /proc/<pid>/status.
type Memory struct {
	RSS  int64 // VmRSS, bytes: resident now
	Peak int64 // VmHWM, bytes: the most it has been resident
	Anon int64 // RssAnon, bytes: of RSS, the heap, stacks and runtime
	File int64 // RssFile, bytes: of RSS, the mapped binary and libraries
}

// String is RSS, peak and the split of RSS.
func (m Memory) String() string {
	return fmt.Sprintf("VmRSS %s (anon %s, file %s), VmHWM %s", MiB(m.RSS), MiB(m.Anon), MiB(m.File), MiB(m.Peak))
}

// ProcessMemory reads process pid's VmRSS and VmHWM.
func ProcessMemory(pid int) (Memory, error) {
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return Memory{}, fmt.Errorf("reading the memory of process %d: %w", pid, err)
	}
	return parseStatusMemory(string(status))
}

// parseStatusMemory reads VmRSS, VmHWM, RssAnon and RssFile (in kB) from
// /proc/<pid>/status.
func parseStatusMemory(status string) (Memory, error) {
	var m Memory
	fields := map[string]*int64{"VmRSS": &m.RSS, "VmHWM": &m.Peak, "RssAnon": &m.Anon, "RssFile": &m.File}
	var found int
	for line := range strings.Lines(status) {
		key, val, ok := strings.Cut(line, ":")
		dst := fields[key]
		if !ok || dst == nil {
			continue
		}
		f := strings.Fields(val)
		if len(f) != 2 || f[1] != "kB" {
			return Memory{}, fmt.Errorf("malformed %s line %q", key, line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return Memory{}, fmt.Errorf("malformed %s line %q: %w", key, line, err)
		}
		*dst = kb << 10
		found++
	}
	if found != len(fields) {
		return Memory{}, fmt.Errorf("no VmRSS, VmHWM, RssAnon and RssFile in /proc status")
	}
	return m, nil
}

// MachineBusy is the CPU time all processes have used since boot, from
// the first line of /proc/stat (user nice system idle iowait irq softirq
// steal), idle and iowait left out: against the sum of the measured
// processes, it tells how much other work competed for the cores.
func MachineBusy() (time.Duration, error) {
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("reading /proc/stat: %w", err)
	}
	line, _, _ := strings.Cut(string(stat), "\n")
	var ticks int64
	for i, f := range strings.Fields(line) {
		if i == 0 || i == 4 || i == 5 || i > 8 {
			continue // "cpu", idle, iowait, guest (already in user)
		}
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("malformed /proc/stat line %.60q", line)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / clockTick, nil
}

// MiB formats bytes in mebibytes.
func MiB(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// Metrics is a Prometheus text exposition: sample value by series as
// written, `name{label="value",…}`.
type Metrics map[string]float64

// ParseMetrics reads the samples of a text exposition; comments and lines
// it cannot read are skipped.
func ParseMetrics(text string) Metrics {
	m := Metrics{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] += v
		}
	}
	return m
}

// Scrape fetches url, a /metrics endpoint, and parses its exposition.
func Scrape(ctx context.Context, url string) (Metrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return ParseMetrics(string(body)), nil
}

// Sum adds the samples of metric name whose labels contain every one of
// labels (each `key="value"`).
func (m Metrics) Sum(name string, labels ...string) float64 {
	total := 0.0
	for series, v := range m {
		n, rest, _ := strings.Cut(series, "{")
		if n != name {
			continue
		}
		have := strings.Split(strings.TrimSuffix(rest, "}"), ",")
		if !slices.ContainsFunc(labels, func(l string) bool { return !slices.Contains(have, l) }) {
			total += v
		}
	}
	return total
}

// Profile is `perf record -g` sampling a process.
type Profile struct {
	path string
	cmd  *exec.Cmd
	out  bytes.Buffer
}

// StartProfile starts `perf record` with call graphs (Go keeps frame
// pointers) on pid, writing to path; Finish stops it.
func StartProfile(pid int, path string) (*Profile, error) {
	p := &Profile{path: path}
	p.cmd = exec.Command("perf", "record", "-F", "997", "-g", "-p", strconv.Itoa(pid), "-o", path)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting perf record: %w", err)
	}
	// perf attaches within a few milliseconds; give it time before the load.
	time.Sleep(500 * time.Millisecond)
	return p, nil
}

// Finish stops perf and says where the profile of what is.
func (p *Profile) Finish(w io.Writer, what string) {
	_ = p.cmd.Process.Signal(os.Interrupt)
	// perf writes its file on SIGINT, then dies of it: the file tells.
	err := p.cmd.Wait()
	if st, serr := os.Stat(p.path); serr != nil || st.Size() == 0 {
		fmt.Fprintf(w, "perf record: %v %v\n%s", err, serr, p.out.String())
		return
	}
	fmt.Fprintf(w, "perf profile of %s: %s (perf report -i %s --no-children --sort symbol)\n", what, p.path, p.path)
}
