// Package framing keeps an HTTP/1.1 server from reading one client request
// as several (request smuggling). It sits between the listener and the
// server, on every connection, and checks the request stream against the
// message framing of RFC 9112 before the server parses it:
//
//   - A request's head reaches the server only once all of it has arrived
//     and checked out: a request line of exactly three parts, field names
//     that are tokens right before their colon, no control character in a
//     value, CRLF line ends (no bare LF), no obsolete line folding, at most
//     one Content-Length (digits only), Transfer-Encoding only as a single
//     "chunked" and never beside Content-Length, at most one Host.
//   - Chunked bodies pass as they come, with their chunk-size lines, chunk
//     ends and trailers checked on the way.
//   - A refused head is answered by the guard itself (400 invalid_request,
//     431 headers_too_large, 408 request_timeout, the contract's error JSON)
//     after every earlier response on the connection, and the connection is
//     closed: nothing after the refused bytes is ever parsed. A fault in a
//     chunked body fails the body's read, so the handler reading it answers,
//     and the connection closes after that answer.
//   - A connection closed while its client may still be sending (an early
//     answer to a request whose body was not read, a refusal) lingers: its
//     write side is shut and what arrives is discarded for a short while,
//     so the client reads the answer instead of a reset.
//
// What it cannot see is a body the server read ahead but its handler never
// read: the server must answer such a request with Connection: close, as
// fasthttp does not skip an unread body (package proxy's settleBody does).
package framing

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync/atomic"
	"time"
)

// Config configures a guard. Zero fields take their defaults.
type Config struct {
	// MaxHeadBytes bounds a request's line and header fields, CRLFs
	// included. Larger heads get 431. Default 17 KiB.
	MaxHeadBytes int
	// HeadTimeout bounds the time from a head's first byte to its last;
	// 0: no bound beyond the server's own deadlines. A head cut short by it
	// gets 408.
	HeadTimeout time.Duration
	// LingerTime bounds how long a closing connection whose client may
	// still be sending reads and discards what arrives. Default 2s.
	LingerTime time.Duration
	// Refused, when set, is told every refusal's reason (for a metric).
	Refused func(reason string)
	// Log receives one line per refusal (reason and client address, never
	// the request's bytes), at most a few per second. Default slog.Default().
	Log *slog.Logger
}

// Defaults of Config.
const (
	DefaultMaxHeadBytes = 17 << 10
	DefaultLingerTime   = 2 * time.Second
	answerTimeout       = 5 * time.Second // writing a refusal
	lingerRead          = 500 * time.Millisecond
)

func (c Config) withDefaults() Config {
	if c.MaxHeadBytes <= 0 {
		c.MaxHeadBytes = DefaultMaxHeadBytes
	}
	if c.LingerTime <= 0 {
		c.LingerTime = DefaultLingerTime
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	return c
}

// Guard is the configuration and log throttle its connections share.
type Guard struct {
	cfg      Config
	lastLog  atomic.Int64 // unix nanoseconds of the last refusal logged
	unlogged atomic.Int64 // refusals since then not logged
}

// New returns a guard.
func New(cfg Config) *Guard { return &Guard{cfg: cfg.withDefaults()} }

// Listener guards every connection ln accepts.
func (g *Guard) Listener(ln net.Listener) net.Listener { return &listener{Listener: ln, g: g} }

type listener struct {
	net.Listener
	g *Guard
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.g.Conn(c), nil
}

// Conn guards c.
func (g *Guard) Conn(c net.Conn) *Conn {
	return &Conn{Conn: c, g: g, p: newParser(g.cfg.MaxHeadBytes)}
}

// logEvery is the shortest gap between two refusal log lines: a client
// sending garbage must not be able to flood the log.
const logEvery = 200 * time.Millisecond

func (g *Guard) refused(r *Refusal, remote net.Addr) {
	if f := g.cfg.Refused; f != nil {
		f(r.Reason)
	}
	now := time.Now().UnixNano()
	last := g.lastLog.Load()
	if now-last < int64(logEvery) || !g.lastLog.CompareAndSwap(last, now) {
		g.unlogged.Add(1)
		return
	}
	g.cfg.Log.Warn("refused a malformed request", "reason", r.Reason, "status", r.Status,
		"remote", remoteIP(remote), "refusals_not_logged", g.unlogged.Swap(0))
}

func remoteIP(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.String()
	}
	if a == nil {
		return ""
	}
	return a.String()
}

// Conn is one guarded connection. The server reads and writes it from one
// goroutine at a time, as net.Conn users do.
type Conn struct {
	net.Conn
	g *Guard
	p parser
	// in holds bytes received but not passed on; the first ok of them have
	// checked out, the rest wait for more (a part of a head, say).
	in []byte
	ok int
	// refusal, once set, is answered (or, in a body, failed) when the bytes
	// before it have gone; then every Read returns io.EOF.
	refusal *Refusal
	done    bool
	readErr error     // an error the socket returned with data, for the next Read
	head    time.Time // when the held head's first byte arrived (zero: none held)
	// deadline is the server's read deadline (unix nanoseconds, 0: none);
	// atomic, as a timeout checker may set it from another goroutine.
	deadline atomic.Int64
}

// ErrMalformedBody is what a read of a chunked body the guard refused
// returns (once; then io.EOF).
var ErrMalformedBody = errors.New("framing: malformed chunked request body")

func (c *Conn) Read(b []byte) (int, error) {
	for {
		if c.ok > 0 {
			n := copy(b, c.in[:c.ok])
			c.in = c.in[n:]
			c.ok -= n
			if len(c.in) == 0 {
				c.in = c.in[:0:cap(c.in)]
			}
			return n, nil
		}
		if c.done {
			return 0, io.EOF
		}
		if c.refusal != nil {
			return c.refuse()
		}
		if c.readErr != nil {
			err := c.readErr
			c.readErr = nil
			return 0, c.failHeld(err)
		}
		if len(c.in) == 0 && len(b) > 0 {
			// Nothing held: read straight into the caller's buffer, and keep
			// only what must wait (the usual request arrives whole).
			n, err := c.Conn.Read(b)
			k, r := c.p.advance(b[:n])
			c.refusal, c.readErr = r, err
			if k < n {
				c.in = append(c.in, b[k:n]...)
				if c.p.phase == phaseHead {
					c.head = time.Now()
				}
			}
			if k > 0 {
				return k, nil
			}
			continue
		}
		if err := c.fill(); err != nil {
			c.readErr = err
			continue
		}
		k, r := c.p.advance(c.in)
		c.ok, c.refusal = k, r
		if k > 0 {
			c.head = time.Time{} // the held part went; a new one starts its own clock
			if k < len(c.in) && c.p.phase == phaseHead {
				c.head = time.Now()
			}
		}
	}
}

// fill reads more of a held part into c.in, within the head timeout.
func (c *Conn) fill() error {
	if len(c.in) == cap(c.in) {
		c.in = append(c.in, make([]byte, max(4<<10, len(c.in)))...)[:len(c.in)]
	}
	restore := false
	if t := c.g.cfg.HeadTimeout; t > 0 && !c.head.IsZero() && c.p.phase == phaseHead {
		d := c.head.Add(t)
		if server := c.deadline.Load(); server != 0 && server < d.UnixNano() {
			d = time.Unix(0, server)
		}
		_ = c.Conn.SetReadDeadline(d)
		restore = true
	}
	n, err := c.Conn.Read(c.in[len(c.in):cap(c.in)])
	c.in = c.in[:len(c.in)+n]
	if restore {
		_ = c.Conn.SetReadDeadline(c.serverDeadline())
	}
	if n > 0 {
		return nil // an error with data comes back at the next read
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// failHeld ends a read that failed while a part was held back: a head cut
// short by a timeout is answered with 408; the connection is done.
func (c *Conn) failHeld(err error) error {
	var ne net.Error
	if len(c.in) > 0 && c.p.phase == phaseHead && errors.As(err, &ne) && ne.Timeout() {
		c.refusal = &Refusal{Status: 408, Code: "request_timeout", Reason: ReasonHeadTimeout,
			Message: "the request headers did not arrive in time"}
		_, err = c.refuse()
		return err
	}
	return err
}

// refuse answers (or fails the body read of) c.refusal and ends the stream.
func (c *Conn) refuse() (int, error) {
	r := c.refusal
	c.refusal, c.done = nil, true
	c.in, c.ok = c.in[:0], 0
	c.g.refused(r, c.RemoteAddr())
	if r.InBody {
		return 0, ErrMalformedBody
	}
	_ = c.SetWriteDeadline(time.Now().Add(answerTimeout))
	_, _ = c.Write(answer(r))
	return 0, io.EOF
}

// answer is the HTTP response of a refusal: the contract's error JSON,
// and Connection: close.
func answer(r *Refusal) []byte {
	body := `{"error":{"code":"` + r.Code + `","message":"` + r.Message + `"}}`
	return []byte("HTTP/1.1 " + strconv.Itoa(r.Status) + " " + statusText(r.Status) + "\r\n" +
		"Content-Type: application/json\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n" +
		"Connection: close\r\n\r\n" + body)
}

func statusText(s int) string {
	switch s {
	case 408:
		return "Request Timeout"
	case 431:
		return "Request Header Fields Too Large"
	}
	return "Bad Request"
}

// Tunnel passes everything from now on as it comes, unchecked: the
// connection switched protocols (a WebSocket upgrade answered 101).
func (c *Conn) Tunnel() {
	c.p.phase = phaseTunnel
	c.refusal, c.ok = nil, len(c.in)
}

// SetDeadline and SetReadDeadline record the server's read deadline, which
// the head timeout must not outlast.
func (c *Conn) SetDeadline(t time.Time) error {
	c.recordDeadline(t)
	return c.Conn.SetDeadline(t)
}

func (c *Conn) SetReadDeadline(t time.Time) error {
	c.recordDeadline(t)
	return c.Conn.SetReadDeadline(t)
}

func (c *Conn) recordDeadline(t time.Time) {
	if t.IsZero() {
		c.deadline.Store(0)
	} else {
		c.deadline.Store(t.UnixNano())
	}
}

func (c *Conn) serverDeadline() time.Time {
	if d := c.deadline.Load(); d != 0 {
		return time.Unix(0, d)
	}
	return time.Time{}
}

// Close closes the connection; when its client may still be sending, it
// first shuts the write side and discards what arrives for a while
// (lingering close), so that the client reads the last answer rather than
// a connection reset.
func (c *Conn) Close() error {
	if c.p.midRequest(len(c.in)) || c.done {
		c.linger()
	}
	return c.Conn.Close()
}

func (c *Conn) linger() {
	cw, ok := c.Conn.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	end := time.Now().Add(c.g.cfg.LingerTime)
	buf := make([]byte, 16<<10)
	for {
		now := time.Now()
		if !now.Before(end) {
			return
		}
		d := now.Add(lingerRead)
		if d.After(end) {
			d = end
		}
		_ = c.Conn.SetReadDeadline(d)
		if _, err := c.Conn.Read(buf); err != nil {
			return
		}
	}
}
