package proxy

import (
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/tenantgate/gateway/events"
)

// recordingTracer is a tracer whose finished spans land in the recorder.
func recordingTracer(t testing.TB) (trace.Tracer, *tracetest.SpanRecorder) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	return tp.Tracer("test"), rec
}

// endedSpans polls until n spans have ended (the span ends as the handler
// returns, which may be just after the client has its answer).
func endedSpans(t testing.TB, rec *tracetest.SpanRecorder, n int) []sdktrace.ReadOnlySpan {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := rec.Ended()
		if len(got) >= n {
			if len(got) > n {
				t.Fatalf("%d spans ended, want %d", len(got), n)
			}
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d spans ended after 5s, want %d", len(got), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func spanAttr(s sdktrace.ReadOnlySpan, key attribute.Key) (attribute.Value, bool) {
	for _, kv := range s.Attributes() {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

// parseTraceparent splits a version-00 traceparent into trace and parent ids.
func parseTraceparent(t testing.TB, v string) (trace.TraceID, trace.SpanID) {
	t.Helper()
	parts := strings.Split(v, "-")
	if len(parts) != 4 || parts[0] != "00" {
		t.Fatalf("traceparent %q is not version 00", v)
	}
	tid, err := trace.TraceIDFromHex(parts[1])
	if err != nil {
		t.Fatalf("traceparent %q: %v", v, err)
	}
	sid, err := trace.SpanIDFromHex(parts[2])
	if err != nil {
		t.Fatalf("traceparent %q: %v", v, err)
	}
	return tid, sid
}

const (
	clientTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	clientSpanID  = "00f067aa0ba902b7"
	clientParent  = "00-" + clientTraceID + "-" + clientSpanID + "-01"
)

func TestTracingSpanPerRequest(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ten, key := w.tenant("acme")
	ok := newUpstream(t, "ok", nil)
	failing := newUpstream(t, "failing", func(rw http.ResponseWriter, _ *http.Request) {
		rw.WriteHeader(http.StatusInternalServerError)
	})
	okRoute := w.route(events.RouteSpec{TenantID: ten, Path: "/ok", Upstreams: ups(ok.URL)})
	failRoute := w.route(events.RouteSpec{TenantID: ten, Path: "/fail", Upstreams: ups(failing.URL)})
	downRoute := w.route(events.RouteSpec{TenantID: ten, Path: "/down", Upstreams: ups(deadURL(t))}) // the gateway's own 502

	for _, tc := range []struct {
		name      string
		path, key string
		header    map[string]string
		status    int
		route     string
		upstream  *upstream // nil: the request never reaches one that answers
		errorCode string    // the span's status is Error with this description
	}{
		{name: "new trace", path: "/ok/a", key: key, status: 200, route: okRoute, upstream: ok},
		{name: "child of the client's trace", path: "/ok/b", key: key, status: 200, route: okRoute, upstream: ok,
			header: map[string]string{"traceparent": clientParent, "tracestate": "vendor=abc"}},
		{name: "upstream 500 is not the gateway's error", path: "/fail", key: key, status: 500, route: failRoute, upstream: failing},
		{name: "gateway 502 is an error", path: "/down", key: key, status: 502, route: downRoute, errorCode: "upstream_unavailable"},
		{name: "rejected before auth", path: "/ok", key: "", status: 401},
		{name: "no route", path: "/nowhere", key: key, status: 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tracer, rec := recordingTracer(t)
			gw, _ := gateway(t, Config{}, Deps{Snapshots: w, Tracer: tracer})
			r := do(t, http.MethodGet, gw+tc.path, tc.key, tc.header, nil)
			if r.status != tc.status {
				t.Fatalf("status %d (%s), want %d", r.status, r.body, tc.status)
			}
			s := endedSpans(t, rec, 1)[0]
			sc := s.SpanContext()
			if s.SpanKind() != trace.SpanKindServer {
				t.Errorf("span kind %v, want server", s.SpanKind())
			}
			if v, _ := spanAttr(s, attrStatus); v.AsInt64() != int64(tc.status) {
				t.Errorf("status attribute %v, want %d", v.AsInt64(), tc.status)
			}
			if v, _ := spanAttr(s, attrRequestID); v.AsString() != r.header.Get("X-Request-Id") || v.AsString() == "" {
				t.Errorf("request id attribute %q, response has %q", v.AsString(), r.header.Get("X-Request-Id"))
			}
			if tc.key != "" {
				if v, _ := spanAttr(s, attrTenant); v.AsString() != ten {
					t.Errorf("tenant attribute %q, want %q", v.AsString(), ten)
				}
			} else if _, found := spanAttr(s, attrTenant); found {
				t.Error("tenant attribute on an unauthenticated request")
			}
			if v, _ := spanAttr(s, attrRoute); v.AsString() != tc.route {
				t.Errorf("route attribute %q, want %q", v.AsString(), tc.route)
			}
			if _, found := spanAttr(s, attrUpstream); found != (tc.route != "") {
				t.Errorf("upstream attribute present = %v, want %v", found, tc.route != "")
			}
			for _, kv := range s.Attributes() {
				if strings.Contains(kv.Value.String(), key) {
					t.Errorf("attribute %s holds the API key", kv.Key)
				}
			}
			wantCode := codes.Unset
			if tc.errorCode != "" {
				wantCode = codes.Error
			}
			if s.Status().Code != wantCode || s.Status().Description != tc.errorCode {
				t.Errorf("span status %v %q, want %v %q", s.Status().Code, s.Status().Description, wantCode, tc.errorCode)
			}

			if tc.header["traceparent"] != "" {
				if sc.TraceID().String() != clientTraceID || s.Parent().SpanID().String() != clientSpanID || !s.Parent().IsRemote() {
					t.Errorf("span %s parent %s, want a child of the client's %s", sc.TraceID(), s.Parent().SpanID(), clientParent)
				}
			} else if s.Parent().IsValid() {
				t.Errorf("span has parent %s though the client sent none", s.Parent().SpanID())
			}
			if tc.upstream == nil {
				return
			}
			got := tc.upstream.last(t)
			if n := len(got.Header.Values("Traceparent")); n != 1 {
				t.Fatalf("upstream got %d traceparent headers, want 1", n)
			}
			tid, parent := parseTraceparent(t, got.Header.Get("Traceparent"))
			if tid != sc.TraceID() || parent != sc.SpanID() {
				t.Errorf("upstream traceparent %s-%s, want the gateway span %s-%s", tid, parent, sc.TraceID(), sc.SpanID())
			}
			if want := tc.header["tracestate"]; got.Header.Get("Tracestate") != want {
				t.Errorf("upstream tracestate %q, want %q", got.Header.Get("Tracestate"), want)
			}
		})
	}
}

func TestTracingOff(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ten, key := w.tenant("acme")
	up := newUpstream(t, "a", nil)
	w.route(events.RouteSpec{TenantID: ten, Path: "/", Upstreams: ups(up.URL)})

	for _, tc := range []struct {
		name   string
		tracer trace.Tracer
		header map[string]string
	}{
		{name: "no tracer adds no traceparent"},
		{name: "no-op tracer adds no traceparent", tracer: noop.NewTracerProvider().Tracer("")},
		{name: "no tracer forwards the client's untouched", header: map[string]string{"traceparent": clientParent, "tracestate": "vendor=abc"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			gw, p := gateway(t, Config{}, Deps{Snapshots: w, Tracer: tc.tracer})
			if p.tracer != nil {
				t.Fatal("tracer kept: a no-op tracer must switch tracing off")
			}
			// A request id marks this subtest's request among the others.
			id := strings.ReplaceAll(t.Name(), " ", "_")
			hdr := map[string]string{"X-Request-Id": id}
			for k, v := range tc.header {
				hdr[k] = v
			}
			if r := do(t, http.MethodGet, gw+"/x", key, hdr, nil); r.status != 200 {
				t.Fatalf("status %d %s", r.status, r.body)
			}
			got := receivedWithID(t, up, id)
			if v, want := got.Header.Get("Traceparent"), tc.header["traceparent"]; v != want {
				t.Errorf("upstream traceparent %q, want %q", v, want)
			}
			if v, want := got.Header.Get("Tracestate"), tc.header["tracestate"]; v != want {
				t.Errorf("upstream tracestate %q, want %q", v, want)
			}
		})
	}
}

// receivedWithID is the request up received with X-Request-Id id.
func receivedWithID(t testing.TB, up *upstream, id string) seen {
	t.Helper()
	up.mu.Lock()
	defer up.mu.Unlock()
	for _, s := range up.got {
		if s.Header.Get("X-Request-Id") == id {
			return s
		}
	}
	t.Fatalf("upstream %s got no request with X-Request-Id %s", up.name, id)
	return seen{}
}

// inMemoryGateway is the benchmarks' gateway: one tenant, a route with a
// header transform, the upstream on an in-memory listener.
func inMemoryGateway(t testing.TB, tracer trace.Tracer) fasthttp.RequestHandler {
	ln := fasthttputil.NewInmemoryListener()
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") }}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	w := newWorld(t)
	ten := w.tenantWithKey("bench", benchKey)
	w.route(events.RouteSpec{TenantID: ten, Path: "/api/users", Upstreams: ups("http://mem/a"),
		Transform: &events.Transform{Request: &events.RequestTransform{Headers: &events.HeaderOps{
			Set: map[string]string{"X-Tenant": "${tenant.id}"}}}}})
	p, err := New(Config{Log: slog.New(slog.DiscardHandler)}, Deps{Snapshots: w, Tracer: tracer})
	if err != nil {
		t.Fatal(err)
	}
	p.pool.dial = func(string) (net.Conn, error) { return ln.Dial() }
	app := fiber.New(p.FiberConfig())
	app.Use(p.Handler)
	return app.Handler()
}

// BenchmarkRequestPathTracing is the in-memory request path with tracing
// off (nil Tracer, the default) and on (every span sampled, batched to an
// in-memory exporter): the cost of tracing per request.
func BenchmarkRequestPathTracing(b *testing.B) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp))
	b.Cleanup(func() { _ = tp.Shutdown(b.Context()) })
	for _, bc := range []struct {
		name   string
		tracer trace.Tracer
	}{
		{name: "off"},
		{name: "on-in-memory", tracer: tp.Tracer("bench")},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := inMemoryGateway(b, bc.tracer)
			remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				var req fasthttp.Request
				req.SetRequestURI("/api/users/7?x=1")
				req.Header.SetHost("gateway.test")
				req.Header.Set(HeaderAPIKey, benchKey)
				req.Header.Set("User-Agent", "bench")
				var ctx fasthttp.RequestCtx
				n := 0
				for pb.Next() {
					ctx.Init(&req, remote, nil)
					h(&ctx)
					if ctx.Response.StatusCode() != 200 {
						b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
					}
					if n++; n%4096 == 0 {
						exp.Reset() // keep memory flat: only the cost per span matters
					}
				}
			})
		})
	}
}
