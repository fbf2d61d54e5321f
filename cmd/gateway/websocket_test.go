package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// wsUpstream is a real WebSocket server on 127.0.0.1: /ws/echo echoes
// every message, /ws/bye closes with 4000 at once, /ws/refuse answers 403
// without upgrading. It records what each handshake carried.
type wsUpstream struct {
	srv      *httptest.Server
	mu       sync.Mutex
	headers  []http.Header
	closedBy chan websocket.StatusCode // the close status each echo connection ended with
}

func newWSUpstream(t *testing.T) *wsUpstream {
	t.Helper()
	u := &wsUpstream{closedBy: make(chan websocket.StatusCode, 2048)}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.headers = append(u.headers, r.Header.Clone())
		u.mu.Unlock()
		if strings.HasSuffix(r.URL.Path, "/refuse") {
			w.Header().Set("X-Refused", "yes")
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte("no upgrade for you"))
			return
		}
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		if strings.HasSuffix(r.URL.Path, "/bye") {
			_ = c.Close(4000, "bye")
			return
		}
		c.SetReadLimit(4 << 20)
		ctx := context.WithoutCancel(r.Context())
		for {
			typ, msg, err := c.Read(ctx)
			if err != nil {
				u.closedBy <- websocket.CloseStatus(err)
				return
			}
			if err := c.Write(ctx, typ, msg); err != nil {
				return
			}
		}
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *wsUpstream) lastHeader() http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.headers[len(u.headers)-1]
}

// wsGateway starts the gateway binary (embedded store) with env and gives
// a tenant (with rateLimit when not nil) a route /ws to up, with a
// response header transform.
func wsGateway(t *testing.T, up *wsUpstream, env map[string]string, rateLimit map[string]any) (*proc, string) {
	t.Helper()
	p := startProc(t, "ws", env)
	tenant := map[string]any{"name": "ws-" + strconv.FormatInt(time.Now().UnixNano(), 36)}
	if rateLimit != nil {
		tenant["rateLimit"] = rateLimit
	}
	code, body := p.admin("POST", "/admin/tenants", tenant)
	if code != http.StatusCreated {
		t.Fatalf("create tenant: %d %v", code, body)
	}
	code, route := p.admin("POST", "/admin/routes", map[string]any{
		"tenantId": body["id"], "path": "/ws", "upstreams": []map[string]any{{"url": up.srv.URL}},
		"transform": map[string]any{"response": map[string]any{"headers": map[string]any{"set": map[string]any{"X-Served-By": "gateway"}}}},
	})
	if code != http.StatusCreated {
		t.Fatalf("create route: %d %v", code, route)
	}
	return p, body["apiKey"].(string)
}

func dialWS(ctx context.Context, p *proc, path, key string) (*websocket.Conn, *http.Response, error) {
	return dialWSAt(ctx, p.base, path, key)
}

func dialWSAt(ctx context.Context, base, path, key string) (*websocket.Conn, *http.Response, error) {
	h := http.Header{}
	if key != "" {
		h.Set("X-API-Key", key)
	}
	return websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+path, &websocket.DialOptions{HTTPHeader: h})
}

func TestWebSocketThroughTheBinary(t *testing.T) {
	t.Parallel()
	up := newWSUpstream(t)
	gw, key := wsGateway(t, up, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	c, resp, err := dialWS(ctx, gw, "/ws/echo", key)
	if err != nil {
		t.Fatalf("dial through the gateway: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("X-Served-By") != "gateway" || resp.Header.Get("X-Request-Id") == "" {
		t.Fatalf("handshake answer: %d %v", resp.StatusCode, resp.Header)
	}
	h := up.lastHeader()
	if h.Get("X-API-Key") != "" || h.Get("X-Forwarded-For") != "127.0.0.1" || h.Get("X-Forwarded-Host") == "" || h.Get("Sec-WebSocket-Key") == "" {
		t.Fatalf("upstream saw headers %v", h)
	}
	c.SetReadLimit(4 << 20)
	big := make([]byte, 1<<20)
	_, _ = rand.Read(big)
	for _, m := range []struct {
		name string
		typ  websocket.MessageType
		data []byte
	}{
		{"text", websocket.MessageText, []byte("hello, tunnel")},
		{"binary", websocket.MessageBinary, []byte{0, 1, 2, 0xff, 0xfe}},
		{"1 MiB", websocket.MessageBinary, big},
	} {
		if err := c.Write(ctx, m.typ, m.data); err != nil {
			t.Fatalf("%s: write: %v", m.name, err)
		}
		typ, got, err := c.Read(ctx)
		if err != nil || typ != m.typ || !bytes.Equal(got, m.data) {
			t.Fatalf("%s: echo: type %v, %d bytes, err %v", m.name, typ, len(got), err)
		}
	}
	// A ping is answered by the upstream's pong while a reader runs.
	readErr := make(chan error, 1)
	pctx := c.CloseRead(ctx)
	go func() { <-pctx.Done(); readErr <- pctx.Err() }()
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	// The client closes: the upstream sees its 1000, the handshake completes.
	if err := c.Close(websocket.StatusNormalClosure, "done"); err != nil {
		t.Fatalf("client close: %v", err)
	}
	select {
	case st := <-up.closedBy:
		if st != websocket.StatusNormalClosure {
			t.Fatalf("upstream saw close status %d", st)
		}
	case <-ctx.Done():
		t.Fatal("the upstream never saw the client's close")
	}

	// The upstream closes: the client sees its 4000.
	c, _, err = dialWS(ctx, gw, "/ws/bye", key)
	if err != nil {
		t.Fatalf("dial /ws/bye: %v", err)
	}
	if _, _, err := c.Read(ctx); websocket.CloseStatus(err) != 4000 {
		t.Fatalf("client read after the upstream's close: %v", err)
	}

	// Refused upgrade: the upstream's answer passes through.
	req, _ := http.NewRequestWithContext(ctx, "GET", gw.base+"/ws/refuse", nil)
	for k, v := range map[string]string{"X-API-Key": key, "Connection": "Upgrade", "Upgrade": "websocket",
		"Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="} {
		req.Header.Set(k, v)
	}
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 64)
	n, _ := r.Body.Read(body)
	r.Body.Close()
	if r.StatusCode != http.StatusForbidden || string(body[:n]) != "no upgrade for you" || r.Header.Get("X-Refused") != "yes" || r.Header.Get("X-Served-By") != "gateway" {
		t.Fatalf("refused upgrade: %d %q %v", r.StatusCode, body[:n], r.Header)
	}

	// Auth at the handshake.
	for _, tc := range []struct {
		name, key string
		want      int
	}{{"no key", "", 401}, {"wrong key", "gw_wrong", 403}} {
		if _, resp, err := dialWS(ctx, gw, "/ws/echo", tc.key); err == nil || resp == nil || resp.StatusCode != tc.want {
			t.Fatalf("%s: want %d, got %v %v", tc.name, tc.want, resp, err)
		}
	}
	// Other Upgrade tokens are not tunnelled: a plain request reaches the upstream without them.
	req, _ = http.NewRequestWithContext(ctx, "GET", gw.base+"/ws/refuse", nil)
	req.Header.Set("X-API-Key", key)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "h2c")
	if r, err = http.DefaultClient.Do(req); err != nil || r.StatusCode != http.StatusForbidden {
		t.Fatalf("h2c upgrade: %v %v", r, err)
	}
	r.Body.Close()
	if h := up.lastHeader(); h.Get("Upgrade") != "" || h.Get("Connection") != "" {
		t.Fatalf("upstream saw Upgrade %q Connection %q", h.Get("Upgrade"), h.Get("Connection"))
	}

	// Metrics: the tunnels' bytes both ways, none open now.
	_, m, _ := gw.call("GET", "/metrics", nil, map[string]string{"X-Admin-Key": testAdminKey})
	for _, want := range []string{`gateway_proxy_bytes_total{direction="in"`, `gateway_proxy_bytes_total{direction="out"`,
		"gateway_proxy_open_tunnels 0", "gateway_proxy_tunnel_duration_seconds_count"} {
		if !strings.Contains(string(m), want) {
			t.Fatalf("metrics lack %s", want)
		}
	}
	// The access log is buffered: its lines come within a flush interval.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(gw.logs.String(), `"msg":"tunnel"`) {
		if time.Now().After(deadline) {
			t.Fatal("no access line for the ended tunnels")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, line := range strings.Split(gw.logs.String(), "\n") {
		if strings.Contains(line, `"msg":"tunnel"`) && strings.Contains(line, `"reason":"client closed"`) {
			if !strings.Contains(line, `"bytes_in":`) || strings.Contains(line, `"bytes_in":0,`) || strings.Contains(line, key) {
				t.Fatalf("tunnel line: %s", line)
			}
		}
	}
}

func TestWebSocketRateLimitAndIdleTimeout(t *testing.T) {
	t.Parallel()
	up := newWSUpstream(t)
	gw, key := wsGateway(t, up, map[string]string{"WS_IDLE_TIMEOUT": "1s"}, map[string]any{"limit": 2, "windowMs": 60000})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	c, _, err := dialWS(ctx, gw, "/ws/echo", key)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	// Idle: the gateway closes the tunnel with 1001 after WS_IDLE_TIMEOUT.
	if _, _, err := c.Read(ctx); websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("idle tunnel: %v", err)
	}
	// The gateway's idle clock starts when it opens the tunnel, a little
	// before the client's dial returns: hence 900 ms, not 1 s.
	if d := time.Since(start); d < 900*time.Millisecond || d > 5*time.Second {
		t.Fatalf("idle tunnel closed after %v, want about 1s", d)
	}
	if st := <-up.closedBy; st != websocket.StatusGoingAway {
		t.Fatalf("the upstream saw the idle close as %d, want 1001", st)
	}
	// One handshake is one request of the limit: the third is 429.
	if _, _, err := dialWS(ctx, gw, "/ws/echo", key); err != nil {
		t.Fatalf("second handshake: %v", err)
	}
	_, resp, err := dialWS(ctx, gw, "/ws/echo", key)
	if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("third handshake: want 429, got %v %v", resp, err)
	}
}

// rssBytes is VmRSS of process pid.
func rssBytes(t *testing.T, pid int) int64 { return procStatus(t, pid, "VmRSS") }

func TestWebSocketThousandTunnelsAndSIGTERM(t *testing.T) {
	up := newWSUpstream(t)
	const shutdown = 2 * time.Second
	gw, key := wsGateway(t, up, map[string]string{"SHUTDOWN_TIMEOUT": shutdown.String(), "LOG_LEVEL": "warn"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	gw.mu.Lock()
	pid := gw.cmd.Process.Pid
	gw.mu.Unlock()

	// Warm up (one tunnel), then the baseline.
	c, _, err := dialWS(ctx, gw, "/ws/echo", key)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Close(websocket.StatusNormalClosure, "")
	<-up.closedBy
	before := rssBytes(t, pid)

	const n = 1000
	conns := make([]*websocket.Conn, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 50)
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			c, _, err := dialWS(ctx, gw, "/ws/echo", key)
			if err != nil {
				errs <- err
				return
			}
			msg := []byte("tunnel " + strconv.Itoa(i))
			if err = c.Write(ctx, websocket.MessageText, msg); err == nil {
				var got []byte
				if _, got, err = c.Read(ctx); err == nil && !bytes.Equal(got, msg) {
					err = errors.New("wrong echo " + string(got))
				}
			}
			if err != nil {
				errs <- err
				return
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("opening %d tunnels: %v", n, err)
	}
	after := rssBytes(t, pid)
	_, m, _ := gw.call("GET", "/metrics", nil, map[string]string{"X-Admin-Key": testAdminKey})
	if !strings.Contains(string(m), "gateway_proxy_open_tunnels 1000") {
		t.Fatal("gateway_proxy_open_tunnels is not 1000")
	}
	figure(t, "websocket_tunnels", "tunnels", n, "rss_before_bytes", before, "rss_after_bytes", after,
		"bytes_per_tunnel", (after-before)/n)

	// SIGTERM: the tunnels stay open for SHUTDOWN_TIMEOUT, then each gets 1001.
	sent := time.Now()
	gw.signal(syscall.SIGTERM)
	closes := make(chan time.Duration, n)
	for _, c := range conns {
		go func() {
			_, _, err := c.Read(ctx)
			if websocket.CloseStatus(err) != websocket.StatusGoingAway {
				closes <- -1
				return
			}
			closes <- time.Since(sent)
		}()
	}
	var first, last time.Duration = time.Hour, 0
	for range n {
		d := <-closes
		if d < 0 {
			t.Fatal("a tunnel ended without a close frame 1001")
		}
		first, last = min(first, d), max(last, d)
	}
	if first < shutdown {
		t.Fatalf("a tunnel was closed %v after SIGTERM, before SHUTDOWN_TIMEOUT (%v)", first, shutdown)
	}
	// And each upstream connection got a close frame 1001 too.
	for i := range n {
		select {
		case st := <-up.closedBy:
			if st != websocket.StatusGoingAway {
				t.Fatalf("upstream connection %d ended with %d, want 1001", i, st)
			}
		case <-ctx.Done():
			t.Fatalf("only %d of %d upstream connections saw their close", i, n)
		}
	}
	if !gw.wait(15*time.Second) || gw.exitCode() != 0 {
		t.Fatalf("gateway did not exit cleanly: %d", gw.exitCode())
	}
	figure(t, "websocket_sigterm", "first_close", first, "last_close", last)
}

// In process, so that the race detector sees the tunnels (the binary of the
// other tests is built without it): echo through several tunnels at once,
// then the drain closes them with 1001.
func TestWebSocketInProcessDrain(t *testing.T) {
	t.Parallel()
	up := newWSUpstream(t)
	gw := startGateway(t, map[string]string{"SHUTDOWN_TIMEOUT": "300ms"})
	key, _ := createTenantAndRoute(t, gw, up.srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const n = 20
	conns := make([]*websocket.Conn, n)
	for i := range conns {
		c, _, err := dialWSAt(ctx, gw.base, "/api/echo", key)
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadLimit(1 << 20)
		conns[i] = c
	}
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := []byte(strings.Repeat("x", 40000+i))
			for range 5 {
				if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
					t.Error(err)
					return
				}
				if _, got, err := c.Read(ctx); err != nil || !bytes.Equal(got, msg) {
					t.Errorf("echo: %d bytes, %v", len(got), err)
					return
				}
			}
		}()
	}
	wg.Wait()
	stopped := make(chan int, 1)
	go func() { stopped <- gw.stop() }()
	for _, c := range conns {
		if _, _, err := c.Read(ctx); websocket.CloseStatus(err) != websocket.StatusGoingAway {
			t.Fatalf("after the drain: %v", err)
		}
	}
	if code := <-stopped; code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

// An upstream that cannot be reached is the contract's 502 at the
// handshake, like any request, and a failure for its breaker.
func TestWebSocketUnreachableUpstream(t *testing.T) {
	t.Parallel()
	gw := startGateway(t, nil)
	key, routeID := createTenantAndRoute(t, gw, "http://127.0.0.1:"+strconv.Itoa(freePort(t)))
	if code, body := gw.admin("PATCH", "/admin/routes/"+routeID, map[string]any{"resilience": map[string]any{
		"circuitBreaker": map[string]any{"failureThreshold": 1, "timeout": 60000}}}); code != 200 {
		t.Fatalf("patch route: %d %v", code, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, resp, err := dialWSAt(ctx, gw.base, "/api/echo", key)
	if err == nil || resp == nil || resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("want 502, got %v %v", resp, err)
	}
	var body struct {
		Error struct{ Code string } `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Error.Code != "upstream_unavailable" {
		t.Fatalf("body: %+v %v", body, err)
	}
	if _, resp, _ := dialWSAt(ctx, gw.base, "/api/echo", key); resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("after a failed handshake the breaker is open: want 503, got %v", resp)
	}
}
