package proxy

import (
	"bufio"
	"encoding/hex"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/projections"
)

// One keep-alive connection remembers its last key's digest: switching keys
// on it must authenticate each key as its own tenant, and a key revoked
// between two requests of the connection is refused at once.
func TestKeyMemoOnOneConnection(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	upA := newUpstream(t, "a", nil)
	upB := newUpstream(t, "b", nil)
	tenA, keyA := w.tenant("alpha")
	tenB, keyB := w.tenant("beta")
	w.route(events.RouteSpec{TenantID: tenA, Path: "/", Upstreams: ups(upA.URL)})
	w.route(events.RouteSpec{TenantID: tenB, Path: "/", Upstreams: ups(upB.URL)})
	gw := gatewayOnListener(t, Config{}, Deps{Snapshots: w})

	roundTrip := keepAlive(t, gw)
	send := func(key string) int {
		t.Helper()
		return roundTrip("GET /x HTTP/1.1\r\nHost: gw\r\nX-API-Key: " + key + "\r\n\r\n")
	}
	count := func(u *upstream) int { u.mu.Lock(); defer u.mu.Unlock(); return len(u.got) }

	steps := []struct {
		key          string
		status       int
		wantA, wantB int // requests each upstream has seen after the step
	}{
		{keyA, 200, 1, 0},
		{keyA, 200, 2, 0},
		{keyB, 200, 2, 1},
		{keyA[:len(keyA)-1] + "x", 403, 2, 1}, // same length, last byte differs
		{keyA[:len(keyA)-1], 403, 2, 1},       // a prefix of the remembered key
		{keyA, 200, 3, 1},
	}
	for i, s := range steps {
		if got := send(s.key); got != s.status {
			t.Fatalf("step %d: status %d, want %d", i, got, s.status)
		}
		if a, b := count(upA), count(upB); a != s.wantA || b != s.wantB {
			t.Fatalf("step %d: upstreams saw a=%d b=%d, want %d %d", i, a, b, s.wantA, s.wantB)
		}
	}

	// Rotate A's key: the connection's remembered digest must not keep it in.
	h := projections.KeyHash([]byte("gw_rotated_key_for_alpha"))
	w.mu.Lock()
	w.append(events.TenantAPIKeyRotated, tenA, tenA, 2, events.TenantAPIKeyRotatedData{APIKeyHash: hex.EncodeToString(h[:]), APIKeyPrefix: "gw_rota"})
	w.mu.Unlock()
	if got := send(keyA); got != 403 {
		t.Fatalf("revoked key on the same connection: status %d, want 403", got)
	}
	if got := send("gw_rotated_key_for_alpha"); got != 200 {
		t.Fatalf("new key on the same connection: status %d, want 200", got)
	}
}

func TestKeyMemoDigest(t *testing.T) {
	t.Parallel()
	var m keyMemo
	long := strings.Repeat("k", maxMemoKey+1)
	for _, k := range []string{"a", "a", "b", "", "ab", "a", long, long, "a"} {
		if got, want := m.digest([]byte(k)), projections.KeyHash([]byte(k)); got != want {
			t.Fatalf("digest(%q) wrong", k)
		}
	}
	if len(m.key) > maxMemoKey {
		t.Fatalf("remembered a %d-byte key", len(m.key))
	}
}

// The client address a Listener connection remembers goes into
// X-Forwarded-For on every request of the connection, trusted or not.
func TestPeerMemoOnOneConnection(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		trusted []string
		want    string
	}{
		{name: "untrusted client: its header replaced", want: "127.0.0.1"},
		{name: "trusted proxy: its header extended", trusted: []string{"127.0.0.1"}, want: "10.0.0.1, 127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			up := newUpstream(t, "u", nil)
			ten, key := w.tenant("acme")
			w.route(events.RouteSpec{TenantID: ten, Path: "/", Upstreams: ups(up.URL)})
			gw := gatewayOnListener(t, Config{TrustedProxies: tc.trusted}, Deps{Snapshots: w})
			roundTrip := keepAlive(t, gw)
			for i := range 3 {
				status := roundTrip("GET /x HTTP/1.1\r\nHost: gw\r\nX-API-Key: " + key + "\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n")
				if got := up.last(t).Header.Get("X-Forwarded-For"); status != 200 || got != tc.want {
					t.Fatalf("request %d: status %d, X-Forwarded-For %q, want %q", i, status, got, tc.want)
				}
			}
		})
	}
}

// keepAlive dials the gateway at gw once and returns a function that sends a
// raw request on that connection and returns the response's status.
func keepAlive(t *testing.T, gw string) func(raw string) int {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(gw, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	rd := bufio.NewReader(conn)
	return func(raw string) int {
		t.Helper()
		if _, err := conn.Write([]byte(raw)); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(rd, nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
}
