// Package proxy is the gateway's data plane: the Fiber handler every
// non-reserved path ends in (FastHandler serves those paths without Fiber's
// router). Handler reads top to bottom as the request path:
// tenant auth, rate limit, route match, upstream choice (healthy and breaker
// closed, then load balanced), transform, forward with timeout and retry,
// transform the response, respond (or serve the route's fallback).
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
//     bodies with a Content-Length up to MaxReplayBytes (64 KiB) on routes
//     whose retry block applies: those are buffered so they can be replayed.
//     Empty bodies are always replayable.
//   - Responses are buffered up to MaxResponseBytes (a larger one is a 502).
//   - Protocol upgrades (WebSocket) are not proxied: Upgrade is hop-by-hop.
//   - Gateway errors outside the contract's list use the codes
//     headers_too_large (431), invalid_request (400: a request that does not
//     parse or whose framing is ambiguous, also a malformed or cut short
//     body), request_timeout (408) and internal_error (500).
//   - Every connection is served through the framing guard (package
//     framing, see Listener and Guard): a request the gateway cannot parse
//     unambiguously is answered 400 and its connection closed, and an
//     answer given before the request's body was read to its end closes the
//     connection (settleBody), so no byte of one request is ever read as
//     another.
//   - A client X-Request-Id is kept when it is 1..128 visible ASCII
//     characters; otherwise the gateway makes one.
//   - A malformed client body is the client's 400, never the route's
//     fallback; an oversized one is 413.
package proxy

import (
	"bytes"
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
	ids       *idSource
	guard     *framing.Guard
	metrics   *metrics
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
	return p, nil
}

// Handler proxies one request. Mount it last: it answers every path.
func (p *Proxy) Handler(c *fiber.Ctx) error {
	x := acquireExchange()
	x.useTarget(&c.Context().Request)
	p.handle(c.Context(), x)
	return nil
}

// handle serves the request in x (its request target parsed), and releases x.
func (p *Proxy) handle(c *fasthttp.RequestCtx, x *exchange) {
	defer releaseExchange(x)
	if p.tracer != nil {
		p.startSpan(c, x)
	}
	defer func() {
		if r := recover(); r != nil {
			p.log.Error("proxy: panic serving request", "panic", r, "request_id", string(x.requestID))
			c.Response.Reset()
			x.status, x.code = fiber.StatusInternalServerError, "internal_error"
			_ = writeError(c, x.status, x.code, "internal error")
		}
		settleBody(c, x.stream.atEnd)
		p.observe(c, x)
		if x.span != nil {
			p.endSpan(x)
		}
	}()
	p.serve(c, x)
}

// serve is the request path. Every branch ends in exactly one response.
func (p *Proxy) serve(c *fasthttp.RequestCtx, x *exchange) {
	req := (&c.Request)
	x.start = c.Time() // taken by the server as the request arrived
	if x.start.IsZero() {
		x.start = time.Now() // a RequestCtx not served by fasthttp.Server
	}
	x.method = methodString(req.Header.Method())
	scan := scanHeaders(&req.Header)
	x.setRequestID(scan.requestID, p.ids)
	x.present = scan.present

	// One snapshot for the whole request: a config change mid-request
	// cannot mix two versions.
	snap := p.snapshots.Snapshot()
	p.pruneOnChange(snap)

	// 1. Tenant auth: a digest lookup in memory, no I/O.
	key := scan.apiKey
	if len(key) == 0 {
		p.reject(c, x, fiber.StatusUnauthorized, "missing_api_key", "missing X-API-Key header")
		return
	}
	tenant, ok := snap.Authenticate(keyDigest(c, key))
	if !ok {
		p.reject(c, x, fiber.StatusForbidden, "invalid_api_key", "invalid API key")
		return
	}
	x.tenant = tenant
	if tenant.Status != events.TenantActive {
		p.reject(c, x, fiber.StatusForbidden, "tenant_inactive", "tenant is not active")
		return
	}

	// 2. Rate limit, before matching so that a limited tenant's 404s carry
	// the headers too.
	if tenant.RateLimit != nil && p.limiter != nil {
		// Not the RequestCtx: a context derived from it costs a goroutine
		// per request (it is not a context.cancelCtx) and its Done races
		// with Server.Shutdown; the limiter bounds its own wait.
		x.limit = p.limiter.Allow(context.Background(), tenant.ID, ratelimit.Rule{
			Limit: tenant.RateLimit.Limit, Window: time.Duration(tenant.RateLimit.WindowMs) * time.Millisecond})
		x.limited = x.limit.Limit > 0
		if !x.limit.Allowed {
			p.reject(c, x, fiber.StatusTooManyRequests, "rate_limited", "rate limit exceeded")
			return
		}
	}

	// 3. Route match on the normalized path (what we match is what we forward).
	x.path = string(x.uri.Path())
	route, ok := snap.Match(tenant, x.method, x.path)
	if !ok {
		p.reject(c, x, fiber.StatusNotFound, "route_not_found", "no route matches this request")
		return
	}
	x.route = route
	x.state = p.stateOf(route)
	if rc := x.state.retry; rc != nil {
		x.retries = true
		x.mayRetry = rc.MethodRetryable(x.method)
	}
	if cl := req.Header.ContentLength(); int64(cl) > p.cfg.MaxBodyBytes {
		p.reject(c, x, fiber.StatusRequestEntityTooLarge, "payload_too_large", "request body too large")
		return
	}

	// 4. Transform the request once; each attempt only swaps the upstream.
	up := p.prepare(c, x)
	if up != &c.Request {
		defer fasthttp.ReleaseRequest(up)
	} else if len(x.body) > 0 {
		defer up.SetBodyRaw(nil) // x.body goes back to the pool with x
	}

	// 5. Forward with timeout and retry.
	out := p.forward(c, x, up)

	// 6. Respond: the upstream's answer, the fallback, or our error.
	switch {
	case out.answered && (!out.exhausted || fallbackOf(route) == nil):
		p.transformResponse(x, (&c.Response))
		p.decorate(c, x)
		x.status = (&c.Response).StatusCode()
	case x.bodyTooLarge() || x.stream.readErr != nil:
		p.reject(c, x, out.status, out.code, out.message) // the client's fault: no fallback
	case fallbackOf(route) != nil:
		p.serveFallback(c, x, fallbackOf(route))
	default:
		p.reject(c, x, out.status, out.code, out.message)
	}
}

var _ context.Context = (*fasthttp.RequestCtx)(nil)

// FastHandler serves proxy traffic without Fiber's router and context (a
// context from its pool, a walk of the route stack, then Handler: about a
// tenth of the gateway's own CPU per request). Requests that could belong
// to one of app's routes go to app: a path starting with one of the
// reserved prefixes, compared ignoring case on both the path as sent and
// as normalized (Fiber matches case-insensitively and ignores a trailing
// slash), a path not starting with '/', and a method outside the standard
// ones (Fiber answers those itself). Everything else goes straight to the
// proxy, which is where app would have sent it. app must end in Handler.
func (p *Proxy) FastHandler(app fasthttp.RequestHandler, reserved ...string) fasthttp.RequestHandler {
	// Prefixes by the lowercased byte after their '/': a path is compared
	// only with those it could match (most paths, with none).
	var byInitial [256][][]byte
	var short [][]byte // "/" or a prefix not starting with '/'
	for _, r := range reserved {
		switch {
		case r == "":
		case len(r) < 2 || r[0] != '/':
			short = append(short, []byte(r))
		default:
			c := lowerASCII(r[1])
			byInitial[c] = append(byInitial[c], []byte(r))
		}
	}
	hasPrefix := func(path []byte, prefixes [][]byte) bool {
		for _, pfx := range prefixes {
			if len(path) >= len(pfx) && bytes.EqualFold(path[:len(pfx)], pfx) {
				return true
			}
		}
		return false
	}
	isReserved := func(path []byte) bool {
		if len(path) < 2 || path[0] != '/' {
			return len(path) == 0 || path[0] != '/' || hasPrefix(path, short)
		}
		return hasPrefix(path, byInitial[lowerASCII(path[1])]) || hasPrefix(path, short)
	}
	toApp := func(c *fasthttp.RequestCtx) {
		app(c)
		settleBody(c, false) // app's handlers read a body whole (Body) or not at all
	}
	return func(c *fasthttp.RequestCtx) {
		if !standardMethod(c.Request.Header.Method()) {
			toApp(c)
			return
		}
		x := acquireExchange()
		x.useTarget(&c.Request)
		if isReserved(x.uri.PathOriginal()) || isReserved(x.uri.Path()) {
			releaseExchange(x)
			toApp(c)
			return
		}
		p.handle(c, x)
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

// decorate adds what every response carries: the request id, and the rate
// limit headers for a tenant with a limit.
func (p *Proxy) decorate(c *fasthttp.RequestCtx, x *exchange) {
	h := &c.Response.Header
	h.SetCanonical(canonXRequestID, x.requestID)
	if !x.limited {
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

// transformResponse applies the route's response header transform.
func (p *Proxy) transformResponse(x *exchange, resp *fasthttp.Response) {
	if e := x.state.respHeaders; e != nil {
		x.buf = applyHeaderEdits(&resp.Header, e, x, x.buf)
	}
}
