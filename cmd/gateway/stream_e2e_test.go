package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// streamUpstream is a real HTTP server on 127.0.0.1 for the streaming
// tests: /sse sends timestamped events, /download/{cl,chunked} sends
// downloadBytes of numbered blocks (recording the CRC of what it sent),
// /quiet sends one event and then waits for the request to end, /slow
// sends a part every 200 ms, /silent one part and then nothing, /flaky
// answers 503 to every other request (recording each body's hash).
type streamUpstream struct {
	srv       *httptest.Server
	sentCRC   atomic.Uint32
	quietDone chan time.Time
	calls     atomic.Int64
	mu        sync.Mutex
	bodies    [][32]byte
}

const downloadBytes = 2 << 30

func newStreamUpstream(t *testing.T) *streamUpstream {
	t.Helper()
	u := &streamUpstream{quietDone: make(chan time.Time, 4)}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fl := w.(http.Flusher)
		switch r.URL.Path {
		case "/sse":
			w.Header().Set("Content-Type", "text/event-stream")
			fl.Flush()
			for i := range 50 {
				fmt.Fprintf(w, "id: %d\ndata: %d\n\n", i, time.Now().UnixNano())
				fl.Flush()
				time.Sleep(10 * time.Millisecond)
			}
		case "/download/cl", "/download/chunked":
			if r.URL.Path == "/download/cl" {
				w.Header().Set("Content-Length", strconv.Itoa(downloadBytes))
			}
			block := make([]byte, 1<<20)
			for i := range block {
				block[i] = byte(i * 7)
			}
			crc := crc32.NewIEEE()
			for n := 0; n < downloadBytes/len(block); n++ {
				binary.BigEndian.PutUint64(block, uint64(n)) // a block out of place changes the CRC
				crc.Write(block)
				if _, err := w.Write(block); err != nil {
					return
				}
			}
			u.sentCRC.Store(crc.Sum32())
		case "/quiet":
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = io.WriteString(w, "data: hello\n\n")
			fl.Flush()
			<-r.Context().Done()
			u.quietDone <- time.Now()
		case "/slow", "/silent":
			for i := range 10 {
				fmt.Fprintf(w, "part %d\n", i)
				fl.Flush()
				if r.URL.Path == "/silent" && i == 1 {
					<-r.Context().Done()
					return
				}
				time.Sleep(200 * time.Millisecond)
			}
		case "/flaky":
			b, _ := io.ReadAll(r.Body)
			u.mu.Lock()
			u.bodies = append(u.bodies, sha256.Sum256(b))
			u.mu.Unlock()
			if u.calls.Add(1)%2 == 1 {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
		}
	}))
	t.Cleanup(u.srv.Close)
	return u
}

// streamGateway starts the binary with env and a tenant whose route / goes
// to up with the given timeout and one retry on 503 (any method).
func streamGateway(t *testing.T, up *streamUpstream, env map[string]string, timeoutMs int) (*proc, string) {
	t.Helper()
	p := startProc(t, "stream", env)
	code, tenant := p.admin("POST", "/admin/tenants", map[string]any{"name": "streams"})
	if code != http.StatusCreated {
		t.Fatalf("create tenant: %d %v", code, tenant)
	}
	code, route := p.admin("POST", "/admin/routes", map[string]any{
		"tenantId": tenant["id"], "path": "/", "upstreams": []map[string]any{{"url": up.srv.URL}},
		"resilience": map[string]any{
			"timeout": map[string]any{"enabled": true, "default": timeoutMs},
			"retry": map[string]any{"enabled": true, "maxRetries": 1, "baseDelayMs": 1, "maxDelayMs": 2,
				"retryableStatusCodes": []int{503}, "retryNonIdempotent": true},
		},
		"transform": map[string]any{"response": map[string]any{"headers": map[string]any{"set": map[string]any{"X-Served-By": "gateway"}}}},
	})
	if code != http.StatusCreated {
		t.Fatalf("create route: %d %v", code, route)
	}
	return p, tenant["apiKey"].(string)
}

func streamGet(t *testing.T, client *http.Client, url, key string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("X-API-Key", key)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// procStatus is a field of /proc/PID/status in bytes (VmRSS, VmHWM).
func procStatus(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field+":" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatalf("no %s", field)
	return 0
}

// Server-sent events reach the client one by one as the upstream flushes
// them, with the server's write and idle timeouts (1 s) shorter than the
// stream; and the other streaming rules of the contract, through the binary.
func TestStreamsThroughTheBinary(t *testing.T) {
	up := newStreamUpstream(t)
	gw, key := streamGateway(t, up, map[string]string{"WRITE_TIMEOUT": "1s", "IDLE_TIMEOUT": "1s", "READ_TIMEOUT": "1s"}, 500)
	client := &http.Client{Timeout: 60 * time.Second}

	t.Run("sse", func(t *testing.T) {
		resp := streamGet(t, client, gw.base+"/sse", key)
		defer resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" || resp.Header.Get("X-Served-By") != "gateway" {
			t.Fatalf("status %d, headers %v", resp.StatusCode, resp.Header)
		}
		sc := bufio.NewScanner(resp.Body)
		var lat []time.Duration
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				sent, _ := strconv.ParseInt(v, 10, 64)
				lat = append(lat, time.Since(time.Unix(0, sent)))
			}
		}
		if sc.Err() != nil || len(lat) != 50 {
			t.Fatalf("%d events, err %v: want all 50", len(lat), sc.Err())
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		t.Logf("upstream flush -> client: p50 %v, p90 %v, max %v", lat[25], lat[45], lat[49])
		if lat[45] > 10*time.Millisecond || lat[49] > 500*time.Millisecond {
			t.Fatalf("flush -> client p90 %v, max %v: want each event within 10 ms", lat[45], lat[49])
		}
	})

	t.Run("slow stream passes, silent one is cut", func(t *testing.T) {
		start := time.Now()
		resp := streamGet(t, client, gw.base+"/slow", key)
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || strings.Count(string(b), "part") != 10 || time.Since(start) < 1800*time.Millisecond {
			t.Fatalf("slow stream: %q err %v after %v: want 10 parts over ~2 s", b, err, time.Since(start))
		}
		resp = streamGet(t, client, gw.base+"/silent", key)
		b, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || err == nil || string(b) != "part 0\npart 1\n" {
			t.Fatalf("silent upstream: %d %q err %v: want two parts, then a cut body", resp.StatusCode, b, err)
		}
	})

	t.Run("client gone", func(t *testing.T) {
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		resp := streamGet(t, &http.Client{Transport: tr}, gw.base+"/quiet", key)
		if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		left := time.Now()
		resp.Body.Close()
		select {
		case at := <-up.quietDone:
			t.Logf("client left -> upstream request ended after %v", at.Sub(left))
			if at.Sub(left) > time.Second {
				t.Fatalf("upstream request ended %v after the client left, want <= 1 s", at.Sub(left))
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the upstream request still runs 5 s after the client left")
		}
	})

	t.Run("request bodies: 100 KiB retried, 4 MiB not", func(t *testing.T) {
		// A route timeout that leaves room to move the bodies through a
		// race-instrumented binary on a busy machine (500 ms did not).
		gw, key := streamGateway(t, up, nil, 30_000)
		for _, tc := range []struct {
			size      int
			wantCalls int64
			want      int
		}{{100 << 10, 2, 200}, {4 << 20, 1, 503}} { // 4 MiB: over the 1 MiB kept for retries
			up.calls.Store(0)
			up.mu.Lock()
			up.bodies = nil
			up.mu.Unlock()
			body := bytes.Repeat([]byte{'b'}, tc.size)
			req, _ := http.NewRequest("POST", gw.base+"/flaky", bytes.NewReader(body))
			req.Header.Set("X-API-Key", key)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			up.mu.Lock()
			bodies := up.bodies
			up.mu.Unlock()
			if resp.StatusCode != tc.want || up.calls.Load() != tc.wantCalls {
				t.Fatalf("%d-byte POST: %d after %d upstream calls, want %d after %d", tc.size, resp.StatusCode, up.calls.Load(), tc.want, tc.wantCalls)
			}
			for i, h := range bodies {
				if h != sha256.Sum256(body) {
					t.Fatalf("%d-byte POST: attempt %d carried another body", tc.size, i)
				}
			}
		}
	})
}

// A 2 GiB download passes byte-exact, with and without Content-Length,
// while the gateway's peak RSS grows by less than 32 MiB.
func TestDownloadThroughTheBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 4 GiB")
	}
	up := newStreamUpstream(t)
	// The default timeout per gap: the upstream, in this (maybe -race)
	// test process on a loaded machine, may pause for longer than 500 ms.
	gw, key := streamGateway(t, up, map[string]string{"LOG_LEVEL": "warn"}, 10_000)
	gw.mu.Lock()
	pid := gw.cmd.Process.Pid
	gw.mu.Unlock()
	client := &http.Client{}
	before := procStatus(t, pid, "VmRSS")
	for _, path := range []string{"/download/cl", "/download/chunked"} {
		start := time.Now()
		resp := streamGet(t, client, gw.base+path, key)
		crc := crc32.NewIEEE()
		n, err := io.Copy(crc, resp.Body)
		resp.Body.Close()
		el := time.Since(start)
		if err != nil || n != downloadBytes || crc.Sum32() != up.sentCRC.Load() {
			t.Fatalf("%s: %d bytes, err %v, CRC %x vs sent %x: not byte-exact", path, n, err, crc.Sum32(), up.sentCRC.Load())
		}
		if path == "/download/cl" && resp.ContentLength != downloadBytes {
			t.Fatalf("Content-Length %d not kept", resp.ContentLength)
		}
		peak := procStatus(t, pid, "VmHWM")
		t.Logf("%s: 2 GiB in %v (%.0f MB/s), peak RSS %d KiB above the start (%d KiB)", path, el.Round(time.Millisecond),
			float64(n)/el.Seconds()/1e6, (peak-before)>>10, before>>10)
		if peak-before > 32<<20 {
			t.Fatalf("%s: peak RSS grew by %d MiB, want < 32 MiB", path, (peak-before)>>20)
		}
	}
}
