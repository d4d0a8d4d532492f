package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/podiam/podiam/hack/internal/benchstat"
)

// With -cgroup the agent runs in a memory cgroup of its own (cgroup v1), so
// that what Kubernetes counts can be read next to VmRSS: the kubelet's
// working set (what `kubectl top`, eviction and a memory limit see) is the
// cgroup's usage less its inactive file pages, and a page of the page cache
// is charged to the cgroup that read it first, not to every process that
// maps it.

// defaultCgroupParent is where the memory controller of cgroup v1 is mounted.
const defaultCgroupParent = "/sys/fs/cgroup/memory"

// cgroupPrefix names the groups agentload creates, one per run.
const cgroupPrefix = "podiam-agentload-"

// cgroupMemory is a memory cgroup's accounting, in bytes: memory.usage_in_bytes,
// memory.max_usage_in_bytes, memory.kmem.usage_in_bytes and the hierarchical
// (total_*) counters of memory.stat.
type cgroupMemory struct {
	Usage    int64 // memory.usage_in_bytes: anon + page cache + kernel memory
	MaxUsage int64 // memory.max_usage_in_bytes: the most Usage has been
	Kmem     int64 // memory.kmem.usage_in_bytes: of Usage, kernel memory (stacks, slab)
	Failcnt  int64 // memory.failcnt: times Usage hit the limit (and reclaim ran)
	memoryStat
}

// memoryStat is what is read of memory.stat: the hierarchical counters,
// which include child groups (there are none here).
type memoryStat struct {
	RSS          int64 // total_rss: anonymous memory (heap, stacks, runtime)
	Cache        int64 // total_cache: page cache charged to the group
	MappedFile   int64 // total_mapped_file: of Cache, pages mapped by a process
	InactiveFile int64 // total_inactive_file: of Cache, reclaimable first
	ActiveFile   int64 // total_active_file: of Cache, recently used twice
}

// WorkingSet is the kubelet's (cAdvisor's) working set for cgroup v1: usage
// less inactive file pages, never below zero.
func (m cgroupMemory) WorkingSet() int64 { return max(m.Usage-m.InactiveFile, 0) }

// String is one line: what Kubernetes sees first, then where it comes from.
func (m cgroupMemory) String() string {
	return fmt.Sprintf("working set %s, usage %s (max %s): rss %s, cache %s (mapped %s, active %s, inactive %s), kmem %s; failcnt %d",
		benchstat.MiB(m.WorkingSet()), benchstat.MiB(m.Usage), benchstat.MiB(m.MaxUsage), benchstat.MiB(m.RSS),
		benchstat.MiB(m.Cache), benchstat.MiB(m.MappedFile), benchstat.MiB(m.ActiveFile), benchstat.MiB(m.InactiveFile), benchstat.MiB(m.Kmem), m.Failcnt)
}

// parseMemoryStat reads the total_* counters agentload reports from the
// text of a cgroup v1 memory.stat ("key value" lines, in bytes). Every one
// must be present: a kernel without them is not measured by guessing.
func parseMemoryStat(text string) (memoryStat, error) {
	var s memoryStat
	fields := map[string]*int64{
		"total_rss": &s.RSS, "total_cache": &s.Cache, "total_mapped_file": &s.MappedFile,
		"total_inactive_file": &s.InactiveFile, "total_active_file": &s.ActiveFile,
	}
	seen := make(map[string]bool, len(fields))
	for line := range strings.Lines(text) {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		dst := fields[f[0]]
		if dst == nil {
			continue
		}
		if len(f) != 2 {
			return memoryStat{}, fmt.Errorf("malformed memory.stat line %q", strings.TrimSpace(line))
		}
		v, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil || v < 0 {
			return memoryStat{}, fmt.Errorf("malformed memory.stat line %q", strings.TrimSpace(line))
		}
		*dst = v
		seen[f[0]] = true
	}
	for name := range fields {
		if !seen[name] {
			return memoryStat{}, fmt.Errorf("memory.stat has no %s (not a cgroup v1 memory controller?)", name)
		}
	}
	return s, nil
}

// memCgroup is a memory cgroup created for one process.
type memCgroup struct {
	dir    string
	parent string
}

// newMemCgroup creates parent/podiam-agentload-<pid>, after removing the
// empty groups earlier runs that were killed left behind, sets its memory
// limit (memory.limit_in_bytes, as a container's limit; 0: none) and checks
// that its accounting can be read.
func newMemCgroup(parent string, limit int64) (*memCgroup, error) {
	if _, err := os.Stat(filepath.Join(parent, "memory.stat")); err != nil {
		return nil, fmt.Errorf("no cgroup v1 memory controller at %s: %w", parent, err)
	}
	stale, _ := filepath.Glob(filepath.Join(parent, cgroupPrefix+"*"))
	for _, dir := range stale {
		// rmdir fails on a group that still has processes: a run in progress.
		_ = os.Remove(dir)
	}
	c := &memCgroup{dir: filepath.Join(parent, cgroupPrefix+strconv.Itoa(os.Getpid())), parent: parent}
	if err := os.Mkdir(c.dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating memory cgroup: %w", err)
	}
	if limit > 0 {
		if err := os.WriteFile(filepath.Join(c.dir, "memory.limit_in_bytes"), []byte(strconv.FormatInt(limit, 10)), 0); err != nil {
			return nil, errors.Join(fmt.Errorf("setting the memory limit: %w", err), c.remove())
		}
	}
	if _, err := c.read(); err != nil {
		return nil, errors.Join(err, c.remove())
	}
	return c, nil
}

// wrap returns the command that runs bin with args inside the group: a
// shell moves itself into it and execs bin, so bin's pid is the shell's and
// every page bin faults in from its first instruction is charged to the
// group (cgroup v1 has no clone-into-cgroup).
func (c *memCgroup) wrap(bin string, args []string) (string, []string) {
	return "/bin/sh", append([]string{"-c", `echo $$ >"$1/cgroup.procs" && shift && exec "$@"`, "agentload-cgroup", c.dir, bin}, args...)
}

// read reads the group's accounting.
func (c *memCgroup) read() (cgroupMemory, error) {
	var m cgroupMemory
	for name, dst := range map[string]*int64{
		"memory.usage_in_bytes": &m.Usage, "memory.max_usage_in_bytes": &m.MaxUsage, "memory.kmem.usage_in_bytes": &m.Kmem,
		"memory.failcnt": &m.Failcnt,
	} {
		b, err := os.ReadFile(filepath.Join(c.dir, name))
		if err != nil {
			return m, fmt.Errorf("reading the cgroup's accounting: %w", err)
		}
		if *dst, err = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err != nil {
			return m, fmt.Errorf("reading %s: %w", name, err)
		}
	}
	stat, err := os.ReadFile(filepath.Join(c.dir, "memory.stat"))
	if err != nil {
		return m, fmt.Errorf("reading the cgroup's accounting: %w", err)
	}
	m.memoryStat, err = parseMemoryStat(string(stat))
	return m, err
}

// remove moves any process still in the group to the parent (the agent has
// been stopped; this is for a failed start) and removes the group. Its page
// cache charges move to the parent, as the kernel does for any removed group.
func (c *memCgroup) remove() error {
	var err error
	for range 50 {
		if procs, rerr := os.ReadFile(filepath.Join(c.dir, "cgroup.procs")); rerr == nil {
			for pid := range strings.FieldsSeq(string(procs)) {
				_ = os.WriteFile(filepath.Join(c.parent, "cgroup.procs"), []byte(pid), 0)
			}
		}
		if err = os.Remove(c.dir); err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		time.Sleep(100 * time.Millisecond) // an exiting process leaves the group a little later
	}
	return fmt.Errorf("removing memory cgroup: %w", err)
}
