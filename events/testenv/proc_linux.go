package testenv

import "syscall"

// dieWithParent makes a child process get SIGKILL when the test binary
// dies, so a crashed or killed test leaves no redis-server behind.
func dieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
