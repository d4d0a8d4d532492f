//go:build !linux

package netinit

import (
	"errors"
	"fmt"
	"runtime"
)

// Apply is implemented on Linux only, where the agent's DaemonSet runs; here
// it returns an error wrapping errors.ErrUnsupported.
func Apply(cfg Config) (Result, error) {
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	return Result{}, fmt.Errorf("putting addresses on interface %s: only on Linux (this is %s): %w",
		cfg.Interface, runtime.GOOS, errors.ErrUnsupported)
}
