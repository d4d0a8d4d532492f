package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseMemoryStat(t *testing.T) {
	real, err := os.ReadFile("testdata/memory.stat")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		text    string
		want    memoryStat
		wantErr bool
	}{
		// A cgroup v1 memory.stat as the kernel writes it: the group's own
		// counters first, then the hierarchical total_* ones, which are read.
		{"kernel's file", string(real), memoryStat{RSS: 1847296, Cache: 87248896, MappedFile: 8192, InactiveFile: 4599808, ActiveFile: 82649088}, false},
		{"total_ only", "rss 1\ncache 2\ntotal_rss 10\ntotal_cache 20\ntotal_mapped_file 5\ntotal_inactive_file 7\ntotal_active_file 13\n",
			memoryStat{RSS: 10, Cache: 20, MappedFile: 5, InactiveFile: 7, ActiveFile: 13}, false},
		{"no final newline, blank line", "total_rss 1\n\ntotal_cache 2\ntotal_mapped_file 3\ntotal_inactive_file 4\ntotal_active_file 5",
			memoryStat{RSS: 1, Cache: 2, MappedFile: 3, InactiveFile: 4, ActiveFile: 5}, false},
		{"missing total_", "rss 1\ncache 2\nmapped_file 3\ninactive_file 4\nactive_file 5\n", memoryStat{}, true},
		{"missing one", "total_rss 1\ntotal_cache 2\ntotal_mapped_file 3\ntotal_active_file 5\n", memoryStat{}, true},
		{"not a number", "total_rss x\ntotal_cache 2\ntotal_mapped_file 3\ntotal_inactive_file 4\ntotal_active_file 5\n", memoryStat{}, true},
		{"negative", "total_rss -1\ntotal_cache 2\ntotal_mapped_file 3\ntotal_inactive_file 4\ntotal_active_file 5\n", memoryStat{}, true},
		{"extra field", "total_rss 1 kB\ntotal_cache 2\ntotal_mapped_file 3\ntotal_inactive_file 4\ntotal_active_file 5\n", memoryStat{}, true},
		{"cgroup v2 memory.stat", "anon 1\nfile 2\nfile_mapped 3\ninactive_file 4\nactive_file 5\n", memoryStat{}, true},
		{"empty", "", memoryStat{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMemoryStat(tt.text)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseMemoryStat = %+v, %v; want %+v, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestWorkingSet(t *testing.T) {
	tests := []struct {
		name string
		m    cgroupMemory
		want int64
	}{
		{"usage less inactive file", cgroupMemory{Usage: 50 << 20, memoryStat: memoryStat{InactiveFile: 20 << 20, ActiveFile: 10 << 20}}, 30 << 20},
		{"no page cache", cgroupMemory{Usage: 12 << 20}, 12 << 20},
		// usage_in_bytes is approximate (per-CPU charge batches): never negative.
		{"inactive above usage", cgroupMemory{Usage: 1 << 20, memoryStat: memoryStat{InactiveFile: 2 << 20}}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.m.WorkingSet(); got != tt.want {
				t.Errorf("WorkingSet = %d, want %d", got, tt.want)
			}
		})
	}
}

// TestMemCgroup runs a process in a real memory cgroup: it needs the cgroup
// v1 memory controller and the right to create a group (root).
func TestMemCgroup(t *testing.T) {
	if _, err := os.Stat(filepath.Join(defaultCgroupParent, "memory.stat")); err != nil || os.Geteuid() != 0 {
		t.Skip("needs root and the cgroup v1 memory controller at " + defaultCgroupParent)
	}
	c, err := newMemCgroup(defaultCgroupParent, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.remove() })
	bin, args := c.wrap("sleep", []string{"30"})
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	// The shell moves itself into the group and execs: the group's one
	// process is the command's, with the same pid.
	var procs []byte
	for range 100 {
		if procs, err = os.ReadFile(filepath.Join(c.dir, "cgroup.procs")); err == nil && len(procs) > 0 {
			if cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/cmdline"); strings.HasPrefix(string(cmdline), "sleep\x00") {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := strings.TrimSpace(string(procs)); got != strconv.Itoa(cmd.Process.Pid) {
		t.Fatalf("cgroup.procs %q, want the command's pid %d", got, cmd.Process.Pid)
	}
	m, err := c.read()
	if err != nil {
		t.Fatal(err)
	}
	if m.Usage <= 0 || m.MaxUsage < m.Usage {
		t.Errorf("accounting of a running process: %+v", m)
	}
	if limit, err := os.ReadFile(filepath.Join(c.dir, "memory.limit_in_bytes")); err != nil || strings.TrimSpace(string(limit)) != strconv.Itoa(64<<20) {
		t.Errorf("memory.limit_in_bytes %q, %v; want %d", limit, err, 64<<20)
	}

	// remove works with the process still in the group (a failed start):
	// it moves it out first.
	if err := c.remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cgroup %s still there: %v", c.dir, err)
	}
}
