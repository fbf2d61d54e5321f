package proxy

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tenantgate/gateway/events"
)

// pattern is a deterministic body of n bytes that allocates nothing.
type pattern struct {
	n, off int64
	h      hash.Hash
}

func (p *pattern) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	if int64(len(b)) > p.n-p.off {
		b = b[:p.n-p.off]
	}
	for i := range b {
		b[i] = byte((p.off + int64(i)) * 7)
	}
	p.off += int64(len(b))
	p.h.Write(b)
	return len(b), nil
}

// TestStreamedBody sends 30 MiB through the gateway, with and without a
// Content-Length, and checks the upstream got every byte while the whole
// process (client, gateway and upstream) allocated far less than the body.
func TestStreamedBody(t *testing.T) {
	// Not parallel: the allocation count must be this test's alone.
	w := newWorld(t)
	var gotSum string
	var gotLen int64
	done := make(chan struct{}, 1)
	up := newUpstreamWith(t, "sink", nil, func(s *http.Server) {
		s.Handler = http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			h := sha256.New()
			n, _ := io.Copy(h, r.Body)
			gotLen, gotSum = n, hex.EncodeToString(h.Sum(nil))
			done <- struct{}{}
		})
	})
	ten, key := w.tenant("acme")
	w.route(events.RouteSpec{TenantID: ten, Path: "/", Upstreams: ups(up.URL)})
	gw, _ := gateway(t, Config{}, Deps{Snapshots: w})
	const size = 30 << 20

	for _, tc := range []struct {
		name    string
		chunked bool
	}{
		{name: "content-length"},
		{name: "chunked", chunked: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := &pattern{n: size, h: sha256.New()}
			req, _ := http.NewRequest("POST", gw+"/upload", body)
			req.Header.Set(HeaderAPIKey, key)
			if !tc.chunked {
				req.ContentLength = size
			}
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			runtime.ReadMemStats(&after)
			<-done
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if want := hex.EncodeToString(body.h.Sum(nil)); gotLen != size || gotSum != want {
				t.Fatalf("upstream got %d bytes (sum %s), want %d (sum %s)", gotLen, gotSum, size, want)
			}
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("30 MiB upload (%s): %.2f MiB allocated by the whole process, heap in use %.1f -> %.1f MiB",
				tc.name, float64(alloc)/(1<<20), float64(before.HeapInuse)/(1<<20), float64(after.HeapInuse)/(1<<20))
			if alloc > 6<<20 {
				t.Fatalf("allocated %.1f MiB for a 30 MiB body: it was buffered, not streamed", float64(alloc)/(1<<20))
			}
		})
	}
}

func TestBodyLimits(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	up := newUpstream(t, "u", nil)
	ten, key := w.tenant("acme")
	w.route(events.RouteSpec{TenantID: ten, Path: "/", Upstreams: ups(up.URL)})
	gw, _ := gateway(t, Config{MaxBodyBytes: 1 << 20, MaxReplayBytes: 1 << 10}, Deps{Snapshots: w})
	addr := strings.TrimPrefix(gw, "http://")

	t.Run("content-length over the limit", func(t *testing.T) {
		// The server reads ahead up to 8 KiB of body before the handler runs;
		// the rest is never read.
		status, body := rawExchange(t, addr, fmt.Sprintf("POST /x HTTP/1.1\r\nHost: h\r\nX-API-Key: %s\r\nContent-Length: %d\r\n\r\n%s",
			key, 2<<20, strings.Repeat("b", 16<<10)))
		if status != 413 || !strings.Contains(body, "payload_too_large") {
			t.Fatalf("got %d %q, want 413 payload_too_large", status, body)
		}
	})
	t.Run("chunked body growing past the limit", func(t *testing.T) {
		// The client may see the 413 or, still writing, a reset: both refuse.
		req, _ := http.NewRequest("POST", gw+"/x", &pattern{n: 3 << 20, h: sha256.New()})
		req.Header.Set(HeaderAPIKey, key)
		resp, err := client.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 413 || !strings.Contains(string(b), "payload_too_large") {
				t.Fatalf("got %d %q, want 413 payload_too_large", resp.StatusCode, b)
			}
		}
		up.mu.Lock()
		for _, s := range up.got {
			if s.BodyLen > 1<<20 {
				t.Errorf("upstream received %d body bytes, over the 1 MiB limit", s.BodyLen)
			}
		}
		up.mu.Unlock()
		if r := get(t, gw+"/x", key); r.status != 200 {
			t.Fatalf("gateway stopped serving: %d", r.status)
		}
	})
	t.Run("at the limit passes", func(t *testing.T) {
		r := do(t, "POST", gw+"/x", key, nil, &pattern{n: 1 << 20, h: sha256.New()})
		if r.status != 200 || up.last(t).BodyLen != 1<<20 {
			t.Fatalf("status %d, upstream body %d", r.status, up.last(t).BodyLen)
		}
	})
	t.Run("headers: 15 KiB pass, 20 KiB get 431", func(t *testing.T) {
		ok := do(t, "GET", gw+"/x", key, map[string]string{"X-Big": strings.Repeat("a", 15<<10)}, nil)
		if ok.status != 200 {
			t.Fatalf("15 KiB of headers: %d", ok.status)
		}
		status, body := rawExchange(t, addr, "GET /x HTTP/1.1\r\nHost: h\r\nX-API-Key: "+key+"\r\nX-Big: "+strings.Repeat("a", 20<<10)+"\r\n\r\n")
		if status != 431 || !strings.Contains(body, `"code":"headers_too_large"`) {
			t.Fatalf("20 KiB of headers: %d %q", status, body)
		}
	})
}

// rawExchange writes raw bytes on a fresh connection and reads one response.
func rawExchange(t testing.TB, addr, raw string) (int, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatalf("write: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
