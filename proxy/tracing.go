package proxy

import (
	"context"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Tracing: with Deps.Tracer set, every request gets one server span, a
// child of the client's W3C traceparent when it sent one, and the upstream
// receives that span as its parent in traceparent (and tracestate). With no
// tracer the request path does not touch OpenTelemetry at all: no span, no
// context, no allocation, and the client's traceparent passes unchanged.

// Span attribute keys. HTTP ones follow the OpenTelemetry semantic
// conventions; the gateway's own are under "gateway.".
const (
	attrMethod    = attribute.Key("http.request.method")
	attrStatus    = attribute.Key("http.response.status_code")
	attrHTTPRoute = attribute.Key("http.route")
	attrPath      = attribute.Key("url.path")
	attrTenant    = attribute.Key("gateway.tenant.id")
	attrRoute     = attribute.Key("gateway.route.id")
	attrUpstream  = attribute.Key("gateway.upstream")
	attrAttempts  = attribute.Key("gateway.upstream.attempts")
	attrRequestID = attribute.Key("gateway.request.id")
	attrErrorCode = attribute.Key("gateway.error.code")
)

// traceContext is the W3C Trace Context propagator (traceparent and
// tracestate), used directly rather than through the global one so that
// what goes upstream does not depend on process-wide state.
var traceContext propagation.TraceContext

// activeTracer is t, or nil when t cannot record anything (a no-op
// tracer), so that a disabled exporter costs nothing per request.
func activeTracer(t trace.Tracer) trace.Tracer {
	if _, ok := t.(noop.Tracer); ok {
		return nil
	}
	return t
}

// startSpan opens the request's span. Only called with a tracer.
func (p *Proxy) startSpan(c *fasthttp.RequestCtx, x *exchange) {
	h := &(&c.Request).Header
	ctx := traceContext.Extract(c, headerCarrier{h})
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}
	if at := c.Time(); !at.IsZero() {
		opts = append(opts, trace.WithTimestamp(at))
	}
	_, x.span = p.tracer.Start(ctx, methodString(h.Method()), opts...)
}

// endSpan records the outcome and closes the span. A 5xx the gateway made
// itself (x.code set, not a fallback) marks the span as an error; an
// upstream's own 5xx is only its status code.
func (p *Proxy) endSpan(x *exchange) {
	s := x.span
	if s.IsRecording() {
		attrs := make([]attribute.KeyValue, 0, 10)
		attrs = append(attrs,
			attrMethod.String(x.method),
			attrStatus.Int(x.status),
			attrRequestID.String(string(x.requestID)),
		)
		if x.path != "" {
			attrs = append(attrs, attrPath.String(x.path))
		}
		if x.tenant != nil {
			attrs = append(attrs, attrTenant.String(x.tenant.ID))
		}
		if x.route != nil {
			attrs = append(attrs, attrRoute.String(x.route.ID), attrHTTPRoute.String(x.route.Path))
			s.SetName(x.method + " " + x.route.Path)
		}
		if x.upstream >= 0 {
			attrs = append(attrs, attrUpstream.String(x.upstreamURL()), attrAttempts.Int(x.attempts))
		}
		if x.code != "" {
			attrs = append(attrs, attrErrorCode.String(x.code))
		}
		s.SetAttributes(attrs...)
		if x.status >= 500 && x.code != "" && x.code != "fallback" {
			s.SetStatus(codes.Error, x.code)
		}
	}
	s.End()
}

// injectTrace makes the request's span the upstream's parent. The client's
// traceparent and tracestate are replaced, not forwarded beside ours: the
// span is already their child.
func injectTrace(ctx context.Context, h *fasthttp.RequestHeader, s trace.Span) {
	h.Del("Traceparent")
	h.Del("Tracestate")
	traceContext.Inject(trace.ContextWithSpan(ctx, s), headerCarrier{h})
}

// headerCarrier adapts fasthttp's request header to the propagator.
type headerCarrier struct{ h *fasthttp.RequestHeader }

func (c headerCarrier) Get(key string) string { return string(c.h.Peek(key)) }

func (c headerCarrier) Set(key, value string) { c.h.Set(key, value) }

func (c headerCarrier) Keys() []string {
	keys := make([]string, 0, c.h.Len())
	for k := range c.h.All() {
		keys = append(keys, string(k))
	}
	return keys
}
