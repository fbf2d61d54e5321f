package proxy

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/tenantgate/gateway/events"
)

// gatewayOnListener is gateway served on p.Listener.
func gatewayOnListener(t *testing.T, cfg Config, deps Deps) string {
	t.Helper()
	cfg.Log = slog.New(slog.DiscardHandler)
	p, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	app := fiber.New(p.FiberConfig())
	app.Use(p.Handler)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.ServeListener(app, ln) }()
	t.Cleanup(func() { _ = app.ShutdownWithTimeout(5 * time.Second) })
	return "http://" + ln.Addr().String()
}

// closedAfter reads c until the gateway closes it and returns how long that took.
func closedAfter(t *testing.T, c net.Conn) time.Duration {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("connection not closed by the gateway: %v", err)
	}
	return time.Since(start)
}

func TestListenerTimeouts(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	slow := newUpstream(t, "slow", func(rw http.ResponseWriter, r *http.Request) {
		time.Sleep(600 * time.Millisecond)
		rw.WriteHeader(200)
	})
	up := newUpstream(t, "u", nil)
	ten, key := w.tenant("acme")
	w.route(events.RouteSpec{TenantID: ten, Path: "/slow", Upstreams: ups(slow.URL)})
	w.route(events.RouteSpec{TenantID: ten, Path: "/", Upstreams: ups(up.URL)})
	const timeout = 300 * time.Millisecond
	gw := gatewayOnListener(t, Config{ReadTimeout: timeout, IdleTimeout: timeout, WriteTimeout: timeout}, Deps{Snapshots: w})
	addr := strings.TrimPrefix(gw, "http://")
	dial := func(t *testing.T) net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	request := "GET /x HTTP/1.1\r\nHost: h\r\nX-API-Key: " + key + "\r\n\r\n"

	for _, tc := range []struct {
		name string
		run  func(t *testing.T)
	}{
		{name: "headers never finished: cut after ReadTimeout while others are served", run: func(t *testing.T) {
			c := dial(t)
			if _, err := io.WriteString(c, "GET /x HTTP/1.1\r\nHost: h\r\nX-Slow: "); err != nil {
				t.Fatal(err)
			}
			if r := get(t, gw+"/x", key); r.status != 200 {
				t.Fatalf("another client while one dawdles: %d", r.status)
			}
			if d := closedAfter(t, c); d > timeout+time.Second {
				t.Fatalf("slow client kept for %v", d)
			}
		}},
		{name: "headers trickled byte by byte: the whole request is bounded", run: func(t *testing.T) {
			c := dial(t)
			start := time.Now()
			trickle := "GET /x HTTP/1.1\r\nX-Slow: " + strings.Repeat("a", 200)
			go func() {
				for i := range len(trickle) { // a byte per 10 ms: each read is quick, the request never ends
					if _, err := c.Write([]byte{trickle[i]}); err != nil {
						return
					}
					time.Sleep(10 * time.Millisecond)
				}
			}()
			closedAfter(t, c)
			if d := time.Since(start); d > timeout+time.Second {
				t.Fatalf("trickling client kept for %v", d)
			}
		}},
		{name: "keep-alive: requests within IdleTimeout served, idle connection closed after it", run: func(t *testing.T) {
			c := dial(t)
			br := bufio.NewReader(c)
			for range 3 {
				if _, err := io.WriteString(c, request); err != nil {
					t.Fatal(err)
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("status %d", resp.StatusCode)
				}
				time.Sleep(timeout / 2) // idle, but less than IdleTimeout
			}
			if d := closedAfter(t, c); d > timeout+time.Second {
				t.Fatalf("idle connection kept for %v", d)
			}
		}},
		{name: "never early: an idle connection lasts at least IdleTimeout", run: func(t *testing.T) {
			c := dial(t)
			if _, err := io.WriteString(c, request); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if d := closedAfter(t, c); d < timeout-10*time.Millisecond || d > timeout+time.Second {
				t.Fatalf("idle connection closed after %v, want %v..%v", d, timeout, timeout+time.Second)
			}
		}},
		{name: "a slow upstream is not a slow client", run: func(t *testing.T) {
			if r := get(t, gw+"/slow", key); r.status != 200 {
				t.Fatalf("slow upstream answer (longer than ReadTimeout): %d %s", r.status, r.body)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t)
		})
	}
}
