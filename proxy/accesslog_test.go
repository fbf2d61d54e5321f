package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/projections"
)

// logRoute is a route's state with what the access line reads of it.
func logRoute(tenant, route string, upstreams ...string) *routeState {
	r := &projections.Route{ID: route, RouteSpec: events.RouteSpec{TenantID: tenant}}
	s := &routeState{Route: r, logIDs: appendLogIDs(nil, tenant, route)}
	for _, u := range upstreams {
		r.Upstreams = append(r.Upstreams, events.Upstream{URL: u})
		s.logURLs = append(s.logURLs, appendJSONString(nil, u))
	}
	return s
}

// exchangeFor is a finished exchange of tenant t1 on route (nil: none
// matched), tried at upstream (none when "").
func exchangeFor(id string, route *routeState, upstream string) *exchange {
	x := &exchange{requestID: []byte(id), method: "GET", upstream: -1, attempts: 2, status: 503,
		tenant: &projections.Tenant{ID: "t1"}, route: route}
	if upstream != "" {
		x.upstream = 0
	}
	return x
}

// slogLine is the line observe writes through slog's JSONHandler.
func slogLine(t *testing.T, x *exchange, tenant, route string, at time.Time, d time.Duration) string {
	t.Helper()
	var b bytes.Buffer
	r := slog.NewRecord(at, slog.LevelInfo, "proxy", 0)
	r.AddAttrs(
		slog.String("request_id", string(x.requestID)), slog.String("method", x.method),
		slog.String("tenant", tenant), slog.String("route", route), slog.String("upstream", x.upstreamURL()),
		slog.Int("attempts", x.attempts), slog.Int("status", x.status), slog.String("code", x.code),
		slog.Duration("duration", d),
	)
	if x.streaming {
		r.AddAttrs(slog.Int64("bytes_out", x.streamed))
	}
	if err := slog.NewJSONHandler(&b, nil).Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestAccessLineIsSlogsJSON(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 27, 8, 15, 21, 123456789, time.UTC)
	for _, tc := range []struct {
		name     string
		id, code string
		upstream string
		at       time.Time
	}{
		{name: "plain", id: "0190a0b0-7c1e", upstream: "http://127.0.0.1:9001/base", at: at},
		{name: "quote and backslash", id: `a"b\c`, code: "fallback", at: at},
		{name: "control characters", id: "a\x00\x01\x1f\n\r\tb\x7f", at: at},
		{name: "invalid UTF-8", id: "a\xff\xfeb\xe2\x82", at: at},
		{name: "line separators and non-ASCII", id: "a\u2028b\u2029c é 日本 😀", at: at},
		{name: "HTML characters stay", id: "<a&b>", at: at},
		{name: "other zone", id: "z", at: at.In(time.FixedZone("x", -5*3600-30*60))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// A request that matched a route: its fields are the route's,
			// encoded once.
			x := exchangeFor(tc.id, logRoute("t1", "r1", tc.upstream), tc.upstream)
			x.code = tc.code
			want := slogLine(t, x, "t1", "r1", tc.at, 1234567*time.Nanosecond)
			if got := string(appendAccessLine(nil, x, tc.at, 1234567*time.Nanosecond)); got != want {
				t.Fatalf("\ngot  %s\nwant %s", got, want)
			}
			// One refused before a route matched.
			x = exchangeFor(tc.id, nil, "")
			x.code = tc.code
			want = slogLine(t, x, "t1", "", tc.at, 1234567*time.Nanosecond)
			if got := string(appendAccessLine(nil, x, tc.at, 1234567*time.Nanosecond)); got != want {
				t.Fatalf("without a route:\ngot  %s\nwant %s", got, want)
			}
		})
	}
}

func TestAccessLogWriterGetsOneLinePerRequestAndNoKey(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	up := newUpstream(t, "u", nil)
	ten, key := w.tenant("acme")
	rid := w.route(events.RouteSpec{TenantID: ten, Path: "/ok", Upstreams: ups(up.URL)})
	var access, errs syncBuffer
	gw, _ := gateway(t, Config{AccessLog: &access, Log: slog.New(slog.NewJSONHandler(&errs, nil))}, Deps{Snapshots: w})

	for range 3 {
		get(t, gw+"/ok/x", key)
	}
	get(t, gw+"/x", "gw_wrong_key_123")

	text := access.String()
	if strings.Contains(text, key) || strings.Contains(text, "gw_wrong_key_123") {
		t.Fatal("the access log contains an API key")
	}
	if errs.String() != "" {
		t.Fatalf("access lines also went to Log: %s", errs.String())
	}
	lines := strings.Split(strings.TrimSpace(text), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d access-log lines for 4 requests:\n%s", len(lines), text)
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatalf("not JSON: %v: %s", err, lines[0])
	}
	if first["msg"] != "proxy" || first["tenant"] != ten || first["route"] != rid || first["upstream"] != up.URL || first["status"] != float64(200) {
		t.Fatalf("first line: %v", first)
	}
}

func BenchmarkAccessLine(b *testing.B) {
	x := exchangeFor("3f2a9c0d1e4b5a6f-1a2b",
		logRoute("0b7c2f4e-9a1d-4c3b-8e6f-5d2a1b0c9e8f", "7d1e3a5c-2b4f-4e6a-9c8d-1f0e2d3c4b5a", "http://127.0.0.1:18081/a"), "http://127.0.0.1:18081/a")
	at := time.Date(2026, 11, 27, 8, 15, 21, 123456789, time.UTC)
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = appendAccessLine(buf[:0], x, at, 1234567)
	}
}

// FuzzAccessLineIsSlogsJSON holds the access line's string encoding (a word
// at a time where it can) to slog's for any request id and upstream.
func FuzzAccessLineIsSlogsJSON(f *testing.F) {
	for _, s := range []string{"", "0190a0b0-7c1e-4a5b", `abcdefg"hijklmno`, "abcdefgh\\ijklmnop", "abcdefghijklmno\x1f",
		"abcdefg\x7fhijklmno", "abcdefgé日本😀\u2028xyzxyzxy", "a\xff\xfeb\xe2\x82cdefghijk", "http://127.0.0.1:9001/base"} {
		f.Add(s, s+s)
	}
	at := time.Date(2026, 11, 27, 8, 15, 21, 123456789, time.UTC)
	f.Fuzz(func(t *testing.T, id, upstream string) {
		x := exchangeFor(id, logRoute("t1", upstream, upstream), upstream)
		for _, streamed := range []bool{false, true} { // a stream's line has its bytes
			x.streaming, x.streamed = streamed, int64(len(id))<<20
			got := string(appendAccessLine(nil, x, at, time.Millisecond))
			if want := slogLine(t, x, "t1", upstream, at, time.Millisecond); got != want {
				t.Fatalf("\ngot  %s\nwant %s", got, want)
			}
		}
	})
}
