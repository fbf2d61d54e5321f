//go:build !unix

package proxy

import (
	"net"
	"testing"
)

// deadURL is an upstream URL that refuses connections (an address whose
// listener was closed; on unix a bound socket holds it, see the unix file).
func deadURL(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return "http://" + addr
}
