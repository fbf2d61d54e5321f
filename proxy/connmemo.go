package proxy

// What a connection accepted by Listener remembers from one request to the
// next: a keep-alive client sends the same key from the same address on
// every request, and working them out again was a measurable part of the
// gateway's own work.

import (
	"crypto/subtle"
	"net/netip"

	"github.com/valyala/fasthttp"

	"github.com/tenantgate/gateway/projections"
)

// keyDigest is the SHA-256 of the request's API key, which the snapshot's
// tenants are looked up by. Hashing was the largest single part of the
// gateway's own work per request (about 2,200 instructions of 43,000), and a
// keep-alive client sends the same key on every request, so a connection
// accepted by Listener remembers its last key and digest. Authorization
// still goes through the snapshot on every request: a revoked key or a
// suspended tenant is refused at once, memo or not.
func keyDigest(c *fasthttp.RequestCtx, key []byte) [32]byte {
	if tc, ok := c.Conn().(*timedConn); ok {
		return tc.keys.digest(key)
	}
	return projections.KeyHash(key)
}

// keyMemo is one connection's last API key and its digest. The key stays in
// memory as long as the connection (as it does in the connection's read
// buffer); it is compared in constant time.
type keyMemo struct {
	key []byte
	sum [32]byte
}

// maxMemoKey bounds the key a connection remembers; a longer one (never a
// key the gateway issued) is hashed on every request.
const maxMemoKey = 128

func (m *keyMemo) digest(key []byte) [32]byte {
	if len(m.key) > 0 && subtle.ConstantTimeCompare(m.key, key) == 1 {
		return m.sum
	}
	sum := projections.KeyHash(key)
	if len(key) <= maxMemoKey {
		m.key = append(m.key[:0], key...)
		m.sum = sum
	}
	return sum
}

// appendPeer appends the client's address as X-Forwarded-For carries it
// and reports whether it is a trusted proxy; a connection accepted by
// Listener works both out once, not on every request.
func (p *Proxy) appendPeer(dst []byte, c *fasthttp.RequestCtx) ([]byte, bool) {
	tc, ok := c.Conn().(*timedConn)
	if ok && tc.peer.addr != nil {
		return append(dst, tc.peer.addr...), tc.peer.trusted
	}
	a, _ := netip.AddrFromSlice(c.RemoteIP())
	a = a.Unmap()
	trusted := p.isTrusted(a)
	if ok {
		tc.peer = peerMemo{addr: a.AppendTo(nil), trusted: trusted}
	}
	return a.AppendTo(dst), trusted
}

// peerMemo is a connection's client address, formatted, and whether it is
// a trusted proxy.
type peerMemo struct {
	addr    []byte // nil: not worked out yet
	trusted bool
}
