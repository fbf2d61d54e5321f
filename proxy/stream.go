package proxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http/httputil"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// stream is an upstream response body on its way to the client: read from
// the upstream connection as the server writes the client's response, at
// constant memory whatever its size, each wait for more bounded by the
// route's timeout, so a live stream is never cut and a silent one is. The
// server closes it when it has written the response (or failed to): only
// a body read to its end gives its connection back to the pool.
//
// Retries and fallbacks are decided on the response's head, before the
// stream is handed to the server, so no stream is ever retried: an upstream
// that fails mid-body ends the client's response short (the server then
// closes the client's connection), never with a second status.
type stream struct {
	conn    net.Conn
	br      *bufio.Reader
	body    io.Reader // the framing: Content-Length, chunked, or until close
	gap     time.Duration
	reuse   bool // the connection may serve another request once the body is read
	release func(reuse bool)

	atEnd   bool        // the body was read to its end
	aborted atomic.Bool // abort was called: the next read fails
	mu      sync.Mutex  // orders abort before the connection is let go
	closed  bool
	bytes   int64 // body bytes read (and so written to the client)

	// Set when the stream is handed to the server (Proxy.stream).
	p      *Proxy
	x      *exchange // observed and released when the stream closes
	c      *fasthttp.RequestCtx
	client syscall.RawConn // the client's socket, watched for its going away
	opened time.Time
}

func newStream(conn net.Conn, br *bufio.Reader, cl int, gap time.Duration, reuse bool, release func(bool)) *stream {
	s := &stream{conn: conn, br: br, gap: gap, reuse: reuse, release: release}
	switch {
	case cl >= 0:
		s.body = &io.LimitedReader{R: br, N: int64(cl)}
	case cl == -1:
		s.body = httputil.NewChunkedReader(br)
	default: // -2: the body ends when the upstream closes the connection
		s.body = br
		s.reuse = false
	}
	return s
}

var errStreamAborted = errors.New("proxy: stream aborted")

func (s *stream) Read(b []byte) (int, error) {
	if s.atEnd {
		return 0, io.EOF
	}
	if s.gap > 0 && s.br.Buffered() == 0 {
		_ = s.conn.SetReadDeadline(time.Now().Add(s.gap))
	}
	if s.aborted.Load() { // after the deadline moved: abort's own move wins
		return 0, errStreamAborted
	}
	n, err := s.body.Read(b)
	s.bytes += int64(n)
	switch {
	case err == io.EOF:
		err = s.end()
	case err == nil && n == 0:
	case err == nil:
		if lr, ok := s.body.(*io.LimitedReader); ok && lr.N == 0 {
			s.atEnd = true
		}
	}
	return n, err
}

// end is reached at the body's framed end. A Content-Length body is whole
// only when every announced byte came; a chunked body is followed by its
// trailer section, read and dropped.
func (s *stream) end() error {
	switch body := s.body.(type) {
	case *io.LimitedReader:
		if body.N > 0 {
			return io.ErrUnexpectedEOF // the upstream closed early
		}
	case *bufio.Reader: // until close: EOF is the end
	default: // chunked
		if err := skipTrailer(s.br); err != nil {
			return err
		}
	}
	s.atEnd = true
	return io.EOF
}

// skipTrailer reads the trailer fields after a chunked body's last chunk,
// up to the empty line. They are not passed on.
func skipTrailer(br *bufio.Reader) error {
	for range 64 {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 && (len(line) == 1 || line[0] == '\r') {
			return nil
		}
	}
	return errors.New("proxy: too many trailer fields")
}

// CloseWithError is called by the server once the response is written,
// err saying whether that failed; by the proxy for a stream it never hands
// over. It runs once.
func (s *stream) CloseWithError(err error) error {
	s.mu.Lock()
	done := s.closed
	s.closed = true
	s.mu.Unlock()
	if done {
		return nil
	}
	s.release(s.reuse && s.atEnd && err == nil && !s.aborted.Load())
	if s.p != nil {
		s.p.streamEnded(s, err)
	}
	return nil
}

// abort ends the stream from another goroutine (its client went away, or
// shutdown): the blocked read returns at once and fails.
// Once closed, the connection may serve another request: abort leaves it.
func (s *stream) abort() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.aborted.Store(true)
		_ = s.conn.SetReadDeadline(time.Unix(1, 0))
	}
}

// streams are the responses being streamed, watched for clients that go
// away: fasthttp notices a client gone only when a write to it fails, and a
// quiet stream (server-sent events between two events) writes nothing.
type streams struct {
	mu       sync.Mutex
	open     map[*stream]struct{}
	watching bool // a watch goroutine runs; it ends when no stream is left
}

// streamWatch is how often open streams check that their client is there.
const streamWatch = 250 * time.Millisecond

func (ss *streams) add(s *stream) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.open == nil {
		ss.open = make(map[*stream]struct{})
	}
	ss.open[s] = struct{}{}
	if !ss.watching {
		ss.watching = true
		go ss.watch()
	}
}

func (ss *streams) remove(s *stream) {
	ss.mu.Lock()
	delete(ss.open, s)
	ss.mu.Unlock()
}

func (ss *streams) snapshot() []*stream {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	list := make([]*stream, 0, len(ss.open))
	for s := range ss.open {
		list = append(list, s)
	}
	return list
}

// watch aborts the streams whose client went away, until none is open.
// The sockets are looked at outside the lock: streams start and end
// meanwhile.
func (ss *streams) watch() {
	t := time.NewTicker(streamWatch)
	defer t.Stop()
	for range t.C {
		ss.mu.Lock()
		if len(ss.open) == 0 {
			ss.watching = false
			ss.mu.Unlock()
			return
		}
		ss.mu.Unlock()
		for _, s := range ss.snapshot() {
			if s.client != nil && peerClosed(s.client) {
				s.abort()
			}
		}
	}
}

// abortAll ends every open stream (shutdown, after the drain).
func (ss *streams) abortAll() int {
	list := ss.snapshot()
	for _, s := range list {
		s.abort()
	}
	return len(list)
}

// count is the number of open streams.
func (ss *streams) count() int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.open)
}

// errNotPassedOn closes the stream of an answer that is not passed on (a
// retried attempt's, one a fallback replaces).
var errNotPassedOn = errors.New("proxy: answer not passed on")

// dropStream closes the stream of an answer that is not passed on.
func (x *exchange) dropStream() {
	if x.stream != nil && !x.streaming {
		_ = x.stream.CloseWithError(errNotPassedOn)
	}
	x.stream = nil
}

// stream hands the answer's body to the server, which writes it to the
// client as it comes, head first, and closes it at the end. From here on
// the exchange belongs to the stream: it is observed and released when the
// stream ends.
func (p *Proxy) stream(c *fasthttp.RequestCtx, x *exchange) {
	s := x.stream
	s.p, s.x, s.c, s.opened = p, x, c, time.Now()
	x.headLatency = s.opened.Sub(x.start)
	s.client = rawConn(c.Conn())
	x.streaming = true
	x.apiKey = nil // the server's buffer
	resp := &c.Response
	resp.ImmediateHeaderFlush = true // a stream's head goes out before its first byte
	resp.SetBodyStream(s, max(resp.Header.ContentLength(), -1))
	p.streams.add(s)
	p.metrics.streamOpened()
}

// unstream takes the exchange back from a stream the server will not write
// (a panic after stream): closing it then observes nothing.
func (p *Proxy) unstream(x *exchange) {
	if x.streaming {
		x.stream.p = nil
		x.streaming = false
		p.streams.remove(x.stream)
		p.metrics.streamClosed()
	}
}

// streamEnded observes a streamed answer once the server wrote it or
// failed to: metrics, the access log line (with the body's bytes and the
// whole duration) and the span.
func (p *Proxy) streamEnded(s *stream, err error) {
	p.streams.remove(s)
	p.metrics.streamClosed()
	x := s.x
	if err != nil || !s.atEnd {
		x.code = "stream_cut" // the client got a truncated body
	}
	x.streamed = s.bytes
	p.metrics.streamed(x, s.bytes, time.Since(s.opened))
	p.observe(s.c, x)
	if x.span != nil {
		p.endSpan(x)
	}
	releaseExchange(x)
}

// OpenStreams is the number of responses being streamed now.
func (p *Proxy) OpenStreams() int { return p.streams.count() }

// CloseStreams ends every open stream at once, each client getting a
// truncated body: shutdown does it when the drain ran out. It reports how
// many there were.
func (p *Proxy) CloseStreams() int { return p.streams.abortAll() }
