package harness

import "syscall"

// sysProcAttr has the kernel SIGKILL the webhook process when the test binary
// dies, however it ends: the process never outlives the test.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
