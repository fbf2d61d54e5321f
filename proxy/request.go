package proxy

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tenantgate/gateway/projections"
	"github.com/tenantgate/gateway/resilience/balance"
	"github.com/tenantgate/gateway/resilience/ratelimit"
	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/trace"
)

// exchange is what the request path knows of one request, filled in step
// by step; pooled. Everything in it but uri is owned by the gateway (copied
// out of the server's buffers), and nothing outlives the handler.
type exchange struct {
	// What the client sent (prepare).
	uri       *fasthttp.URI // the target as the server parsed it (the server's)
	start     time.Time
	method    string
	path      string // normalized; what is matched is what is forwarded
	requestID []byte // the client's, when sane, else made here
	apiKey    []byte // the X-API-Key value, in the server's buffer
	sent      dropSet

	// Who and where: authenticate, rateLimit, match.
	tenant *projections.Tenant
	limit  ratelimit.Decision // Limit > 0: the answer carries the rate-limit headers
	route  *routeState

	// On the way up: upstreamRequest, forward.
	body     requestBody
	fwdPath  string // the path after the route's rewrite
	upstream int    // the upstream last tried (an index into route.Upstreams); -1: none
	attempts int
	// untrusted are the upstreams whose certificate failed verification
	// during this request: never tried again for it.
	untrusted balance.Skip

	// The answer.
	status      int
	code        string        // the gateway's error code, or "fallback"
	stream      *stream       // the last attempt's body, when it streams
	streaming   bool          // stream was handed to the server, which ends it
	headLatency time.Duration // for a stream: from the request to its head going out
	streamed    int64         // for a stream: the body bytes passed on

	buf  []byte     // scratch
	span trace.Span // nil unless tracing
}

var exchanges = sync.Pool{New: func() any { return new(exchange) }}

func acquireExchange() *exchange {
	x := exchanges.Get().(*exchange)
	x.upstream = -1
	return x
}

func releaseExchange(x *exchange) {
	kept := x.body.kept
	if cap(kept) > 256<<10 {
		kept = nil // do not pin a large buffer in the pool
	}
	*x = exchange{requestID: x.requestID[:0], body: requestBody{kept: kept[:0]}, buf: x.buf[:0]}
	exchanges.Put(x)
}

// upstreamURL is the URL of the upstream last tried, "" before any.
func (x *exchange) upstreamURL() string {
	if x.upstream < 0 {
		return ""
	}
	return x.route.Upstreams[x.upstream].URL
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
