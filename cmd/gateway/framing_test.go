package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// recorder is an upstream that records every request it received whole
// (its body read to the end), by method and request URI.
type recorder struct {
	*httptest.Server
	mu   sync.Mutex
	seen []string
}

func newRecorder(t *testing.T) *recorder {
	t.Helper()
	r := &recorder{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return // cut short: not a request the upstream could act on
		}
		r.mu.Lock()
		r.seen = append(r.seen, req.Method+" "+req.URL.RequestURI()+" "+strconv.Itoa(len(body)))
		r.mu.Unlock()
		fmt.Fprint(w, "ok")
	}))
	t.Cleanup(r.Close)
	return r
}

// take returns what the upstream received since the last take.
func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.seen
	r.seen = nil
	return out
}

// rawResult is what a client saw on one connection.
type rawResult struct {
	statuses []int
	codes    []string // each answer's error code, "" when not the error JSON
	closed   bool     // the connection ended after the last answer
}

// rawExchange writes payload on a new connection to addr and reads answers
// until the connection ends, or until want answers came and nothing more
// arrives within the wait; it never waits for a smuggled answer that does
// not come longer than that.
func rawExchange(t *testing.T, addr string, payload []byte, want int) rawResult {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	go func() { _, _ = conn.Write(payload) }() // the gateway may stop reading
	br := bufio.NewReader(conn)
	var res rawResult
	for {
		wait := 10 * time.Second
		if len(res.statuses) >= want {
			wait = 700 * time.Millisecond // an answer too many would come about at once
		}
		_ = conn.SetReadDeadline(time.Now().Add(wait))
		if _, err := br.Peek(1); err != nil {
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout():
				if len(res.statuses) < want {
					t.Fatalf("only %d of %d answers within %v", len(res.statuses), want, wait)
				}
			case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET):
				res.closed = true
			default:
				t.Fatalf("reading answers: %v", err)
			}
			return res
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("malformed answer after %d: %v", len(res.statuses), err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		res.statuses = append(res.statuses, resp.StatusCode)
		res.codes = append(res.codes, errorCode(body))
		if resp.Close {
			_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, err := br.Peek(1); err == nil {
				t.Fatalf("data after an answer with Connection: close")
			}
			res.closed = true
			return res
		}
	}
}

func errorCode(body []byte) string {
	const key = `{"error":{"code":"`
	if !bytes.HasPrefix(body, []byte(key)) {
		return ""
	}
	rest := body[len(key):]
	if i := bytes.IndexByte(rest, '"'); i >= 0 {
		return string(rest[:i])
	}
	return ""
}

// framingGateway is a gateway with one tenant and a route /api to a
// recording upstream.
type framingGateway struct {
	gw   *instance
	up   *recorder
	addr string
	key  string
}

func startFramingGateway(t *testing.T, env map[string]string) *framingGateway {
	t.Helper()
	up := newRecorder(t)
	gw := startGateway(t, env)
	key, _ := createTenantAndRoute(t, gw, up.URL)
	up.take()
	return &framingGateway{gw: gw, up: up, addr: strings.TrimPrefix(gw.base, "http://"), key: key}
}

func (f *framingGateway) get(path string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: gw\r\nX-API-Key: " + f.key + "\r\n\r\n"
}

// TestFramingEarlyAnswersNeverLeaveABodyBehind sends requests the gateway answers
// before reading their bodies, each body made of complete requests with a
// valid key at every alignment: one answer, the connection closed, and
// nothing at the upstream.
func TestFramingEarlyAnswersNeverLeaveABodyBehind(t *testing.T) {
	t.Parallel()
	f := startFramingGateway(t, nil)
	embedded := f.get("/api/smuggled")
	early := []struct {
		name, head string
		status     int
		code       string
	}{
		{"no key", "POST /api/x HTTP/1.1\r\nHost: gw\r\n", 401, "missing_api_key"},
		{"bad key", "POST /api/x HTTP/1.1\r\nHost: gw\r\nX-API-Key: gw_not-a-key\r\n", 403, "invalid_api_key"},
		{"no route", "POST /nowhere HTTP/1.1\r\nHost: gw\r\nX-API-Key: " + f.key + "\r\n", 404, "route_not_found"},
		{"admin body over 1 MiB", "POST /admin/tenants HTTP/1.1\r\nHost: gw\r\nX-Admin-Key: " + testAdminKey + "\r\n", 413, "payload_too_large"},
		{"health", "POST /health HTTP/1.1\r\nHost: gw\r\n", 200, ""},
	}
	for _, e := range early {
		sizes := []int{8 << 10, 64 << 10, 2 << 20, 4 << 20}
		if e.status == 413 {
			sizes = []int{2 << 20, 4 << 20}
		}
		for _, size := range sizes {
			aligns := []int{0, 1, len(embedded) / 2, len(embedded) - 1}
			if size == 8<<10 {
				aligns = make([]int, len(embedded)) // every alignment
				for i := range aligns {
					aligns[i] = i
				}
			}
			for _, align := range aligns {
				body := strings.Repeat("A", align) + strings.Repeat(embedded, size/len(embedded)+1)
				body = body[:size]
				for _, chunked := range []bool{false, true} {
					var req string
					if chunked {
						if size > 64<<10 {
							continue
						}
						req = e.head + "Transfer-Encoding: chunked\r\n\r\n" + strconv.FormatInt(int64(len(body)), 16) + "\r\n" + body + "\r\n0\r\n\r\n"
					} else {
						req = e.head + "Content-Length: " + strconv.Itoa(size) + "\r\n\r\n" + body
					}
					res := rawExchange(t, f.addr, []byte(req), 1)
					where := fmt.Sprintf("%s, %d bytes at %d, chunked %v", e.name, size, align, chunked)
					if !slices.Equal(res.statuses, []int{e.status}) || res.codes[0] != e.code || !res.closed {
						t.Fatalf("%s: answers %v %v, closed %v; want one %d %s, closed", where, res.statuses, res.codes, res.closed, e.status, e.code)
					}
					if seen := f.up.take(); len(seen) != 0 {
						t.Fatalf("%s: the upstream received %d requests: %v", where, len(seen), seen[:min(3, len(seen))])
					}
				}
			}
		}
	}
}

// TestFramingCorpus sends the raw requests of the smuggling corpus:
// the answers, whether the connection closed, and exactly what reached the
// upstream.
func TestFramingCorpus(t *testing.T) {
	t.Parallel()
	f := startFramingGateway(t, nil)
	key := "X-API-Key: " + f.key + "\r\n"
	post := "POST /api/p HTTP/1.1\r\nHost: gw\r\n" + key
	smuggled := f.get("/api/x-smuggled")
	cases := []struct {
		name     string
		payload  string
		statuses []int
		codes    []string
		closed   bool
		upstream []string
	}{
		{name: "CL and TE", payload: post + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
			statuses: []int{400}, codes: []string{"invalid_request"}, closed: true},
		{name: "TE and CL", payload: post + "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n" + smuggled,
			statuses: []int{400}, codes: []string{"invalid_request"}, closed: true},
		{name: "TE twice", payload: post + "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n" + smuggled,
			statuses: []int{400}, codes: []string{"invalid_request"}, closed: true},
		{name: "space before colon", payload: post + "Content-Length : " + strconv.Itoa(len(smuggled)) + "\r\n\r\n" + smuggled,
			statuses: []int{400}, codes: []string{"invalid_request"}, closed: true},
		{name: "TE folded and CL", payload: post + "Transfer-Encoding:\r\n chunked\r\nContent-Length: 3\r\n\r\nabc" + smuggled,
			statuses: []int{400}, codes: []string{"invalid_request"}, closed: true},
		{name: "bare LF", payload: strings.ReplaceAll(f.get("/api/lf"), "\r\n", "\n"),
			statuses: []int{400}, codes: []string{"invalid_request"}, closed: true},
		{name: "CL twice, equal", payload: post + "Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc" + smuggled,
			statuses: []int{400}, codes: []string{"invalid_request"}, closed: true},
		{name: "CL twice, differing", payload: post + "Content-Length: 3\r\nContent-Length: " + strconv.Itoa(3+len(smuggled)) + "\r\n\r\nabc" + smuggled,
			statuses: []int{400}, codes: []string{"invalid_request"}, closed: true},
		{name: "TE chunked, chunked", payload: post + "Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n" + smuggled,
			statuses: []int{400}, codes: []string{"invalid_request"}, closed: true},
		{name: "TE xchunked", payload: post + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" + smuggled,
			statuses: []int{400}, codes: []string{"invalid_request"}, closed: true},
		{name: "chunk size with +", payload: post + "Transfer-Encoding: chunked\r\n\r\n+3\r\nabc\r\n0\r\n\r\n" + smuggled,
			statuses: []int{400}, codes: []string{"invalid_request"}, closed: true},
		{name: "chunk size 0x", payload: post + "Transfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n" + smuggled,
			statuses: []int{400}, codes: []string{"invalid_request"}, closed: true},
		{name: "chunk extension with a bare LF", payload: post + "Transfer-Encoding: chunked\r\n\r\n3;x=y\nabc\r\n0\r\n\r\n" + smuggled,
			statuses: []int{400}, codes: []string{"invalid_request"}, closed: true},
		{name: "chunk size oversized", payload: post + "Transfer-Encoding: chunked\r\n\r\n10000000000000003\r\nabc\r\n0\r\n\r\n" + smuggled,
			statuses: []int{400}, codes: []string{"invalid_request"}, closed: true},
		{name: "space in a header name", payload: "GET /api/n HTTP/1.1\r\nHost: gw\r\n" + key + "X Y: 1\r\n\r\n" + smuggled,
			statuses: []int{400}, codes: []string{"invalid_request"}, closed: true},
		{name: "NUL in a header name", payload: "GET /api/n HTTP/1.1\r\nHost: gw\r\n" + key + "X\x00Y: 1\r\n\r\n" + smuggled,
			statuses: []int{400}, codes: []string{"invalid_request"}, closed: true},
		{name: "two spaces in the request line", payload: "GET  /api/n HTTP/1.1\r\nHost: gw\r\n" + key + "\r\n" + smuggled,
			statuses: []int{400}, codes: []string{"invalid_request"}, closed: true},
		{name: "a good request, then a bad one", payload: f.get("/api/first") + "GET /api/n HTTP/1.1\r\nHost: gw\n\r\n" + smuggled,
			statuses: []int{200, 400}, codes: []string{"", "invalid_request"}, closed: true, upstream: []string{"GET /api/first 0"}},
		{name: "TE chunked with trailing space", payload: post + "Transfer-Encoding: chunked \r\n\r\n3\r\nabc\r\n0\r\n\r\n",
			statuses: []int{200}, codes: []string{""}, upstream: []string{"POST /api/p 3"}},
		{name: "TE in upper case", payload: post + "TRANSFER-ENCODING: CHUNKED\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
			statuses: []int{200}, codes: []string{""}, upstream: []string{"POST /api/p 3"}},
		{name: "absolute-form target", payload: "GET http://" + f.addr + "/api/abs?q=1 HTTP/1.1\r\nHost: " + f.addr + "\r\n" + key + "\r\n",
			statuses: []int{200}, codes: []string{""}, upstream: []string{"GET /api/abs?q=1 0"}},
		{name: "pipelined", payload: f.get("/api/1") + post + "Content-Length: 5\r\n\r\nhello" + f.get("/api/2") +
			post + "Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\nX-T: 1\r\n\r\n" + "\r\n" + f.get("/api/3"),
			statuses: []int{200, 200, 200, 200, 200}, codes: []string{"", "", "", "", ""},
			upstream: []string{"GET /api/1 0", "POST /api/p 5", "GET /api/2 0", "POST /api/p 2", "GET /api/3 0"}},
	}
	for _, tc := range cases {
		res := rawExchange(t, f.addr, []byte(tc.payload), len(tc.statuses))
		if !slices.Equal(res.statuses, tc.statuses) || !slices.Equal(res.codes, tc.codes) || res.closed != tc.closed {
			t.Errorf("%s: answers %v %v, closed %v; want %v %v, closed %v", tc.name, res.statuses, res.codes, res.closed, tc.statuses, tc.codes, tc.closed)
		}
		if seen := f.up.take(); !slices.Equal(seen, tc.upstream) {
			t.Errorf("%s: the upstream received %q, want %q", tc.name, seen, tc.upstream)
		}
	}
	// The refusals are counted by reason.
	status, _, metrics := f.gw.do("GET", "/metrics", nil, map[string]string{"X-Admin-Key": testAdminKey})
	if status != 200 || !bytes.Contains(metrics, []byte(`gateway_http_refused_requests_total{reason="content_length_and_transfer_encoding"} 2`)) {
		t.Errorf("refusals not counted: %d\n%s", status, grepLines(metrics, "refused_requests"))
	}
	if log := f.gw.stderr.String(); strings.Contains(log, f.key) || strings.Contains(log, "x-smuggled") {
		t.Errorf("the log holds request bytes:\n%s", log)
	}
}

func grepLines(b []byte, sub string) string {
	var out []string
	for line := range strings.SplitSeq(string(b), "\n") {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// TestFramingOnTheAdminListener: the separate admin listener is guarded too, and
// a body it refuses as too large is never read as requests.
func TestFramingOnTheAdminListener(t *testing.T) {
	t.Parallel()
	adminPort := freePort(t)
	gw := startGateway(t, map[string]string{"ADMIN_PORT": strconv.Itoa(adminPort)})
	addr := "127.0.0.1:" + strconv.Itoa(adminPort)
	seq := func() any {
		req, _ := http.NewRequest("GET", "http://"+addr+"/admin/status", nil)
		req.Header.Set("X-Admin-Key", testAdminKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&st)
		return st["appliedSeq"]
	}
	create := "POST /admin/tenants HTTP/1.1\r\nHost: gw\r\nX-Admin-Key: " + testAdminKey + "\r\nContent-Length: 20\r\n\r\n" + `{"name":"smuggled!"}`
	before := seq()
	for _, size := range []int{2 << 20, 5 << 20} {
		body := strings.Repeat(create, size/len(create)+1)[:size]
		req := "POST /admin/tenants HTTP/1.1\r\nHost: gw\r\nX-Admin-Key: " + testAdminKey + "\r\nContent-Length: " + strconv.Itoa(size) + "\r\n\r\n" + body
		res := rawExchange(t, addr, []byte(req), 1)
		if !slices.Equal(res.statuses, []int{413}) {
			t.Fatalf("%d bytes: answers %v, want one 413", size, res.statuses)
		}
	}
	res := rawExchange(t, addr, []byte("POST /admin/tenants HTTP/1.1\r\nHost: gw\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"+create), 1)
	if !slices.Equal(res.statuses, []int{400}) || res.codes[0] != "invalid_request" || !res.closed {
		t.Fatalf("CL and TE on the admin listener: %v %v closed %v", res.statuses, res.codes, res.closed)
	}
	if after := seq(); after != before || before == nil {
		t.Fatalf("a smuggled admin request was applied: seq %v -> %v", before, after)
	}
	_ = gw
}

// rawUpstream answers every request 200 and records the head of each as
// it arrived on the wire, with its decoded body.
type rawUpstream struct {
	addr string
	mu   sync.Mutex
	got  []rawRequest
}

type rawRequest struct {
	head string // the request line and header fields as sent
	body string
}

func newRawUpstream(t *testing.T) *rawUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	u := &rawUpstream{addr: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var head bytes.Buffer
				br := bufio.NewReader(io.TeeReader(c, &head))
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					// The head is what the tee saw up to the empty line.
					raw := head.String()
					end := strings.Index(raw, "\r\n\r\n")
					body, _ := io.ReadAll(req.Body)
					u.mu.Lock()
					u.got = append(u.got, rawRequest{head: raw[:max(end, 0)], body: string(body)})
					u.mu.Unlock()
					head.Reset()
					head.Write(peekBuffered(br))
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				}
			}()
		}
	}()
	return u
}

// peekBuffered is what br read ahead of the request it returned.
func peekBuffered(br *bufio.Reader) []byte {
	b, _ := br.Peek(br.Buffered())
	return b
}

func (u *rawUpstream) take() []rawRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := u.got
	u.got = nil
	return out
}

// TestFramingUpstreamRequestsAreTheGatewaysOwn: whatever framing the client
// used, the upstream gets one the gateway wrote itself: a Content-Length it
// computed or chunked coding it wrote, never both, never the client's
// header, and never a key.
func TestFramingUpstreamRequestsAreTheGatewaysOwn(t *testing.T) {
	t.Parallel()
	up := newRawUpstream(t)
	gw := startGateway(t, nil)
	key, _ := createTenantAndRoute(t, gw, "http://"+up.addr)
	addr := strings.TrimPrefix(gw.base, "http://")
	head := "POST /api/f HTTP/1.1\r\nHost: gw\r\nX-API-Key: " + key + "\r\n"
	for _, tc := range []struct {
		name, payload, body string
		chunked             bool
	}{
		{"length with leading zeros", head + "Content-Length: 0005\r\n\r\nhello", "hello", false},
		{"chunked with extensions and trailer", head + "Transfer-Encoding: chunked\r\n\r\n3;a=b\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n", "abcde", true},
		{"chunked, large", head + "Transfer-Encoding: chunked\r\n\r\n" + "10000\r\n" + strings.Repeat("z", 1<<16) + "\r\n0\r\n\r\n", strings.Repeat("z", 1<<16), true},
		{"no body", "GET /api/f HTTP/1.1\r\nHost: gw\r\nX-API-Key: " + key + "\r\n\r\n", "", false},
	} {
		res := rawExchange(t, addr, []byte(tc.payload), 1)
		if !slices.Equal(res.statuses, []int{200}) {
			t.Fatalf("%s: answers %v", tc.name, res.statuses)
		}
		got := up.take()
		if len(got) != 1 {
			t.Fatalf("%s: the upstream got %d requests", tc.name, len(got))
		}
		h := strings.ToLower(got[0].head)
		lengths, codings := strings.Count(h, "\r\ncontent-length:"), strings.Count(h, "\r\ntransfer-encoding:")
		switch {
		case got[0].body != tc.body:
			t.Errorf("%s: the upstream read %d bytes of body, want %d", tc.name, len(got[0].body), len(tc.body))
		case tc.chunked && (codings != 1 || lengths != 0 || !strings.Contains(h, "\r\ntransfer-encoding: chunked")):
			t.Errorf("%s: want chunked coding alone:\n%s", tc.name, got[0].head)
		case !tc.chunked && tc.body != "" && (lengths != 1 || codings != 0 || !strings.Contains(h, "\r\ncontent-length: "+strconv.Itoa(len(tc.body)))):
			t.Errorf("%s: want one computed Content-Length:\n%s", tc.name, got[0].head)
		case strings.Contains(h, "x-api-key") || strings.Contains(h, strings.ToLower(key)):
			t.Errorf("%s: the key went upstream:\n%s", tc.name, got[0].head)
		}
	}
}
