//go:build !linux

package testenv

import "syscall"

// sysProcAttr has no parent-death signal outside Linux: servers are still
// killed by cleanup, but a test binary that crashes may leave them running.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{}
}
