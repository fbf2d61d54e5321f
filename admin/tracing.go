package admin

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/tenantgate/gateway/events"
)

// Tracing: with Deps.Tracer set, every admin command (a write: POST, PATCH,
// DELETE) gets one server span, a child of the caller's W3C traceparent
// when it sent one, with the command, the aggregate id and the actor. Reads
// are not traced. The admin key never reaches a span.

// Span attribute keys.
const (
	attrCommand   = attribute.Key("gateway.admin.command")
	attrAggregate = attribute.Key("gateway.admin.aggregate.id")
	attrAggIDs    = attribute.Key("gateway.admin.aggregate.ids")
	attrActor     = attribute.Key("gateway.admin.actor")
	attrEvents    = attribute.Key("gateway.admin.events")
	attrSeq       = attribute.Key("gateway.admin.seq")
	attrErrorCode = attribute.Key("gateway.error.code")
	attrMethod    = attribute.Key("http.request.method")
	attrRoute     = attribute.Key("http.route")
	attrStatus    = attribute.Key("http.response.status_code")
)

// commands names each write endpoint (method and path under /admin).
var commands = map[string]string{
	"POST /tenants":             "tenant.create",
	"PATCH /tenants/:id":        "tenant.update",
	"DELETE /tenants/:id":       "tenant.delete",
	"POST /tenants/:id/api-key": "tenant.rotate_key",
	"POST /routes":              "route.create",
	"PATCH /routes/:id":         "route.update",
	"DELETE /routes/:id":        "route.delete",
	"POST /apply":               "config.apply",
	"POST /rollback":            "config.rollback",
}

// commandOf is the command an admin request runs, if it runs one. The path
// is the route's pattern, possibly under a group prefix.
func commandOf(method, routePath string) (string, bool) {
	i := strings.LastIndex(routePath, "/admin/")
	if i < 0 {
		return "", false
	}
	name, ok := commands[method+" "+routePath[i+len("/admin"):]]
	return name, ok
}

// activeTracer is t, or nil when t cannot record anything (a no-op tracer).
func activeTracer(t trace.Tracer) trace.Tracer {
	if _, ok := t.(noop.Tracer); ok {
		return nil
	}
	return t
}

// traceCommand is the middleware that opens a command's span; the command
// adds what it appended (traceAppended) through the user context.
func (a *API) traceCommand(c *fiber.Ctx) error {
	if a.tracer == nil {
		return c.Next()
	}
	method, route := strings.Clone(c.Method()), strings.Clone(c.Route().Path)
	name, isCommand := commandOf(method, route)
	if !isCommand {
		return c.Next()
	}
	ctx := propagation.TraceContext{}.Extract(c.UserContext(), headerCarrier{&c.Request().Header})
	ctx, span := a.tracer.Start(ctx, "admin "+name,
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attrCommand.String(name), attrMethod.String(method), attrRoute.String(route)))
	defer span.End()
	if who, err := actor(c); err == nil {
		span.SetAttributes(attrActor.String(who))
	}
	if id := param(c, "id"); id != "" {
		span.SetAttributes(attrAggregate.String(id))
	}
	c.SetUserContext(ctx)

	err := c.Next()
	status := c.Response().StatusCode()
	span.SetAttributes(attrStatus.Int(status))
	if status >= 400 {
		code := errorCode(c.Response().Body())
		span.SetAttributes(attrErrorCode.String(code))
		if status >= 500 {
			span.SetStatus(codes.Error, code)
		}
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	return err
}

// errorCode is the code of the contract's error JSON, "" if body is not one.
func errorCode(body []byte) string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	return e.Error.Code
}

// maxTracedIDs bounds the aggregate ids listed on one span (a declarative
// apply may touch every tenant and route).
const maxTracedIDs = 100

// traceAppended adds what a command appended to its span, if it has one:
// the aggregate id (or ids), the number of events and the last seq.
func traceAppended(ctx context.Context, appended []events.Envelope) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() || len(appended) == 0 {
		return
	}
	attrs := []attribute.KeyValue{
		attrEvents.Int(len(appended)),
		attrSeq.Int64(appended[len(appended)-1].Seq),
	}
	var ids []string
	seen := make(map[string]bool)
	for _, ev := range appended {
		if !seen[ev.AggregateID] && len(ids) < maxTracedIDs {
			seen[ev.AggregateID] = true
			ids = append(ids, ev.AggregateID)
		}
	}
	if len(ids) == 1 {
		attrs = append(attrs, attrAggregate.String(ids[0]))
	} else {
		attrs = append(attrs, attrAggIDs.StringSlice(ids))
	}
	span.SetAttributes(attrs...)
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
