package bench

import "syscall"

// sysProcAttr kills a child when the bench dies, so no orderd outlives it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
