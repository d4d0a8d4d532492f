//go:build !unix

package testutil

import "time"

// ProcessCPUTime is unavailable here; benchmarks then report 0 cpu-ns/op.
func ProcessCPUTime() time.Duration { return 0 }
