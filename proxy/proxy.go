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
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
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

// Config holds the data plane's limits. Zero fields take their defaults.
type Config struct {
	// MaxHeaderBytes bounds the request line plus headers. Default 16 KiB;
	// larger requests get 431.
	MaxHeaderBytes int
	// MaxBodyBytes bounds a proxied request body, which is streamed to the
	// upstream, not buffered. Default 32 MiB; larger bodies get 413
	// payload_too_large (a chunked body that grows past it is cut off).
	MaxBodyBytes int64
	// MaxResponseBytes bounds an upstream response, which is buffered.
	// Default 64 MiB; a larger answer is a 502 upstream_unavailable.
	MaxResponseBytes int64
	// MaxReplayBytes: request bodies with a Content-Length up to this size
	// are buffered so that a failed attempt can be retried; larger or
	// chunked bodies stream and are never retried. Default 64 KiB.
	MaxReplayBytes int64
	// ReadTimeout bounds reading a whole request, body included (slowloris
	// protection). Default 30s.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing a response. Default 60s.
	WriteTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle this long. Default 120s.
	IdleTimeout time.Duration
	// MaxConns caps concurrent client connections. Default 256 Ki (Fiber's).
	MaxConns int
	// MaxConnsPerUpstream caps connections to one upstream host. Default 1024.
	MaxConnsPerUpstream int
	// TrustedProxies are the CIDRs or IPs of proxies in front of the
	// gateway: their X-Forwarded-For/-Proto/-Host are extended or kept. From
	// anyone else those headers are replaced, so a client cannot spoof what
	// the upstream sees. Default none.
	TrustedProxies []string
	// Log receives one access-log line per request (at Info) and errors.
	// Default slog.Default().
	Log *slog.Logger
	// AccessLog, when set, receives the access-log lines instead of Log:
	// the same JSON as slog's JSONHandler writes (time, level, msg and the
	// same fields), encoded without slog at a fraction of its cost, one
	// Write per line. It must be safe for concurrent use and should buffer
	// (one syscall per line would cost more than the rest of the request).
	AccessLog io.Writer
}

// Defaults of Config.
const (
	DefaultMaxHeaderBytes      = 16 << 10
	DefaultMaxBodyBytes        = 32 << 20
	DefaultMaxResponseBytes    = 64 << 20
	DefaultMaxReplayBytes      = 64 << 10
	DefaultReadTimeout         = 30 * time.Second
	DefaultWriteTimeout        = 60 * time.Second
	DefaultIdleTimeout         = 120 * time.Second
	DefaultMaxConns            = 256 * 1024
	DefaultMaxConnsPerUpstream = 1024
	maxInt32                   = 1<<31 - 1
	headerSlack                = 1 << 10 // request line room above MaxHeaderBytes
)

func (c Config) withDefaults() Config {
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.MaxResponseBytes == 0 {
		c.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if c.MaxReplayBytes == 0 {
		c.MaxReplayBytes = min(DefaultMaxReplayBytes, c.MaxBodyBytes)
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = DefaultReadTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.MaxConnsPerUpstream == 0 {
		c.MaxConnsPerUpstream = DefaultMaxConnsPerUpstream
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	return c
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.MaxHeaderBytes < 1024 || c.MaxHeaderBytes > 1<<20:
		return fmt.Errorf("proxy: MaxHeaderBytes %d out of range 1 KiB..1 MiB", c.MaxHeaderBytes)
	case c.MaxBodyBytes < 0 || c.MaxBodyBytes > maxInt32:
		return fmt.Errorf("proxy: MaxBodyBytes %d out of range 0..2 GiB", c.MaxBodyBytes)
	case c.MaxResponseBytes < 0 || c.MaxResponseBytes > maxInt32:
		return fmt.Errorf("proxy: MaxResponseBytes %d out of range 0..2 GiB", c.MaxResponseBytes)
	case c.MaxReplayBytes < 0 || c.MaxReplayBytes > c.MaxBodyBytes:
		return fmt.Errorf("proxy: MaxReplayBytes %d out of range 0..MaxBodyBytes", c.MaxReplayBytes)
	case c.ReadTimeout < 0 || c.WriteTimeout < 0 || c.IdleTimeout < 0:
		return errors.New("proxy: timeouts must not be negative")
	case c.MaxConns < 0 || c.MaxConnsPerUpstream < 0:
		return errors.New("proxy: connection limits must not be negative")
	}
	_, err := parseTrusted(c.TrustedProxies)
	return err
}

// Snapshots hands out the current configuration snapshot.
// *projections.Projector satisfies it.
type Snapshots interface {
	Snapshot() *projections.Snapshot
}

// Deps are the data plane's collaborators. Only Snapshots is required; every
// other nil field switches its mechanism off.
type Deps struct {
	Snapshots Snapshots
	Limiter   ratelimit.Limiter     // nil: no rate limiting
	Breakers  breaker.Breakers      // nil: no circuit breakers
	Health    health.Checker        // nil: every upstream healthy
	Budgets   *retry.Budgets        // nil: retries limited only by maxRetries
	Metrics   prometheus.Registerer // nil: no metrics
	Tracer    trace.Tracer          // nil (or no-op): no spans, traceparent untouched
}

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

// HeaderAPIKey carries a tenant's API key; HeaderAdminKey the admin key.
// Neither is ever forwarded upstream.
const (
	HeaderAPIKey   = "X-API-Key"
	HeaderAdminKey = "X-Admin-Key"
)

// pruneOnChange drops balancer state and upstream clients that no route of
// the new snapshot uses. One request per seq does it, off the request path.
func (p *Proxy) pruneOnChange(snap *projections.Snapshot) {
	seq := snap.Seq()
	old := p.seenSeq.Load()
	if seq == old || !p.seenSeq.CompareAndSwap(old, seq) || old < 0 {
		return
	}
	go func() {
		defer func() {
			if r := recover(); r != nil {
				p.log.Error("proxy: panic pruning state", "panic", r)
			}
		}()
		live := make(map[string]bool)
		hosts := make(map[string]bool)
		for _, r := range snap.Routes() {
			live[r.ID] = true
			for _, u := range r.Upstreams {
				hosts[u.URL] = true
			}
		}
		p.pruneRoutes(snap)
		p.balancers.Prune(func(id string) bool { return live[id] })
		p.metrics.forget(func(id string) bool { return live[id] })
		p.pool.prune(func(url string) bool { return hosts[url] })
	}()
}

// timeoutOf is the route's upstream timeout for a method: byMethod, else
// the route default, else DefaultTimeoutMs.
func timeoutOf(r *projections.Route, method string) time.Duration {
	ms := events.DefaultTimeoutMs
	if r.Resilience != nil && r.Resilience.Timeout != nil && r.Resilience.Timeout.Enabled {
		t := r.Resilience.Timeout
		if v, ok := t.ByMethod[method]; ok && v > 0 {
			ms = v
		} else if v, ok := t.ByMethod[strings.ToUpper(method)]; ok && v > 0 {
			ms = v
		} else if t.Default > 0 {
			ms = t.Default
		}
	}
	return time.Duration(ms) * time.Millisecond
}

func fallbackOf(r *projections.Route) *events.Fallback {
	if r.Resilience == nil || r.Resilience.Fallback == nil || !r.Resilience.Fallback.Enabled {
		return nil
	}
	return r.Resilience.Fallback
}

func healthCheckOf(r *projections.Route) bool {
	return r.Resilience != nil && r.Resilience.HealthCheck != nil && r.Resilience.HealthCheck.Enabled
}

var _ context.Context = (*fasthttp.RequestCtx)(nil)
