//go:build unix && !linux

package testcluster

import "syscall"

// sysProcAttr puts the child in its own process group so Stop can signal the
// whole group. Outside Linux there is no parent-death signal: a test binary
// killed with SIGKILL can leave the control plane running.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
