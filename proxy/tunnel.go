package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/tenantgate/gateway/proxy/framing"
	"github.com/tenantgate/gateway/resilience/balance"
)

// WebSocket proxying. A handshake (GET, Upgrade: websocket, Connection:
// upgrade, no body) has gone through authentication, the rate limit and
// route matching like any request; tunnel chooses an upstream the same way
// (health, breaker, balancing), sends it the handshake on a connection of
// its own and, on a 101, has the server hand over the client's connection
// (fasthttp's Hijack) once the handler returns. From then on the bytes are
// copied both ways unchanged, with a bounded buffer per direction, until
// either side ends or the tunnel idles for Config.TunnelIdleTimeout; the
// route's timeout bounds only the handshake. Any other answer to the
// handshake is passed on like any response.

// wantsWebSocket reports whether the client asks for a WebSocket tunnel.
// sent says which hop-by-hop headers it sent: a request without Upgrade
// (nearly all) costs one bit test. It must be called before
// upstreamRequest strips those headers.
func wantsWebSocket(req *fasthttp.Request, sent dropSet) bool {
	if sent&upgradeHeaders != upgradeHeaders {
		return false
	}
	h := &req.Header
	cl := h.ContentLength() // -2: no framing header, so no body
	return h.IsGet() && h.IsHTTP11() && (cl == 0 || cl == -2) &&
		hasToken(h.Peek("Upgrade"), "websocket") && hasToken(h.Peek("Connection"), "upgrade")
}

// upgradeHeaders are Connection and Upgrade in dropNames.
var upgradeHeaders = dropSet(1<<dropIndex([]byte("Connection")) | 1<<dropIndex([]byte("Upgrade")))

// hasToken reports whether the comma-separated list v holds tok (any case).
func hasToken(v []byte, tok string) bool {
	for t := range bytes.SplitSeq(v, []byte{','}) {
		if bytes.EqualFold(bytes.TrimSpace(t), []byte(tok)) {
			return true
		}
	}
	return false
}

// tunnel sends the handshake up to a chosen upstream. On a 101 the answer
// is left in c.Response, the client's connection is switched over and the
// tunnel starts after the handler; any other answer is passed on. Only a
// failed dial moves on to another upstream (within the route's retries):
// a handshake that reached an upstream is never replayed.
func (p *Proxy) tunnel(c *fasthttp.RequestCtx, x *exchange, up *fasthttp.Request) outcome {
	timeout := x.route.timeoutFor(x.method)
	var tried balance.Skip
	for attempt := 0; ; attempt++ {
		i, why := p.chooseUpstream(x, tried)
		if i < 0 {
			return why
		}
		tried = tried.With(i)
		x.upstream = i
		x.attempts++
		conn, br, err := p.handshake(x, up, &c.Response, x.route.targets[i], timeout)
		if cb := x.route.breaker; cb != nil && p.breakers != nil {
			p.breakers.Report(x.route.keys[i], *cb, err == nil && c.Response.StatusCode() < 500)
		}
		if err != nil {
			if rt := x.route.retry; dialFailed(err) && rt != nil && attempt < rt.MaxRetries {
				continue
			}
			return p.failure(x, err)
		}
		resp := &c.Response
		stripResponse(&resp.Header)
		resp.Header.SetNoDefaultContentType(true)
		if resp.StatusCode() != fasthttp.StatusSwitchingProtocols {
			_ = conn.Close() // refused: its answer was read whole and is passed on
			return outcome{answered: true}
		}
		resp.Header.Set("Upgrade", "websocket")
		resp.Header.Set("Connection", "Upgrade")
		p.hijack(c, x, conn, br)
		return outcome{answered: true}
	}
}

// handshake dials t, sends up, and reads the answer into resp, all within
// timeout. On a 101 the connection stays open for the tunnel, with br
// holding what the upstream sent after its answer.
func (p *Proxy) handshake(x *exchange, up *fasthttp.Request, resp *fasthttp.Response, t *target, timeout time.Duration) (net.Conn, *bufio.Reader, error) {
	if t == nil {
		return nil, nil, errInvalidUpstream
	}
	deadline := time.Now().Add(timeout)
	conn, err := p.dialTunnel(t, timeout)
	if err != nil {
		return nil, nil, err
	}
	_ = conn.SetDeadline(deadline)
	aim(x, up, t)
	up.Header.Set("Connection", "Upgrade")
	up.Header.Set("Upgrade", "websocket")
	bw := bufio.NewWriterSize(conn, 4<<10)
	br := bufio.NewReaderSize(conn, p.cfg.MaxHeaderBytes+headerSlack)
	if err = up.Write(bw); err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = resp.ReadLimitBody(br, maxRefusalBytes)
	}
	if err != nil {
		_ = conn.Close()
		return nil, nil, err
	}
	_ = conn.SetDeadline(time.Time{}) // the route's timeout ends with the handshake
	return conn, br, nil
}

// maxRefusalBytes bounds the body of an upstream's refusal of an upgrade,
// which is read whole and passed on.
const maxRefusalBytes = 1 << 20

// dialTunnel opens a connection of the tunnel's own to t (the pool's
// clients keep theirs for requests): TCP, and TLS with the upstream
// client's configuration for https upstreams, verified against the
// upstream's host name.
func (p *Proxy) dialTunnel(t *target, timeout time.Duration) (net.Conn, error) {
	conn, err := p.pool.dialUpstream(t.client.Addr, timeout)
	if err != nil || !t.client.IsTLS {
		return conn, err
	}
	cfg := t.client.TLSConfig.Clone()
	if cfg == nil {
		cfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if cfg.ServerName == "" {
		host, _, splitErr := net.SplitHostPort(t.client.Addr)
		if splitErr != nil {
			host = t.client.Addr
		}
		cfg.ServerName = host
	}
	cfg.NextProtos = []string{"http/1.1"}
	tc := tls.Client(conn, cfg)
	_ = tc.SetDeadline(time.Now().Add(timeout))
	if err := tc.Handshake(); err != nil {
		_ = conn.Close()
		return nil, err
	}
	return tc, nil
}

// hijack has the server hand the client's connection to a tunnel once the
// handler has returned. The server does not write the 101 itself: it would
// skip the hand-over on a connection it means to close, leaving the
// upstream connection open; the tunnel writes it.
func (p *Proxy) hijack(c *fasthttp.RequestCtx, x *exchange, upstream net.Conn, br *bufio.Reader) {
	client := c.Conn()
	switchProtocols(client)
	t := &tunnel{
		p: p, upstream: upstream, upBuf: br, clientDL: deadlines(client), start: time.Now(),
		requestID: string(x.requestID), tenant: tenantID(x), route: routeID(x), upstreamURL: x.upstreamURL(),
	}
	c.HijackSetNoResponse(true)
	c.Hijack(func(conn net.Conn) { t.run(c, conn) })
}

// switchProtocols makes the server's connection c a plain byte pipe: the
// framing guard passes what comes unchecked, and Listener's read, write
// and idle timeouts no longer apply (the tunnel has its own idle timeout).
func switchProtocols(c net.Conn) {
	for c != nil {
		switch w := c.(type) {
		case *timedConn:
			w.l.conns.Delete(w) // its Close deletes it again: harmless
			c = w.Conn
		case *framing.Conn:
			w.Tunnel()
			return
		default:
			return
		}
	}
}

// deadlines is the connection under c whose deadlines take effect
// (Listener's connections ignore the server's).
func deadlines(c net.Conn) net.Conn {
	if tc, ok := c.(*timedConn); ok {
		return tc.Conn
	}
	return c
}

// tunnelBuffer is each direction's copy buffer: a 1 MiB message passes in
// pieces, and a thousand idle tunnels hold 16 KiB each for it.
const tunnelBuffer = 16 << 10

var tunnelBuffers = sync.Pool{New: func() any { b := make([]byte, tunnelBuffer); return &b }}

// closeGoingAway is the WebSocket close frame a server sends for status
// 1001 (going away): FIN + close opcode, unmasked, 2-byte payload.
var closeGoingAway = []byte{0x88, 0x02, 0x03, 0xe9}

// tunnel is one open WebSocket tunnel.
type tunnel struct {
	p           *Proxy
	client      net.Conn // the hijacked connection (reads through the server's buffer)
	clientDL    net.Conn // the client connection whose deadlines work
	upstream    net.Conn
	upBuf       *bufio.Reader // the upstream's reader, holding what came after its 101
	start       time.Time
	requestID   string
	tenant      string
	route       string
	upstreamURL string

	last     atomic.Int64 // unix nanoseconds of the last byte either way
	in, out  atomic.Int64 // bytes client->upstream, upstream->client
	reason   atomic.Pointer[string]
	idle     atomic.Pointer[time.Timer] // the idle check, re-armed by itself
	toClient writer                     // the upstream's bytes, or a close frame
	toUp     writer                     // the client's bytes, or a close frame
	endOnce  sync.Once
	inBytes  prometheus.Counter // nil without metrics
	outBytes prometheus.Counter
}

// run is the tunnel, on the goroutine fasthttp gives the hijacked
// connection, which it closes when run returns.
func (t *tunnel) run(c *fasthttp.RequestCtx, conn net.Conn) {
	t.client = conn
	defer t.upstream.Close()
	if c.Response.StatusCode() != fasthttp.StatusSwitchingProtocols {
		_, _ = c.Response.WriteTo(conn) // a panic's 500 replaced the 101: no tunnel
		return
	}
	_ = t.clientDL.SetWriteDeadline(time.Now().Add(t.p.cfg.WriteTimeout))
	if _, err := c.Response.WriteTo(conn); err != nil {
		return
	}
	_ = t.clientDL.SetWriteDeadline(time.Time{})
	if !t.p.tunnels.add(t) {
		t.goingAway("shutdown")
	}
	defer t.p.tunnels.remove(t)
	t.p.metrics.tunnelOpened(t)
	t.last.Store(time.Now().UnixNano())
	idle := t.p.cfg.TunnelIdleTimeout
	t.idle.Store(time.AfterFunc(idle, func() { t.checkIdle(idle) }))

	done := make(chan struct{})
	go func() {
		defer close(done)
		t.pumpDown()
		t.end("upstream closed")
	}()
	t.pumpUp()
	t.end("client closed")
	<-done
	t.idle.Load().Stop()
	t.observe(c)
}

// pumpUp copies the client's bytes to the upstream until either fails.
func (t *tunnel) pumpUp() {
	bp := tunnelBuffers.Get().(*[]byte)
	defer tunnelBuffers.Put(bp)
	buf := *bp
	for {
		n, err := t.client.Read(buf)
		if n > 0 {
			t.last.Store(time.Now().UnixNano())
			if !t.toUp.write(t.upstream, buf[:n]) {
				return
			}
			t.in.Add(int64(n))
			if t.inBytes != nil {
				t.inBytes.Add(float64(n))
			}
		}
		if err != nil {
			return
		}
	}
}

// pumpDown copies the upstream's bytes to the client until either fails,
// straight out of the upstream's read buffer.
func (t *tunnel) pumpDown() {
	for {
		if _, err := t.upBuf.Peek(1); err != nil {
			return
		}
		b, _ := t.upBuf.Peek(t.upBuf.Buffered())
		t.last.Store(time.Now().UnixNano())
		if !t.toClient.write(t.client, b) {
			return
		}
		_, _ = t.upBuf.Discard(len(b))
		t.out.Add(int64(len(b)))
		if t.outBytes != nil {
			t.outBytes.Add(float64(len(b)))
		}
	}
}

// end stops both directions (the first reason given is kept): blocked
// reads and writes return at once.
func (t *tunnel) end(reason string) {
	t.endOnce.Do(func() {
		t.reason.Store(&reason)
		past := time.Unix(1, 0)
		_ = t.clientDL.SetDeadline(past)
		_ = t.upstream.SetDeadline(past)
	})
}

// goingAway closes the tunnel with a close frame 1001 (going away) each
// way: to the client as a server sends it, to the upstream masked as a
// client does. A frame goes only between two frames of the bytes it joins
// (a close frame inside a message would be garbage); a direction caught
// mid-message is closed without one.
func (t *tunnel) goingAway(reason string) {
	soon := time.Now().Add(time.Second)
	_ = t.clientDL.SetWriteDeadline(soon)
	t.toClient.finish(t.client, closeGoingAway)
	_ = t.upstream.SetWriteDeadline(soon)
	t.toUp.finish(t.upstream, maskedGoingAway())
	t.end(reason)
}

// writer is one direction's writes, which follow its frame boundaries.
type writer struct {
	mu     sync.Mutex
	edge   frameEdge
	closed bool // nothing more goes this way
}

// write writes b to w unless the direction was finished; false when it
// was, or the write failed.
func (d *writer) write(w io.Writer, b []byte) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return false
	}
	_, err := w.Write(b)
	d.edge.feed(b)
	return err == nil
}

// finish ends the direction with frame, when it is between two frames and
// no write is under way (a blocked writer is not waited for).
func (d *writer) finish(w io.Writer, frame []byte) {
	if !d.mu.TryLock() {
		return
	}
	defer d.mu.Unlock()
	if !d.closed && d.edge.atEdge() {
		_, _ = w.Write(frame)
	}
	d.closed = true
}

// maskedGoingAway is a close frame 1001 as a client sends it: masked with
// a random key (RFC 6455 section 5.3).
func maskedGoingAway() []byte {
	f := []byte{0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe9}
	_, _ = rand.Read(f[2:6])
	f[6] ^= f[2]
	f[7] ^= f[3]
	return f
}

// checkIdle closes the tunnel when nothing went either way for idle, and
// otherwise looks again when it could be.
func (t *tunnel) checkIdle(idle time.Duration) {
	since := time.Duration(time.Now().UnixNano() - t.last.Load())
	if since >= idle {
		t.goingAway("idle")
		return
	}
	t.idle.Load().Reset(idle - since)
}

// observe records the ended tunnel: metrics and one access-log line with
// its bytes each way and its duration.
func (t *tunnel) observe(ctx context.Context) {
	d := time.Since(t.start)
	t.p.metrics.tunnelClosed(t, d)
	reason := ""
	if r := t.reason.Load(); r != nil {
		reason = *r
	}
	t.p.tunnels.log.LogAttrs(ctx, slog.LevelInfo, "tunnel",
		slog.String("request_id", t.requestID),
		slog.String("tenant", t.tenant),
		slog.String("route", t.route),
		slog.String("upstream", t.upstreamURL),
		slog.Int64("bytes_in", t.in.Load()),
		slog.Int64("bytes_out", t.out.Load()),
		slog.String("reason", reason),
		slog.Duration("duration", d),
	)
}

// frameEdge follows the WebSocket frame boundaries (RFC 6455 section 5.2)
// of a byte stream, so that a close frame can be put between two frames.
type frameEdge struct {
	left int64    // payload bytes of the current frame still to come
	head [14]byte // a frame header being read
	n    int      // its bytes so far
}

func (f *frameEdge) atEdge() bool { return f.left == 0 && f.n == 0 }

func (f *frameEdge) feed(b []byte) {
	for len(b) > 0 {
		if f.left > 0 {
			k := min(f.left, int64(len(b)))
			f.left -= k
			b = b[k:]
			continue
		}
		f.head[f.n] = b[0]
		f.n++
		b = b[1:]
		if f.n < 2 {
			continue
		}
		size := 2
		switch f.head[1] & 0x7f {
		case 126:
			size += 2
		case 127:
			size += 8
		}
		if f.head[1]&0x80 != 0 {
			size += 4 // masking key
		}
		if f.n < size {
			continue
		}
		var payload int64
		switch l := f.head[1] & 0x7f; l {
		case 126:
			payload = int64(f.head[2])<<8 | int64(f.head[3])
		case 127:
			for _, c := range f.head[2:10] {
				payload = payload<<8 | int64(c)
			}
			payload &= 1<<63 - 1
		default:
			payload = int64(l)
		}
		f.left, f.n = payload, 0
	}
}

// tunnels are the open tunnels, for the drain on shutdown. Only handshakes
// and tunnel ends take its lock.
type tunnels struct {
	log      *slog.Logger // the line at each tunnel's end
	mu       sync.Mutex
	open     map[*tunnel]struct{}
	draining bool
	empty    chan struct{} // closed when the last tunnel ends while draining
}

// add registers t; false while draining (t is then closed at once).
func (s *tunnels) add(t *tunnel) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open == nil {
		s.open = make(map[*tunnel]struct{})
	}
	s.open[t] = struct{}{}
	return !s.draining
}

func (s *tunnels) remove(t *tunnel) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.open, t)
	if len(s.open) == 0 && s.empty != nil {
		close(s.empty)
		s.empty = nil
	}
}

func (s *tunnels) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.open)
}

// closeAfterDrain is how long the drain waits for tunnels it closed to end.
const closeAfterDrain = 2 * time.Second

// DrainTunnels lets the open WebSocket tunnels run until ctx ends (the
// shutdown timeout), then closes those left with a close frame 1001 (going
// away) to their clients. It returns once every tunnel has ended, or an
// error when some did not end within a moment of being closed.
func (p *Proxy) DrainTunnels(ctx context.Context) error {
	s := &p.tunnels
	s.mu.Lock()
	if len(s.open) == 0 {
		s.draining = true // a handshake still finishing on a kept-alive connection is closed at once
		s.mu.Unlock()
		return nil
	}
	empty := make(chan struct{})
	s.empty = empty
	s.mu.Unlock()
	select {
	case <-empty:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	s.draining = true
	left := make([]*tunnel, 0, len(s.open))
	for t := range s.open {
		left = append(left, t)
	}
	s.mu.Unlock()
	for _, t := range left {
		t.goingAway("shutdown")
	}
	timer := time.NewTimer(closeAfterDrain)
	defer timer.Stop()
	select {
	case <-empty:
		return nil
	case <-timer.C:
		return errors.New("proxy: tunnels still open after the drain")
	}
}

// OpenTunnels is the number of WebSocket tunnels open now.
func (p *Proxy) OpenTunnels() int { return p.tunnels.count() }

// tunnelLog is where the line at a tunnel's end goes: with Config.AccessLog
// the same JSON as the access lines (a tunnel ends rarely enough for slog),
// else Config.Log.
func tunnelLog(cfg Config) *slog.Logger {
	if cfg.AccessLog != nil {
		return slog.New(slog.NewJSONHandler(cfg.AccessLog, nil))
	}
	return cfg.Log
}
