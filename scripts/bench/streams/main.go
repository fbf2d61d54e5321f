// Command streams measures the gateway's streaming against going direct, in
// one run: SSE fan-out (N concurrent event streams, one event per stream
// every interval, each event stamped with its send time; the latency the
// gateway adds per event, p50/p99, and its RSS) and downloads (a body of
// SIZE bytes with a Content-Length, direct and through the gateway, in
// alternating rounds; throughput as a ratio of direct).
//
// It starts its own upstream in this process and the gateway binary
// (GATEWAY, built by the caller) with an embedded store, creates a tenant
// and a route through the admin API, and stops everything at the end.
//
//	go build -o /tmp/gw ./cmd/gateway && go run ./scripts/bench/streams -gateway /tmp/gw
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	gateway := flag.String("gateway", "", "the gateway binary")
	streams := flag.Int("streams", 5000, "concurrent SSE streams")
	events := flag.Int("events", 20, "events per stream")
	every := flag.Duration("every", 200*time.Millisecond, "time between two events of a stream")
	size := flag.Int64("size", 1<<30, "download size in bytes")
	rounds := flag.Int("rounds", 3, "download rounds per target")
	nginx := flag.String("nginx", "", "optional: an nginx proxy address in front of the upstream, measured as a third download target")
	flag.Parse()
	if *gateway == "" {
		log.Fatal("-gateway is required")
	}

	up := startUpstream(*events, *every, *size)
	gw := startGateway(*gateway, up, *streams)
	defer gw.stop()
	gatewayPID.Store(int64(gw.cmd.Process.Pid))

	fmt.Printf("SSE fan-out: %d streams x %d events, one every %v\n", *streams, *events, *every)
	direct := fanOut("http://"+up, "", *streams, *events)
	rss0 := rss(gw.cmd.Process.Pid)
	via := fanOut(gw.base, gw.key, *streams, *events)
	fmt.Printf("  direct  : %d events, p50 %v p99 %v, %d bad\n", len(direct.lat), pct(direct.lat, 50), pct(direct.lat, 99), direct.bad)
	fmt.Printf("  gateway : %d events, p50 %v p99 %v, %d bad, peak RSS %d MiB (idle %d MiB, %d KiB per stream)\n",
		len(via.lat), pct(via.lat, 50), pct(via.lat, 99), via.bad, via.peakRSS>>20, rss0>>20, (via.peakRSS-rss0)/int64(*streams)>>10)
	fmt.Printf("  added   : p50 %v, p99 %v\n", pct(via.lat, 50)-pct(direct.lat, 50), pct(via.lat, 99)-pct(direct.lat, 99))

	fmt.Printf("download: %d MiB with Content-Length, %d rounds\n", *size>>20, *rounds)
	targets := []struct{ name, url, key string }{{"direct", "http://" + up, ""}, {"gateway", gw.base, gw.key}}
	if *nginx != "" {
		targets = append(targets, struct{ name, url, key string }{"nginx", "http://" + *nginx, ""})
	}
	best := map[string]float64{}
	var ratios []float64
	for r := range *rounds {
		got := map[string]float64{}
		for _, t := range targets {
			got[t.name] = download(t.url+"/download", t.key, *size)
			best[t.name] = max(best[t.name], got[t.name])
		}
		ratios = append(ratios, got["gateway"]/got["direct"])
		fmt.Printf("  round %d:", r+1)
		for _, t := range targets {
			fmt.Printf(" %s %.0f MB/s", t.name, got[t.name]/1e6)
		}
		fmt.Printf(" (gateway/direct %.2f)\n", got["gateway"]/got["direct"])
	}
	sort.Float64s(ratios)
	fmt.Printf("  best: direct %.0f MB/s, gateway %.0f MB/s; gateway/direct median %.2f\n", best["direct"]/1e6, best["gateway"]/1e6, ratios[len(ratios)/2])
	if *nginx != "" {
		fmt.Printf("  nginx best %.0f MB/s (gateway/nginx %.2f)\n", best["nginx"]/1e6, best["gateway"]/best["nginx"])
	}
}

// startUpstream serves /sse (events stamped with their send time) and
// /download (size bytes with a Content-Length) on 127.0.0.1.
func startUpstream(events int, every time.Duration, size int64) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	block := bytes.Repeat([]byte("0123456789abcdef"), 4096)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/sse":
			w.Header().Set("Content-Type", "text/event-stream")
			w.(http.Flusher).Flush()
			// Each stream at its own phase, as independent clients are:
			// in step, every event of the interval would queue at once.
			time.Sleep(rand.N(every))
			t := time.NewTicker(every)
			defer t.Stop()
			for range events {
				<-t.C
				if _, err := fmt.Fprintf(w, "data: %d\n\n", time.Now().UnixNano()); err != nil {
					return
				}
				w.(http.Flusher).Flush()
			}
		case "/download":
			w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
			for left := size; left > 0; {
				n := min(left, int64(len(block)))
				if _, err := w.Write(block[:n]); err != nil {
					return
				}
				left -= n
			}
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	return ln.Addr().String()
}

type gatewayProc struct {
	cmd       *exec.Cmd
	base, key string
	dir       string
}

func startGateway(bin, upstream string, streams int) *gatewayProc {
	dir, err := os.MkdirTemp("", "bench-streams")
	if err != nil {
		log.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	const admin = "bench-admin-key-0123456789abcdef"
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(port), "HOST=127.0.0.1", "ADMIN_API_KEY="+admin,
		"DATA_DIR="+filepath.Join(dir, "data"), "LOG_LEVEL=warn", "MAX_CONNS="+strconv.Itoa(2*streams+100),
		"UPSTREAM_MAX_CONNS="+strconv.Itoa(streams+100), "GOMAXPROCS=1")
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	g := &gatewayProc{cmd: cmd, base: "http://127.0.0.1:" + strconv.Itoa(port), dir: dir}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(g.base + "/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			g.stop()
			log.Fatal("gateway not ready")
		}
	}
	adminDo := func(path string, body any) map[string]any {
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest("POST", g.base+path, bytes.NewReader(b))
		req.Header.Set("X-Admin-Key", admin)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 201 {
			g.stop()
			log.Fatalf("POST %s: %v %v", path, err, resp)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return out
	}
	tenant := adminDo("/admin/tenants", map[string]any{"name": "bench"})
	adminDo("/admin/routes", map[string]any{"tenantId": tenant["id"], "path": "/", "upstreams": []map[string]any{{"url": "http://" + upstream}}})
	g.key = tenant["apiKey"].(string)
	time.Sleep(200 * time.Millisecond) // the route reaches the data plane
	return g
}

func (g *gatewayProc) stop() {
	_ = g.cmd.Process.Kill()
	_ = g.cmd.Wait()
	_ = os.RemoveAll(g.dir)
}

type fanOutResult struct {
	lat     []time.Duration
	bad     int // streams that did not answer 200 or ended early
	peakRSS int64
}

// fanOut opens n streams at once and collects every event's latency.
func fanOut(base, key string, n, events int) fanOutResult {
	tr := &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: n, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var mu sync.Mutex
	var res fanOutResult
	var wg sync.WaitGroup
	var open atomic.Int64
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", base+"/sse", nil)
			if key != "" {
				req.Header.Set("X-API-Key", key)
			}
			resp, err := client.Do(req)
			if err != nil || resp.StatusCode != 200 {
				mu.Lock()
				res.bad++
				mu.Unlock()
				if err == nil {
					resp.Body.Close()
				}
				return
			}
			defer resp.Body.Close()
			open.Add(1)
			var lat []time.Duration
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				if v, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
					sent, _ := strconv.ParseInt(v, 10, 64)
					lat = append(lat, time.Since(time.Unix(0, sent)))
				}
			}
			mu.Lock()
			res.lat = append(res.lat, lat...)
			if len(lat) != events {
				res.bad++
			}
			mu.Unlock()
		}()
	}
	if key != "" { // the gateway's RSS while the streams are open
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		for {
			select {
			case <-done:
				return res
			case <-time.After(100 * time.Millisecond):
				res.peakRSS = max(res.peakRSS, rssOfGateway())
			}
		}
	}
	wg.Wait()
	return res
}

var gatewayPID atomic.Int64

func rssOfGateway() int64 { return rss(int(gatewayPID.Load())) }

// rss is VmRSS of pid, in bytes.
func rss(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// download fetches url and returns bytes/s; a short or failed download is fatal.
func download(url, key string, size int64) float64 {
	req, _ := http.NewRequest("GET", url, nil)
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	n, err := io.CopyBuffer(io.Discard, resp.Body, make([]byte, 256<<10))
	if err != nil || n != size || resp.StatusCode != 200 {
		log.Fatalf("%s: status %d, %d of %d bytes, %v", url, resp.StatusCode, n, size, err)
	}
	return float64(n) / time.Since(start).Seconds()
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[min(len(d)-1, len(d)*p/100)]
}
