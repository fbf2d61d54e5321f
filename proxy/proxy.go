// Package proxy is the gateway's data plane. This file is the request path,
// top to bottom: Handler hands each request to serve, which takes it through prepare, authenticate,
// rateLimit, match, upstreamRequest and forward (chooseUpstream, attempt,
// send, with retries), then respond (stream, for a body that streams), reject
// or serveFallback; finish observes it. The other files are leaves the path calls and that call
// nothing back: headers.go (hop-by-hop, forwarded headers, transforms),
// body.go (the client's body on its way up), stream.go (an upstream's body
// on its way down), tunnel.go (WebSocket), routes.go (what each route
// version needs, prepared once), upstreams.go (clients, pools, deadlines),
// conn.go (listeners, the framing guard, timeouts, connection memos),
// errors.go, accesslog.go, metrics.go, tracing.go, request.go (the
// request's state) and config.go.
//
// The request path reads only memory: the snapshot is loaded once per
// request, the rate limiter is the only component allowed one Redis round
// trip, and no lock is shared by all requests.
//
// Choices where the contract is silent:
//   - Routes match the normalized path (percent-decoding, "." and ".."
//     segments and repeated slashes resolved), and that same path is what
//     goes upstream, re-escaped: what is matched is what is forwarded.
//   - The upstream sees its own host in Host (as nginx's proxy_pass does);
//     the client's Host travels in X-Forwarded-Host.
//   - Request bodies stream to the upstream and are never retried, except
//     bodies with a Content-Length up to MaxReplayBytes (1 MiB) on routes
//     whose retry block applies: those are kept so they can be replayed.
//     Empty bodies are always replayable.
//   - A response body with a Content-Length that arrived with its head is
//     passed on whole; any other body streams (stream.go): the route's timeout bounds each wait for
//     more, a body cut short ends the client's response short, trailers of
//     a chunked body are dropped.
//   - WebSocket handshakes (GET, Upgrade: websocket, Connection: upgrade,
//     no body) become byte tunnels (tunnel.go); any other Upgrade is
//     hop-by-hop and dropped. A failed dial of the handshake moves on to
//     another upstream within the route's retries; nothing else is retried.
//   - Gateway errors outside the contract's list use the codes
//     headers_too_large (431), invalid_request (400: a request that does not
//     parse or whose framing is ambiguous, also a malformed or cut short
//     body), request_timeout (408) and internal_error (500).
//   - Every connection is served through the framing guard (package
//     framing, see Listener and Guard): a request the gateway cannot parse
//     unambiguously is answered 400 and its connection closed, and an
//     answer given before the request's body was read to its end closes the
//     connection (settleBody), so no byte of one request is ever read as
//     another. Requests served without the guard are not checked for it.
//   - A client X-Request-Id is kept when it is 1..128 visible ASCII
//     characters; otherwise the gateway makes one.
//   - A malformed client body is the client's 400, never the route's
//     fallback; an oversized one is 413.
//   - A client that goes away while its request waits to be retried ends
//     the retries; the request is logged with status 499 (nginx's "client
//     closed request").
package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/projections"
	"github.com/tenantgate/gateway/proxy/framing"
	"github.com/tenantgate/gateway/resilience/balance"
	"github.com/tenantgate/gateway/resilience/breaker"
	"github.com/tenantgate/gateway/resilience/health"
	"github.com/tenantgate/gateway/resilience/ratelimit"
	"github.com/tenantgate/gateway/resilience/retry"
)

// Proxy is the data plane. It is safe for concurrent use.
type Proxy struct {
	cfg       Config
	snapshots Snapshots
	limiter   ratelimit.Limiter
	breakers  breaker.Breakers
	health    health.Checker
	budgets   *retry.Budgets
	trusted   []netip.Prefix
	balancers *balance.Registry
	routes    sync.Map // *projections.Route -> *routeState
	pool      *upstreamPool
	streams   streams // responses being streamed
	ids       *idSource
	guard     *framing.Guard
	metrics   *metrics
	tunnels   tunnels // tunnel.go: the open WebSocket tunnels
	tracer    trace.Tracer
	log       *slog.Logger
	seenSeq   atomic.Int64 // last snapshot seq whose state was pruned
}

// New builds the data plane.
func New(cfg Config, deps Deps) (*Proxy, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Snapshots == nil {
		return nil, errors.New("proxy: Deps.Snapshots is required")
	}
	trusted, _ := parseTrusted(cfg.TrustedProxies)
	m, err := newMetrics(deps.Metrics)
	if err != nil {
		return nil, err
	}
	p := &Proxy{
		cfg:       cfg,
		snapshots: deps.Snapshots,
		limiter:   deps.Limiter,
		breakers:  deps.Breakers,
		health:    deps.Health,
		budgets:   deps.Budgets,
		trusted:   trusted,
		balancers: balance.NewRegistry(),
		pool:      newUpstreamPool(cfg),
		ids:       newIDSource(),
		guard: framing.New(framing.Config{
			MaxHeadBytes: cfg.MaxHeaderBytes + headerSlack, // the server's read buffer
			HeadTimeout:  cfg.ReadTimeout,
			Refused:      m.framingRefused,
			Log:          cfg.Log,
		}),
		metrics: m,
		tracer:  activeTracer(deps.Tracer),
		log:     cfg.Log,
	}
	p.seenSeq.Store(-1)
	p.tunnels.log = tunnelLog(cfg)
	return p, nil
}

// Handler proxies one request. Mount it last, after the gateway's own
// routes: it answers every other path. Serve the app's handler through
// SettleBodies.
func (p *Proxy) Handler(c *fiber.Ctx) error {
	p.serve(c.Context())
	return nil
}

// serve is the request path. Every request ends in exactly one answer: the
// upstream's, the route's fallback, or the gateway's own error.
func (p *Proxy) serve(c *fasthttp.RequestCtx) {
	x := acquireExchange()
	defer p.finish(c, x)
	p.prepare(c, x)

	// One snapshot for the whole request: a configuration change
	// mid-request cannot mix two versions.
	snap := p.snapshots.Snapshot()
	p.pruneOnChange(snap)
	if !p.authenticate(c, x, snap) || !p.rateLimit(c, x) || !p.match(c, x, snap) {
		return
	}
	// Asked before upstreamRequest drops the hop-by-hop Upgrade header.
	websocket := wantsWebSocket(&c.Request, x.sent)
	// The request is transformed once; each attempt only swaps the upstream.
	up := p.upstreamRequest(c, x)
	defer p.releaseUpstreamRequest(c, x, up)
	if websocket {
		// The same upstream choice, then a byte tunnel instead of a round trip (tunnel.go).
		p.respond(c, x, p.tunnel(c, x, up))
		return
	}
	p.respond(c, x, p.forward(c, x, up))
}

// prepare reads what every later step needs of the request, once.
func (p *Proxy) prepare(c *fasthttp.RequestCtx, x *exchange) {
	req := &c.Request
	x.start = c.Time() // taken by the server as the request arrived
	if x.start.IsZero() {
		x.start = time.Now() // a RequestCtx not served by fasthttp.Server
	}
	if p.tracer != nil {
		p.startSpan(c, x)
	}
	x.uri = req.URI() // the server parsed and checked it before any handler
	x.method = methodString(req.Header.Method())
	scan := scanHeaders(&req.Header)
	x.setRequestID(scan.requestID, p.ids)
	x.sent = scan.present
	x.apiKey = scan.apiKey
	x.path = string(x.uri.Path()) // normalized: what is matched is what is forwarded
}

// authenticate finds the tenant of the request's API key: a digest lookup
// in the snapshot, no I/O.
func (p *Proxy) authenticate(c *fasthttp.RequestCtx, x *exchange, snap *projections.Snapshot) bool {
	if len(x.apiKey) == 0 {
		p.reject(c, x, fiber.StatusUnauthorized, "missing_api_key", "missing X-API-Key header")
		return false
	}
	tenant, ok := snap.Authenticate(keyDigest(c, x.apiKey))
	if !ok {
		p.reject(c, x, fiber.StatusForbidden, "invalid_api_key", "invalid API key")
		return false
	}
	x.tenant = tenant
	if tenant.Status != events.TenantActive {
		p.reject(c, x, fiber.StatusForbidden, "tenant_inactive", "tenant is not active")
		return false
	}
	return true
}

// rateLimit applies the tenant's limit, before matching so that a limited
// tenant's 404s carry the headers too. The request's context reaches the
// limiter, which answers from its lease without Redis in the common case.
func (p *Proxy) rateLimit(c *fasthttp.RequestCtx, x *exchange) bool {
	rl := x.tenant.RateLimit
	if rl == nil || p.limiter == nil {
		return true
	}
	x.limit = p.limiter.Allow(c, x.tenant.ID, ratelimit.Rule{Limit: rl.Limit, Window: time.Duration(rl.WindowMs) * time.Millisecond})
	if !x.limit.Allowed {
		p.reject(c, x, fiber.StatusTooManyRequests, "rate_limited", "rate limit exceeded")
		return false
	}
	return true
}

// match finds the tenant's route for the request (only the tenant's routes
// are considered) and checks the body's announced size against the limit.
func (p *Proxy) match(c *fasthttp.RequestCtx, x *exchange, snap *projections.Snapshot) bool {
	route, ok := snap.Match(x.tenant, x.method, x.path)
	if !ok {
		p.reject(c, x, fiber.StatusNotFound, "route_not_found", "no route matches this request")
		return false
	}
	x.route = p.stateOf(route)
	if cl, limit := c.Request.Header.ContentLength(), p.cfg.MaxBodyBytes; limit != NoLimit && int64(cl) > limit {
		p.reject(c, x, fiber.StatusRequestEntityTooLarge, "payload_too_large", "request body too large")
		return false
	}
	return true
}

// upstreamRequest builds the upstream request from the client's: headers
// minus hop-by-hop and key headers, forwarding headers, the request
// transform and the body (kept when it may be replayed, else streamed). It
// edits the client's request in place, as the bare proxy forwards it,
// unless the body streams through the size limit: fasthttp cannot take that
// wrapper in place (setting a body stream releases the server's own), so
// then a copy goes. Everything read from the client is read before the same
// field is written.
func (p *Proxy) upstreamRequest(c *fasthttp.RequestCtx, x *exchange) *fasthttp.Request {
	req := &c.Request
	up := req
	if p.streamsBody(req, x.route.retry != nil) {
		up = fasthttp.AcquireRequest()
		req.Header.CopyTo(&up.Header)
	}
	up.Header.SetNoDefaultContentType(true)
	stripRequest(&req.Header, &up.Header, x.sent)
	p.setForwarded(c, x, up) // reads the client's Host, cleared below
	up.Header.SetCanonical(canonXRequestID, x.requestID)
	if x.span != nil {
		injectTrace(c, &up.Header, x.span)
	}
	if e := x.route.reqHeaders; e != nil {
		x.buf = applyHeaderEdits(&up.Header, e, x, x.buf)
	}
	x.fwdPath = x.route.rewrite(x.path)

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
	p.prepareBody(req, up, &x.body)
	return up
}

// releaseUpstreamRequest lets go of what upstreamRequest made.
func (p *Proxy) releaseUpstreamRequest(c *fasthttp.RequestCtx, x *exchange, up *fasthttp.Request) {
	if up != &c.Request {
		fasthttp.ReleaseRequest(up)
	} else if len(x.body.kept) > 0 {
		up.SetBodyRaw(nil) // the kept body goes back to the pool with x
	}
}

// outcome is how forwarding ended.
type outcome struct {
	// answered: c.Response holds an upstream answer to pass on.
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
// replayable body, within maxRetries and the route's retry budget, each
// retry preferring an upstream not yet tried, after a backoff that a client
// going away cuts short. A failed dial is retried whatever the method: the
// request never left the gateway.
func (p *Proxy) forward(c *fasthttp.RequestCtx, x *exchange, up *fasthttp.Request) outcome {
	rt := x.route.retry
	if rt != nil && p.budgets != nil {
		p.budgets.Request(x.route.ID)
	}
	if x.body.err != nil {
		return x.body.failure()
	}
	timeout := x.route.timeoutFor(x.method)
	methodRetries := rt != nil && rt.MethodRetryable(x.method)
	// The client's context, made when a retry first waits: only requests
	// that retry pay for watching their client.
	var ctx context.Context
	var tried balance.Skip
	var last outcome
	for attempt := 0; ; attempt++ {
		i, why := p.chooseUpstream(x, tried)
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
			again = methodRetries || dialFailed(err)
		} else {
			again = methodRetries && rt.StatusRetryable(c.Response.StatusCode())
			last = outcome{answered: true, exhausted: again && x.body.replayable}
		}
		if !again || rt == nil || !x.body.replayable || attempt >= rt.MaxRetries {
			return last
		}
		if p.budgets != nil && !p.budgets.AllowRetry(x.route.ID) {
			p.metrics.budgetRefused(x)
			return last
		}
		p.metrics.retry(x)
		if ctx == nil {
			var stop context.CancelFunc
			ctx, stop = clientContext(c)
			defer stop()
		}
		if !backoff(ctx, rt.Backoff(attempt)) {
			return outcome{status: statusClientGone, code: "client_gone", message: "the client went away"}
		}
	}
}

// statusClientGone is what the log records for a request whose client left
// before it was answered (nginx's 499).
const statusClientGone = 499

// backoff waits d before a retry. It reports false when ctx ended first.
func backoff(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return ctx.Err() == nil
	case <-ctx.Done():
		return false
	}
}

// chooseUpstream picks an upstream: healthy ones only, load balanced,
// untried ones first, and only where the circuit breaker admits the
// request. With none left it says why: circuit_open when an open breaker is
// part of the reason.
func (p *Proxy) chooseUpstream(x *exchange, tried balance.Skip) (int, outcome) {
	r := x.route
	n := len(r.Upstreams)
	down := p.unhealthy(r)
	var refused balance.Skip
	for {
		skip := down | refused | x.untrusted
		i := r.picker.Pick(n, skip|tried)
		if i < 0 && tried != 0 {
			i = r.picker.Pick(n, skip) // a tried upstream beats none
		}
		if i < 0 {
			if refused != 0 {
				return -1, outcome{status: fiber.StatusServiceUnavailable, code: "circuit_open", message: "circuit breaker open for every upstream"}
			}
			return -1, outcome{status: fiber.StatusServiceUnavailable, code: "no_healthy_upstream", message: "no healthy upstream"}
		}
		if r.breaker != nil && p.breakers != nil && !p.breakers.Allow(r.keys[i], *r.breaker) {
			refused = refused.With(i)
			continue
		}
		return i, outcome{}
	}
}

// unhealthy is the set of r's upstreams its health checks took out.
func (p *Proxy) unhealthy(r *routeState) balance.Skip {
	if p.health == nil || !r.healthChecked {
		return 0
	}
	var down balance.Skip
	for i := range r.Upstreams {
		if !p.health.Healthy(health.Key(r.keys[i])) {
			down = down.With(i)
		}
	}
	return down
}

// attempt sends up to upstream i and leaves the answer in c.Response.
// Every attempt the breaker admitted is reported, so a half-open probe slot
// is always given back.
func (p *Proxy) attempt(c *fasthttp.RequestCtx, x *exchange, up *fasthttp.Request, i int, timeout time.Duration) error {
	x.upstream = i
	x.attempts++
	x.dropStream() // an earlier attempt's answer, not passed on
	resp := &c.Response
	s, err := p.send(x, up, resp, x.route.targets[i], timeout)
	x.stream = s
	if cb := x.route.breaker; cb != nil && p.breakers != nil {
		p.breakers.Report(x.route.keys[i], *cb, err == nil && resp.StatusCode() < 500)
	}
	if err != nil {
		return err
	}
	stripResponse(&resp.Header)
	resp.Header.SetNoDefaultContentType(true)
	return nil
}

// send is one round trip to t: the answer's head and a small body in resp,
// or its head and a stream of its body. The route's timeout bounds the wait
// for the head and then each wait for more of the body.
func (p *Proxy) send(x *exchange, up *fasthttp.Request, resp *fasthttp.Response, t *target, timeout time.Duration) (*stream, error) {
	if t == nil {
		return nil, errInvalidUpstream
	}
	aim(x, up, t)
	return t.roundTrip(up, resp, timeout)
}

// aim points up at t: its scheme, host and base path joined to the
// forwarded path (the query stays the client's).
func aim(x *exchange, up *fasthttp.Request, t *target) {
	uri := up.URI()
	uri.SetScheme(t.scheme)
	uri.SetHost(t.host)
	x.buf = joinPath(x.buf[:0], t.base, x.fwdPath)
	uri.SetPathBytes(x.buf)
}

// respond answers with the upstream's answer, the route's fallback, or the
// gateway's error.
func (p *Proxy) respond(c *fasthttp.RequestCtx, x *exchange, out outcome) {
	fb := x.route.fallback
	switch {
	case out.answered && (!out.exhausted || fb == nil):
		if e := x.route.respHeaders; e != nil {
			x.buf = applyHeaderEdits(&c.Response.Header, e, x, x.buf)
		}
		p.decorate(c, x)
		x.status = c.Response.StatusCode()
		if x.stream != nil {
			p.stream(c, x)
		}
	case x.body.clientFault() || out.status == statusClientGone:
		p.reject(c, x, out.status, out.code, out.message) // no fallback for the client's fault
	case fb != nil:
		p.serveFallback(c, x, fb)
	default:
		p.reject(c, x, out.status, out.code, out.message)
	}
}

// reject answers with the gateway's own error.
func (p *Proxy) reject(c *fasthttp.RequestCtx, x *exchange, status int, code, msg string) {
	c.Response.Reset()
	x.status, x.code = status, code
	_ = writeError(c, status, code, msg)
	p.decorate(c, x)
}

// serveFallback answers with the route's fallback, exactly as configured.
func (p *Proxy) serveFallback(c *fasthttp.RequestCtx, x *exchange, fb *events.Fallback) {
	resp := &c.Response
	resp.Reset()
	x.status, x.code = fb.StatusCode, "fallback"
	resp.SetStatusCode(fb.StatusCode)
	if fb.ContentType != "" {
		resp.Header.SetContentType(fb.ContentType)
	}
	resp.SetBodyString(fb.Body)
	p.decorate(c, x)
}

// decorate adds what every answer carries: the request id, and the rate
// limit headers for a tenant with a limit.
func (p *Proxy) decorate(c *fasthttp.RequestCtx, x *exchange) {
	h := &c.Response.Header
	h.SetCanonical(canonXRequestID, x.requestID)
	if x.limit.Limit <= 0 {
		return
	}
	b := strconv.AppendInt(x.buf[:0], int64(x.limit.Limit), 10)
	h.SetCanonical(canonRateLimitLimit, b)
	b = strconv.AppendInt(b[:0], int64(x.limit.Remaining), 10)
	h.SetCanonical(canonRateLimitRemaining, b)
	b = strconv.AppendInt(b[:0], x.limit.ResetUnix(), 10)
	h.SetCanonical(canonRateLimitReset, b)
	if !x.limit.Allowed {
		b = strconv.AppendInt(b[:0], x.limit.RetryAfterSeconds(), 10)
		h.SetCanonical(canonRetryAfter, b)
	}
	x.buf = b
}

// finish ends the request whatever happened: a panic is contained as a 500,
// the body is settled (nothing of it may be read as the next request), and
// the request is observed (metrics, access log, span), now or, for a
// streamed response, when the stream ends (streamEnded).
func (p *Proxy) finish(c *fasthttp.RequestCtx, x *exchange) {
	if r := recover(); r != nil {
		p.log.Error("proxy: panic serving request", "panic", r, "request_id", string(x.requestID))
		p.unstream(x)
		c.Response.Reset()
		x.status, x.code = fiber.StatusInternalServerError, "internal_error"
		_ = writeError(c, x.status, x.code, "internal error")
	}
	settleBody(c, x.body.stream.atEnd)
	if x.streaming {
		return
	}
	x.dropStream()
	p.observe(c, x)
	if x.span != nil {
		p.endSpan(x)
	}
	releaseExchange(x)
}
