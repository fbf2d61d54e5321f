package proxy

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/projections"
)

// brokenSnapshots hands out nil: the request path panics on it.
type brokenSnapshots struct{}

func (brokenSnapshots) Snapshot() *projections.Snapshot { return nil }

func TestPanicIsContained(t *testing.T) {
	t.Parallel()
	gw, _ := gateway(t, Config{}, Deps{Snapshots: brokenSnapshots{}})
	for range 2 { // and the server keeps serving
		r := get(t, gw+"/x", "gw_key")
		wantError(t, r, 500, "internal_error")
	}
}

// TestSlowloris: a client that never finishes its headers is cut off after
// ReadTimeout while others are served.
func TestSlowloris(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	up := newUpstream(t, "u", nil)
	ten, key := w.tenant("acme")
	w.route(events.RouteSpec{TenantID: ten, Path: "/", Upstreams: ups(up.URL)})
	gw, _ := gateway(t, Config{ReadTimeout: 300 * time.Millisecond}, Deps{Snapshots: w})
	addr := strings.TrimPrefix(gw, "http://")

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /x HTTP/1.1\r\nHost: h\r\nX-Slow: "); err != nil {
		t.Fatal(err)
	}
	if r := get(t, gw+"/x", key); r.status != 200 {
		t.Fatalf("another client while one dawdles: %d", r.status)
	}
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = io.ReadAll(c) // returns when the gateway closes the connection
	if err != nil {
		t.Fatalf("connection not closed by the gateway: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("slow client kept for %v", d)
	}
}
