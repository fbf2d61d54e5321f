package proxy

import (
	"bufio"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

func TestFrameEdgeFollowsFrameBoundaries(t *testing.T) {
	t.Parallel()
	frame := func(payload int, masked bool) []byte {
		b := []byte{0x82}
		m := byte(0)
		if masked {
			m = 0x80
		}
		switch {
		case payload < 126:
			b = append(b, m|byte(payload))
		case payload < 1<<16:
			b = append(b, m|126, byte(payload>>8), byte(payload))
		default:
			b = append(b, m|127, 0, 0, 0, 0, byte(payload>>24), byte(payload>>16), byte(payload>>8), byte(payload))
		}
		if masked {
			b = append(b, 1, 2, 3, 4)
		}
		return append(b, make([]byte, payload)...)
	}
	for _, tc := range []struct {
		name   string
		stream []byte
	}{
		{"empty payload", frame(0, false)},
		{"small", frame(5, false)},
		{"16-bit length", frame(300, false)},
		{"64-bit length", frame(70000, false)},
		{"masked", frame(10, true)},
		{"two frames", append(frame(3, false), frame(200, true)...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// Fed in pieces of every size up to 7 bytes, the edge is
			// reached exactly at the stream's end, never mid-header.
			for step := 1; step <= 7; step++ {
				var f frameEdge
				for i := 0; i < len(tc.stream); i += step {
					f.feed(tc.stream[i:min(i+step, len(tc.stream))])
					end := min(i+step, len(tc.stream))
					if end == len(tc.stream) && !f.atEdge() {
						t.Fatalf("step %d: not at an edge at the end", step)
					}
					if end == 1 && f.atEdge() {
						t.Fatalf("step %d: at an edge inside a header", step)
					}
				}
			}
			var f frameEdge
			f.feed(tc.stream[:len(tc.stream)-1])
			if len(tc.stream) > 2 && f.atEdge() && tc.name != "two frames" {
				t.Fatal("at an edge one byte before the end")
			}
		})
	}
}

func TestWantsWebSocket(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, head string
		want       bool
	}{
		{"handshake", "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: WebSocket\r\n\r\n", true},
		{"plain", "GET /ws HTTP/1.1\r\nHost: a\r\n\r\n", false},
		{"other token", "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n", false},
		{"no connection upgrade", "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n", false},
		{"POST", "POST /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n", false},
		{"HTTP/1.0", "GET /ws HTTP/1.0\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", false},
		{"with a body", "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 2\r\n\r\nhi", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var req fasthttp.Request
			if err := req.Read(bufio.NewReader(strings.NewReader(tc.head))); err != nil {
				t.Fatal(err)
			}
			if got := wantsWebSocket(&req, scanHeaders(&req.Header).present); got != tc.want {
				t.Fatalf("wantsWebSocket = %v, want %v", got, tc.want)
			}
		})
	}
}
