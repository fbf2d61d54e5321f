package proxy

import (
	"net/http"
	"strings"
	"testing"

	"github.com/tenantgate/gateway/events"
)

func TestAuth(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	up := newUpstream(t, "a", nil)
	active, key := w.tenant("acme")
	_, suspendedKey := w.tenantWith("sleepy", events.TenantSuspended, nil)
	w.route(events.RouteSpec{TenantID: active, Path: "/", Upstreams: ups(up.URL)})
	gw, _ := gateway(t, Config{}, Deps{Snapshots: w})

	for _, tc := range []struct {
		name   string
		key    string
		status int
		code   string
	}{
		{name: "missing key", key: "", status: 401, code: "missing_api_key"},
		{name: "unknown key", key: "gw_nope", status: 403, code: "invalid_api_key"},
		{name: "suspended tenant", key: suspendedKey, status: 403, code: "tenant_inactive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := get(t, gw+"/x", tc.key)
			wantError(t, r, tc.status, tc.code)
			if r.header.Get("X-Request-Id") == "" {
				t.Fatal("error response without X-Request-Id")
			}
		})
	}
	if r := get(t, gw+"/x", key); r.status != 200 || r.body != "a /x" {
		t.Fatalf("valid key: %d %q", r.status, r.body)
	}
	if up.hits.Load() != 1 {
		t.Fatalf("upstream hits = %d, want 1 (rejected requests must not reach it)", up.hits.Load())
	}
}

func TestRouteMatching(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	// One upstream; each route's base path names it, so the path the
	// upstream sees tells which route matched.
	up := newUpstream(t, "u", nil)
	ten, key := w.tenant("acme")
	route := func(name, method, path string, pt events.PathType) {
		w.route(events.RouteSpec{TenantID: ten, Method: method, Path: path, PathType: pt, Upstreams: ups(up.URL + "/" + name)})
	}
	route("prefix-api", "*", "/api", events.PathPrefix)
	route("prefix-users", "*", "/api/users", events.PathPrefix)
	route("exact-users", "*", "/api/users/me", events.PathExact)
	route("regex-digits", "*", "^/api/items/[0-9]+$", events.PathRegex)
	route("prefix-items", "*", "/api/items", events.PathPrefix)
	route("get-orders", "GET", "/orders", events.PathPrefix)
	route("any-orders", "*", "/orders", events.PathPrefix)
	route("regex-old", "*", "^/r/.*$", events.PathRegex)
	route("regex-new", "*", "^/r/x$", events.PathRegex)
	gw, _ := gateway(t, Config{}, Deps{Snapshots: w})

	for _, tc := range []struct {
		name, method, path string
		want               string // route name, or "" for 404
	}{
		{name: "prefix itself", method: "GET", path: "/api", want: "prefix-api"},
		{name: "longest prefix wins", method: "GET", path: "/api/users/7", want: "prefix-users"},
		{name: "exact beats prefix", method: "GET", path: "/api/users/me", want: "exact-users"},
		{name: "segment boundary", method: "GET", path: "/api/usersX", want: "prefix-api"},
		{name: "no segment boundary at all", method: "GET", path: "/apix", want: ""},
		{name: "prefix beats regex", method: "GET", path: "/api/items/42", want: "prefix-items"},
		{name: "specific method beats any", method: "GET", path: "/orders/1", want: "get-orders"},
		{name: "any method otherwise", method: "POST", path: "/orders/1", want: "any-orders"},
		{name: "oldest regex wins", method: "GET", path: "/r/x", want: "regex-old"},
		{name: "no route", method: "GET", path: "/nothing", want: ""},
		{name: "dot segments normalized", method: "GET", path: "/orders/../api/users/7", want: "prefix-users"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, tc.method, gw+tc.path, key, nil, nil)
			if tc.want == "" {
				wantError(t, r, 404, "route_not_found")
				return
			}
			if r.status != 200 || !strings.HasPrefix(r.body, "u /"+tc.want+"/") {
				t.Fatalf("%s %s: got %d %q, want route %s", tc.method, tc.path, r.status, r.body, tc.want)
			}
		})
	}
}

func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	upA := newUpstream(t, "a", nil)
	upB := newUpstream(t, "b", nil)
	a, keyA := w.tenant("a")
	b, keyB := w.tenant("b")
	w.route(events.RouteSpec{TenantID: a, Path: "/a/exact", PathType: events.PathExact, Upstreams: ups(upA.URL)})
	w.route(events.RouteSpec{TenantID: a, Path: "/shared", Upstreams: ups(upA.URL)})
	w.route(events.RouteSpec{TenantID: a, Path: "^/re/.*$", PathType: events.PathRegex, Upstreams: ups(upA.URL)})
	w.route(events.RouteSpec{TenantID: a, Method: "POST", Path: "/a/post", Upstreams: ups(upA.URL)})
	w.route(events.RouteSpec{TenantID: b, Path: "/b", Upstreams: ups(upB.URL)})
	gw, _ := gateway(t, Config{}, Deps{Snapshots: w})

	for _, path := range []string{"/a/exact", "/shared", "/shared/x", "/re/1", "/a/post", "/", "/a"} {
		for _, m := range []string{"GET", "POST"} {
			r := do(t, m, gw+path, keyB, nil, nil)
			wantError(t, r, 404, "route_not_found")
		}
	}
	if n := upA.hits.Load(); n != 0 {
		t.Fatalf("tenant A's upstream got %d requests with tenant B's key", n)
	}
	if r := get(t, gw+"/b", keyB); r.status != 200 || r.body != "b /b" {
		t.Fatalf("tenant B's own route: %d %q", r.status, r.body)
	}
	if r := get(t, gw+"/shared", keyA); r.status != 200 || r.body != "a /shared" {
		t.Fatalf("tenant A's own route: %d %q", r.status, r.body)
	}
}

func TestBasePathAndQuery(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	up := newUpstream(t, "u", nil)
	ten, key := w.tenant("acme")
	w.route(events.RouteSpec{TenantID: ten, Path: "/api", Upstreams: ups(up.URL + "/base")})
	w.route(events.RouteSpec{TenantID: ten, Path: "/slash", Upstreams: ups(up.URL + "/base/")})
	w.route(events.RouteSpec{TenantID: ten, Path: "/root", Upstreams: ups(up.URL)})
	w.route(events.RouteSpec{TenantID: ten, Path: "/rootslash", Upstreams: ups(up.URL + "/")})
	gw, _ := gateway(t, Config{}, Deps{Snapshots: w})

	for _, tc := range []struct {
		name, reqPath, wantPath, wantQuery string
	}{
		{name: "base and query", reqPath: "/api/users/7?x=1", wantPath: "/base/api/users/7", wantQuery: "x=1"},
		{name: "base with trailing slash", reqPath: "/slash/a", wantPath: "/base/slash/a"},
		{name: "no base", reqPath: "/root/a?b=2&b=3", wantPath: "/root/a", wantQuery: "b=2&b=3"},
		{name: "base is slash", reqPath: "/rootslash", wantPath: "/rootslash"},
		{name: "raw query kept", reqPath: "/api?q=a%20b&empty=&x", wantPath: "/base/api", wantQuery: "q=a%20b&empty=&x"},
		{name: "double slashes collapsed", reqPath: "/api//x", wantPath: "/base/api/x"},
		{name: "escaped characters", reqPath: "/api/a%20b", wantPath: "/base/api/a%20b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := get(t, gw+tc.reqPath, key)
			if r.status != 200 {
				t.Fatalf("status %d %q", r.status, r.body)
			}
			s := up.last(t)
			if s.Path != tc.wantPath || s.RawQuery != tc.wantQuery {
				t.Fatalf("upstream got %q ? %q, want %q ? %q", s.Path, s.RawQuery, tc.wantPath, tc.wantQuery)
			}
		})
	}
}

func TestForwardedHeaders(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		trusted  []string
		hdr      map[string]string
		wantXFF  string
		wantHost string
		wantRID  string // "" means generated
	}{
		{name: "untrusted peer: spoofed XFF replaced", hdr: map[string]string{"X-Forwarded-For": "6.6.6.6", "Host": "api.example.com"},
			wantXFF: "127.0.0.1", wantHost: "api.example.com"},
		{name: "trusted peer: XFF appended", trusted: []string{"127.0.0.0/8"}, hdr: map[string]string{"X-Forwarded-For": "203.0.113.9", "Host": "api.example.com"},
			wantXFF: "203.0.113.9, 127.0.0.1", wantHost: "api.example.com"},
		{name: "no XFF", trusted: []string{"127.0.0.1"}, hdr: map[string]string{"Host": "h.test"}, wantXFF: "127.0.0.1", wantHost: "h.test"},
		{name: "client request id kept", hdr: map[string]string{"X-Request-Id": "abc-123", "Host": "h.test"}, wantXFF: "127.0.0.1", wantHost: "h.test", wantRID: "abc-123"},
		{name: "insane request id replaced", hdr: map[string]string{"X-Request-Id": strings.Repeat("x", 200), "Host": "h.test"}, wantXFF: "127.0.0.1", wantHost: "h.test"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			up := newUpstream(t, "u", nil)
			ten, key := w.tenant("acme")
			w.route(events.RouteSpec{TenantID: ten, Path: "/", Upstreams: ups(up.URL)})
			gw, _ := gateway(t, Config{TrustedProxies: tc.trusted}, Deps{Snapshots: w})
			r := do(t, "GET", gw+"/x", key, tc.hdr, nil)
			if r.status != 200 {
				t.Fatalf("status %d", r.status)
			}
			s := up.last(t)
			if got := strings.Join(s.Header.Values("X-Forwarded-For"), ", "); got != tc.wantXFF {
				t.Errorf("X-Forwarded-For = %q, want %q", got, tc.wantXFF)
			}
			if got := s.Header.Get("X-Forwarded-Proto"); got != "http" {
				t.Errorf("X-Forwarded-Proto = %q", got)
			}
			if got := s.Header.Get("X-Forwarded-Host"); got != tc.wantHost {
				t.Errorf("X-Forwarded-Host = %q, want %q", got, tc.wantHost)
			}
			if s.Host != strings.TrimPrefix(up.URL, "http://") {
				t.Errorf("upstream Host = %q, want the upstream's", s.Host)
			}
			rid := s.Header.Get("X-Request-Id")
			if rid == "" || r.header.Get("X-Request-Id") != rid {
				t.Errorf("request id upstream %q, to client %q", rid, r.header.Get("X-Request-Id"))
			}
			if tc.wantRID != "" && rid != tc.wantRID {
				t.Errorf("request id = %q, want the client's %q", rid, tc.wantRID)
			}
			if tc.wantRID == "" && (rid == tc.hdr["X-Request-Id"] || len(rid) > 128) {
				t.Errorf("request id %q not generated", rid)
			}
		})
	}
}

func TestHopByHopAndKeyHeaders(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	up := newUpstream(t, "u", func(rw http.ResponseWriter, r *http.Request) {
		h := rw.Header()
		h.Set("Connection", "X-Resp-Private")
		h.Set("X-Resp-Private", "secret")
		h.Set("Keep-Alive", "timeout=5")
		h.Set("Proxy-Authenticate", "Basic")
		h.Set("Upgrade", "h2c")
		h.Set("X-Resp-Public", "yes")
	})
	ten, key := w.tenant("acme")
	w.route(events.RouteSpec{TenantID: ten, Path: "/", Upstreams: ups(up.URL)})
	gw, _ := gateway(t, Config{}, Deps{Snapshots: w})

	r := do(t, "GET", gw+"/x", key, map[string]string{
		"Connection":          "keep-alive, X-Private, X-Other-Private",
		"X-Private":           "1",
		"X-Other-Private":     "2",
		"Keep-Alive":          "timeout=5",
		"Proxy-Authorization": "Basic Zm9vOmJhcg==",
		"Proxy-Connection":    "keep-alive",
		"TE":                  "trailers",
		"Trailer":             "X-Foo",
		"Upgrade":             "websocket",
		"X-Admin-Key":         "admin-secret",
		"X-Public":            "ok",
	}, nil)
	if r.status != 200 {
		t.Fatalf("status %d %q", r.status, r.body)
	}
	s := up.last(t)
	for _, h := range []string{"Connection", "X-Private", "X-Other-Private", "Keep-Alive", "Proxy-Authorization",
		"Proxy-Connection", "Te", "Trailer", "Upgrade", "X-Api-Key", "X-Admin-Key"} {
		if v := s.Header.Values(h); len(v) > 0 {
			t.Errorf("upstream received %s: %q", h, v)
		}
	}
	if s.Header.Get("X-Public") != "ok" {
		t.Error("end-to-end header X-Public lost")
	}
	for _, h := range []string{"X-Resp-Private", "Keep-Alive", "Proxy-Authenticate", "Upgrade"} {
		if v := r.header.Values(h); len(v) > 0 {
			t.Errorf("client received %s: %q", h, v)
		}
	}
	if r.header.Get("X-Resp-Public") != "yes" {
		t.Error("end-to-end response header lost")
	}
}

func TestTransforms(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	up := newUpstream(t, "u", func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Server", "leaky/1.0")
		rw.Header().Set("X-Keep", "1")
	})
	ten, key := w.tenant("acme")
	rid := w.route(events.RouteSpec{TenantID: ten, Path: "/api/users", Upstreams: ups(up.URL + "/base"),
		Transform: &events.Transform{
			Request: &events.RequestTransform{
				Headers: &events.HeaderOps{
					Remove: []string{"Cookie", "X-Env"},
					Set:    map[string]string{"X-Env": "prod", "X-Tenant": "${tenant.id}/${tenant.name}", "X-Route": "${route.id}", "X-Literal": "${unknown}"},
					Add:    map[string]string{"X-Trace": "gw-${request.id}"},
				},
				Path: &events.PathRewrite{Pattern: "^/api/users(.*)$", Replacement: "/v2/users$1"},
			},
			Response: &events.ResponseTransform{Headers: &events.HeaderOps{
				Remove: []string{"Server"},
				Set:    map[string]string{"X-Served-By": "gateway"},
				Add:    map[string]string{"X-Keep": "2"},
			}},
		}})
	gw, _ := gateway(t, Config{}, Deps{Snapshots: w})

	r := do(t, "GET", gw+"/api/users/7?x=/api/users", key, map[string]string{
		"Cookie": "sid=1", "X-Env": "dev", "X-Trace": "client", "X-Request-Id": "rid-1",
	}, nil)
	if r.status != 200 {
		t.Fatalf("status %d %q", r.status, r.body)
	}
	s := up.last(t)
	if s.Path != "/base/v2/users/7" || s.RawQuery != "x=/api/users" {
		t.Errorf("upstream path %q ? %q, want /base/v2/users/7 ? x=/api/users (query untouched)", s.Path, s.RawQuery)
	}
	for h, want := range map[string]string{
		"X-Env": "prod", "X-Tenant": ten + "/acme", "X-Route": rid, "X-Literal": "${unknown}", "Cookie": "",
	} {
		if got := strings.Join(s.Header.Values(h), ","); got != want {
			t.Errorf("upstream %s = %q, want %q", h, got, want)
		}
	}
	if got := s.Header.Values("X-Trace"); len(got) != 2 || got[0] != "client" || got[1] != "gw-rid-1" {
		t.Errorf("upstream X-Trace = %q, want [client gw-rid-1] (add appends)", got)
	}
	if r.header.Get("Server") != "" || r.header.Get("X-Served-By") != "gateway" {
		t.Errorf("response headers: Server %q, X-Served-By %q", r.header.Get("Server"), r.header.Get("X-Served-By"))
	}
	if got := r.header.Values("X-Keep"); len(got) != 2 {
		t.Errorf("response X-Keep = %q, want both values", got)
	}
}

func TestMethodsPassThrough(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	up := newUpstream(t, "u", func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("X-Method", r.Method)
		if r.Method != http.MethodHead {
			_, _ = rw.Write([]byte("body"))
		}
	})
	ten, key := w.tenant("acme")
	w.route(events.RouteSpec{TenantID: ten, Path: "/", Upstreams: ups(up.URL)})
	gw, _ := gateway(t, Config{}, Deps{Snapshots: w})
	for _, m := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"} {
		t.Run(m, func(t *testing.T) {
			r := do(t, m, gw+"/x", key, nil, strings.NewReader(""))
			if r.status != 200 || r.header.Get("X-Method") != m {
				t.Fatalf("%s: %d, upstream saw %q", m, r.status, r.header.Get("X-Method"))
			}
			if want := map[bool]string{true: "", false: "body"}[m == "HEAD"]; r.body != want {
				t.Fatalf("%s body %q, want %q", m, r.body, want)
			}
		})
	}
}

func TestLoadBalancingEndToEnd(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		policy  string
		weights []int
		want    []float64 // share per upstream
		tol     float64
	}{
		{name: "round-robin", policy: events.BalanceRoundRobin, weights: []int{1, 1}, want: []float64{0.5, 0.5}, tol: 0},
		{name: "weighted 3:1", policy: events.BalanceWeighted, weights: []int{3, 1}, want: []float64{0.75, 0.25}, tol: 0.02},
		{name: "random", policy: events.BalanceRandom, weights: []int{1, 1}, want: []float64{0.5, 0.5}, tol: 0.1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			a, b := newUpstream(t, "a", nil), newUpstream(t, "b", nil)
			ten, key := w.tenant("acme")
			w.route(events.RouteSpec{TenantID: ten, Path: "/", LoadBalancing: tc.policy,
				Upstreams: []events.Upstream{{URL: a.URL, Weight: tc.weights[0]}, {URL: b.URL, Weight: tc.weights[1]}}})
			gw, _ := gateway(t, Config{}, Deps{Snapshots: w})
			const n = 400
			for range n {
				if r := get(t, gw+"/x", key); r.status != 200 {
					t.Fatalf("status %d", r.status)
				}
			}
			for i, u := range []*upstream{a, b} {
				share := float64(u.hits.Load()) / n
				if d := share - tc.want[i]; d > tc.tol || d < -tc.tol {
					t.Fatalf("upstream %s got %.3f of the traffic, want %.3f±%.2f", u.name, share, tc.want[i], tc.tol)
				}
			}
		})
	}
}
