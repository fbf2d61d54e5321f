package proxy

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/resilience/breaker"
	"github.com/tenantgate/gateway/resilience/health"
	"github.com/tenantgate/gateway/resilience/ratelimit"
	"github.com/tenantgate/gateway/resilience/retry"
)

// deadURL is an address nothing listens on.
func slow(d time.Duration) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
		}
	}
}

func statusHandler(code int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(code) }
}

func TestTimeoutsAndConnectErrors(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	sleepy := newUpstream(t, "sleepy", slow(2*time.Second))
	ten, key := w.tenant("acme")
	res := &events.Resilience{Timeout: &events.Timeout{Enabled: true, Default: 100, ByMethod: map[string]int{"POST": 3000}}}
	w.route(events.RouteSpec{TenantID: ten, Path: "/slow", Upstreams: ups(sleepy.URL), Resilience: res})
	w.route(events.RouteSpec{TenantID: ten, Path: "/dead", Upstreams: ups(deadURL(t))})
	gw, _ := gateway(t, Config{}, Deps{Snapshots: w})

	start := time.Now()
	wantError(t, get(t, gw+"/slow", key), 504, "upstream_timeout")
	if d := time.Since(start); d > time.Second {
		t.Fatalf("timeout of 100 ms took %v", d)
	}
	// byMethod: POST may take 3 s, so the 2 s upstream answers.
	if r := do(t, "POST", gw+"/slow", key, nil, nil); r.status != 200 {
		t.Fatalf("POST with byMethod timeout: %d %q", r.status, r.body)
	}
	wantError(t, get(t, gw+"/dead", key), 502, "upstream_unavailable")
}

func TestTimeouts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		res    *events.Resilience
		method string
		want   time.Duration
	}{
		{name: "no block", method: "GET", want: events.DefaultTimeoutMs * time.Millisecond},
		{name: "default", res: &events.Resilience{Timeout: &events.Timeout{Enabled: true, Default: 250}}, method: "GET", want: 250 * time.Millisecond},
		{name: "by method", res: &events.Resilience{Timeout: &events.Timeout{Enabled: true, Default: 250, ByMethod: map[string]int{"GET": 50}}}, method: "GET", want: 50 * time.Millisecond},
		{name: "other method", res: &events.Resilience{Timeout: &events.Timeout{Enabled: true, Default: 250, ByMethod: map[string]int{"GET": 50}}}, method: "PUT", want: 250 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := &routeState{Route: routeFor(tc.res)}
			s.timeout, s.timeoutBy = timeouts(s.Route)
			if got := s.timeoutFor(tc.method); got != tc.want {
				t.Fatalf("timeoutFor = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRetries(t *testing.T) {
	t.Parallel()
	retryBlock := func(max int, nonIdem bool) *events.Resilience {
		return &events.Resilience{Retry: &events.Retry{Enabled: true, MaxRetries: max, BaseDelayMs: 1, MaxDelayMs: 5,
			RetryableStatusCodes: []int{502, 503}, RetryNonIdempotent: nonIdem}}
	}
	for _, tc := range []struct {
		name       string
		method     string
		res        *events.Resilience
		firstCode  int // the first upstream's answer (0: connection refused)
		wantStatus int
		wantHits   int64 // requests the failing upstream got
		wantGood   int64 // requests the healthy upstream got
	}{
		{name: "503 retried on the other upstream", method: "GET", res: retryBlock(2, false), firstCode: 503, wantStatus: 200, wantHits: 1, wantGood: 1},
		{name: "connection refused retried", method: "GET", res: retryBlock(2, false), firstCode: 0, wantStatus: 200, wantGood: 1},
		{name: "POST not retried", method: "POST", res: retryBlock(2, false), firstCode: 503, wantStatus: 503, wantHits: 1},
		{name: "POST retried after a failed dial", method: "POST", res: retryBlock(2, false), firstCode: 0, wantStatus: 200, wantGood: 1},
		{name: "POST retried when allowed", method: "POST", res: retryBlock(2, true), firstCode: 503, wantStatus: 200, wantHits: 1, wantGood: 1},
		{name: "unlisted status passes through", method: "GET", res: retryBlock(2, false), firstCode: 500, wantStatus: 500, wantHits: 1},
		{name: "no retry block: 5xx passes through", method: "GET", firstCode: 503, wantStatus: 503, wantHits: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			var bad string
			var badUp *upstream
			if tc.firstCode == 0 {
				bad = deadURL(t)
			} else {
				badUp = newUpstream(t, "bad", statusHandler(tc.firstCode))
				bad = badUp.URL
			}
			good := newUpstream(t, "good", nil)
			ten, key := w.tenant("acme")
			w.route(events.RouteSpec{TenantID: ten, Path: "/", Upstreams: ups(bad, good.URL), Resilience: tc.res})
			gw, _ := gateway(t, Config{}, Deps{Snapshots: w, Budgets: retry.NewBudgets(retry.BudgetConfig{})})
			// Round-robin starts at the first upstream: the bad one.
			r := do(t, tc.method, gw+"/x", key, nil, nil)
			if r.status != tc.wantStatus {
				t.Fatalf("status %d %q, want %d", r.status, r.body, tc.wantStatus)
			}
			if badUp != nil && badUp.hits.Load() != tc.wantHits {
				t.Fatalf("failing upstream hits %d, want %d", badUp.hits.Load(), tc.wantHits)
			}
			if good.hits.Load() != tc.wantGood {
				t.Fatalf("healthy upstream hits %d, want %d", good.hits.Load(), tc.wantGood)
			}
		})
	}
}

func TestRetryBodyReplayed(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	var calls atomic.Int64
	up := newUpstream(t, "u", func(rw http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			rw.WriteHeader(503)
		}
	})
	ten, key := w.tenant("acme")
	w.route(events.RouteSpec{TenantID: ten, Path: "/", Upstreams: ups(up.URL), Resilience: &events.Resilience{
		Retry: &events.Retry{Enabled: true, MaxRetries: 1, BaseDelayMs: 1, MaxDelayMs: 1, RetryableStatusCodes: []int{503}}}})
	gw, _ := gateway(t, Config{}, Deps{Snapshots: w})
	body := make([]byte, 20000) // under MaxReplayBytes, with a Content-Length: buffered
	r := do(t, "PUT", gw+"/x", key, nil, bytes.NewReader(body))
	if r.status != 200 || calls.Load() != 2 {
		t.Fatalf("status %d after %d calls, want 200 after 2", r.status, calls.Load())
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	for i, s := range up.got {
		if s.BodyLen != int64(len(body)) {
			t.Fatalf("attempt %d carried %d body bytes, want %d", i, s.BodyLen, len(body))
		}
	}
}

func TestFallback(t *testing.T) {
	t.Parallel()
	fb := &events.Fallback{Enabled: true, StatusCode: 503, ContentType: "application/json", Body: `{"error":"Service temporarily unavailable"}`}
	for _, tc := range []struct {
		name     string
		upstream func(t *testing.T) string
		res      events.Resilience
		wantFB   bool
		wantCode int
	}{
		{name: "connection refused", upstream: func(t *testing.T) string { return deadURL(t) }, wantFB: true},
		{name: "timeout", upstream: func(t *testing.T) string { return newUpstream(t, "s", slow(time.Second)).URL },
			res: events.Resilience{Timeout: &events.Timeout{Enabled: true, Default: 50}}, wantFB: true},
		{name: "retries exhausted", upstream: func(t *testing.T) string { return newUpstream(t, "s", statusHandler(503)).URL },
			res: events.Resilience{Retry: &events.Retry{Enabled: true, MaxRetries: 2, BaseDelayMs: 1, MaxDelayMs: 2, RetryableStatusCodes: []int{503}}}, wantFB: true},
		{name: "5xx without retry passes through", upstream: func(t *testing.T) string { return newUpstream(t, "s", statusHandler(500)).URL },
			wantCode: 500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			ten, key := w.tenant("acme")
			res := tc.res
			res.Fallback = fb
			w.route(events.RouteSpec{TenantID: ten, Path: "/", Upstreams: ups(tc.upstream(t)), Resilience: &res})
			gw, _ := gateway(t, Config{}, Deps{Snapshots: w})
			r := get(t, gw+"/x", key)
			if tc.wantFB {
				if r.status != 503 || r.body != fb.Body || r.header.Get("Content-Type") != fb.ContentType {
					t.Fatalf("got %d %q %q, want the fallback", r.status, r.header.Get("Content-Type"), r.body)
				}
				return
			}
			if r.status != tc.wantCode || r.body == fb.Body {
				t.Fatalf("got %d %q, want the upstream's %d", r.status, r.body, tc.wantCode)
			}
		})
	}
}

// stubHealth marks upstream URLs unhealthy.
type stubHealth map[string]bool

func (s stubHealth) Healthy(k health.Key) bool { return !s[k.Upstream] }

func TestUpstreamAvailability(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	a := newUpstream(t, "a", statusHandler(500))
	b := newUpstream(t, "b", nil)
	ten, key := w.tenant("acme")
	cb := &events.CircuitBreaker{Enabled: true, FailureThreshold: 2, SuccessThreshold: 1, Timeout: 60000}
	hc := &events.HealthCheck{Enabled: true, Endpoint: "/health", IntervalMs: 1000, TimeoutMs: 500, HealthyThreshold: 1, UnhealthyThreshold: 1}
	w.route(events.RouteSpec{TenantID: ten, Path: "/cb", Upstreams: ups(a.URL, b.URL), Resilience: &events.Resilience{CircuitBreaker: cb}})
	w.route(events.RouteSpec{TenantID: ten, Path: "/cbonly", Upstreams: ups(a.URL + "/only"), Resilience: &events.Resilience{CircuitBreaker: cb}})
	w.route(events.RouteSpec{TenantID: ten, Path: "/hc", Upstreams: ups(a.URL+"/hc", b.URL+"/hc"), Resilience: &events.Resilience{HealthCheck: hc}})
	w.route(events.RouteSpec{TenantID: ten, Path: "/down", Upstreams: ups(a.URL + "/down"), Resilience: &events.Resilience{HealthCheck: hc}})
	w.route(events.RouteSpec{TenantID: ten, Path: "/downfb", Upstreams: ups(a.URL + "/down"), Resilience: &events.Resilience{HealthCheck: hc,
		Fallback: &events.Fallback{Enabled: true, StatusCode: 200, ContentType: "text/plain", Body: "cached"}}})
	down := stubHealth{a.URL + "/hc": true, a.URL + "/down": true}
	gw, _ := gateway(t, Config{}, Deps{Snapshots: w, Breakers: breaker.NewLocal(), Health: down})

	// Unhealthy upstreams get no traffic.
	for range 4 {
		if r := get(t, gw+"/hc", key); r.status != 200 || r.header.Get("X-Upstream") != "b" {
			t.Fatalf("/hc: %d from %q, want 200 from b", r.status, r.header.Get("X-Upstream"))
		}
	}
	wantError(t, get(t, gw+"/down", key), 503, "no_healthy_upstream")
	if r := get(t, gw+"/downfb", key); r.status != 200 || r.body != "cached" {
		t.Fatalf("fallback when no upstream is healthy: %d %q", r.status, r.body)
	}

	// Two 500s open a's breaker on /cbonly; then the breaker answers.
	for range 2 {
		if r := get(t, gw+"/cbonly", key); r.status != 500 {
			t.Fatalf("/cbonly before opening: %d", r.status)
		}
	}
	before := a.hits.Load()
	wantError(t, get(t, gw+"/cbonly", key), 503, "circuit_open")
	if a.hits.Load() != before {
		t.Fatal("request reached an upstream whose breaker is open")
	}

	// On /cb, once a's breaker opens all traffic goes to b.
	for range 6 {
		get(t, gw+"/cb", key)
	}
	for range 4 {
		if r := get(t, gw+"/cb", key); r.status != 200 || r.header.Get("X-Upstream") != "b" {
			t.Fatalf("/cb with a's breaker open: %d from %q", r.status, r.header.Get("X-Upstream"))
		}
	}
}

func TestRateLimitHeaders(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	up := newUpstream(t, "u", nil)
	ten, key := w.tenantWith("limited", events.TenantActive, &events.RateLimit{Limit: 3, WindowMs: 60000})
	_, freeKey := w.tenant("free")
	w.route(events.RouteSpec{TenantID: ten, Path: "/ok", Upstreams: ups(up.URL)})
	gw, _ := gateway(t, Config{}, Deps{Snapshots: w, Limiter: ratelimit.NewLocal()})

	now := time.Now().Unix()
	for i, path := range []string{"/ok", "/missing", "/ok"} {
		r := get(t, gw+path, key)
		if i == 1 {
			wantError(t, r, 404, "route_not_found")
		}
		if r.header.Get("X-RateLimit-Limit") != "3" || r.header.Get("X-RateLimit-Remaining") != strconv.Itoa(2-i) {
			t.Fatalf("request %d: limit %q remaining %q", i, r.header.Get("X-RateLimit-Limit"), r.header.Get("X-RateLimit-Remaining"))
		}
		reset, _ := strconv.ParseInt(r.header.Get("X-RateLimit-Reset"), 10, 64)
		if reset < now || reset > now+62 {
			t.Fatalf("X-RateLimit-Reset = %q, want within the window", r.header.Get("X-RateLimit-Reset"))
		}
	}
	r := get(t, gw+"/ok", key)
	wantError(t, r, 429, "rate_limited")
	if ra, _ := strconv.Atoi(r.header.Get("Retry-After")); ra < 1 || ra > 61 {
		t.Fatalf("Retry-After = %q", r.header.Get("Retry-After"))
	}
	if r.header.Get("X-RateLimit-Remaining") != "0" {
		t.Fatalf("429 remaining = %q", r.header.Get("X-RateLimit-Remaining"))
	}
	if r := get(t, gw+"/ok", freeKey); r.header.Get("X-RateLimit-Limit") != "" {
		t.Fatal("tenant without a rate limit got rate-limit headers")
	}
}

// TestClientGoneStopsRetries: a client that closes its connection while its
// request waits to be retried ends the retries; the request is logged 499.
func TestClientGoneStopsRetries(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	up := newUpstream(t, "u", statusHandler(503))
	ten, key := w.tenant("acme")
	w.route(events.RouteSpec{TenantID: ten, Path: "/", Upstreams: ups(up.URL), Resilience: &events.Resilience{
		Retry: &events.Retry{Enabled: true, MaxRetries: 10, BaseDelayMs: 300, MaxDelayMs: 300, RetryableStatusCodes: []int{503}}}})
	var access syncBuffer
	gw, _ := gateway(t, Config{AccessLog: &access}, Deps{Snapshots: w})
	conn, err := net.Dial("tcp", strings.TrimPrefix(gw, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, "GET /x HTTP/1.1\r\nHost: gw\r\nX-API-Key: "+key+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); up.hits.Load() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the first attempt never reached the upstream")
		}
		time.Sleep(time.Millisecond)
	}
	conn.Close() // while the gateway waits for its first retry
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(access.String(), `"status":499`); {
		if time.Now().After(deadline) {
			t.Fatalf("no 499 in the access log: %s", access.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := up.hits.Load(); n > 2 {
		t.Fatalf("the upstream got %d attempts after the client left, want the retries to stop", n)
	}
	if !strings.Contains(access.String(), `"code":"client_gone"`) {
		t.Fatalf("access line: %s", access.String())
	}
}
