//go:build !linux

package harness

import "syscall"

// sysProcAttr is empty outside Linux, which has no parent-death signal: a test
// binary killed outright (SIGKILL, a `go test -timeout` panic) can leave the
// webhook process running; Stop and Kill still end it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{}
}
