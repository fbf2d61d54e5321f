package proxy

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/tenantgate/gateway/projections"
	"github.com/tenantgate/gateway/proxy/framing"
	"github.com/valyala/fasthttp"
)

// keyDigest is the SHA-256 of the request's API key, which the snapshot's
// tenants are looked up by. Hashing was the largest single part of the
// gateway's own work per request (about 2,200 instructions of 43,000), and a
// keep-alive client sends the same key on every request, so a connection
// accepted by Listener remembers its last key and digest (with the peer
// memo below, 2,550 instructions a request, 7 %: scripts/bench/README.md). Authorization
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

// Guard wraps ln in the request-framing guard (package framing) with this
// proxy's header limit, read timeout, log and metrics. Listener includes it;
// serve a listener that does not go through Listener (the admin listener)
// through Guard.
func (p *Proxy) Guard(ln net.Listener) net.Listener { return p.guard.Listener(ln) }

// Listener wraps ln in the framing guard (Guard), then so that the server's
// read, write and idle timeouts
// (Config.ReadTimeout, WriteTimeout, IdleTimeout) cost no syscall per
// request. fasthttp moves the socket's deadline three times per keep-alive
// request (idle wait, request read, response write), each a trip through the
// runtime poller (3,100 instructions a request, 8.5 %: scripts/bench/README.md);
// the bare proxy pays none of it. Here each read and write
// records, in an atomic, when it must end, the deadline calls of the server
// become no-ops, and one goroutine per listener checks the connections a few
// times per timeout and expires the socket of one blocked too long, which
// the server sees as the same timeout error. The deadlines are taken from a
// clock the checker advances each tick, not from a clock read per call.
// Timeouts fire up to an eighth of the shortest timeout late (at most
// 500ms), never early. Serve with FiberConfig as usual, through
// ServeListener; the wrapped listener stops its checker when closed.
func (p *Proxy) Listener(ln net.Listener) net.Listener {
	tick := 250 * time.Millisecond
	for _, d := range []time.Duration{p.cfg.ReadTimeout, p.cfg.WriteTimeout, p.cfg.IdleTimeout} {
		if d > 0 {
			tick = min(tick, max(d/16, 5*time.Millisecond))
		}
	}
	return &timeoutListener{
		Listener: p.Guard(ln), epoch: time.Now(), tick: tick, stop: make(chan struct{}),
		read: int64(p.cfg.ReadTimeout), write: int64(p.cfg.WriteTimeout), idle: int64(p.cfg.IdleTimeout),
	}
}

// ServeListener serves app (built with FiberConfig) on Listener(ln). The
// server's own read, write and idle timeouts are switched off, as Listener
// enforces them: otherwise the server reads the clock three times per
// request to compute deadlines that Listener's connections ignore.
func (p *Proxy) ServeListener(app *fiber.App, ln net.Listener) error {
	s := app.Server()
	s.ReadTimeout, s.WriteTimeout, s.IdleTimeout = 0, 0, 0
	return app.Listener(p.Listener(ln))
}

type timeoutListener struct {
	net.Listener
	epoch             time.Time // deadlines are nanoseconds on its monotonic clock
	tick              time.Duration
	read, write, idle int64
	clock             atomic.Int64 // now() at the checker's last tick (or the last Accept)

	conns     sync.Map // *timedConn -> struct{}
	startOnce sync.Once
	stopOnce  sync.Once
	stop      chan struct{}
}

func (l *timeoutListener) now() int64 { return int64(time.Since(l.epoch)) }

// later is a time no earlier than now while the checker keeps ticking (its
// clock plus one tick), for deadlines that may fire late but never early.
func (l *timeoutListener) later() int64 { return l.clock.Load() + int64(l.tick) }

func (l *timeoutListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.clock.Store(l.now())
	l.startOnce.Do(func() { go l.check() })
	tc := &timedConn{Conn: c, l: l, tls: overTLS(c)}
	tc.wait.Store(l.read) // the first request has ReadTimeout to arrive, as in fasthttp
	tc.between.Store(true)
	l.conns.Store(tc, struct{}{})
	return tc, nil
}

func (l *timeoutListener) Close() error {
	l.stopOnce.Do(func() { close(l.stop) })
	return l.Listener.Close()
}

// check expires the sockets of connections blocked past their deadline.
func (l *timeoutListener) check() {
	t := time.NewTicker(l.tick)
	defer t.Stop()
	past := time.Unix(1, 0)
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		now := l.now()
		l.clock.Store(now)
		l.conns.Range(func(k, _ any) bool {
			c := k.(*timedConn)
			if d := c.deadline.Load(); d != 0 && now > d {
				_ = c.Conn.SetDeadline(past) // the blocked call returns a timeout
			}
			return true
		})
	}
}

// timedConn is one client connection. The server reads and writes it from
// one goroutine at a time; the checker only reads deadline.
type timedConn struct {
	net.Conn
	l        *timeoutListener
	deadline atomic.Int64 // when the current Read or Write must end; 0: none in progress or no limit
	reqStart atomic.Int64 // when the current request's first byte arrived
	between  atomic.Bool  // no request in progress: the next Read waits for one
	wait     atomic.Int64 // how long that wait may last (ReadTimeout first, then IdleTimeout)
	tls      bool         // the client speaks TLS under Listener's wrappers (isTLS)
	keys     keyMemo      // the server's goroutine only (keyDigest)
	peer     peerMemo     // the server's goroutine only (Proxy.peer)
}

func (c *timedConn) Read(b []byte) (int, error) {
	l := c.l
	var d int64
	if c.between.Load() {
		if w := c.wait.Load(); w > 0 {
			d = l.later() + w
		}
	} else if l.read > 0 {
		// The whole request, body included, within ReadTimeout.
		d = c.reqStart.Load() + l.read
	}
	c.deadline.Store(d)
	n, err := c.Conn.Read(b)
	c.deadline.Store(0)
	if n > 0 && c.between.Load() {
		c.reqStart.Store(l.later()) // the wait is over: the request starts now
		c.between.Store(false)
	}
	return n, err
}

func (c *timedConn) Write(b []byte) (int, error) {
	l := c.l
	if l.write > 0 {
		c.deadline.Store(l.later() + l.write)
	}
	n, err := c.Conn.Write(b)
	c.deadline.Store(0)
	// A response went out: the next read waits for the next request.
	c.wait.Store(l.idle)
	c.between.Store(true)
	return n, err
}

// ReadFrom writes what each read of r gives as soon as it comes. The
// server's buffered writer hands it a streamed body with a Content-Length
// once the head is flushed (a chunked body is flushed chunk by chunk by the
// server itself): without it, small writes of a slow stream would wait in
// the writer's buffer until 4 KiB had gathered.
func (c *timedConn) ReadFrom(r io.Reader) (int64, error) {
	bp := streamBuffers.Get().(*[]byte)
	defer streamBuffers.Put(bp)
	buf := *bp
	var total int64
	for {
		n, err := r.Read(buf)
		if n > 0 {
			w, werr := c.Write(buf[:n])
			total += int64(w)
			if werr != nil {
				return total, werr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// streamBuffers are ReadFrom's buffers: large enough that a download moves
// in few system calls.
var streamBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (c *timedConn) Close() error {
	c.l.conns.Delete(c)
	return c.Conn.Close()
}

// The server's own deadlines are replaced by the checker's.
func (c *timedConn) SetDeadline(time.Time) error { return nil }

func (c *timedConn) SetReadDeadline(time.Time) error { return nil }

func (c *timedConn) SetWriteDeadline(time.Time) error { return nil }

// clientPoll is how often a request waiting to be retried checks that its
// client is still there.
const clientPoll = 25 * time.Millisecond

// clientContext is a context that ends when c's client goes away (it closed
// its connection, or the connection broke), for the retry loop: fasthttp
// gives a handler no such signal. It does not end when the server starts
// shutting down: a request in flight may finish within the drain. Only
// requests that retry pay for it (a goroutine polling the socket).
func clientContext(c *fasthttp.RequestCtx) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(c))
	raw := rawConn(c.Conn())
	if raw == nil {
		return ctx, cancel
	}
	go func() {
		t := time.NewTicker(clientPoll)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if peerClosed(raw) {
					cancel()
					return
				}
			}
		}
	}()
	return ctx, cancel
}

// isTLS reports whether c's client came over TLS. fasthttp's IsTLS looks
// at the outermost connection only, and Listener's wraps the TLS one.
func isTLS(c *fasthttp.RequestCtx) bool {
	if tc, ok := c.Conn().(*timedConn); ok {
		return tc.tls
	}
	return overTLS(c.Conn())
}

// overTLS reports whether a TLS connection is under c's wrappers (the
// framing guard's, Listener's).
func overTLS(c net.Conn) bool {
	for {
		switch w := c.(type) {
		case *tls.Conn:
			return true
		case *timedConn:
			c = w.Conn
		case *framing.Conn:
			c = w.Conn
		default:
			return false
		}
	}
}

// rawConn is the socket under c's wrappers (Listener's, the framing
// guard's, TLS), or nil.
func rawConn(c net.Conn) syscall.RawConn {
	for c != nil {
		switch w := c.(type) {
		case *timedConn:
			c = w.Conn
		case *framing.Conn:
			c = w.Conn
		case interface{ NetConn() net.Conn }: // *tls.Conn
			c = w.NetConn()
		case syscall.Conn:
			raw, err := w.SyscallConn()
			if err != nil {
				return nil
			}
			return raw
		default:
			return nil
		}
	}
	return nil
}
