package proxy

import (
	"errors"
	"io"
	"math"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"
)

// requestBody is the client's body on its way upstream.
type requestBody struct {
	stream     limitedBody // the client's body, bounded by MaxBodyBytes
	kept       []byte      // a body read whole so that a retry can send it again
	replayable bool        // every attempt can carry the whole body
	err        error       // reading the body to keep it failed
}

// clientFault reports whether the client's body was too large, malformed
// or cut short: the client's fault, never answered with a fallback.
func (b *requestBody) clientFault() bool { return b.stream.exceeded || b.stream.readErr != nil }

// sent is the number of body bytes taken from the client: those read
// through the limit, or a body the server had read whole.
func (b *requestBody) sent() int64 {
	if b.stream.r != nil {
		return b.stream.read
	}
	return int64(len(b.kept))
}

// failure is the answer to a body that could not be kept.
func (b *requestBody) failure() outcome {
	if b.stream.exceeded {
		return outcome{status: fiber.StatusRequestEntityTooLarge, code: "payload_too_large", message: "request body too large"}
	}
	return outcome{status: fiber.StatusBadRequest, code: "invalid_request", message: "could not read the request body"}
}

// streamsBody reports whether the client's body streams to the upstream
// (and so is never retried): it has one, of unknown length or too large to
// keep for a retry, or on a route that does not retry. Any other body is
// empty, already read, or kept so it can be sent again.
func (p *Proxy) streamsBody(req *fasthttp.Request, retries bool) bool {
	if req.BodyStream() == nil {
		return false
	}
	cl := req.Header.ContentLength()
	return cl != 0 && (cl < 0 || int64(cl) > p.cfg.MaxReplayBytes || !retries)
}

// prepareBody gives up its body. Streamed, it is bounded by MaxBodyBytes;
// a body up to MaxReplayBytes on a retrying route is read whole first.
func (p *Proxy) prepareBody(req, up *fasthttp.Request, b *requestBody) {
	stream := req.BodyStream()
	switch {
	case up != req: // a copy: the body streams (streamsBody)
		b.stream.reset(stream, p.cfg.MaxBodyBytes)
		up.SetBodyStream(&b.stream, req.Header.ContentLength())
	case stream == nil || req.Header.ContentLength() == 0:
		b.replayable = true // up is req: its body (if any) stays and can go again
	default: // up is req, whose stream ends here
		b.stream.reset(stream, p.cfg.MaxBodyBytes)
		b.kept, b.err = appendAll(b.kept[:0], &b.stream)
		up.SetBodyRaw(b.kept)
		b.replayable = true
	}
}

func appendAll(dst []byte, r io.Reader) ([]byte, error) {
	for {
		if len(dst) == cap(dst) {
			dst = append(dst, 0)[:len(dst)]
		}
		n, err := r.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst, err
		}
	}
}

// limitedBody streams the client's body upstream, failing once it grows past
// the limit (only a chunked body can: a too large Content-Length is refused
// before forwarding). It has no Close, so fasthttp never releases the
// server's stream it wraps.
type limitedBody struct {
	r        io.Reader
	left     int64
	read     int64 // bytes read so far
	exceeded bool
	atEnd    bool  // the client's body was read to its end
	readErr  error // the client's body was malformed or cut short
}

var errBodyTooLarge = errors.New("proxy: request body too large")

func (l *limitedBody) reset(r io.Reader, limit int64) {
	if limit < 0 { // NoLimit
		limit = math.MaxInt64
	}
	*l = limitedBody{r: r, left: limit}
}

func (l *limitedBody) Read(p []byte) (int, error) {
	if l.left <= 0 {
		var one [1]byte
		n, err := l.r.Read(one[:])
		if n > 0 {
			l.exceeded = true
			return 0, errBodyTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	l.read += int64(n)
	switch {
	case err == io.EOF:
		l.atEnd = true
	case err != nil:
		l.readErr = err
	}
	return n, err
}

// SettleBodies wraps a server's handler (the Fiber app's) so that no
// handler's unread request body is read as the next request: see
// settleBody. The proxy settles its own requests; this covers every other
// handler of the app, and the answers Fiber gives itself (an unknown
// method).
func SettleBodies(h fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(c *fasthttp.RequestCtx) {
		h(c)
		settleBody(c, false) // they read a body whole (Fiber's Body) or not at all
	}
}

// settleBody makes sure nothing of this request's body is read as the next
// request. fasthttp, streaming request bodies, parses whatever follows the
// part of a body its handler did not read as the next request on the
// connection: after an early answer (401, 404, 413 ...) a client could
// smuggle requests in a body. A body read to its end (readToEnd, or read
// whole by Fiber's Body, which drops the stream) is released; any other
// closes the connection after the answer (the framing guard lingers so the
// client still reads it).
func settleBody(c *fasthttp.RequestCtx, readToEnd bool) {
	req := &c.Request
	if req.BodyStream() == nil {
		return
	}
	if readToEnd || req.Header.ContentLength() == 0 {
		_ = req.CloseBodyStream()
		return
	}
	c.SetConnectionClose()
}
