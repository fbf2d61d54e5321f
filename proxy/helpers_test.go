package proxy

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/projections"
)

// world builds an event log and the snapshots it replays to.
type world struct {
	t   testing.TB
	mu  sync.Mutex
	evs []events.Envelope
	n   int
	cur atomic.Pointer[projections.Snapshot]
}

func newWorld(t testing.TB) *world {
	w := &world{t: t}
	w.cur.Store(projections.Empty())
	return w
}

// Snapshot implements Snapshots.
func (w *world) Snapshot() *projections.Snapshot { return w.cur.Load() }

func (w *world) id(prefix string) string {
	w.n++
	return fmt.Sprintf("%s-%04d", prefix, w.n)
}

func (w *world) append(typ events.Type, aggID, tenantID string, version int64, data any) {
	b, err := json.Marshal(data)
	if err != nil {
		w.t.Fatal(err)
	}
	w.evs = append(w.evs, events.Envelope{
		Seq: int64(len(w.evs) + 1), ID: w.id("ev"), Type: typ, AggregateType: events.AggregateTypeOf(typ),
		AggregateID: aggID, AggregateVersion: version, TenantID: tenantID, Actor: "test",
		OccurredAt: time.Now(), Data: b,
	})
	snap, err := projections.Replay(w.evs)
	if err != nil {
		w.t.Fatalf("replay: %v", err)
	}
	w.cur.Store(snap)
}

// tenant adds an active tenant without a rate limit and returns its id and key.
func (w *world) tenant(name string) (id, key string) {
	return w.tenantWith(name, events.TenantActive, nil)
}

// tenantWithKey adds an active tenant holding key.
func (w *world) tenantWithKey(name, key string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	id := w.id("tenant")
	h := projections.KeyHash([]byte(key))
	w.append(events.TenantCreated, id, id, 1, events.TenantCreatedData{
		Name: name, Status: events.TenantActive, APIKeyHash: hex.EncodeToString(h[:]), APIKeyPrefix: key[:7],
	})
	return id
}

func (w *world) tenantWith(name string, status events.TenantStatus, rl *events.RateLimit) (id, key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	id = w.id("tenant")
	key = "gw_test_" + name + "_" + id
	h := projections.KeyHash([]byte(key))
	w.append(events.TenantCreated, id, id, 1, events.TenantCreatedData{
		Name: name, Status: status, RateLimit: rl,
		APIKeyHash: hex.EncodeToString(h[:]), APIKeyPrefix: key[:7],
	})
	return id, key
}

// route adds a route; zero fields get the contract's defaults.
func (w *world) route(spec events.RouteSpec) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if spec.Method == "" {
		spec.Method = events.AnyMethod
	}
	if spec.PathType == "" {
		spec.PathType = events.PathPrefix
	}
	if spec.LoadBalancing == "" {
		spec.LoadBalancing = events.BalanceRoundRobin
	}
	for i := range spec.Upstreams {
		if spec.Upstreams[i].Weight == 0 {
			spec.Upstreams[i].Weight = 1
		}
	}
	id := w.id("route")
	w.append(events.RouteCreated, id, spec.TenantID, 1, spec)
	return id
}

// setUpstreams replaces a route's upstreams (a RouteUpdated event).
func (w *world) setUpstreams(routeID, tenantID string, version int64, ups []events.Upstream) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.append(events.RouteUpdated, routeID, tenantID, version, map[string]any{"upstreams": ups})
}

func ups(urls ...string) []events.Upstream {
	out := make([]events.Upstream, len(urls))
	for i, u := range urls {
		out[i] = events.Upstream{URL: u, Weight: 1}
	}
	return out
}

// gateway serves p through a real Fiber app on 127.0.0.1 and returns its base URL.
func gateway(t testing.TB, cfg Config, deps Deps) (string, *Proxy) {
	t.Helper()
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	p, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	app := fiber.New(p.FiberConfig())
	app.Use(p.Handler)
	app.Server().Handler = SettleBodies(app.Server().Handler) // as cmd/gateway serves
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.ServeListener(app, ln) }() // the framing guard and timeouts, as cmd/gateway serves
	t.Cleanup(func() { _ = app.ShutdownWithTimeout(5 * time.Second) })
	return "http://" + ln.Addr().String(), p
}

// seen is what an upstream received.
type seen struct {
	Method, Path, RawQuery, Host string
	Header                       http.Header
	BodyLen                      int64
}

// upstream is an httptest server that records every request and answers
// with handler (or 200 "ok" from name).
type upstream struct {
	*httptest.Server
	name string
	mu   sync.Mutex
	got  []seen
	hits atomic.Int64
}

func newUpstream(t testing.TB, name string, handler http.HandlerFunc) *upstream {
	return newUpstreamWith(t, name, handler, nil)
}

// newUpstreamWith is newUpstream with configure applied before the server starts.
func newUpstreamWith(t testing.TB, name string, handler http.HandlerFunc, configure func(*http.Server)) *upstream {
	u := &upstream{name: name}
	u.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		u.mu.Lock()
		u.got = append(u.got, seen{Method: r.Method, Path: r.URL.EscapedPath(), RawQuery: r.URL.RawQuery, Host: r.Host, Header: r.Header.Clone(), BodyLen: n})
		u.mu.Unlock()
		u.hits.Add(1)
		if handler != nil {
			handler(w, r)
			return
		}
		w.Header().Set("X-Upstream", name)
		_, _ = io.WriteString(w, name+" "+r.URL.EscapedPath())
	}))
	if configure != nil {
		configure(u.Config)
	}
	u.Start()
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) last(t testing.TB) seen {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.got) == 0 {
		t.Fatalf("upstream %s received nothing", u.name)
	}
	return u.got[len(u.got)-1]
}

type result struct {
	status int
	header http.Header
	body   string
}

// errCode decodes the contract's error JSON ("" when the body is not one).
func (r result) errCode() string {
	var e struct {
		Error struct{ Code, Message string }
	}
	if json.Unmarshal([]byte(r.body), &e) != nil {
		return ""
	}
	return e.Error.Code
}

var client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

func do(t testing.TB, method, url, key string, hdr map[string]string, body io.Reader) result {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set(HeaderAPIKey, key)
	}
	for k, v := range hdr {
		if strings.EqualFold(k, "Host") {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return result{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func get(t testing.TB, url, key string) result { return do(t, http.MethodGet, url, key, nil, nil) }

// wantError checks a gateway error: status, code and JSON content type.
func wantError(t testing.TB, r result, status int, code string) {
	t.Helper()
	if r.status != status || r.errCode() != code {
		t.Fatalf("got %d %q, want %d %s", r.status, r.body, status, code)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error Content-Type = %q, want application/json", ct)
	}
}

func routeFor(res *events.Resilience) *projections.Route {
	return &projections.Route{ID: "r", RouteSpec: events.RouteSpec{Resilience: res}}
}
