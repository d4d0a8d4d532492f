package testcluster

import "syscall"

// sysProcAttr puts the child in its own process group (so Stop can signal
// the whole group) and asks the kernel to SIGKILL it when the thread that
// started it exits. The process is started and waited for on a goroutine
// locked to its OS thread, so that thread lives exactly as long as the child,
// and dies with the test binary however the binary ends (panic, os.Exit,
// SIGKILL from `go test -timeout`).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
