//go:build unix

package testutil

import (
	"syscall"
	"time"
)

// ProcessCPUTime is the user+system CPU time of this process, so that
// benchmarks on a shared machine can report CPU cost per operation, which
// other processes' load does not inflate as it does wall-clock time.
func ProcessCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
