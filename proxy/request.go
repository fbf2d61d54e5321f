package proxy

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tenantgate/gateway/projections"
	"github.com/tenantgate/gateway/resilience/ratelimit"
	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/trace"
)

// exchange is one request's state, pooled. Everything in it but uri is owned
// by the gateway (copied out of the server's buffers), and nothing outlives
// the handler.
type exchange struct {
	uri          *fasthttp.URI // the client's request target as the server parsed it (not owned)
	start        time.Time
	method       string
	requestID    []byte
	present      dropSet // never-forwarded headers the client sent
	tenant       *projections.Tenant
	route        *projections.Route
	state        *routeState // route's prepared state
	limit        ratelimit.Decision
	limited      bool // send the rate-limit headers
	path         string
	fwdPath      string
	retries      bool // the route retries (a dial error, whatever the method)
	mayRetry     bool // ... and its retry block applies to this method
	replayable   bool // the body can be sent again
	body         []byte
	bodyErr      error
	stream       limitedBody
	upstream     string
	upstreamJSON []byte // upstream as a JSON string, when tried
	attempts     int
	status       int
	code         string     // the gateway's error code, or "fallback"
	buf          []byte     // scratch
	span         trace.Span // nil unless tracing
}

var exchanges = sync.Pool{New: func() any { return new(exchange) }}

func acquireExchange() *exchange { return exchanges.Get().(*exchange) }

func releaseExchange(x *exchange) {
	if cap(x.body) > 256<<10 {
		x.body = nil // do not pin a large buffer in the pool
	}
	*x = exchange{requestID: x.requestID[:0], body: x.body[:0], buf: x.buf[:0]}
	exchanges.Put(x)
}

// useTarget takes the request target fasthttp's server parsed (with the
// Host header) before calling any handler: the server refuses a target
// that does not parse, so every handler sees a valid one. Parsing it again
// (a fifth of the gateway's own work) bought nothing.
func (x *exchange) useTarget(req *fasthttp.Request) { x.uri = req.URI() }

func (x *exchange) bodyTooLarge() bool { return x.stream.exceeded }

// key identifies upstream i of the request's route for breakers and health.
func (x *exchange) key(i int) UpstreamKey {
	return UpstreamKey{TenantID: x.route.TenantID, RouteID: x.route.ID, Upstream: x.route.Upstreams[i].URL}
}

// setRequestID keeps the client's X-Request-Id when it is sane (1..128
// visible ASCII characters) and otherwise generates one.
func (x *exchange) setRequestID(client []byte, ids *idSource) {
	if len(client) > 0 && len(client) <= 128 && visibleASCII(client) {
		x.requestID = append(x.requestID[:0], client...)
		return
	}
	x.requestID = ids.next(x.requestID[:0])
}

func visibleASCII(b []byte) bool {
	for _, c := range b {
		if c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

// idSource makes request ids: a random per-process prefix and a counter,
// unique without a syscall or lock per request.
type idSource struct {
	prefix []byte
	n      atomic.Uint64
}

func newIDSource() *idSource {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &idSource{prefix: append(hex.AppendEncode(nil, b[:]), '-')}
}

func (s *idSource) next(dst []byte) []byte {
	dst = append(dst, s.prefix...)
	return strconv.AppendUint(dst, s.n.Add(1), 16)
}

// methodString returns the method as a string without allocating for the
// common methods.
func methodString(m []byte) string {
	switch string(m) {
	case "GET":
		return "GET"
	case "POST":
		return "POST"
	case "PUT":
		return "PUT"
	case "DELETE":
		return "DELETE"
	case "PATCH":
		return "PATCH"
	case "HEAD":
		return "HEAD"
	case "OPTIONS":
		return "OPTIONS"
	}
	return string(m)
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func standardMethod(m []byte) bool {
	switch string(m) {
	case "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE":
		return true
	}
	return false
}
