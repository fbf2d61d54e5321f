//go:build unix

package proxy

import (
	"fmt"
	"syscall"
	"testing"
)

// deadURL is an upstream URL whose port refuses connections for the whole
// test: a socket bound to it and never listening holds it, so no listener
// a parallel test opens on port 0 can be given it (closing a listener and
// reusing its address would let another test's server answer there).
func deadURL(t testing.TB) string {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("http://127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
}
