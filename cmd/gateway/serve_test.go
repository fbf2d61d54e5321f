package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tenantgate/gateway/events/testenv"
)

// instance is a gateway started in-process through run(), as main does.
type instance struct {
	t      *testing.T
	base   string
	env    map[string]string
	cancel context.CancelFunc
	done   chan int
	stdout *syncBuffer
	stderr *syncBuffer
}

type syncBuffer = testenv.SyncBuffer

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

const testAdminKey = "test-admin-key-0123456789"

func startGateway(t *testing.T, env map[string]string) *instance {
	t.Helper()
	port := freePort(t)
	full := map[string]string{
		"PORT": strconv.Itoa(port), "HOST": "127.0.0.1", "ADMIN_API_KEY": testAdminKey,
		"DATA_DIR": t.TempDir(), "LOG_LEVEL": "warn", "HEAD_CHECK_INTERVAL": "200ms",
	}
	for k, v := range env {
		full[k] = v
	}
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{t: t, base: "http://127.0.0.1:" + strconv.Itoa(port), env: full, cancel: cancel,
		done: make(chan int, 1), stdout: &syncBuffer{}, stderr: &syncBuffer{}}
	go func() { in.done <- run(ctx, nil, envOf(full), in.stdout, in.stderr) }()
	t.Cleanup(func() { in.stop() })
	in.waitReady()
	return in
}

func (in *instance) waitReady() {
	in.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case code := <-in.done:
			in.done <- code
			in.t.Fatalf("gateway exited with %d: %s", code, in.stderr.String())
		default:
		}
		if resp, err := http.Get(in.base + "/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	in.t.Fatalf("gateway not ready in time: %s", in.stderr.String())
}

// stop cancels the gateway's context (what SIGTERM does) and returns its exit code.
func (in *instance) stop() int {
	in.cancel()
	select {
	case code := <-in.done:
		in.done <- code
		return code
	case <-time.After(15 * time.Second):
		in.t.Fatalf("gateway did not exit within 15s")
		return -1
	}
}

func (in *instance) do(method, path string, body any, headers map[string]string) (int, http.Header, []byte) {
	in.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, in.base+path, r)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		in.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func (in *instance) admin(method, path string, body any) (int, map[string]any) {
	in.t.Helper()
	status, _, b := in.do(method, path, body, map[string]string{"X-Admin-Key": testAdminKey})
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return status, out
}

func createTenantAndRoute(t *testing.T, in *instance, upstream string) (apiKey, routeID string) {
	t.Helper()
	status, tenant := in.admin("POST", "/admin/tenants", map[string]any{"name": "acme-" + strconv.FormatInt(time.Now().UnixNano(), 36)})
	if status != http.StatusCreated {
		t.Fatalf("create tenant: %d %v", status, tenant)
	}
	status, route := in.admin("POST", "/admin/routes", map[string]any{
		"tenantId": tenant["id"], "path": "/api", "upstreams": []map[string]any{{"url": upstream}},
	})
	if status != http.StatusCreated {
		t.Fatalf("create route: %d %v", status, route)
	}
	return tenant["apiKey"].(string), route["id"].(string)
}

func upstreamServer(t *testing.T, delay time.Duration) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(delay)
		fmt.Fprintf(w, "upstream saw %s %s", r.Method, r.URL.RequestURI())
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestServeEmbeddedEndToEnd(t *testing.T) {
	t.Parallel()
	up := upstreamServer(t, 0)
	gw := startGateway(t, nil)

	if status, body := gw.admin("GET", "/health", nil); status != 200 || body["status"] != "ok" {
		t.Fatalf("/health: %d %v", status, body)
	}
	apiKey, _ := createTenantAndRoute(t, gw, up.URL)
	// Read your writes: the route answers at once, no sleep.
	status, _, body := gw.do("GET", "/api/users?x=1", nil, map[string]string{"X-API-Key": apiKey})
	if status != 200 || string(body) != "upstream saw GET /api/users?x=1" {
		t.Fatalf("proxy: %d %q", status, body)
	}
	if status, _, _ := gw.do("GET", "/api/users", nil, nil); status != http.StatusUnauthorized {
		t.Fatalf("missing key: want 401, got %d", status)
	}
	status, st := gw.admin("GET", "/admin/status", nil)
	if status != 200 || st["store"] != "sqlite" || st["bus"] != "memory" || st["ready"] != true || st["appliedSeq"].(float64) != 2 {
		t.Fatalf("/admin/status: %d %v", status, st)
	}
	if status, _, _ := gw.do("GET", "/metrics", nil, map[string]string{"Authorization": "Bearer " + testAdminKey}); status != 200 {
		t.Fatalf("/metrics with bearer: %d", status)
	}
	if status, _, _ := gw.do("GET", "/metrics", nil, nil); status != http.StatusUnauthorized {
		t.Fatalf("/metrics without key: %d", status)
	}
	if code := gw.stop(); code != 0 {
		t.Fatalf("exit code %d: %s", code, gw.stderr.String())
	}
}

func TestServePrintsGeneratedAdminKeyOnceAndNeverLogsIt(t *testing.T) {
	t.Parallel()
	gw := startGateway(t, map[string]string{"ADMIN_API_KEY": "", "LOG_LEVEL": "debug"})
	out := gw.stdout.String()
	i := strings.LastIndex(out, ": ")
	if i < 0 {
		t.Fatalf("no admin key printed: %q", out)
	}
	key := strings.TrimSpace(out[i+2:])
	gw.t.Logf("generated key has %d chars", len(key))
	status, _, _ := gw.do("GET", "/admin/tenants", nil, map[string]string{"X-Admin-Key": key})
	if status != 200 {
		t.Fatalf("generated key must work: %d", status)
	}
	gw.stop()
	if strings.Contains(gw.stderr.String(), key) {
		t.Fatal("the admin key appears in the logs")
	}
}

func TestGracefulShutdownDrainsInFlightRequests(t *testing.T) {
	t.Parallel()
	up := upstreamServer(t, 1500*time.Millisecond)
	gw := startGateway(t, map[string]string{"SHUTDOWN_DELAY": "300ms"})
	apiKey, _ := createTenantAndRoute(t, gw, up.URL)

	type result struct {
		status int
		body   string
	}
	inflight := make(chan result, 1)
	go func() {
		status, _, body := gw.do("GET", "/api/slow", nil, map[string]string{"X-API-Key": apiKey})
		inflight <- result{status, string(body)}
	}()
	time.Sleep(200 * time.Millisecond) // let the request reach the upstream
	start := time.Now()
	gw.cancel()
	// While draining, /ready says 503 before the listener closes.
	sawNotReady := false
	for time.Since(start) < 250*time.Millisecond && !sawNotReady {
		if resp, err := http.Get(gw.base + "/ready"); err == nil {
			sawNotReady = resp.StatusCode == http.StatusServiceUnavailable
			resp.Body.Close()
		}
	}
	if !sawNotReady {
		t.Error("/ready did not turn 503 while draining")
	}
	r := <-inflight
	if r.status != 200 || !strings.HasPrefix(r.body, "upstream saw GET /api/slow") {
		t.Fatalf("in-flight request: %d %q", r.status, r.body)
	}
	if code := gw.stop(); code != 0 {
		t.Fatalf("exit code %d: %s", code, gw.stderr.String())
	}
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Fatalf("shutdown took %v, want < 10s", elapsed)
	}
}

func TestBadConfigExitsWithOneLine(t *testing.T) {
	t.Parallel()
	var stderr bytes.Buffer
	code := run(context.Background(), nil, envOf(map[string]string{"PORT": "nope"}), io.Discard, &stderr)
	if code != 2 || strings.Count(stderr.String(), "\n") != 1 || !strings.Contains(stderr.String(), "PORT") {
		t.Fatalf("want exit 2 and one line naming PORT, got %d %q", code, stderr.String())
	}
}

func TestDistributedInstancesShareStateAndReplayAgrees(t *testing.T) {
	t.Parallel()
	dsn := testenv.Postgres(t)
	redisURL, prefix := testenv.Redis(t)
	env := map[string]string{"DATABASE_URL": dsn, "REDIS_URL": redisURL, "REDIS_PREFIX": prefix}
	a := startGateway(t, env)
	b := startGateway(t, env)
	up := upstreamServer(t, 0)
	apiKey, routeID := createTenantAndRoute(t, a, up.URL)

	// The other instance follows through the stream.
	deadline := time.Now().Add(2 * time.Second)
	for {
		status, _, _ := b.do("GET", "/api/x", nil, map[string]string{"X-API-Key": apiKey})
		if status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance b never served the route created on a (last status %d)", status)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if status, _ := a.admin("PATCH", "/admin/routes/"+routeID, map[string]any{"path": "/v2"}); status != 200 {
		t.Fatalf("patch route: %d", status)
	}
	_, sa := a.admin("GET", "/admin/status", nil)
	deadline = time.Now().Add(2 * time.Second)
	for {
		_, sb := b.admin("GET", "/admin/status", nil)
		if sb["stateHash"] == sa["stateHash"] && sb["appliedSeq"] == sa["appliedSeq"] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("state hashes differ: a=%v b=%v", sa, sb)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// `gateway replay` prints exactly GET /admin/state.
	_, _, live := a.do("GET", "/admin/state", nil, map[string]string{"X-Admin-Key": testAdminKey})
	var out bytes.Buffer
	if code := run(context.Background(), []string{"replay"}, envOf(a.env), &out, io.Discard); code != 0 {
		t.Fatalf("replay exit %d", code)
	}
	if !jsonEqual(t, live, out.Bytes()) {
		t.Fatalf("replay differs from /admin/state:\n%s\n%s", live, out.Bytes())
	}
	_, _, at2 := a.do("GET", "/admin/state?at=2", nil, map[string]string{"X-Admin-Key": testAdminKey})
	out.Reset()
	if code := run(context.Background(), []string{"replay", "--until-seq", "2"}, envOf(a.env), &out, io.Discard); code != 0 {
		t.Fatalf("replay --until-seq exit %d", code)
	}
	if !jsonEqual(t, at2, out.Bytes()) {
		t.Fatalf("replay --until-seq 2 differs from /admin/state?at=2:\n%s\n%s", at2, out.Bytes())
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("not JSON: %s", a)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("not JSON: %s", b)
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return bytes.Equal(xb, yb)
}
