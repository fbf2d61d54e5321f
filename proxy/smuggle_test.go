package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tenantgate/gateway/events"
)

// TestRawSocketCorpus writes malformed and ambiguous requests on raw
// connections, served as cmd/gateway serves (through the framing guard):
// each is refused with the status the guard gives it (only tab-separated,
// upper-case chunked is well framed); the upstream must never receive the
// request hidden in the body ("/smuggled"), and the gateway must keep
// serving. cmd/gateway's framing tests hold the full corpus.
func TestRawSocketCorpus(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	up := newUpstream(t, "u", nil)
	ten, key := w.tenant("acme")
	w.route(events.RouteSpec{TenantID: ten, Path: "/", Upstreams: ups(up.URL)})
	gw, _ := gateway(t, Config{}, Deps{Snapshots: w})
	addr := strings.TrimPrefix(gw, "http://")
	head := "POST /x HTTP/1.1\r\nHost: h\r\nX-API-Key: " + key + "\r\n"
	// smuggled has no key: when the gateway parses it as a request of its
	// own it answers 401, so the upstream can only see it if it travelled
	// hidden in another request's body.
	smuggled := "GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n"

	for _, tc := range []struct {
		name string
		raw  string
		// allowed first statuses; 0 means the connection was closed without one
		allowed []int
	}{
		{name: "CL and TE together", raw: head + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, allowed: []int{400}},
		{name: "TE and CL together", raw: head + "Transfer-Encoding: chunked\r\nContent-Length: 50\r\n\r\n0\r\n\r\n" + smuggled, allowed: []int{400}},
		{name: "two different Content-Lengths", raw: head + "Content-Length: 0\r\nContent-Length: 35\r\n\r\n" + smuggled, allowed: []int{400}},
		{name: "Content-Length list", raw: head + "Content-Length: 0, 35\r\n\r\n" + smuggled, allowed: []int{400}},
		{name: "obfuscated TE: xchunked", raw: head + "Transfer-Encoding: xchunked\r\nContent-Length: 35\r\n\r\n" + smuggled, allowed: []int{400}},
		{name: "obfuscated TE: space before colon", raw: head + "Transfer-Encoding : chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n" + smuggled, allowed: []int{400}},
		{name: "obfuscated TE: chunked, identity", raw: head + "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + smuggled, allowed: []int{400}},
		{name: "obfuscated TE: tab and case", raw: head + "Transfer-Encoding:\tCHUNKED\r\n\r\n0\r\n\r\n" + smuggled, allowed: []int{200}},
		{name: "obfuscated TE: line folding", raw: head + "Transfer-Encoding:\r\n chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n" + smuggled, allowed: []int{400}},
		{name: "newline in chunk extension", raw: head + "Transfer-Encoding: chunked\r\n\r\n5;ext\nx\r\nhello\r\n0\r\n\r\n" + smuggled, allowed: []int{400}},
		{name: "bare LF line endings", raw: "POST /x HTTP/1.1\nHost: h\nX-API-Key: " + key + "\nContent-Length: 35\n\n" + smuggled, allowed: []int{400}},
		{name: "one bare LF", raw: "GET /x HTTP/1.1\r\nHost: h\nX-API-Key: " + key + "\r\n\r\n", allowed: []int{400}},
		{name: "negative Content-Length", raw: head + "Content-Length: -35\r\n\r\n" + smuggled, allowed: []int{400}},
		{name: "plus-signed Content-Length", raw: head + "Content-Length: +35\r\n\r\n" + smuggled, allowed: []int{400}},
		{name: "NUL in header", raw: head + "X-Evil: a\x00b\r\nContent-Length: 0\r\n\r\n", allowed: []int{400}},
		{name: "key header with space before colon", raw: "GET /x HTTP/1.1\r\nHost: h\r\nX-API-Key: " + key + "\r\nX-Admin-Key : leaked\r\n\r\n", allowed: []int{400}},
		{name: "Connection with space before colon", raw: "GET /x HTTP/1.1\r\nHost: h\r\nX-API-Key: " + key + "\r\nConnection : X-Foo\r\n\r\n", allowed: []int{400}},
		{name: "oversized header", raw: head + "X-Big: " + strings.Repeat("a", 64<<10) + "\r\n\r\n", allowed: []int{431}},
		{name: "garbage bytes", raw: "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n", allowed: []int{400}},
		{name: "request line only garbage", raw: "GET\r\n\r\n", allowed: []int{400}},
		{name: "HTTP/0.9 style", raw: "GET /x\r\n\r\n", allowed: []int{400}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			statuses := rawStatuses(t, addr, tc.raw)
			first := 0
			if len(statuses) > 0 {
				first = statuses[0]
			}
			ok := false
			for _, s := range tc.allowed {
				ok = ok || s == first
			}
			if !ok {
				t.Errorf("first response %d (all %v), want one of %v", first, statuses, tc.allowed)
			}
		})
	}
	t.Cleanup(func() {
		up.mu.Lock()
		defer up.mu.Unlock()
		for _, s := range up.got {
			if strings.Contains(s.Path, "smuggled") {
				t.Errorf("the upstream received a smuggled request: %s %s", s.Method, s.Path)
			}
			for name := range s.Header {
				if strings.Contains(strings.ToLower(name), "key") {
					t.Errorf("the upstream received header %q (%s %s %v)", name, s.Method, s.Path, s.Header)
				}
			}
		}
		// The gateway still serves (checked after every case ran).
	})
	t.Run("still serving", func(t *testing.T) {
		t.Parallel()
		if r := get(t, gw+"/x", key); r.status != 200 {
			t.Fatalf("gateway stopped serving: %d", r.status)
		}
	})
}

// rawStatuses writes raw and collects the statuses of the responses that
// follow until the server closes or goes quiet.
func rawStatuses(t *testing.T, addr, raw string) []int {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		return nil // reset while writing: rejected
	}
	br := bufio.NewReader(c)
	var out []int
	for i := 0; i < 4; i++ {
		wait := 5 * time.Second
		if i > 0 {
			wait = 500 * time.Millisecond // a pipelined answer comes at once
		}
		_ = c.SetReadDeadline(time.Now().Add(wait))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return out
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		out = append(out, resp.StatusCode)
	}
	return out
}
