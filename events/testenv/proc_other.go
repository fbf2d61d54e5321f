//go:build !linux

package testenv

import "syscall"

// dieWithParent: only Linux can tie a child's life to its parent's; elsewhere
// the test's cleanup kills the processes.
func dieWithParent() *syscall.SysProcAttr { return nil }
