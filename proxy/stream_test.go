package proxy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tenantgate/gateway/events"
)

// streamRoute is a tenant with one route to up, with the given resilience.
func streamRoute(t *testing.T, w *world, upURL string, res *events.Resilience) (key string) {
	t.Helper()
	ten, key := w.tenant("acme")
	w.route(events.RouteSpec{TenantID: ten, Path: "/", Upstreams: ups(upURL), Resilience: res})
	return key
}

func withTimeout(ms int) *events.Resilience {
	return &events.Resilience{Timeout: &events.Timeout{Enabled: true, Default: ms}}
}

func open(t *testing.T, url, key string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set(HeaderAPIKey, key)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// Each event the upstream flushes reaches the client before the upstream
// sends the next one (lockstep: a gateway that buffered would stall here),
// whatever the body's framing.
func TestStreamDeliversEachFlush(t *testing.T) {
	t.Parallel()
	const events_ = 30
	for _, framing := range []string{"chunked", "content-length", "close"} {
		t.Run(framing, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			next := make(chan struct{})
			sentAt := make(chan time.Time, 1)
			line := func(i int) string { return fmt.Sprintf("data: event %03d\n\n", i) }
			up := newUpstream(t, "sse", func(rw http.ResponseWriter, r *http.Request) {
				rw.Header().Set("Content-Type", "text/event-stream")
				switch framing {
				case "content-length":
					rw.Header().Set("Content-Length", strconv.Itoa(events_*len(line(0))))
				case "close":
					rw.Header().Set("Connection", "close")
				}
				rw.WriteHeader(200)
				fl := rw.(http.Flusher)
				fl.Flush()
				for i := range events_ {
					select {
					case <-next:
					case <-r.Context().Done():
						return
					}
					_, _ = io.WriteString(rw, line(i))
					fl.Flush()
					sentAt <- time.Now()
				}
			})
			if framing == "close" {
				up.Config.SetKeepAlivesEnabled(false)
			}
			key := streamRoute(t, w, up.URL, withTimeout(2000))
			gw, _ := gateway(t, Config{}, Deps{Snapshots: w})
			resp := open(t, gw+"/events", key)
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
				t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			if framing == "content-length" && resp.ContentLength != int64(events_*len(line(0))) {
				t.Fatalf("Content-Length %d not kept", resp.ContentLength)
			}
			br := bufio.NewReader(resp.Body)
			var lat []time.Duration
			for i := range events_ {
				next <- struct{}{}
				got := make([]byte, len(line(i)))
				done := make(chan error, 1)
				go func() { _, err := io.ReadFull(br, got); done <- err }()
				select {
				case err := <-done:
					if err != nil {
						t.Fatalf("event %d: %v", i, err)
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("event %d never arrived: the gateway holds it back", i)
				}
				lat = append(lat, time.Since(<-sentAt))
				if string(got) != line(i) {
					t.Fatalf("event %d = %q", i, got)
				}
			}
			if _, err := br.ReadByte(); err != io.EOF {
				t.Fatalf("after the last event: %v, want EOF", err)
			}
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			t.Logf("%s: flush -> client p50 %v, max %v", framing, lat[len(lat)/2], lat[len(lat)-1])
			if p50 := lat[len(lat)/2]; p50 > 10*time.Millisecond {
				t.Fatalf("median flush -> client %v, want <= 10ms", p50)
			}
		})
	}
}

// A large body passes byte-exact with its Content-Length, and the
// connection serves the next request afterwards.
func TestStreamLargeBody(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	want := sha256.Sum256(body)
	up := newUpstream(t, "big", func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/chunked" {
			for i := 0; i < len(body); i += 100 << 10 {
				_, _ = rw.Write(body[i:min(i+100<<10, len(body))])
				rw.(http.Flusher).Flush()
			}
			return
		}
		rw.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = rw.Write(body)
	})
	key := streamRoute(t, w, up.URL, nil)
	gw, p := gateway(t, Config{}, Deps{Snapshots: w})
	for _, path := range []string{"/cl", "/chunked", "/cl", "/chunked"} {
		resp := open(t, gw+path, key)
		h := sha256.New()
		n, err := io.Copy(h, resp.Body)
		if err != nil || resp.StatusCode != 200 || [32]byte(h.Sum(nil)) != want {
			t.Fatalf("%s: status %d, %d bytes, err %v: not the upstream's body", path, resp.StatusCode, n, err)
		}
		if path == "/cl" && resp.ContentLength != int64(len(body)) {
			t.Fatalf("Content-Length %d, want %d", resp.ContentLength, len(body))
		}
		resp.Body.Close()
	}
	waitFor(t, func() bool { return p.OpenStreams() == 0 }, "every stream closed")
}

// The route's timeout bounds each wait for more of the body, not the whole
// body: a stream slower in total than the timeout passes, one that goes
// silent after its head is cut off (a short body, never a second status).
func TestStreamTimeoutPerGap(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	up := newUpstream(t, "slow", func(rw http.ResponseWriter, r *http.Request) {
		rw.WriteHeader(200)
		for i := range 8 {
			fmt.Fprintf(rw, "part %d\n", i)
			rw.(http.Flusher).Flush()
			if r.URL.Path == "/silent" && i == 1 {
				<-r.Context().Done()
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	// 500 ms: five times a gap, so a busy machine does not cut a slow stream,
	// and less than the 700 ms the whole of one takes.
	key := streamRoute(t, w, up.URL, withTimeout(500))
	gw, _ := gateway(t, Config{}, Deps{Snapshots: w})

	start := time.Now()
	r := get(t, gw+"/slow", key)
	if r.status != 200 || strings.Count(r.body, "part") != 8 {
		t.Fatalf("slow stream: %d %q", r.status, r.body)
	}
	if el := time.Since(start); el < 700*time.Millisecond {
		t.Fatalf("slow stream took %v: the upstream was not slow", el)
	}

	resp := open(t, gw+"/silent", key)
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || err == nil || string(b) != "part 0\npart 1\n" {
		t.Fatalf("silent upstream: status %d, body %q, err %v: want the two parts, then a cut", resp.StatusCode, b, err)
	}
}

// A client that goes away mid-stream ends the upstream's request, even
// while the upstream sends nothing.
func TestStreamClientGoneCancelsUpstream(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ended := make(chan time.Time, 1)
	up := newUpstream(t, "quiet", func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(rw, "data: hello\n\n")
		rw.(http.Flusher).Flush()
		<-r.Context().Done()
		ended <- time.Now()
	})
	key := streamRoute(t, w, up.URL, withTimeout(60_000))
	gw, p := gateway(t, Config{}, Deps{Snapshots: w})
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("GET", gw+"/sse", nil)
	req.Header.Set(HeaderAPIKey, key)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return p.OpenStreams() == 1 }, "the stream is open")
	left := time.Now()
	resp.Body.Close() // closes the connection: the body was not read to its end
	select {
	case at := <-ended:
		t.Logf("client left -> upstream request ended after %v", at.Sub(left))
		if at.Sub(left) > time.Second {
			t.Fatalf("the upstream's request ended %v after the client left, want <= 1s", at.Sub(left))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream's request still runs 5s after the client left")
	}
	waitFor(t, func() bool { return p.OpenStreams() == 0 }, "the stream closed")
}

// An answer that is retried or replaced by the fallback while its body
// streams is dropped without harm: the next request on the pool gets its
// own answer, never the rest of another's body.
func TestStreamedAnswerRetried(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	var calls atomic.Int64
	up := newUpstream(t, "flaky", func(rw http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		if n%2 == 1 { // a 503 with a chunked body larger than any buffer
			rw.WriteHeader(503)
			for range 64 {
				_, _ = rw.Write(bytes.Repeat([]byte("x"), 8<<10))
				rw.(http.Flusher).Flush()
			}
			return
		}
		_, _ = io.WriteString(rw, "answer "+strconv.FormatInt(n, 10))
	})
	key := streamRoute(t, w, up.URL, &events.Resilience{Retry: &events.Retry{Enabled: true, MaxRetries: 1, BaseDelayMs: 1, MaxDelayMs: 1, RetryableStatusCodes: []int{503}}})
	gw, p := gateway(t, Config{}, Deps{Snapshots: w})
	for i := range 5 {
		r := get(t, gw+"/x", key)
		if want := "answer " + strconv.Itoa(2*(i+1)); r.status != 200 || r.body != want {
			t.Fatalf("request %d: %d %q, want 200 %q", i, r.status, r.body, want)
		}
	}
	waitFor(t, func() bool { return p.OpenStreams() == 0 }, "every stream closed")
}

// A request body up to 1 MiB is kept and sent again on a retry; a larger
// one streams and is not retried: the first answer stands.
func TestRetryBodyLimit(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	var calls atomic.Int64
	var sums [][32]byte
	up := newUpstream(t, "u", func(rw http.ResponseWriter, r *http.Request) {
		if calls.Add(1)%2 == 1 {
			rw.WriteHeader(503)
		}
	})
	up.Config.Handler = sumBodies(up.Config.Handler, &sums)
	key := streamRoute(t, w, up.URL, &events.Resilience{Retry: &events.Retry{Enabled: true, MaxRetries: 1, BaseDelayMs: 1, MaxDelayMs: 1, RetryableStatusCodes: []int{503}, RetryNonIdempotent: true}})
	gw, _ := gateway(t, Config{}, Deps{Snapshots: w})

	small := bytes.Repeat([]byte("s"), 100<<10)
	r := do(t, "POST", gw+"/up", key, nil, bytes.NewReader(small))
	if r.status != 200 || calls.Load() != 2 {
		t.Fatalf("100 KiB POST: %d after %d calls, want 200 after a retry", r.status, calls.Load())
	}
	if want := sha256.Sum256(small); len(sums) != 2 || sums[0] != want || sums[1] != want {
		t.Fatal("the retry did not carry the identical body")
	}

	calls.Store(0)
	large := bytes.Repeat([]byte("l"), 20<<20)
	r = do(t, "POST", gw+"/up", key, nil, bytes.NewReader(large))
	if r.status != 503 || calls.Load() != 1 {
		t.Fatalf("20 MiB POST: %d after %d calls, want the first answer (503) and no retry", r.status, calls.Load())
	}
	if sums[2] != sha256.Sum256(large) {
		t.Fatal("the large body did not arrive whole")
	}
}

// sumBodies records the hash of every request body before h sees it.
func sumBodies(h http.Handler, sums *[][32]byte) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		*sums = append(*sums, sha256.Sum256(b)) // requests to one upstream come one at a time here
		r.Body = io.NopCloser(bytes.NewReader(b))
		h.ServeHTTP(rw, r)
	})
}

// MaxBodyBytes NoLimit lets a body larger than the default limit through.
func TestNoBodyLimit(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	up := newUpstream(t, "u", nil)
	key := streamRoute(t, w, up.URL, nil)
	gw, _ := gateway(t, Config{MaxBodyBytes: NoLimit}, Deps{Snapshots: w})
	r := do(t, "POST", gw+"/big", key, nil, io.LimitReader(zeros{}, DefaultMaxBodyBytes+1<<20))
	if r.status != 200 || up.last(t).BodyLen != DefaultMaxBodyBytes+1<<20 {
		t.Fatalf("status %d, upstream got %d bytes", r.status, up.last(t).BodyLen)
	}
}

type zeros struct{}

func (zeros) Read(b []byte) (int, error) { clear(b); return len(b), nil }

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
