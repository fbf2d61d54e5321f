package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/events/testenv"
)

// The fault tests run the gateway as real processes: one binary per test
// binary, built on first use.
var gatewayBinary struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	stopBrowser()
	if gatewayBinary.dir != "" {
		_ = os.RemoveAll(gatewayBinary.dir)
	}
	os.Exit(code)
}

func buildGateway(t *testing.T) string {
	t.Helper()
	gatewayBinary.once.Do(func() {
		dir, err := os.MkdirTemp("", "gateway-bin-")
		if err != nil {
			gatewayBinary.err = err
			return
		}
		gatewayBinary.dir = dir
		gatewayBinary.path = filepath.Join(dir, "gateway")
		out, err := exec.Command("go", "build", "-o", gatewayBinary.path, ".").CombinedOutput()
		if err != nil {
			gatewayBinary.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if gatewayBinary.err != nil {
		t.Fatal(gatewayBinary.err)
	}
	return gatewayBinary.path
}

// client is shared by the helpers; its timeout bounds every call.
var client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// proc is one gateway process.
type proc struct {
	t      *testing.T
	name   string
	env    map[string]string
	base   string
	starts int          // how many times the process was started
	https  *http.Client // set by startTLSProc: the client that trusts its certificate; nil: client

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	state  *os.ProcessState
	logs   *syncBuffer
}

// startProc starts a gateway process with env (on top of the test defaults)
// and waits until /ready answers 200.
func startProc(t *testing.T, name string, env map[string]string) *proc {
	t.Helper()
	p := launchProc(t, name, env)
	p.waitReady(20 * time.Second)
	return p
}

// launchProc starts a gateway process without waiting for it to be ready.
func launchProc(t *testing.T, name string, env map[string]string) *proc {
	t.Helper()
	port := freePort(t)
	full := map[string]string{
		"PORT": strconv.Itoa(port), "HOST": "127.0.0.1", "ADMIN_API_KEY": testAdminKey,
		"DATA_DIR": t.TempDir(), "LOG_LEVEL": "info", "LOG_FORMAT": "json", "HEAD_CHECK_INTERVAL": "200ms",
		"INSTANCE_ID": name, "SHUTDOWN_TIMEOUT": "5s",
	}
	for k, v := range env {
		full[k] = v
	}
	p := &proc{t: t, name: name, env: full, base: "http://127.0.0.1:" + full["PORT"], logs: &syncBuffer{}}
	p.start()
	t.Cleanup(func() {
		p.signal(syscall.SIGCONT)
		p.kill()
		if t.Failed() {
			t.Logf("logs of %s:\n%s", p.name, tail(p.logs.String(), 4000))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// start (re)starts the process with its env.
func (p *proc) start() {
	p.t.Helper()
	p.starts++
	cmd := exec.Command(buildGateway(p.t))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range p.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	exited := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.exited = cmd, exited
	p.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		p.mu.Lock()
		p.state = cmd.ProcessState
		p.mu.Unlock()
		close(exited)
	}()
}

func (p *proc) signal(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(sig)
	}
}

// kill sends SIGKILL and waits for the exit.
func (p *proc) kill() {
	p.signal(syscall.SIGKILL)
	p.wait(10 * time.Second)
}

// wait waits for the process to exit; false if it did not within d.
func (p *proc) wait(d time.Duration) bool {
	p.mu.Lock()
	exited := p.exited
	p.mu.Unlock()
	select {
	case <-exited:
		return true
	case <-time.After(d):
		return false
	}
}

func (p *proc) exitCode() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state == nil {
		return -1
	}
	return p.state.ExitCode()
}

func (p *proc) alive() bool {
	p.mu.Lock()
	exited := p.exited
	p.mu.Unlock()
	select {
	case <-exited:
		return false
	default:
		return true
	}
}

func (p *proc) waitReady(d time.Duration) time.Duration {
	p.t.Helper()
	start := time.Now()
	for time.Since(start) < d {
		if !p.alive() {
			p.t.Fatalf("%s exited (%d): %s", p.name, p.exitCode(), tail(p.logs.String(), 4000))
		}
		if resp, err := p.client().Get(p.base + "/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(start)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.t.Fatalf("%s not ready within %v: %s", p.name, d, tail(p.logs.String(), 4000))
	return 0
}

// call sends a request; err is a transport error (connection refused, reset).
func (p *proc) call(method, path string, body any, headers map[string]string) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, p.base+path, r)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := p.client().Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// client is the HTTP client that reaches p: the shared one, or p's HTTPS one.
func (p *proc) client() *http.Client {
	if p.https != nil {
		return p.https
	}
	return client
}

// admin calls the admin API and decodes the JSON answer; a transport error fails the test.
func (p *proc) admin(method, path string, body any, headers ...string) (int, map[string]any) {
	p.t.Helper()
	h := map[string]string{"X-Admin-Key": testAdminKey}
	for i := 0; i+1 < len(headers); i += 2 {
		h[headers[i]] = headers[i+1]
	}
	status, b, err := p.call(method, path, body, h)
	if err != nil {
		p.t.Fatalf("%s %s on %s: %v", method, path, p.name, err)
	}
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return status, out
}

type status struct {
	AppliedSeq   int64  `json:"appliedSeq"`
	StateHash    string `json:"stateHash"`
	Ready        bool   `json:"ready"`
	StoreHeadSeq *int64 `json:"storeHeadSeq"`
}

// status reads /admin/status; ok false on a transport error or non-200.
func (p *proc) status() (status, bool) {
	code, b, err := p.call("GET", "/admin/status", nil, map[string]string{"X-Admin-Key": testAdminKey})
	var st status
	if err != nil || code != 200 || json.Unmarshal(b, &st) != nil {
		return st, false
	}
	return st, true
}

// cluster is n gateway processes on one database and one Redis.
type cluster struct {
	t     *testing.T
	dsn   string // the database itself, not through any proxy
	procs []*proc
	store *events.SQLStore

	baseHead    int64
	baseApplied map[*proc]float64
}

// clusterEnv is the shared part of the instances' environment.
type clusterEnv struct {
	dsn       string // DATABASE_URL given to the instances
	directDSN string // the database as the test reaches it
	redisURL  string
	prefix    string
	extra     map[string]string
}

// newClusterEnv returns a fresh database and Redis prefix (skipping the test
// without services, failing under CI=true).
func newClusterEnv(t *testing.T) clusterEnv {
	dsn := testenv.Postgres(t)
	redisURL, prefix := testenv.Redis(t)
	return clusterEnv{dsn: dsn, directDSN: dsn, redisURL: redisURL, prefix: prefix}
}

func (e clusterEnv) vars() map[string]string {
	v := map[string]string{"DATABASE_URL": e.dsn, "REDIS_URL": e.redisURL, "REDIS_PREFIX": e.prefix}
	for k, x := range e.extra {
		v[k] = x
	}
	return v
}

func startCluster(t *testing.T, e clusterEnv, n int) *cluster {
	t.Helper()
	c := &cluster{t: t, dsn: e.directDSN}
	var wg sync.WaitGroup
	c.procs = make([]*proc, n)
	// The first one migrates; the others start together.
	c.procs[0] = startProc(t, "gw-1", e.vars())
	for i := 1; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.procs[i] = startProc(t, "gw-"+strconv.Itoa(i+1), e.vars())
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	store, err := events.OpenPostgres(context.Background(), e.directDSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	c.store = store
	return c
}

func (c *cluster) head() int64 {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h, err := c.store.Head(ctx)
	if err != nil {
		c.t.Fatal(err)
	}
	return h
}

// converged reports whether every live instance in ps is at seq with one stateHash.
func converged(seq int64, ps ...*proc) bool {
	hash := ""
	for _, p := range ps {
		st, ok := p.status()
		if !ok || st.AppliedSeq != seq || !st.Ready {
			return false
		}
		if hash != "" && st.StateHash != hash {
			return false
		}
		hash = st.StateHash
	}
	return true
}

// waitConverged polls until every instance holds the store's head with the
// same stateHash, and returns how long that took; it fails after d.
func (c *cluster) waitConverged(d time.Duration, ps ...*proc) time.Duration {
	c.t.Helper()
	if len(ps) == 0 {
		ps = c.procs
	}
	start := time.Now()
	head := c.head()
	for !converged(head, ps...) {
		if time.Since(start) > d {
			var got []string
			for _, p := range ps {
				st, _ := p.status()
				got = append(got, fmt.Sprintf("%s seq %d hash %.8s", p.name, st.AppliedSeq, st.StateHash))
			}
			c.t.Fatalf("not converged on seq %d within %v: %s", head, d, strings.Join(got, "; "))
		}
		time.Sleep(5 * time.Millisecond)
		head = c.head()
	}
	return time.Since(start)
}

// createTenant creates a tenant through p and returns its id and API key.
func createTenant(t *testing.T, p *proc, name string) (id, apiKey string) {
	t.Helper()
	code, body := p.admin("POST", "/admin/tenants", map[string]any{"name": name})
	if code != http.StatusCreated {
		t.Fatalf("create tenant on %s: %d %v", p.name, code, body)
	}
	return body["id"].(string), body["apiKey"].(string)
}

func createRoute(t *testing.T, p *proc, tenantID, path, upstream string) string {
	t.Helper()
	code, body := p.admin("POST", "/admin/routes", map[string]any{
		"tenantId": tenantID, "path": path, "upstreams": []map[string]any{{"url": upstream}},
	})
	if code != http.StatusCreated {
		t.Fatalf("create route on %s: %d %v", p.name, code, body)
	}
	return body["id"].(string)
}

// waitServing polls until every instance proxies path with the key.
func waitServing(t *testing.T, apiKey, path string, ps ...*proc) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, p := range ps {
		for {
			code, _, err := p.call("GET", path, nil, map[string]string{"X-API-Key": apiKey})
			if err == nil && code == 200 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s does not serve %s: %d %v", p.name, path, code, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// traffic sends GET requests at a steady rate until stopped, counting outcomes.
type traffic struct {
	sent, ok  atomic.Int64
	mu        sync.Mutex
	failures  map[string]int // "status 502 ..." or "transport: ..." -> count
	stop      chan struct{}
	done      chan struct{}
	latencies []time.Duration
}

// startTraffic sends rate requests per second, round robin over targets
// (base URLs), each with the key, until stop.
func startTraffic(targets []func() string, path, apiKey string, rate int) *traffic {
	tr := &traffic{failures: map[string]int{}, stop: make(chan struct{}), done: make(chan struct{})}
	var wg sync.WaitGroup
	go func() {
		defer close(tr.done)
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-tr.stop:
				wg.Wait()
				return
			case <-tick.C:
			}
			base := targets[i%len(targets)]()
			wg.Add(1)
			go func() {
				defer wg.Done()
				tr.one(base, path, apiKey)
			}()
		}
	}()
	return tr
}

func (tr *traffic) one(base, path, apiKey string) {
	tr.sent.Add(1)
	req, _ := http.NewRequest("GET", base+path, nil)
	req.Header.Set("X-API-Key", apiKey)
	start := time.Now()
	defer func() {
		tr.mu.Lock()
		tr.latencies = append(tr.latencies, time.Since(start))
		tr.mu.Unlock()
	}()
	resp, err := client.Do(req)
	var why string
	if err != nil {
		why = "transport: " + err.Error()
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			tr.ok.Add(1)
			return
		}
		why = fmt.Sprintf("status %d %.80s", resp.StatusCode, b)
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.failures[why]++
}

// end stops the traffic and returns sent and failed counts.
func (tr *traffic) end() (sent, failed int64, why map[string]int) {
	close(tr.stop)
	<-tr.done
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.sent.Load(), tr.sent.Load() - tr.ok.Load(), tr.failures
}

// toxi is a Toxiproxy proxy in front of a service, which a test can cut.
type toxi struct {
	t     *testing.T
	proxy *toxiproxy.Proxy
}

func newToxi(t *testing.T, upstream string) *toxi {
	t.Helper()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, t.Name(), "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return &toxi{t: t, proxy: p}
}

func (x *toxi) addr() string { return x.proxy.Listen }

// cut closes every connection and refuses new ones.
func (x *toxi) cut() { x.proxy.Stop() }

// restore listens again on the same address.
func (x *toxi) restore() {
	x.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := x.proxy.Start()
		if err == nil || errors.Is(err, toxiproxy.ErrProxyAlreadyStarted) {
			return
		}
		if time.Now().After(deadline) {
			x.t.Fatalf("toxiproxy restart: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// blackhole keeps connections open but lets no byte through, new ones
// included: a partition rather than a refusal.
func (x *toxi) blackhole() {
	x.t.Helper()
	_, err := x.proxy.Toxics.AddToxicJson(strings.NewReader(`{"name":"blackhole","type":"timeout","stream":"downstream","attributes":{"timeout":0}}`))
	if err != nil {
		x.t.Fatal(err)
	}
}

// clear removes the black hole; the connections held meanwhile are closed,
// as a real partition's would time out.
func (x *toxi) clear() {
	x.t.Helper()
	if err := x.proxy.Toxics.RemoveToxic(context.Background(), "blackhole"); err != nil {
		x.t.Fatal(err)
	}
}

// outage is one way of making a service unreachable.
type outage struct {
	name       string
	down, back func(*toxi)
}

var outages = []outage{
	{name: "refused", down: (*toxi).cut, back: (*toxi).restore},
	{name: "blackhole", down: (*toxi).blackhole, back: (*toxi).clear},
}

// hostPort returns the host:port of a URL.
func hostPort(t *testing.T, raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// withHost returns raw with its host:port replaced.
func withHost(t *testing.T, raw, hostport string) string {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = hostport
	return u.String()
}

// percentile of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func sortDurations(ds []time.Duration) {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 1, 64) + "ms"
}

// balancer is a tiny round-robin load balancer that sends each request to
// the next backend that is up (its /ready answered 200 at the last check),
// and retries an idempotent request on the next one after a connection error,
// as nginx's proxy_next_upstream does.
type balancer struct {
	backends []*proc
	ready    []atomic.Bool
	next     atomic.Uint64
	srv      *http.Server
	base     string
	stop     chan struct{}
}

func startBalancer(t *testing.T, backends ...*proc) *balancer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &balancer{backends: backends, ready: make([]atomic.Bool, len(backends)), base: "http://" + ln.Addr().String(), stop: make(chan struct{})}
	b.check()
	b.srv = &http.Server{Handler: http.HandlerFunc(b.serve)}
	go func() { _ = b.srv.Serve(ln) }()
	go func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-b.stop:
				return
			case <-tick.C:
				b.check()
			}
		}
	}()
	t.Cleanup(func() {
		close(b.stop)
		_ = b.srv.Close()
	})
	return b
}

var probeClient = &http.Client{Timeout: 300 * time.Millisecond}

func (b *balancer) check() {
	var wg sync.WaitGroup
	for i, p := range b.backends {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := probeClient.Get(p.base + "/ready")
			up := err == nil && resp.StatusCode == 200
			if err == nil {
				resp.Body.Close()
			}
			b.ready[i].Store(up)
		}()
	}
	wg.Wait()
}

func (b *balancer) serve(w http.ResponseWriter, r *http.Request) {
	n := len(b.backends)
	start := int(b.next.Add(1))
	var lastErr error
	for i := range n {
		k := (start + i) % n
		if !b.ready[k].Load() {
			continue
		}
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, b.backends[k].base+r.URL.RequestURI(), nil)
		req.Header = r.Header.Clone()
		resp, err := client.Do(req)
		if err != nil {
			lastErr = err
			continue // connection refused or reset: the next backend
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
		return
	}
	w.WriteHeader(http.StatusBadGateway)
	fmt.Fprintf(w, "balancer: no backend answered: %v", lastErr)
}

// upstream answers 200 after delay.
func upstream(t *testing.T, delay time.Duration) string {
	return upstreamServer(t, delay).URL
}

// latency returns the p99 and the maximum latency of the requests sent.
func (tr *traffic) latency() (p99, maxLatency string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	sortDurations(tr.latencies)
	if len(tr.latencies) == 0 {
		return "-", "-"
	}
	return ms(percentile(tr.latencies, .99)), ms(tr.latencies[len(tr.latencies)-1])
}
