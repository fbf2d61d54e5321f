package proxy

import (
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/tenantgate/gateway/events"
)

func TestFastHandlerSendsReservedPathsThroughTheApp(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	up := newUpstream(t, "up", nil)
	ten, key := w.tenant("t")
	w.route(events.RouteSpec{TenantID: ten, Path: "/api", Upstreams: ups(up.URL)})
	w.route(events.RouteSpec{TenantID: ten, Path: "/healthy", Upstreams: ups(up.URL)})
	p, err := New(Config{}, Deps{Snapshots: w})
	if err != nil {
		t.Fatal(err)
	}
	app := fiber.New(p.FiberConfig())
	var viaApp atomic.Int64 // the proxy replaces the response, so count instead of marking it
	app.Use(func(c *fiber.Ctx) error { viaApp.Add(1); return c.Next() })
	app.Get("/health", func(c *fiber.Ctx) error { return c.SendString("app") })
	app.Use(p.Handler)
	h := p.FastHandler(app.Handler(), "/health", "/admin")

	for _, tc := range []struct {
		name, method, uri string
		viaApp            bool
		wantStatus        int
	}{
		{name: "proxy path", method: "GET", uri: "/api/x", wantStatus: 200},
		{name: "proxy path, POST", method: "POST", uri: "/api/x", wantStatus: 200},
		{name: "reserved", method: "GET", uri: "/health", viaApp: true, wantStatus: 200},
		{name: "reserved, other case", method: "GET", uri: "/HEALTH", viaApp: true, wantStatus: 200},
		{name: "reserved, trailing slash", method: "GET", uri: "/health/", viaApp: true, wantStatus: 200},
		{name: "reserved prefix, proxied through the app", method: "GET", uri: "/healthy", viaApp: true, wantStatus: 200},
		{name: "admin", method: "GET", uri: "/Admin/x", viaApp: true, wantStatus: 404},
		{name: "percent-encoded reserved path", method: "GET", uri: "/%68ealth", viaApp: true},
		{name: "dot segments to a reserved path", method: "GET", uri: "/api/../health", viaApp: true},
		{name: "unknown method: Fiber refuses it before any handler", method: "BREW", uri: "/api/x", wantStatus: 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var req fasthttp.Request
			req.Header.SetMethod(tc.method)
			req.SetRequestURI(tc.uri)
			req.Header.SetHost("gw")
			req.Header.Set(HeaderAPIKey, key)
			var ctx fasthttp.RequestCtx
			ctx.Init(&req, nil, nil)
			before := viaApp.Load()
			h(&ctx)
			if got := viaApp.Load() > before; got != tc.viaApp {
				t.Fatalf("through the app = %v, want %v (status %d)", got, tc.viaApp, ctx.Response.StatusCode())
			}
			if got := ctx.Response.StatusCode(); tc.wantStatus != 0 && got != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", got, tc.wantStatus, ctx.Response.Body())
			}
		})
	}
}

// TestRequestTargetForms: the route is matched on the request target's path
// whatever its form, the upstream gets its own host and never the target's
// userinfo, and the client's Host only travels in X-Forwarded-Host.
func TestRequestTargetForms(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	up := newUpstream(t, "u", nil)
	ten, key := w.tenant("acme")
	w.route(events.RouteSpec{TenantID: ten, Path: "/api", Upstreams: ups(up.URL + "/base")})
	gw, _ := gateway(t, Config{}, Deps{Snapshots: w})
	addr := strings.TrimPrefix(gw, "http://")
	upHost := strings.TrimPrefix(up.URL, "http://")

	for _, tc := range []struct {
		name, target, host  string
		wantPath, wantQuery string
	}{
		{name: "origin form", target: "/api/users?id=7&x=%2F", host: "gw.example", wantPath: "/base/api/users", wantQuery: "id=7&x=%2F"},
		{name: "absolute form", target: "http://elsewhere.example/api/users?id=7", host: "gw.example", wantPath: "/base/api/users", wantQuery: "id=7"},
		{name: "escaped path", target: "/api/a%20b%2Fc", host: "gw.example", wantPath: "/base/api/a%20b/c"},
		{name: "absolute form with userinfo", target: "http://user:secret@elsewhere.example/api/x", host: "gw.example", wantPath: "/base/api/x"},
		{name: "dot segments and double slashes", target: "//api/./x/../users", host: "gw.example", wantPath: "/base/api/users"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := "GET " + tc.target + " HTTP/1.1\r\nHost: " + tc.host + "\r\nX-API-Key: " + key + "\r\nConnection: close\r\n\r\n"
			if got := rawStatuses(t, addr, raw); len(got) != 1 || got[0] != 200 {
				t.Fatalf("statuses %v, want [200]", got)
			}
			s := up.last(t)
			if s.Path != tc.wantPath || s.RawQuery != tc.wantQuery {
				t.Errorf("upstream saw %s?%s, want %s?%s", s.Path, s.RawQuery, tc.wantPath, tc.wantQuery)
			}
			if a := s.Header.Get("Authorization"); a != "" {
				t.Errorf("upstream got Authorization %q made from the request target", a)
			}
			if s.Host != upHost || s.Header.Get("X-Forwarded-Host") != tc.host {
				t.Errorf("upstream saw Host %q, X-Forwarded-Host %q; want %q, %q", s.Host, s.Header.Get("X-Forwarded-Host"), upHost, tc.host)
			}
		})
	}
}
