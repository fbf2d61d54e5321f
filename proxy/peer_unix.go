//go:build unix

package proxy

import "syscall"

// peerClosed reports whether the socket's peer closed it (or it broke): a
// look at what waits to be read, without taking it and without waiting,
// finds the end of the stream or an error. Data waiting (a pipelined
// request) means the peer is there.
func peerClosed(raw syscall.RawConn) bool {
	var gone bool
	var b [1]byte
	_ = raw.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch err {
		case nil:
			gone = n == 0
		case syscall.EAGAIN, syscall.EINTR: // nothing to read yet: the peer is there
		default:
			gone = true
		}
		return true // never wait for readiness
	})
	return gone
}
