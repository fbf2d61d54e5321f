package proxy

import (
	"bytes"
	"errors"
	"io"
	"math/bits"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/tenantgate/gateway/proxy/internal/ascii"
	"github.com/tenantgate/gateway/resilience/balance"
	"github.com/tenantgate/gateway/resilience/health"
)

// hopByHop are the RFC 9110 connection-scoped headers, never forwarded in
// either direction; headers named in Connection are dropped too.
var hopByHop = []string{
	"Connection", "Keep-Alive", "Proxy-Connection", "TE", "Trailer",
	"Transfer-Encoding", "Upgrade", "Proxy-Authorization", "Proxy-Authenticate",
}

// dropNames are the request headers never forwarded upstream, in
// fasthttp's normalized form: hop-by-hop (the first ones, in the order of
// hopByHop), the two key headers, and Expect (the gateway answered
// 100-continue itself).
var dropNames = [...]string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer",
	"Transfer-Encoding", "Upgrade", "Proxy-Authorization", "Proxy-Authenticate",
	"X-Api-Key", "X-Admin-Key", "Expect",
}

// dropIndex is the index in dropNames of name, in any case (as the client
// spelled it, or as fasthttp normalized it), or -1.
func dropIndex(name []byte) int {
	if len(name) >= len(dropByLen) {
		return -1
	}
	for set := dropByLen[len(name)]; set != 0; set &= set - 1 {
		if i := bits.TrailingZeros16(uint16(set)); ascii.EqualFold(name, dropNames[i]) {
			return i
		}
	}
	return -1
}

// dropByLen has, for each name length, the dropNames of that length: most
// headers have none, and are passed over without a comparison.
var dropByLen = func() (t [20]dropSet) {
	for i, d := range dropNames {
		t[len(d)] |= 1 << i
	}
	return t
}()

// dropSet has bit i set for dropNames[i].
type dropSet uint16

const dropAll = dropSet(1<<len(dropNames) - 1)

// scanned is what scanHeaders read in the client's header block.
type scanned struct {
	present   dropSet // the dropNames the client sent
	apiKey    []byte  // the first X-API-Key value, as Peek gives it
	requestID []byte  // the first X-Request-Id value, as Peek gives it
}

// scanHeaders reads the client's header block as received, in one pass over
// the raw bytes (fasthttp's AllInOrder would parse the block a second time
// and normalize every name): which of the never-forwarded names the client
// sent, and the two values the request path reads, which saves a Peek (a
// copy and normalization of the name, then a walk of the headers) for each.
// The block was checked by the framing guard before the server parsed it
// (token names right before their colon, no control characters, CRLF line
// ends), so the scan only splits it. A header not parsed from the wire is
// taken to hold every dropName, and its values are peeked.
func scanHeaders(h *fasthttp.RequestHeader) scanned {
	raw := h.RawHeaders()
	if len(raw) == 0 {
		return scanned{present: dropAll, apiKey: h.Peek(HeaderAPIKey), requestID: h.Peek(fiber.HeaderXRequestID)}
	}
	var s scanned
	for len(raw) > 0 {
		line := raw
		if eol := bytes.IndexByte(raw, '\n'); eol >= 0 {
			line, raw = raw[:eol], raw[eol+1:]
		} else {
			raw = nil
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			continue // the blank line ending the block
		}
		name, value := line[:colon], line[colon+1:]
		if i := dropIndex(name); i >= 0 {
			if i == apiKeyIndex && s.present&(1<<i) == 0 {
				s.apiKey = ascii.TrimOWS(value)
			}
			s.present |= 1 << i
		} else if s.requestID == nil && ascii.EqualFold(name, fiber.HeaderXRequestID) {
			s.requestID = ascii.TrimOWS(value)
		}
	}
	return s
}

var apiKeyIndex = dropIndex([]byte("X-Api-Key"))

// protected are framing headers a Connection token must not remove: dropping
// them would change how the body is delimited or where the request goes.
func protected(name []byte) bool {
	return bytes.EqualFold(name, []byte("Content-Length")) || bytes.EqualFold(name, []byte("Host"))
}

// stripRequest removes from up (a copy of orig) the headers that must not
// go upstream: those the scan found, those named in Connection, and the two
// key headers whatever the scan said (belt and braces for the secrets).
func stripRequest(orig, up *fasthttp.RequestHeader, present dropSet) {
	if present&1 != 0 {
		for _, v := range orig.PeekAll(fiber.HeaderConnection) {
			delConnectionTokens(up, v)
		}
	}
	present |= keyHeaders
	for ; present != 0; present &= present - 1 {
		up.Del(dropNames[bits.TrailingZeros16(uint16(present))])
	}
	up.ResetConnectionClose()
}

// keyHeaders are X-Api-Key and X-Admin-Key in dropNames.
var keyHeaders = dropSet(1<<apiKeyIndex | 1<<dropIndex([]byte("X-Admin-Key")))

// stripResponse removes the hop-by-hop headers of an upstream answer.
func stripResponse(h *fasthttp.ResponseHeader) {
	var found uint32
	for k := range h.All() {
		if i := dropIndex(k); i >= 0 && i < len(hopByHop) {
			found |= 1 << i // dropNames starts with hopByHop, in order
		}
	}
	if found == 0 {
		return
	}
	if found&1 != 0 { // Connection: its tokens first
		for _, v := range h.PeekAll(fiber.HeaderConnection) {
			delConnectionTokens(h, v)
		}
	}
	for i, name := range hopByHop {
		if found&(1<<i) != 0 {
			h.Del(name)
		}
	}
}

type deleter interface{ DelBytes([]byte) }

func delConnectionTokens(h deleter, v []byte) {
	for tok := range bytes.SplitSeq(v, []byte{','}) {
		tok = bytes.TrimSpace(tok)
		if len(tok) > 0 && !protected(tok) {
			h.DelBytes(tok)
		}
	}
}

// prepare builds the upstream request from the client's: headers minus
// hop-by-hop and key headers, forwarding headers, the request transform and
// the body (buffered when it may be replayed, else streamed). It edits the
// client's request in place, as the bare proxy forwards it, unless the body
// streams through the size limit: fasthttp cannot take that wrapper in place
// (setting a body stream releases the server's own), so then a copy goes.
// Everything read from the client is read before the same field is written.
func (p *Proxy) prepare(c *fasthttp.RequestCtx, x *exchange) *fasthttp.Request {
	req := &c.Request
	up := req
	if p.streamsBody(req, x) {
		up = fasthttp.AcquireRequest()
		req.Header.CopyTo(&up.Header)
	}
	up.Header.SetNoDefaultContentType(true)
	stripRequest(&req.Header, &up.Header, x.present)
	p.setForwarded(c, x, up) // reads the client's Host, cleared below
	up.Header.SetCanonical(canonXRequestID, x.requestID)
	if x.span != nil {
		injectTrace(&up.Header, x.span)
	}

	x.fwdPath = x.path
	if e := x.state.reqHeaders; e != nil {
		x.buf = applyHeaderEdits(&up.Header, e, x, x.buf)
	}
	if t := x.route.Transform; t != nil && t.Request != nil && t.Request.Path != nil && x.route.Rewrite != nil {
		x.fwdPath = rewritePath(x.route.Rewrite, t.Request.Path.Replacement, x.path)
	}

	// The upstream URI is the client's as the server parsed it, query kept,
	// with the scheme, host and path of each attempt (send). Request.Write
	// takes the request line and Host from it. Userinfo of an absolute-form
	// target goes: fasthttp would send it as an Authorization header.
	if up != req {
		up.SetURI(x.uri)
	}
	uri := up.URI()
	uri.SetUsernameBytes(nil)
	uri.SetPasswordBytes(nil)
	p.prepareBody(req, x, up)
	return up
}

// streamsBody reports whether the client's body streams to the upstream
// (and so is never retried): it has one, of unknown length or too large to
// buffer for a retry, or on a route that does not retry. Any other body is
// empty, already read, or buffered here so it can be sent again.
func (p *Proxy) streamsBody(req *fasthttp.Request, x *exchange) bool {
	if req.BodyStream() == nil {
		return false
	}
	cl := req.Header.ContentLength()
	return cl != 0 && (cl < 0 || int64(cl) > p.cfg.MaxReplayBytes || !x.retries)
}

// prepareBody gives up its body. Streamed, it is bounded by MaxBodyBytes;
// a body up to MaxReplayBytes on a retrying route is read into x.body first.
func (p *Proxy) prepareBody(req *fasthttp.Request, x *exchange, up *fasthttp.Request) {
	stream := req.BodyStream()
	switch {
	case up != req: // a copy: the body streams (streamsBody)
		x.stream.reset(stream, p.cfg.MaxBodyBytes)
		up.SetBodyStream(&x.stream, req.Header.ContentLength())
	case stream == nil || req.Header.ContentLength() == 0:
		x.replayable = true // up is req: its body (if any) stays and can go again
	default: // up is req, whose stream ends here
		x.stream.reset(stream, p.cfg.MaxBodyBytes)
		b, err := appendAll(x.body[:0], &x.stream)
		x.body = b
		if err != nil {
			x.bodyErr = err
		}
		up.SetBodyRaw(x.body)
		x.replayable = true
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

// setForwarded writes X-Forwarded-For/-Proto/-Host. A trusted proxy's
// values are extended or kept; anyone else's are replaced.
func (p *Proxy) setForwarded(c *fasthttp.RequestCtx, x *exchange, up *fasthttp.Request) {
	req := (&c.Request)
	var room [64]byte // an address fits: no allocation
	peer, trusted := p.appendPeer(room[:0], c)

	buf := x.buf[:0]
	if trusted {
		for _, v := range req.Header.PeekAll(fiber.HeaderXForwardedFor) {
			if len(buf) > 0 {
				buf = append(buf, ", "...)
			}
			buf = append(buf, v...)
		}
	}
	if len(buf) > 0 {
		buf = append(buf, ", "...)
	}
	buf = append(buf, peer...)
	up.Header.SetCanonical(canonXForwardedFor, buf)
	x.buf = buf

	if !trusted || len(req.Header.Peek(fiber.HeaderXForwardedProto)) == 0 {
		if c.IsTLS() {
			up.Header.SetCanonical(canonXForwardedProto, schemeHTTPS)
		} else {
			up.Header.SetCanonical(canonXForwardedProto, schemeHTTP)
		}
	}
	if !trusted || len(req.Header.Peek(fiber.HeaderXForwardedHost)) == 0 {
		up.Header.SetCanonical(canonXForwardedHost, req.Header.Host())
	}
}

func (p *Proxy) isTrusted(a netip.Addr) bool {
	for _, pfx := range p.trusted {
		if pfx.Contains(a) {
			return true
		}
	}
	return false
}

func parseTrusted(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if strings.Contains(s, "/") {
			pfx, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, errors.New("proxy: TrustedProxies: " + err.Error())
			}
			out = append(out, pfx.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, errors.New("proxy: TrustedProxies: " + err.Error())
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// outcome is how forwarding ended.
type outcome struct {
	// answered: (&c.Response) holds an upstream answer to pass on.
	answered bool
	// exhausted: that answer is a retryable status whose retries ran out,
	// so a configured fallback replaces it.
	exhausted bool
	// When not answered: the error to send (unless a fallback is served).
	status        int
	code, message string
}

// forward sends the request to a chosen upstream, retrying per the route's
// retry block: on connection errors, timeouts and the listed statuses, for
// idempotent methods (or any, with retryNonIdempotent), only with a
// replayable body, within maxRetries and the route's retry budget, each retry
// preferring an upstream not yet tried. A failed dial is retried whatever the
// method: the request never left the gateway.
func (p *Proxy) forward(c *fasthttp.RequestCtx, x *exchange, up *fasthttp.Request) outcome {
	route := x.route
	rc := x.state.retry
	if rc != nil && p.budgets != nil {
		p.budgets.Request(route.ID)
	}
	if x.bodyErr != nil {
		if x.bodyTooLarge() {
			return outcome{status: fiber.StatusRequestEntityTooLarge, code: "payload_too_large", message: "request body too large"}
		}
		return outcome{status: fiber.StatusBadRequest, code: "invalid_request", message: "could not read the request body"}
	}
	timeout := timeoutOf(route, x.method)

	var tried balance.Skip
	var last outcome
	for attempt := 0; ; attempt++ {
		i, why := p.choose(x, tried)
		if i < 0 {
			if attempt == 0 {
				return why
			}
			return last
		}
		tried = tried.With(i)
		err := p.attempt(c, x, up, i, timeout)
		again := false
		if err != nil {
			last = p.failure(x, err)
			again = x.mayRetry || dialFailed(err)
		} else {
			again = x.mayRetry && rc.StatusRetryable((&c.Response).StatusCode())
			last = outcome{answered: true, exhausted: again && x.replayable}
		}
		if !again || !x.retries || !x.replayable || attempt >= rc.MaxRetries {
			return last
		}
		if p.budgets != nil && !p.budgets.AllowRetry(route.ID) {
			p.metrics.budgetRefused(x)
			return last
		}
		p.metrics.retry(x)
		time.Sleep(rc.Backoff(attempt))
	}
}

// dialFailed reports whether err happened before the request was sent.
func dialFailed(err error) bool {
	var op *net.OpError
	return errors.Is(err, fasthttp.ErrDialTimeout) || (errors.As(err, &op) && op.Op == "dial")
}

// choose picks an upstream: healthy ones only, load balanced, untried ones
// first, and only where the circuit breaker admits the request. With none
// left it says why: circuit_open when an open breaker is part of the reason.
func (p *Proxy) choose(x *exchange, tried balance.Skip) (int, outcome) {
	r := x.route
	n := len(r.Upstreams)
	picker := x.state.picker
	down := p.unhealthy(x)
	var refused balance.Skip
	cb := x.state.breaker
	for {
		skip := down | refused
		i := picker.Pick(n, skip|tried)
		if i < 0 && tried != 0 {
			i = picker.Pick(n, skip) // a tried upstream beats none
		}
		if i < 0 {
			if refused != 0 {
				return -1, outcome{status: fiber.StatusServiceUnavailable, code: "circuit_open", message: "circuit breaker open for every upstream"}
			}
			return -1, outcome{status: fiber.StatusServiceUnavailable, code: "no_healthy_upstream", message: "no healthy upstream"}
		}
		if cb != nil && p.breakers != nil && !p.breakers.Allow(x.key(i), *cb) {
			refused = refused.With(i)
			continue
		}
		return i, outcome{}
	}
}

func (p *Proxy) unhealthy(x *exchange) balance.Skip {
	if p.health == nil || !healthCheckOf(x.route) {
		return 0
	}
	var down balance.Skip
	for i := range x.route.Upstreams {
		if !p.health.Healthy(health.Key(x.key(i))) {
			down = down.With(i)
		}
	}
	return down
}

// attempt sends up to upstream i and leaves the answer in (&c.Response).
// Every attempt the breaker admitted is reported, so a half-open probe slot
// is always given back.
func (p *Proxy) attempt(c *fasthttp.RequestCtx, x *exchange, up *fasthttp.Request, i int, timeout time.Duration) error {
	u := x.route.Upstreams[i]
	x.upstream, x.upstreamJSON = u.URL, x.state.logURLs[i]
	x.attempts++
	resp := (&c.Response)
	err := p.send(x, up, resp, x.state.targets[i], timeout)
	if cb := x.state.breaker; cb != nil && p.breakers != nil {
		p.breakers.Report(x.key(i), *cb, err == nil && resp.StatusCode() < 500)
	}
	if err != nil {
		return err
	}
	stripResponse(&resp.Header)
	resp.Header.SetNoDefaultContentType(true)
	return nil
}

func (p *Proxy) send(x *exchange, up *fasthttp.Request, resp *fasthttp.Response, t *target, timeout time.Duration) error {
	if t == nil {
		return errInvalidUpstream
	}
	uri := up.URI()
	uri.SetScheme(t.scheme)
	uri.SetHost(t.host)
	x.buf = joinPath(x.buf[:0], t.base, x.fwdPath)
	uri.SetPathBytes(x.buf)
	return t.client.DoTimeout(up, resp, timeout)
}

// failure maps a transport error to the contract's error.
func (p *Proxy) failure(x *exchange, err error) outcome {
	var ne net.Error
	switch {
	case x.bodyTooLarge():
		return outcome{status: fiber.StatusRequestEntityTooLarge, code: "payload_too_large", message: "request body too large"}
	case x.stream.readErr != nil:
		return outcome{status: fiber.StatusBadRequest, code: "invalid_request", message: "malformed or incomplete request body"}
	case errors.Is(err, fasthttp.ErrDialTimeout):
		p.metrics.upstreamError(x, "connect")
		return outcome{status: fiber.StatusBadGateway, code: "upstream_unavailable", message: "could not connect to the upstream"}
	case errors.Is(err, fasthttp.ErrTimeout), errors.As(err, &ne) && ne.Timeout():
		p.metrics.upstreamError(x, "timeout")
		return outcome{status: fiber.StatusGatewayTimeout, code: "upstream_timeout", message: "the upstream did not answer in time"}
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		p.metrics.upstreamError(x, "response_too_large")
		return outcome{status: fiber.StatusBadGateway, code: "upstream_unavailable", message: "the upstream response is too large"}
	default:
		p.metrics.upstreamError(x, "connect")
		return outcome{status: fiber.StatusBadGateway, code: "upstream_unavailable", message: "the upstream is unavailable"}
	}
}

var errInvalidUpstream = errors.New("proxy: invalid upstream URL")

// upstreamPool keeps one fasthttp.HostClient per scheme+host for the life of
// the process, so a snapshot swap neither drops nor re-dials connections.
type upstreamPool struct {
	cfg     Config
	dial    fasthttp.DialFunc // nil: TCP (tests swap in memory pipes)
	targets sync.Map          // upstream URL as configured -> *target
	clients sync.Map          // scheme://host -> *fasthttp.HostClient
}

// target is an upstream URL parsed once.
type target struct {
	scheme, host, base string
	client             *fasthttp.HostClient
}

func newUpstreamPool(cfg Config) *upstreamPool { return &upstreamPool{cfg: cfg} }

func (p *upstreamPool) target(raw string) (*target, error) {
	if v, ok := p.targets.Load(raw); ok {
		return v.(*target), nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errInvalidUpstream
	}
	tls := u.Scheme == "https"
	key := u.Scheme + "://" + u.Host
	hc, ok := p.clients.Load(key)
	if !ok {
		hc, _ = p.clients.LoadOrStore(key, &fasthttp.HostClient{
			DialTimeout:              p.dialUpstream,
			Addr:                     fasthttp.AddMissingPort(u.Host, tls),
			IsTLS:                    tls,
			MaxConns:                 p.cfg.MaxConnsPerUpstream,
			MaxResponseBodySize:      int(p.cfg.MaxResponseBytes),
			MaxIdleConnDuration:      90 * time.Second,
			NoDefaultUserAgentHeader: true,
			ReadBufferSize:           p.cfg.MaxHeaderBytes + headerSlack,
			// Our own retries decide; fasthttp's would replay non-idempotent
			// requests on a reused connection behind our back.
			RetryIfErr: func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
		})
	}
	t := &target{scheme: u.Scheme, host: u.Host, base: u.Path, client: hc.(*fasthttp.HostClient)}
	v, _ := p.targets.LoadOrStore(raw, t)
	return v.(*target), nil
}

// prune drops targets no route uses any more, and clients no target uses.
func (p *upstreamPool) prune(live func(url string) bool) {
	used := make(map[string]bool)
	p.targets.Range(func(k, v any) bool {
		if !live(k.(string)) {
			p.targets.Delete(k)
			return true
		}
		t := v.(*target)
		used[t.scheme+"://"+t.host] = true
		return true
	})
	p.clients.Range(func(k, v any) bool {
		if !used[k.(string)] {
			p.clients.Delete(k)
			v.(*fasthttp.HostClient).CloseIdleConnections()
		}
		return true
	})
}

// limitedBody streams the client's body upstream, failing once it grows past
// the limit (only a chunked body can: a too large Content-Length is refused
// before forwarding). It has no Close, so fasthttp never releases the
// server's stream it wraps.
type limitedBody struct {
	r        io.Reader
	left     int64
	exceeded bool
	atEnd    bool  // the client's body was read to its end
	readErr  error // the client's body was malformed or cut short
}

var errBodyTooLarge = errors.New("proxy: request body too large")

func (l *limitedBody) reset(r io.Reader, limit int64) { *l = limitedBody{r: r, left: limit} }

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
	switch {
	case err == io.EOF:
		l.atEnd = true
	case err != nil:
		l.readErr = err
	}
	return n, err
}
