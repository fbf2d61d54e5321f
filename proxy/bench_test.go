package proxy

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/resilience/ratelimit"
)

// BenchmarkRequestPathInMemory is BenchmarkRequestPath with the upstream on
// an in-memory listener, so the gateway's own cost stands out from loopback
// TCP's.
func BenchmarkRequestPathInMemory(b *testing.B) {
	ln := fasthttputil.NewInmemoryListener()
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") }}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { _ = srv.Shutdown() })
	dial := func(string) (net.Conn, error) { return ln.Dial() }
	remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
	run := func(b *testing.B, h fasthttp.RequestHandler) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			// Parsed from the wire, as a server would: the raw header block
			// is kept, and ctx.Init copies it.
			var req fasthttp.Request
			if err := req.Read(bufio.NewReader(strings.NewReader("GET /api/users/7?x=1 HTTP/1.1\r\nHost: gateway.test\r\n" +
				"User-Agent: bench\r\nAccept: */*\r\nX-API-Key: " + benchKey + "\r\n\r\n"))); err != nil {
				b.Fatal(err)
			}
			var ctx fasthttp.RequestCtx
			for pb.Next() {
				ctx.Init(&req, remote, nil)
				h(&ctx)
				if ctx.Response.StatusCode() != 200 {
					b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
				}
			}
		})
	}
	b.Run("bare-fasthttp-ceiling", func(b *testing.B) {
		hc := &fasthttp.HostClient{Addr: "mem", Dial: dial}
		run(b, func(ctx *fasthttp.RequestCtx) {
			if err := hc.Do(&ctx.Request, &ctx.Response); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("gateway", func(b *testing.B) {
		w := newWorld(b)
		ten := w.tenantWithKey("bench", benchKey)
		for i := range 20 {
			w.route(events.RouteSpec{TenantID: ten, Path: "/other/" + string(rune('a'+i)), Upstreams: ups("http://mem")})
		}
		w.route(events.RouteSpec{TenantID: ten, Path: "/api/users", LoadBalancing: events.BalanceWeighted,
			Upstreams: []events.Upstream{{URL: "http://mem/a", Weight: 3}, {URL: "http://mem/b", Weight: 1}},
			Transform: &events.Transform{
				Request: &events.RequestTransform{Headers: &events.HeaderOps{
					Set: map[string]string{"X-Tenant": "${tenant.id}"}, Remove: []string{"Cookie"}}},
				Response: &events.ResponseTransform{Headers: &events.HeaderOps{
					Set: map[string]string{"X-Served-By": "gateway"}}}}})
		// As cmd/gateway serves: JSON access log and Prometheus series.
		p, err := New(Config{Log: slog.New(slog.DiscardHandler), AccessLog: io.Discard},
			Deps{Snapshots: w, Metrics: prometheus.NewRegistry()})
		if err != nil {
			b.Fatal(err)
		}
		p.pool.dial = dial
		app := fiber.New(p.FiberConfig())
		app.Use(p.Handler)
		run(b, SettleBodies(app.Handler()))
	})
}

const benchKey = "gw_bench_key_0123456789abcdef0123"

// BenchmarkRequestPath runs the whole request path in process: Fiber's
// handler on a prepared RequestCtx (no client socket), then auth, match,
// weighted balancing, a header transform and the forward to a fasthttp
// upstream on loopback.
func BenchmarkRequestPath(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") }}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { _ = srv.Shutdown() })
	upURL := "http://" + ln.Addr().String()

	b.Run("bare-fasthttp-ceiling", func(b *testing.B) {
		// The same harness with a handler that only forwards: the ceiling
		// the gateway's own cost is measured against.
		hc := &fasthttp.HostClient{Addr: ln.Addr().String()}
		remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			var req fasthttp.Request
			req.SetRequestURI("/api/users/7?x=1")
			req.Header.SetHost("gateway.test")
			req.Header.Set(HeaderAPIKey, "k")
			var ctx fasthttp.RequestCtx
			for pb.Next() {
				ctx.Init(&req, remote, nil)
				if err := hc.Do(&ctx.Request, &ctx.Response); err != nil || ctx.Response.StatusCode() != 200 {
					b.Fatalf("bare: %v %d", err, ctx.Response.StatusCode())
				}
			}
		})
	})
	for _, bc := range []struct {
		name    string
		limited bool
	}{
		{name: "plain"},
		{name: "rate-limited"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			w := newWorld(b)
			var rl *events.RateLimit
			if bc.limited {
				rl = &events.RateLimit{Limit: 1 << 30, WindowMs: 1000}
			}
			ten, key := w.tenantWith("bench", events.TenantActive, rl)
			for i := range 20 { // a few other routes to match past
				w.route(events.RouteSpec{TenantID: ten, Path: "/other/" + string(rune('a'+i)), Upstreams: ups(upURL)})
			}
			w.route(events.RouteSpec{TenantID: ten, Path: "/api/users", LoadBalancing: events.BalanceWeighted,
				Upstreams: []events.Upstream{{URL: upURL + "/a", Weight: 3}, {URL: upURL + "/b", Weight: 1}},
				Transform: &events.Transform{Request: &events.RequestTransform{Headers: &events.HeaderOps{
					Set: map[string]string{"X-Tenant": "${tenant.id}"}, Remove: []string{"Cookie"}}}}})
			p, err := New(Config{Log: slog.New(slog.DiscardHandler)}, Deps{Snapshots: w, Limiter: ratelimit.NewLocal()})
			if err != nil {
				b.Fatal(err)
			}
			app := fiber.New(p.FiberConfig())
			app.Use(p.Handler)
			h := app.Handler()
			remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}

			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				var req fasthttp.Request
				req.SetRequestURI("/api/users/7?x=1")
				req.Header.SetHost("gateway.test")
				req.Header.Set(HeaderAPIKey, key)
				req.Header.Set("User-Agent", "bench")
				var ctx fasthttp.RequestCtx
				for pb.Next() {
					ctx.Init(&req, remote, nil)
					h(&ctx)
					if ctx.Response.StatusCode() != 200 {
						b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
					}
				}
			})
		})
	}
}
