package framing

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// script is a net.Conn whose reads return its chunks one by one, then EOF,
// and whose writes are recorded.
type script struct {
	net.Conn // nil: only Read, Write and the deadlines are used
	chunks   [][]byte
	written  bytes.Buffer
}

func (s *script) Read(b []byte) (int, error) {
	if len(s.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(b, s.chunks[0])
	if s.chunks[0] = s.chunks[0][n:]; len(s.chunks[0]) == 0 {
		s.chunks = s.chunks[1:]
	}
	return n, nil
}

func (s *script) Write(b []byte) (int, error)      { return s.written.Write(b) }
func (s *script) SetReadDeadline(time.Time) error  { return nil }
func (s *script) SetWriteDeadline(time.Time) error { return nil }
func (s *script) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// split cuts b into pieces of the given sizes (the last piece takes the rest).
func split(b []byte, sizes func() int) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		n := min(max(sizes(), 1), len(b))
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

// passed reads a guarded connection to its end, as a server would, with
// reads of readSize bytes: what the server got, what the guard answered,
// and the error that ended it.
func passed(t *testing.T, stream []byte, sizes func() int, readSize int) (got []byte, answered string, reasons []string, end error) {
	t.Helper()
	s := &script{chunks: split(append([]byte(nil), stream...), sizes)}
	g := New(Config{MaxHeadBytes: 1 << 10, Log: slog.New(slog.DiscardHandler), Refused: func(r string) { reasons = append(reasons, r) }})
	c := g.Conn(s)
	buf := make([]byte, readSize)
	for range 1 << 20 {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			return got, s.written.String(), reasons, err
		}
	}
	t.Fatal("the guard never ended the stream")
	return
}

const (
	get     = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
	post    = "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
	chunked = "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"5;name=value\r\nhello\r\n3\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n"
)

func TestGuard(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		stream  string
		passed  string // what reaches the server
		reason  string // the refusal, "" for none
		status  string // the guard's answer's status line, "" for none
		inBody  bool   // the refusal fails a body read instead
		wantErr error
	}{
		{name: "get", stream: get, passed: get},
		{name: "pipelined", stream: get + post + chunked + get, passed: get + post + chunked + get},
		{name: "empty lines before a request line", stream: "\r\n\r\n" + get, passed: "\r\n\r\n" + get},
		{name: "absolute-form target", stream: "GET http://example.com/a?b=1 HTTP/1.1\r\nHost: example.com\r\n\r\n",
			passed: "GET http://example.com/a?b=1 HTTP/1.1\r\nHost: example.com\r\n\r\n"},
		{name: "http/1.0", stream: "GET / HTTP/1.0\r\n\r\n", passed: "GET / HTTP/1.0\r\n\r\n"},
		{name: "chunked in upper case and with trailing space",
			stream: "POST / HTTP/1.1\r\nTransfer-Encoding: CHUNKED \r\n\r\n0\r\n\r\n" + get,
			passed: "POST / HTTP/1.1\r\nTransfer-Encoding: CHUNKED \r\n\r\n0\r\n\r\n" + get},
		{name: "CL and TE", stream: get + "POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /x-smuggled HTTP/1.1\r\n\r\n",
			passed: get, reason: ReasonLengthAndTE, status: "HTTP/1.1 400 Bad Request"},
		{name: "TE and CL", stream: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n",
			reason: ReasonLengthAndTE, status: "HTTP/1.1 400 Bad Request"},
		{name: "TE twice", stream: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
			reason: ReasonDupCoding, status: "HTTP/1.1 400 Bad Request"},
		{name: "TE chunked, chunked", stream: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
			reason: ReasonCoding, status: "HTTP/1.1 400 Bad Request"},
		{name: "TE xchunked", stream: "POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n",
			reason: ReasonCoding, status: "HTTP/1.1 400 Bad Request"},
		{name: "TE gzip, chunked", stream: "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
			reason: ReasonCoding, status: "HTTP/1.1 400 Bad Request"},
		{name: "TE on HTTP/1.0", stream: "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
			reason: ReasonCoding, status: "HTTP/1.1 400 Bad Request"},
		{name: "CL twice, equal", stream: "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
			reason: ReasonDupLength, status: "HTTP/1.1 400 Bad Request"},
		{name: "CL twice, differing", stream: "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\nabc",
			reason: ReasonDupLength, status: "HTTP/1.1 400 Bad Request"},
		{name: "CL list", stream: "POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\nabc",
			reason: ReasonLength, status: "HTTP/1.1 400 Bad Request"},
		{name: "CL signed", stream: "POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\nabc",
			reason: ReasonLength, status: "HTTP/1.1 400 Bad Request"},
		{name: "CL of 19 digits", stream: "POST / HTTP/1.1\r\nContent-Length: 1000000000000000000\r\n\r\n",
			reason: ReasonLength, status: "HTTP/1.1 400 Bad Request"},
		{name: "space before colon", stream: "POST / HTTP/1.1\r\nContent-Length : 200\r\n\r\n" + get,
			reason: ReasonHeaderName, status: "HTTP/1.1 400 Bad Request"},
		{name: "space in a name", stream: "GET / HTTP/1.1\r\nX Foo: 1\r\n\r\n",
			reason: ReasonHeaderName, status: "HTTP/1.1 400 Bad Request"},
		{name: "NUL in a name", stream: "GET / HTTP/1.1\r\nX\x00Foo: 1\r\n\r\n",
			reason: ReasonHeaderName, status: "HTTP/1.1 400 Bad Request"},
		{name: "no colon", stream: "GET / HTTP/1.1\r\nXFoo\r\n\r\n",
			reason: ReasonHeaderName, status: "HTTP/1.1 400 Bad Request"},
		{name: "NUL in a value", stream: "GET / HTTP/1.1\r\nX-Foo: a\x00b\r\n\r\n",
			reason: ReasonHeaderValue, status: "HTTP/1.1 400 Bad Request"},
		{name: "CR in a value", stream: "GET / HTTP/1.1\r\nX-Foo: a\rb\r\n\r\n",
			reason: ReasonHeaderValue, status: "HTTP/1.1 400 Bad Request"},
		{name: "obs-fold", stream: "GET / HTTP/1.1\r\nX-Foo: a\r\n b\r\n\r\n",
			reason: ReasonObsFold, status: "HTTP/1.1 400 Bad Request"},
		{name: "TE empty, folded", stream: "GET / HTTP/1.1\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: 3\r\n\r\nabc",
			reason: ReasonCoding, status: "HTTP/1.1 400 Bad Request"},
		{name: "bare LF", stream: "GET / HTTP/1.1\nHost: x\n\n", reason: ReasonBareLF, status: "HTTP/1.1 400 Bad Request"},
		{name: "bare LF after a good request", stream: get + "GET / HTTP/1.1\r\nHost: x\n\r\n", passed: get,
			reason: ReasonBareLF, status: "HTTP/1.1 400 Bad Request"},
		{name: "two spaces after the method", stream: "GET  / HTTP/1.1\r\n\r\n", reason: ReasonRequestLine, status: "HTTP/1.1 400 Bad Request"},
		{name: "two spaces before the version", stream: "GET /  HTTP/1.1\r\n\r\n", reason: ReasonRequestLine, status: "HTTP/1.1 400 Bad Request"},
		{name: "no version", stream: "GET /\r\n\r\n", reason: ReasonRequestLine, status: "HTTP/1.1 400 Bad Request"},
		{name: "HTTP/2.0", stream: "GET / HTTP/2.0\r\n\r\n", reason: ReasonVersion, status: "HTTP/1.1 400 Bad Request"},
		{name: "tab in the target", stream: "GET /a\tb HTTP/1.1\r\n\r\n", reason: ReasonRequestLine, status: "HTTP/1.1 400 Bad Request"},
		{name: "Host twice", stream: "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", reason: ReasonDupHost, status: "HTTP/1.1 400 Bad Request"},
		{name: "head too large", stream: "GET / HTTP/1.1\r\nX-Big: " + strings.Repeat("a", 1<<10) + "\r\n\r\n",
			reason: ReasonHeadTooLarge, status: "HTTP/1.1 431 Request Header Fields Too Large"},
		{name: "line never ends", stream: "GET /" + strings.Repeat("a", 2<<10),
			reason: ReasonHeadTooLarge, status: "HTTP/1.1 431 Request Header Fields Too Large"},
	}
	chunkHead := "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
	for _, c := range []struct{ name, body, ok string }{
		{"chunk size with +", "+5\r\nhello\r\n0\r\n\r\n", ""},
		{"chunk size 0x", "0x5\r\nhello\r\n0\r\n\r\n", ""},
		{"chunk size too long", "1000000000000000\r\n", ""},
		{"chunk extension with a bare LF", "5;a=b\nhello\r\n0\r\n\r\n", ""},
		{"chunk data without CRLF", "5\r\nhelloXX0\r\n\r\n", "5\r\nhello"},
		{"chunk size missing", "\r\nhello\r\n", ""},
		{"trailer with a bare LF", "0\r\nX-T: 1\n\r\n", "0\r\n"},
		{"trailer folded", "0\r\nX-T: 1\r\n folded\r\n\r\n", "0\r\n"},
	} {
		cases = append(cases, struct {
			name    string
			stream  string
			passed  string
			reason  string
			status  string
			inBody  bool
			wantErr error
		}{name: c.name, stream: chunkHead + c.body, passed: chunkHead + c.ok, inBody: true, wantErr: ErrMalformedBody})
	}
	sizes := map[string]func(*rand.Rand) func() int{
		"whole":  func(*rand.Rand) func() int { return func() int { return 1 << 30 } },
		"bytes":  func(*rand.Rand) func() int { return func() int { return 1 } },
		"random": func(r *rand.Rand) func() int { return func() int { return 1 + r.IntN(40) } },
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for sizeName, mk := range sizes {
				for _, readSize := range []int{1, 7, 4096} {
					r := rand.New(rand.NewPCG(uint64(len(tc.stream)), uint64(readSize)))
					got, answered, reasons, end := passed(t, []byte(tc.stream), mk(r), readSize)
					where := fmt.Sprintf("%s pieces, reads of %d", sizeName, readSize)
					if string(got) != tc.passed {
						t.Fatalf("%s: the server got %q, want %q", where, got, tc.passed)
					}
					wantErr := tc.wantErr
					if wantErr == nil {
						wantErr = io.EOF
					}
					if !errors.Is(end, wantErr) {
						t.Fatalf("%s: ended with %v, want %v", where, end, wantErr)
					}
					if tc.status == "" && answered != "" {
						t.Fatalf("%s: the guard answered %q", where, answered)
					}
					if tc.status != "" && !strings.HasPrefix(answered, tc.status+"\r\n") {
						t.Fatalf("%s: answered %q, want %s", where, answered, tc.status)
					}
					if tc.status != "" && !strings.Contains(answered, "Connection: close\r\n") {
						t.Fatalf("%s: the answer does not close: %q", where, answered)
					}
					if tc.reason != "" && (len(reasons) != 1 || reasons[0] != tc.reason) {
						t.Fatalf("%s: refusals %v, want [%s]", where, reasons, tc.reason)
					}
					if tc.reason == "" && !tc.inBody && len(reasons) != 0 {
						t.Fatalf("%s: refused %v", where, reasons)
					}
				}
			}
		})
	}
}

func TestTunnelPassesEverything(t *testing.T) {
	t.Parallel()
	upgrade := "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
	frames := "\x81\x05hello\x00\n\r\n garbage that is no request"
	s := &script{chunks: [][]byte{[]byte(upgrade + frames[:7]), []byte(frames[7:])}}
	c := New(Config{}).Conn(s)
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != upgrade {
		t.Fatalf("head: %q %v", buf[:n], err)
	}
	c.Tunnel() // the server answered 101
	var rest []byte
	for {
		n, err := c.Read(buf)
		rest = append(rest, buf[:n]...)
		if err != nil {
			break
		}
	}
	if string(rest) != frames || s.written.Len() != 0 {
		t.Fatalf("after the switch: got %q, answered %q", rest, s.written.String())
	}
}

// serveGuarded serves one connection at a time on a loopback listener
// through a guard with cfg, answering every request 204 without reading its
// body, and returns the listener's address.
func serveGuarded(t *testing.T, cfg Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	cfg.Log = slog.New(slog.DiscardHandler)
	gl := New(cfg).Listener(ln)
	go func() {
		for {
			c, err := gl.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				// An early answer: the body is never read.
				_, _ = io.WriteString(c, "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
			}()
		}
	}()
	return ln.Addr().String()
}

func TestHeadTimeoutAnswers408(t *testing.T) {
	t.Parallel()
	addr := serveGuarded(t, Config{HeadTimeout: 100 * time.Millisecond})
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = io.WriteString(conn, "GET / HTTP/1.1\r\nHo")
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 408 || !resp.Close || !strings.Contains(string(body), `"code":"request_timeout"`) {
		t.Fatalf("got %d close=%v %s", resp.StatusCode, resp.Close, body)
	}
}

// TestLingeringClose: a server that answers before reading a large body and
// closes still gets its answer to the client, which keeps sending the body
// meanwhile (a plain close would reset the connection under the client).
func TestLingeringClose(t *testing.T) {
	t.Parallel()
	addr := serveGuarded(t, Config{})
	for range 5 {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		body := bytes.Repeat([]byte("x"), 8<<20)
		head := "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
		done := make(chan error, 1)
		go func() {
			_, err := conn.Write(append([]byte(head), body...))
			done <- err
		}()
		if err := <-done; err != nil {
			t.Fatalf("the client could not send its body: %v", err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		if resp.StatusCode != 204 {
			t.Fatalf("got %d", resp.StatusCode)
		}
		conn.Close()
	}
}
