package proxy

import (
	"bufio"
	"bytes"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/projections"
	"github.com/tenantgate/gateway/proxy/framing"
)

func TestJoinPath(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, base, path, want string
	}{
		{name: "no base", base: "", path: "/a/b", want: "/a/b"},
		{name: "slash base", base: "/", path: "/a", want: "/a"},
		{name: "base", base: "/base", path: "/api/users/7", want: "/base/api/users/7"},
		{name: "base with slash", base: "/base/", path: "/x", want: "/base/x"},
		{name: "root request", base: "/base", path: "/", want: "/base/"},
		{name: "empty request", base: "", path: "", want: "/"},
		{name: "many slashes", base: "/b//", path: "//x", want: "/b/x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := string(joinPath(nil, tc.base, tc.path)); got != tc.want {
				t.Fatalf("joinPath(%q, %q) = %q, want %q", tc.base, tc.path, got, tc.want)
			}
		})
	}
}

func TestExpand(t *testing.T) {
	t.Parallel()
	x := &exchange{
		tenant:    &projections.Tenant{ID: "t1", Name: "acme"},
		route:     &routeState{Route: &projections.Route{ID: "r1"}},
		requestID: []byte("req-9"),
	}
	for _, tc := range []struct {
		name, in, want string
		name2          string // the tenant's name, when not "acme"
	}{
		{name: "plain", in: "prod", want: "prod"},
		{name: "all", in: "${tenant.id}|${tenant.name}|${route.id}|${request.id}", want: "t1|acme|r1|req-9"},
		{name: "unknown kept", in: "a${nope}b", want: "a${nope}b"},
		{name: "unterminated", in: "a${tenant.id", want: "a${tenant.id"},
		{name: "adjacent", in: "${route.id}${route.id}", want: "r1r1"},
		{name: "dollar alone", in: "$5 ${", want: "$5 ${"},
		{name: "control characters in a name neutralized", in: "${tenant.name}", want: "evil  X-Injected: 1", name2: "evil\r\nX-Injected: 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			x := *x
			if tc.name2 != "" {
				x.tenant = &projections.Tenant{ID: "t1", Name: tc.name2}
			}
			if got := string(expand(nil, tc.in, &x)); got != tc.want {
				t.Fatalf("expand(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestRewritePath(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, pattern, repl, path, want string
	}{
		{name: "contract example", pattern: "^/api/users(.*)$", repl: "/v2/users$1", path: "/api/users/7", want: "/v2/users/7"},
		{name: "no match leaves path", pattern: "^/nope", repl: "/x", path: "/api", want: "/api"},
		{name: "leading slash restored", pattern: "^/api/", repl: "", path: "/api/x", want: "/x"},
		{name: "named group", pattern: "^/(?P<v>v[0-9])/(.*)$", repl: "/${2}/${v}", path: "/v1/items", want: "/items/v1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := rewritePath(regexp.MustCompile(tc.pattern), tc.repl, tc.path); got != tc.want {
				t.Fatalf("rewrite %q = %q, want %q", tc.path, got, tc.want)
			}
		})
	}
}

// FuzzRewrite drives the path rewrite and the base-path join with arbitrary
// patterns, replacements and paths: no panic, and the result always starts
// with the base and exactly one slash.
func FuzzRewrite(f *testing.F) {
	f.Add("^/api/users(.*)$", "/v2/users$1", "/base", "/api/users/7")
	f.Add("(a*)*", "$1$1$1", "", "/aaaa")
	f.Add(".*", "${tenant.id}", "/b/", "//x//y")
	f.Add("^$", "", "/", "")
	f.Fuzz(func(t *testing.T, pattern, repl, base, path string) {
		re, err := regexp.Compile(pattern)
		if err != nil {
			return
		}
		out := rewritePath(re, repl, path)
		if !strings.HasPrefix(out, "/") {
			t.Fatalf("rewrite result %q has no leading slash", out)
		}
		joined := string(joinPath(nil, base, out))
		head := strings.TrimRight(base, "/") + "/"
		if !strings.HasPrefix(joined, head) || strings.HasPrefix(joined[len(head):], "/") {
			t.Fatalf("join(%q, %q) = %q: not base + exactly one slash", base, out, joined)
		}
	})
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{name: "defaults", ok: true},
		{name: "trusted CIDR and IP", cfg: Config{TrustedProxies: []string{"10.0.0.0/8", "::1", " 192.168.1.1 "}}, ok: true},
		{name: "bad trusted", cfg: Config{TrustedProxies: []string{"not-an-ip"}}},
		{name: "bad CIDR", cfg: Config{TrustedProxies: []string{"10.0.0.0/99"}}},
		{name: "tiny header limit", cfg: Config{MaxHeaderBytes: 10}},
		{name: "negative body", cfg: Config{MaxBodyBytes: -2}},
		{name: "no body limit", cfg: Config{MaxBodyBytes: NoLimit}, ok: true},
		{name: "replay over body limit", cfg: Config{MaxBodyBytes: 1 << 10, MaxReplayBytes: 1 << 20}},
		{name: "small body limit clamps the replay default", cfg: Config{MaxBodyBytes: 1 << 10}, ok: true},
		{name: "negative timeout", cfg: Config{ReadTimeout: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := New(tc.cfg, Deps{Snapshots: newWorld(t)})
			if (err == nil) != tc.ok {
				t.Fatalf("New err = %v, want ok=%v", err, tc.ok)
			}
		})
	}
	if _, err := New(Config{}, Deps{}); err == nil {
		t.Fatal("New without Snapshots succeeded")
	}
}

func TestStripRequest(t *testing.T) {
	t.Parallel()
	const raw = "GET /x HTTP/1.1\r\nHost: h\r\nConnection: close, X-Private\r\nX-Private: 1\r\nKeep-Alive: 5\r\n" +
		"TE: trailers\r\nUpgrade: ws\r\nProxy-Authorization: b\r\nX-API-Key: k\r\nX-Admin-Key: a\r\nExpect: 100-continue\r\n" +
		"Content-Length: 0\r\nX-Keep: yes\r\n\r\n"
	for _, tc := range []struct {
		name   string
		parsed bool // from the wire (raw headers kept) or built in code
	}{
		{name: "parsed from the wire", parsed: true},
		{name: "built in code"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var orig fasthttp.RequestHeader
			if tc.parsed {
				if err := orig.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
					t.Fatal(err)
				}
			} else {
				for _, kv := range [][2]string{{"Connection", "X-Private"}, {"X-Private", "1"}, {"Keep-Alive", "5"}, {"TE", "trailers"},
					{"Upgrade", "ws"}, {"Proxy-Authorization", "b"}, {"X-API-Key", "k"}, {"X-Admin-Key", "a"}, {"Expect", "100-continue"}, {"X-Keep", "yes"}} {
					orig.Set(kv[0], kv[1])
				}
			}
			var up fasthttp.RequestHeader
			orig.CopyTo(&up)
			present := scanHeaders(&orig).present
			stripRequest(&orig, &up, present)
			for _, h := range []string{"Connection", "X-Private", "Keep-Alive", "TE", "Upgrade", "Proxy-Authorization", "X-API-Key", "X-Admin-Key", "Expect"} {
				if v := up.Peek(h); len(v) > 0 {
					t.Errorf("%s survived: %q", h, v)
				}
			}
			if up.ConnectionClose() {
				t.Error("Connection: close would be sent upstream")
			}
			if string(up.Peek("X-Keep")) != "yes" {
				t.Error("X-Keep lost")
			}
			// Even when a scan finds nothing, the key headers go.
			var again fasthttp.RequestHeader
			orig.CopyTo(&again)
			stripRequest(&orig, &again, 0)
			if len(again.Peek("X-API-Key")) > 0 || len(again.Peek("X-Admin-Key")) > 0 {
				t.Error("a key header survived an empty scan")
			}
		})
	}
}

func TestScanHeadersFindsNamesInAnyCase(t *testing.T) {
	t.Parallel()
	var h fasthttp.RequestHeader
	raw := "GET / HTTP/1.1\r\nHost: h\r\nx-api-KEY: k\r\nCONNECTION: x\r\nX-Keep: 1\r\n\r\n"
	if err := h.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		t.Fatal(err)
	}
	present := scanHeaders(&h).present
	want := dropSet(1<<dropIndex([]byte("X-Api-Key")) | 1<<dropIndex([]byte("Connection")))
	if present != want {
		t.Fatalf("scanHeaders = %b; want %b", present, want)
	}
}

func TestHeaderEditsApplyInOrder(t *testing.T) {
	t.Parallel()
	e := compileHeaderOps(&events.HeaderOps{
		Remove: []string{"x-drop"},
		Set:    map[string]string{"x-zeta": "z", "X-ALPHA": "${route.id}", "x-drop": "again"},
		Add:    map[string]string{"x-multi": "${tenant.id}"},
	})
	if got := []string{string(e.set[0].name), string(e.set[1].name), string(e.set[2].name)}; !slices.Equal(got, []string{"X-Alpha", "X-Drop", "X-Zeta"}) {
		t.Fatalf("set names %q, want canonical and sorted", got)
	}
	var h fasthttp.RequestHeader
	h.Set("X-Drop", "old")
	h.Set("X-Multi", "first")
	x := &exchange{tenant: &projections.Tenant{ID: "t1"}, route: &routeState{Route: &projections.Route{ID: "r1"}}}
	applyHeaderEdits(&h, e, x, nil)
	var lines []string
	for k, v := range h.All() {
		lines = append(lines, string(k)+": "+string(v))
	}
	want := []string{"X-Multi: first", "X-Alpha: r1", "X-Drop: again", "X-Zeta: z", "X-Multi: t1"}
	if !slices.Equal(lines, want) {
		t.Fatalf("headers %q, want %q", lines, want)
	}
}

// FuzzScanHeadersAgreesWithPeek: the API key and request id the scan picks
// up are what fasthttp's Peek returns, for any header block that both the
// framing guard and fasthttp accept.
func FuzzScanHeadersAgreesWithPeek(f *testing.F) {
	for _, s := range []string{
		"X-API-Key: k\r\nX-Request-Id: r\r\n",
		"x-api-key:\t k \t\r\nx-request-id:r  \r\n",
		"X-API-Key: first\r\nX-Api-Key: second\r\nX-Request-ID: a\r\nX-Request-Id: b\r\n",
		"X-API-Key:\r\nX-Request-Id: \r\n",
		"X-API-Keys: no\r\nX-Request-Idx: no\r\n",
		"Cookie: c\r\nX-API-KEY: k k\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, block string) {
		head := "GET / HTTP/1.1\r\nHost: h\r\n" + block + "\r\n"
		var h fasthttp.RequestHeader
		if !framing.Passes([]byte(head)) || h.Read(bufio.NewReader(strings.NewReader(head))) != nil {
			return
		}
		s := scanHeaders(&h)
		if got, want := s.apiKey, h.Peek(HeaderAPIKey); !bytes.Equal(got, want) {
			t.Fatalf("api key %q, Peek %q", got, want)
		}
		if got, want := s.requestID, h.Peek("X-Request-Id"); !bytes.Equal(got, want) {
			t.Fatalf("request id %q, Peek %q", got, want)
		}
	})
}
