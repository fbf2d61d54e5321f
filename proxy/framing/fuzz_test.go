package framing

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// memConn is a whole connection over a script, for a server to serve.
type memConn struct{ script }

func (c *memConn) LocalAddr() net.Addr                { return c.RemoteAddr() }
func (c *memConn) Close() error                       { return nil }
func (c *memConn) SetDeadline(time.Time) error        { return nil }
func (c *memConn) Read(b []byte) (int, error)         { return c.script.Read(b) }
func (c *memConn) Write(b []byte) (int, error)        { return c.script.Write(b) }
func (c *memConn) SetReadDeadline(t time.Time) error  { return c.script.SetReadDeadline(t) }
func (c *memConn) SetWriteDeadline(t time.Time) error { return c.script.SetWriteDeadline(t) }
func (c *memConn) RemoteAddr() net.Addr               { return c.script.RemoteAddr() }

// FuzzGuardBeforeAServer feeds arbitrary byte streams, in arbitrary pieces,
// through the guard into a real fasthttp server whose handler reads every
// body: the guard never panics, passes only a prefix of what it got, and the
// server never handles more requests than the guard passed heads; a second,
// independent parser (net/http's) reads no more requests from what the
// guard passed either.
func FuzzGuardBeforeAServer(f *testing.F) {
	for _, seed := range []string{
		get, post, chunked, get + post + chunked + get,
		"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /x HTTP/1.1\r\n\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\nGET /x HTTP/1.1\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length : 27\r\n\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\nHost: x\n\nGET /x HTTP/1.1\n\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;a\nhello\r\n0\r\n\r\nGET /x HTTP/1.1\r\n\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 30\r\n\r\nGET /x HTTP/1.1\r\n\r\n",
		"\r\n\r\nGET http://a/b HTTP/1.0\r\n\r\n",
	} {
		f.Add([]byte(seed), uint8(0))
		f.Add([]byte(seed), uint8(3))
	}
	f.Fuzz(func(t *testing.T, data []byte, piece uint8) {
		sizes := func() int { return 1 << 30 }
		if piece > 0 {
			sizes = func() int { return int(piece) }
		}
		// What the guard passes, read by a plain reader.
		got, _, _, _ := passed(t, data, sizes, 4096)
		if !bytes.HasPrefix(data, got) {
			t.Fatalf("the guard passed bytes it did not get: %q", got)
		}

		// The same stream through the guard into fasthttp.
		c := &memConn{script{chunks: split(append([]byte(nil), data...), sizes)}}
		g := New(Config{MaxHeadBytes: 1 << 10, Log: slog.New(slog.DiscardHandler)})
		gc := g.Conn(c)
		handled := 0
		srv := &fasthttp.Server{
			StreamRequestBody: true,
			ReadBufferSize:    2 << 10,
			Logger:            discardLogger{},
			Handler: func(ctx *fasthttp.RequestCtx) {
				handled++
				if s := ctx.RequestBodyStream(); s != nil {
					_, _ = io.Copy(io.Discard, s)
				}
			},
		}
		_ = srv.ServeConn(gc)
		if handled > gc.p.heads {
			t.Fatalf("the server handled %d requests, the guard passed %d heads", handled, gc.p.heads)
		}

		// And net/http's parser over what the guard passed.
		br := bufio.NewReader(bytes.NewReader(got))
		parsed := 0
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				break
			}
			if _, err := io.Copy(io.Discard, req.Body); err != nil {
				break
			}
			parsed++
		}
		count := newParser(1 << 10)
		count.advance(got)
		if parsed > count.heads {
			t.Fatalf("net/http read %d requests from what the guard passed as %d", parsed, count.heads)
		}
	})
}

type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}
