package testenv

import "syscall"

// sysProcAttr makes the kernel SIGKILL a server when the test binary dies,
// so a crashed or timed-out test never leaves mariadbd or redis-server
// running.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
