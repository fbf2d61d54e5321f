package main

// The fault matrix: several gateway processes on one PostgreSQL and one Redis,
// with connections cut (Toxiproxy), disposable Redis servers restarted and
// flushed, and instances killed, stopped and drained. Each case logs its
// figures as "FIGURE <case>: key=value ...".

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/events/testenv"
)

func figure(t *testing.T, name string, kv ...any) {
	t.Helper()
	var b strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(&b, " %v=%v", kv[i], kv[i+1])
	}
	t.Logf("FIGURE %s:%s", name, b.String())
}

// servingCluster starts n instances on e, gives tenant acme a route for
// path to a test upstream answering after delay, and waits until every
// instance serves it. It returns the cluster, the tenant's id and its key.
func servingCluster(t *testing.T, e clusterEnv, n int, path string, delay time.Duration) (c *cluster, tid, key string) {
	c = startCluster(t, e, n)
	tid, key = createTenant(t, c.procs[0], "acme")
	createRoute(t, c.procs[0], tid, path, upstream(t, delay))
	waitServing(t, key, path+"/warm", c.procs...)
	return c, tid, key
}

// markBaseline records, once the cluster is set up, the store's head and how
// many events each instance has applied (its config-lag metric counts each
// application once, from the moment the instance is live).
func (c *cluster) markBaseline(ps ...*proc) {
	c.t.Helper()
	c.baseHead = c.head()
	c.baseApplied = map[*proc]float64{}
	for _, p := range append(c.procs, ps...) {
		_, _, c.baseApplied[p] = scrapeHistogram(c.t, p, "gateway_config_lag_seconds")
	}
}

// eventsLostOrTwice counts, after the cluster converged, events lost or
// applied twice since markBaseline: in the store (the log must be 1..head
// without a gap) and on every instance not restarted since, which must have
// applied exactly the events committed since. It fails the test on any.
func eventsLostOrTwice(t *testing.T, c *cluster) (lost, twice int64) {
	t.Helper()
	if c.baseApplied == nil {
		t.Fatal("markBaseline was not called")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	evs, err := c.store.Read(ctx, eventsQueryAll)
	if err != nil {
		t.Fatal(err)
	}
	for i, ev := range evs {
		if ev.Seq != int64(i+1) {
			lost++
		}
	}
	committed := int64(len(evs)) - c.baseHead
	for p, before := range c.baseApplied {
		if p.starts > 1 || !p.alive() {
			continue
		}
		_, _, after := scrapeHistogram(t, p, "gateway_config_lag_seconds")
		if d := int64(after-before) - committed; d > 0 {
			twice += d
		} else {
			lost -= d
		}
	}
	if lost > 0 || twice > 0 {
		t.Errorf("%d events lost and %d applied twice", lost, twice)
	}
	return lost, twice
}

// TestFaultCrashBetweenCommitAndPublish: an instance dies right after its
// commit, before publishing; the others still get the event from the store
// (relay or head check) within 2 s.
func TestFaultCrashBetweenCommitAndPublish(t *testing.T) {
	t.Parallel()
	e := newClusterEnv(t)
	c := startCluster(t, e, 2)
	crasher := startProc(t, "gw-crash", with(e.vars(), "TEST_FAILPOINT", "exit-after-commit"))
	createTenant(t, c.procs[0], "before")
	c.waitConverged(5*time.Second, append(c.procs, crasher)...)
	c.markBaseline()

	_, _, err := crasher.call("POST", "/admin/tenants", map[string]any{"name": "committed-not-published"}, map[string]string{"X-Admin-Key": testAdminKey})
	if err == nil {
		t.Fatal("the failpoint instance answered instead of crashing")
	}
	if !crasher.wait(5*time.Second) || crasher.exitCode() != 86 {
		t.Fatalf("failpoint instance: exit code %d", crasher.exitCode())
	}
	crashed := time.Now()
	if head := c.head(); head != 2 {
		t.Fatalf("store head %d, want 2 (the crashed write committed)", head)
	}
	c.waitConverged(2 * time.Second)
	took := time.Since(crashed)

	crasher.env["TEST_FAILPOINT"] = ""
	crasher.start()
	ready := crasher.waitReady(10 * time.Second)
	c.waitConverged(2*time.Second, append(c.procs, crasher)...)
	lost, twice := eventsLostOrTwice(t, c)
	figure(t, "crash-between-commit-and-publish", "reached_all_in", ms(took),
		"restarted_ready_in", ms(ready), "failed_requests", 0, "events_lost", lost, "applied_twice", twice)
}

func with(env map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range env {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// writer makes admin writes through the instances in turn until stopped,
// counting successes and failures.
type writer struct {
	ok, failed atomic.Int64
	stop       chan struct{}
	done       chan struct{}
	mu         sync.Mutex
	why        map[string]int
}

func startWriter(t *testing.T, round string, every time.Duration, ps ...*proc) *writer {
	w := &writer{stop: make(chan struct{}), done: make(chan struct{}), why: map[string]int{}}
	go func() {
		defer close(w.done)
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			case <-time.After(every):
			}
			p := ps[i%len(ps)]
			code, b, err := p.call("POST", "/admin/tenants", map[string]any{"name": fmt.Sprintf("w%s-%s-%d", round, p.name, i)},
				map[string]string{"X-Admin-Key": testAdminKey})
			if err == nil && code == http.StatusCreated {
				w.ok.Add(1)
				continue
			}
			w.failed.Add(1)
			w.mu.Lock()
			w.why[fmt.Sprintf("%d %v %.60s", code, err, b)]++
			w.mu.Unlock()
		}
	}()
	return w
}

func (w *writer) end() (ok, failed int64, why map[string]int) {
	close(w.stop)
	<-w.done
	return w.ok.Load(), w.failed.Load(), w.why
}

// TestFaultRedisRestartedEmptyAndFlushed: a disposable Redis is killed and
// restarted empty, then flushed, while writes continue; every instance
// re-syncs and holds the writes made meanwhile within 2 s of Redis returning.
func TestFaultRedisRestartedEmptyAndFlushed(t *testing.T) {
	t.Parallel()
	rs := testenv.StartRedis(t)
	e := newClusterEnv(t)
	e.redisURL = rs.URL()
	c := startCluster(t, e, 3)
	c.markBaseline()
	w := startWriter(t, "a", 50*time.Millisecond, c.procs...)
	time.Sleep(300 * time.Millisecond) // writes before the outage (traffic, not an outcome)
	rs.Kill()
	time.Sleep(time.Second) // writes during the outage
	rs.Start(t)
	back := time.Now()
	okW, failedW, why := w.end()
	c.waitConverged(5 * time.Second)
	afterReturn := time.Since(back)
	if afterReturn > 2*time.Second {
		t.Errorf("converged %v after Redis returned, want within 2s", afterReturn)
	}

	w = startWriter(t, "b", 50*time.Millisecond, c.procs...)
	time.Sleep(300 * time.Millisecond)
	cl := rs.Client()
	if err := cl.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	flushed := time.Now()
	time.Sleep(300 * time.Millisecond) // writes go on after the flush
	okW2, failedW2, why2 := w.end()
	lastWrite := time.Now()
	c.waitConverged(5 * time.Second)
	afterFlush, afterLast := time.Since(flushed), time.Since(lastWrite)
	if afterLast > 2*time.Second {
		t.Errorf("converged %v after the last write following FLUSHALL, want within 2s", afterLast)
	}
	lost, twice := eventsLostOrTwice(t, c)
	figure(t, "redis-restarted-empty", "writes_ok", okW, "writes_failed", failedW, "converged_after_return", ms(afterReturn))
	figure(t, "redis-flushall", "writes_ok", okW2, "writes_failed", failedW2, "converged_after_flush", ms(afterFlush),
		"converged_after_last_write", ms(afterLast), "events_lost", lost, "applied_twice", twice)
	if failedW+failedW2 > 0 {
		t.Errorf("admin writes failed while only Redis was away: %v %v", why, why2)
	}
}

// TestFaultPostgresUnreachable: PostgreSQL cut for 10 s under steady
// traffic: no proxy errors, admin writes answer 503 store_unavailable, and
// everything recovers by itself.
func TestFaultPostgresUnreachable(t *testing.T) {
	t.Parallel()
	for _, o := range outages {
		t.Run(o.name, func(t *testing.T) {
			t.Parallel()
			testPostgresUnreachable(t, o)
		})
	}
}

func testPostgresUnreachable(t *testing.T, o outage) {
	e := newClusterEnv(t)
	px := newToxi(t, hostPort(t, e.directDSN))
	e.dsn = withHost(t, e.directDSN, px.addr())
	c, _, key := servingCluster(t, e, 2, "/api", 0)
	c.markBaseline()

	tr := startTraffic(targets(c.procs...), "/api/x", key, 100)
	time.Sleep(500 * time.Millisecond)
	o.down(px)
	cutAt := time.Now()
	writes503, writesOther := 0, map[string]int{}
	var slowestWrite time.Duration
	for time.Since(cutAt) < 10*time.Second {
		p := c.procs[writes503%len(c.procs)]
		began := time.Now()
		code, body := p.admin("POST", "/admin/tenants", map[string]any{"name": "during-outage-" + strconv.Itoa(writes503)})
		slowestWrite = max(slowestWrite, time.Since(began))
		errBody, _ := body["error"].(map[string]any)
		if code == http.StatusServiceUnavailable && errBody["code"] == "store_unavailable" {
			writes503++
		} else {
			writesOther[fmt.Sprintf("%d %v", code, body)]++
		}
		time.Sleep(50 * time.Millisecond) // a steady trickle of writes, not a flood
	}
	for _, p := range c.procs {
		if code, _, err := p.call("GET", "/ready", nil, nil); err != nil || code != 200 {
			t.Errorf("%s not ready with the store down (fail static): %d %v", p.name, code, err)
		}
	}
	o.back(px)
	restored := time.Now()
	// Recovery: the first admin write that succeeds, then convergence.
	for {
		code, _ := c.procs[1].admin("POST", "/admin/tenants", map[string]any{"name": "after-outage"})
		if code == http.StatusCreated {
			break
		}
		if time.Since(restored) > 15*time.Second {
			t.Fatalf("admin writes still fail %v after the store returned: %d", time.Since(restored), code)
		}
		time.Sleep(50 * time.Millisecond)
	}
	writable := time.Since(restored)
	c.waitConverged(5 * time.Second)
	recovered := time.Since(restored)
	time.Sleep(300 * time.Millisecond)
	sent, failed, why := tr.end()
	lost, twice := eventsLostOrTwice(t, c)
	p99, worst := tr.latency()
	figure(t, "postgres-unreachable-10s-"+o.name, "requests", sent, "failed_requests", failed, "latency_p99", p99, "latency_max", worst, "admin_writes_503", writes503, "admin_503_slowest", ms(slowestWrite),
		"admin_writes_other", len(writesOther), "writable_after", ms(writable), "converged_after", ms(recovered),
		"events_lost", lost, "applied_twice", twice)
	if failed > 0 {
		t.Errorf("%d of %d proxied requests failed with the store down: %v", failed, sent, why)
	}
	if len(writesOther) > 0 || writes503 == 0 {
		t.Errorf("admin writes with the store down: %d answered 503 store_unavailable, others: %v", writes503, writesOther)
	}
}

func targets(ps ...*proc) []func() string {
	out := make([]func() string, len(ps))
	for i, p := range ps {
		out[i] = func() string { return p.base }
	}
	return out
}

// TestFaultRedisUnreachable: Redis cut for 10 s under steady traffic: no 5xx
// for healthy routes (rate limits fall back to local), and the instances
// converge again once it returns.
func TestFaultRedisUnreachable(t *testing.T) {
	t.Parallel()
	for _, o := range outages {
		t.Run(o.name, func(t *testing.T) {
			t.Parallel()
			testRedisUnreachable(t, o)
		})
	}
}

func testRedisUnreachable(t *testing.T, o outage) {
	e := newClusterEnv(t)
	px := newToxi(t, hostPort(t, e.redisURL))
	e.redisURL = withHost(t, e.redisURL, px.addr())
	c, _, key := servingCluster(t, e, 2, "/api", 0)
	c.markBaseline()

	tr := startTraffic(targets(c.procs...), "/api/x", key, 100)
	time.Sleep(500 * time.Millisecond)
	o.down(px)
	time.Sleep(5 * time.Second)
	// A write during the outage: committed, applied by the instance that took
	// it, the other one gets it from the store (head check).
	createTenant(t, c.procs[0], "during-redis-outage")
	duringTook := c.waitConverged(5 * time.Second)
	time.Sleep(5 * time.Second)
	o.back(px)
	restored := time.Now()
	createTenant(t, c.procs[1], "after-redis-outage")
	c.waitConverged(5 * time.Second)
	recovered := time.Since(restored)
	time.Sleep(300 * time.Millisecond)
	sent, failed, why := tr.end()
	fivexx := 0
	for k, n := range why {
		if strings.HasPrefix(k, "status 5") || strings.HasPrefix(k, "transport") {
			fivexx += n
		}
	}
	lost, twice := eventsLostOrTwice(t, c)
	p99, worst := tr.latency()
	figure(t, "redis-unreachable-10s-"+o.name, "requests", sent, "failed_requests", failed, "latency_p99", p99, "latency_max", worst, "non_fallback_5xx", fivexx,
		"write_during_outage_converged_in", ms(duringTook), "converged_after_return", ms(recovered),
		"events_lost", lost, "applied_twice", twice)
	if failed > 0 {
		t.Errorf("%d of %d proxied requests failed with Redis down: %v", failed, sent, why)
	}
}

// TestFaultKillOneInstance: kill -9 one of three instances behind a load
// balancer under load; the others keep serving, and the restarted one is
// ready with the full state.
func TestFaultKillOneInstance(t *testing.T) {
	t.Parallel()
	e := newClusterEnv(t)
	c, tid, key := servingCluster(t, e, 3, "/api", 0)
	lb := startBalancer(t, c.procs...)
	c.markBaseline()

	tr := startTraffic([]func() string{func() string { return lb.base }}, "/api/x", key, 150)
	time.Sleep(time.Second)
	victim := c.procs[2]
	victim.kill()
	// A change while it is down.
	createRoute(t, c.procs[0], tid, "/while-down", upstream(t, 0))
	time.Sleep(time.Second)
	victim.start()
	ready := victim.waitReady(10 * time.Second)
	// Ready means caught up: the full state at once, not eventually.
	if st, ok := victim.status(); !ok || st.AppliedSeq != c.head() {
		t.Errorf("restarted instance ready at seq %d, store head %d", st.AppliedSeq, c.head())
	}
	converge := c.waitConverged(2 * time.Second)
	time.Sleep(time.Second)
	sent, failed, why := tr.end()
	waitServing(t, key, "/while-down", victim)
	lost, twice := eventsLostOrTwice(t, c)
	p99, worst := tr.latency()
	figure(t, "kill-9-one-of-3", "requests", sent, "failed_requests", failed, "latency_p99", p99, "latency_max", worst, "restarted_ready_in", ms(ready),
		"converged_after_ready", ms(converge), "events_lost", lost, "applied_twice", twice)
	if failed > 0 {
		t.Errorf("%d of %d requests failed: %v", failed, sent, why)
	}
}

// TestFaultSIGTERMDrain: SIGTERM to an instance serving 2-second requests:
// /ready drops first (the balancer stops sending), every request succeeds,
// and the process exits within its drain time.
func TestFaultSIGTERMDrain(t *testing.T) {
	t.Parallel()
	e := newClusterEnv(t)
	e.extra = map[string]string{"SHUTDOWN_DELAY": "500ms", "SHUTDOWN_TIMEOUT": "5s"}
	c, _, key := servingCluster(t, e, 2, "/slow", 2*time.Second)
	lb := startBalancer(t, c.procs...)

	tr := startTraffic([]func() string{func() string { return lb.base }}, "/slow/x", key, 20)
	time.Sleep(2500 * time.Millisecond) // in flight on both instances
	victim := c.procs[1]
	var readyDropped, refused atomic.Int64 // ns since the signal
	watchDone := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(watchDone)
		for time.Since(start) < 10*time.Second {
			code, _, err := victim.call("GET", "/ready", nil, nil)
			since := int64(time.Since(start))
			if err == nil && code == http.StatusServiceUnavailable {
				readyDropped.CompareAndSwap(0, since)
			}
			if err != nil {
				refused.CompareAndSwap(0, since)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	victim.signal(syscall.SIGTERM)
	if !victim.wait(10 * time.Second) {
		t.Fatal("no exit within 10s of SIGTERM")
	}
	exited := time.Since(start)
	<-watchDone
	time.Sleep(2500 * time.Millisecond) // requests now go to the survivor only
	sent, failed, why := tr.end()
	figure(t, "sigterm-drain-2s-requests", "requests", sent, "failed_requests", failed,
		"ready_503_after", ms(time.Duration(readyDropped.Load())), "listener_closed_after", ms(time.Duration(refused.Load())),
		"exited_after", ms(exited), "exit_code", victim.exitCode())
	if failed > 0 {
		t.Errorf("%d of %d requests failed: %v", failed, sent, why)
	}
	if readyDropped.Load() == 0 || (refused.Load() != 0 && readyDropped.Load() > refused.Load()) {
		t.Errorf("/ready did not drop before the listener closed: 503 at %v, refused at %v",
			time.Duration(readyDropped.Load()), time.Duration(refused.Load()))
	}
	if victim.exitCode() != 0 || exited > 500*time.Millisecond+5*time.Second+time.Second {
		t.Errorf("exit code %d after %v, want 0 within SHUTDOWN_DELAY+SHUTDOWN_TIMEOUT", victim.exitCode(), exited)
	}
}

// TestFaultPausedConsumerFallsBehindTheStreamCap: an instance stopped
// (SIGSTOP) while more events than the stream cap are written detects the
// gap on resume, re-reads the store and converges.
func TestFaultPausedConsumerFallsBehindTheStreamCap(t *testing.T) {
	t.Parallel()
	e := newClusterEnv(t)
	e.extra = map[string]string{"STREAM_MAXLEN": "100"}
	c := startCluster(t, e, 3)
	paused := c.procs[2]
	tid, _ := createTenant(t, c.procs[0], "acme")
	rid := createRoute(t, c.procs[0], tid, "/api", upstream(t, 0))
	c.waitConverged(5 * time.Second)
	c.markBaseline()
	paused.signal(syscall.SIGSTOP)
	const n = 400 // the cap is approximate (whole stream nodes of 100)
	var wg sync.WaitGroup
	for g := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < n; i += 2 {
				code, b, err := c.procs[g].call("PATCH", "/admin/routes/"+rid, map[string]any{"path": fmt.Sprintf("/v%d", i)},
					map[string]string{"X-Admin-Key": testAdminKey})
				if err != nil || code != 200 {
					t.Errorf("patch %d: %d %v %s", i, code, err, b)
					return
				}
			}
		}()
	}
	wg.Wait()
	streamLen := c.streamLen(t, e)
	paused.signal(syscall.SIGCONT)
	took := c.waitConverged(10 * time.Second)
	lost, twice := eventsLostOrTwice(t, c)
	detected := false
	for deadline := time.Now().Add(2 * time.Second); !detected && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		detected = strings.Contains(paused.logs.String(), "bus gap or resync: catching up from the store")
	}
	figure(t, "sigstop-behind-stream-cap", "events_written", n, "stream_len", streamLen, "converged_after_resume", ms(took),
		"gap_logged", detected, "events_lost", lost, "applied_twice", twice)
	if streamLen >= n {
		t.Fatalf("stream holds %d entries: not trimmed below the %d events written", streamLen, n)
	}
	if !detected {
		t.Error("the resumed instance did not log the gap")
	}
}

// streamLen is the number of entries in the cluster's stream.
func (c *cluster) streamLen(t *testing.T, e clusterEnv) int64 {
	t.Helper()
	rdb := redisClientFor(t, e.redisURL)
	defer rdb.Close()
	n, err := rdb.XLen(context.Background(), e.prefix+"events").Result()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestFaultMalformedStreamEntry: an entry written straight into the stream
// that is not an event is logged and skipped; no instance crashes, and later
// events are applied.
func TestFaultMalformedStreamEntry(t *testing.T) {
	t.Parallel()
	e := newClusterEnv(t)
	c := startCluster(t, e, 3)
	createTenant(t, c.procs[0], "acme")
	c.waitConverged(5 * time.Second)
	c.markBaseline()
	rdb := redisClientFor(t, e.redisURL)
	defer rdb.Close()
	next := c.head() + 1
	// It takes the next seq's stream ID, so the real event cannot be published
	// under it: consumers must take that one from the store.
	if err := rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: e.prefix + "events", ID: strconv.FormatInt(next, 10) + "-0", Values: []any{"event", "{not json"}}).Err(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	createTenant(t, c.procs[0], "after-malformed-1")
	createTenant(t, c.procs[1], "after-malformed-2")
	c.waitConverged(5 * time.Second)
	sinceWrites := time.Since(start)
	for _, p := range c.procs {
		if !p.alive() {
			t.Errorf("%s exited", p.name)
		}
	}
	// Logs come through a pipe: poll for them.
	logged := 0
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		logged = 0
		for _, p := range c.procs {
			if strings.Contains(p.logs.String(), "skipping malformed stream entry") {
				logged++
			}
		}
		if logged == len(c.procs) || time.Now().After(deadline) {
			break
		}
	}
	lost, twice := eventsLostOrTwice(t, c)
	figure(t, "malformed-stream-entry", "instances_logged", logged, "converged_after_writes", ms(sinceWrites),
		"events_lost", lost, "applied_twice", twice)
	if logged != len(c.procs) {
		t.Errorf("%d of the %d instances logged the malformed entry", logged, len(c.procs))
	}
}

// TestFaultConflictingWrites: 100 writes with the same If-Match spread over 3
// instances: exactly one wins, the others get 412.
func TestFaultConflictingWrites(t *testing.T) {
	t.Parallel()
	e := newClusterEnv(t)
	c := startCluster(t, e, 3)
	tid, _ := createTenant(t, c.procs[0], "acme")
	c.waitConverged(5 * time.Second)
	var wins, mismatches atomic.Int64
	var mu sync.Mutex
	other := map[string]int{}
	var wg sync.WaitGroup
	startLine := make(chan struct{})
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-startLine
			p := c.procs[i%3]
			code, b, err := p.call("PATCH", "/admin/tenants/"+tid, map[string]any{"name": "acme-" + strconv.Itoa(i)},
				map[string]string{"X-Admin-Key": testAdminKey, "If-Match": `"1"`})
			switch {
			case err == nil && code == 200:
				wins.Add(1)
			case err == nil && code == http.StatusPreconditionFailed:
				mismatches.Add(1)
			default:
				mu.Lock()
				other[fmt.Sprintf("%d %v %.80s", code, err, b)]++
				mu.Unlock()
			}
		}()
	}
	close(startLine)
	wg.Wait()
	took := c.waitConverged(5 * time.Second)
	figure(t, "100-conflicting-if-match-writes", "wins", wins.Load(), "version_mismatch", mismatches.Load(), "other", len(other),
		"converged_in", ms(took))
	if wins.Load() != 1 || mismatches.Load() != 99 {
		t.Errorf("%d wins and %d 412s, want 1 and 99; others: %v", wins.Load(), mismatches.Load(), other)
	}
	if head := c.head(); head != 2 {
		t.Errorf("store head %d, want 2 (one create, one winning update)", head)
	}
}

// TestFaultColdStartWithoutTheStore: an instance restarted while PostgreSQL
// is unreachable serves its last known configuration from DATA_DIR and
// catches up once the store is back; without a cache it never becomes ready
// (it exits, for its supervisor to restart it), so it never serves an empty
// route table; and a cache the returning store contradicts is not mixed
// with the store's history.
func TestFaultColdStartWithoutTheStore(t *testing.T) {
	t.Parallel()
	e := newClusterEnv(t)
	px := newToxi(t, hostPort(t, e.directDSN))
	e.dsn = withHost(t, e.directDSN, px.addr())
	c := startCluster(t, e, 1)
	gw := c.procs[0]
	tid, key := createTenant(t, gw, "acme")
	createRoute(t, gw, tid, "/api", upstream(t, 0))
	waitServing(t, key, "/api/x", gw)
	before, _ := gw.status()
	waitCached(t, gw, before.AppliedSeq)

	gw.kill()
	px.cut()
	gw.start()
	ready := gw.waitReady(10 * time.Second)
	code, _, err := gw.call("GET", "/api/x", nil, map[string]string{"X-API-Key": key})
	st, _ := gw.status()
	if err != nil || code != 200 || st.StateHash != before.StateHash || st.AppliedSeq != before.AppliedSeq {
		t.Fatalf("cold start without the store: proxy %d %v, seq %d (was %d), same state %v",
			code, err, st.AppliedSeq, before.AppliedSeq, st.StateHash == before.StateHash)
	}
	if code, body := gw.admin("POST", "/admin/tenants", map[string]any{"name": "nope"}); code != http.StatusServiceUnavailable {
		t.Errorf("admin write with the store down: %d %v, want 503", code, body)
	}

	// Without a cache: never ready, and it exits.
	fresh := launchProc(t, "gw-fresh", e.vars())
	for fresh.alive() {
		if code, _, err := fresh.call("GET", "/ready", nil, nil); err == nil && code == 200 {
			t.Fatal("an instance without a cache became ready with the store down")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if fresh.exitCode() == 0 {
		t.Errorf("an instance that cannot reach the store nor a cache exited with 0")
	}

	// A write made elsewhere meanwhile arrives once the store is back.
	if _, err := c.store.Append(context.Background(), appendTenant(t, "made-while-down")); err != nil {
		t.Fatal(err)
	}
	px.restore()
	restored := time.Now()
	c.waitConverged(10 * time.Second)
	caughtUp := time.Since(restored)
	figure(t, "cold-start-without-store", "ready_in", ms(ready), "served_seq", st.AppliedSeq,
		"caught_up_after_store_returned", ms(caughtUp), "without_cache", "exit-"+strconv.Itoa(fresh.exitCode()))

	// The store is restored from an older backup while the instance serves
	// its cache: on reconnecting it exits rather than mix histories, and
	// restarts from the store.
	waitCached(t, gw, c.head())
	gw.kill()
	px.cut()
	gw.start()
	gw.waitReady(10 * time.Second)
	ctx := context.Background()
	if _, err := c.store.DB().ExecContext(ctx, "DELETE FROM events WHERE seq >= 2"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.store.Append(ctx, appendTenant(t, "other-history")); err != nil {
		t.Fatal(err)
	}
	px.restore()
	if !gw.wait(10*time.Second) || gw.exitCode() != 1 || !strings.Contains(gw.logs.String(), "does not match the store") {
		t.Fatalf("with a contradicting store: alive %v, exit code %d", gw.alive(), gw.exitCode())
	}
	gw.start()
	gw.waitReady(10 * time.Second)
	c.waitConverged(5 * time.Second)
	if _, body := gw.admin("GET", "/admin/state", nil); fmt.Sprint(body["routes"]) != "[]" || len(body["tenants"].([]any)) != 2 {
		t.Errorf("restarted on the store's history (2 tenants, no route), it serves: %v", body)
	}
}

// scrapeHistogram reads a histogram's cumulative buckets and count from p's /metrics.
func scrapeHistogram(t *testing.T, p *proc, name string) (bounds []float64, counts []float64, total float64) {
	t.Helper()
	code, b, err := p.call("GET", "/metrics", nil, map[string]string{"X-Admin-Key": testAdminKey})
	if err != nil || code != 200 {
		t.Fatalf("/metrics on %s: %d %v", p.name, code, err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, name+`_bucket{le="`); ok {
			le, val, _ := strings.Cut(rest, `"} `)
			bound := math.Inf(1)
			if le != "+Inf" {
				bound, _ = strconv.ParseFloat(le, 64)
			}
			v, _ := strconv.ParseFloat(val, 64)
			bounds, counts = append(bounds, bound), append(counts, v)
		}
		if rest, ok := strings.CutPrefix(line, name+"_count "); ok {
			total, _ = strconv.ParseFloat(rest, 64)
		}
	}
	return bounds, counts, total
}

// histogramQuantile returns the upper bound of the bucket holding quantile q
// of the observations made between two scrapes.
func histogramQuantile(q float64, bounds, before, after []float64) float64 {
	n := after[len(after)-1] - before[len(before)-1]
	for i := range bounds {
		if after[i]-before[i] >= q*n {
			return bounds[i]
		}
	}
	return math.Inf(1)
}

// TestPropagationAcrossInstances: 200 route changes through one instance,
// observed by polling the other two. It does not run in parallel, so the
// figure is not inflated by the other fault cases.
func TestPropagationAcrossInstances(t *testing.T) {
	e := newClusterEnv(t)
	c := startCluster(t, e, 3)
	src, observers := c.procs[0], c.procs[1:]
	tid, _ := createTenant(t, src, "acme")
	rid := createRoute(t, src, tid, "/api", upstream(t, 0))
	c.waitConverged(5 * time.Second)
	const lagMetric = "gateway_config_lag_seconds"
	var before [2][]float64
	var bounds []float64
	for i, o := range observers {
		bounds, before[i], _ = scrapeHistogram(t, o, lagMetric)
	}

	const n = 200
	var fromAnswer, fromSend []time.Duration
	for i := range n {
		sent := time.Now()
		code, body := src.admin("PATCH", "/admin/routes/"+rid, map[string]any{"path": fmt.Sprintf("/v%d", i)})
		if code != 200 {
			t.Fatalf("patch %d: %d %v", i, code, body)
		}
		answered := time.Now()
		seq := int64(body["version"].(float64)) + 1 // the tenant is seq 1; route version v is seq v+1
		var wg sync.WaitGroup
		seen := make([]time.Time, len(observers))
		for k, o := range observers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				deadline := time.Now().Add(5 * time.Second)
				for time.Now().Before(deadline) {
					if st, ok := o.status(); ok && st.AppliedSeq >= seq {
						seen[k] = time.Now()
						return
					}
					time.Sleep(time.Millisecond) // the poll interval: leave the CPU to the gateways
				}
			}()
		}
		wg.Wait()
		for k, at := range seen {
			if at.IsZero() {
				t.Fatalf("%s did not apply seq %d within 5s", observers[k].name, seq)
			}
			fromAnswer = append(fromAnswer, max(0, at.Sub(answered)))
			fromSend = append(fromSend, at.Sub(sent))
		}
	}
	sortDurations(fromAnswer)
	sortDurations(fromSend)
	p50, p99 := percentile(fromAnswer, .5), percentile(fromAnswer, .99)
	var metric [2]float64
	for i, o := range observers {
		_, after, _ := scrapeHistogram(t, o, lagMetric)
		if got := after[len(after)-1] - before[i][len(before[i])-1]; got != n {
			t.Errorf("%s: the lag metric counted %v events, want %d", o.name, got, n)
		}
		metric[i] = histogramQuantile(.99, bounds, before[i], after)
		var dist []string
		for k := range bounds {
			dist = append(dist, fmt.Sprintf("le%g=%g", bounds[k], after[k]-before[i][k]))
		}
		t.Logf("%s %s: %s", o.name, lagMetric, strings.Join(dist, " "))
	}
	figure(t, "propagation-3-instances", "changes", n, "observations", len(fromAnswer),
		"p50", ms(p50), "p99", ms(p99), "max", ms(fromAnswer[len(fromAnswer)-1]),
		"p50_from_send", ms(percentile(fromSend, .5)), "p99_from_send", ms(percentile(fromSend, .99)),
		"metric_p99_bucket_le", fmt.Sprintf("%gs/%gs", metric[0], metric[1]))
	// The goal is p99 <= 50 ms (the figure above); the test fails at twice
	// that, which a shared CI machine does not reach but a propagation that
	// fell back to the store's head checks does.
	if p99 > 100*time.Millisecond {
		t.Errorf("propagation p99 %v, goal <= 50ms", p99)
	}
	// The metric (commit to apply, bucketed) agrees with what polling saw:
	// its p99 bucket is within one bucket of those holding the polled p99
	// from the answer (which misses the commit) and from the send (which
	// adds the request and the poll).
	bucketOf := func(d time.Duration) int {
		for k, b := range bounds {
			if d.Seconds() <= b {
				return k
			}
		}
		return len(bounds) - 1
	}
	lo, hi := bucketOf(p99)-1, bucketOf(percentile(fromSend, .99))+1
	for i, le := range metric {
		if k := bucketOf(time.Duration(le * float64(time.Second))); k < lo || k > hi {
			t.Errorf("%s: lag metric p99 <= %gs, polling p99 %v (from send %v)", observers[i].name, le, p99, percentile(fromSend, .99))
		}
	}
}

var eventsQueryAll = events.Query{}

func redisClientFor(t *testing.T, raw string) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(raw)
	if err != nil {
		t.Fatal(err)
	}
	return redis.NewClient(opts)
}

// appendTenant is a TenantCreated event as another instance would commit it.
func appendTenant(t *testing.T, name string) events.AppendRequest {
	t.Helper()
	sum := sha256.Sum256([]byte("gw_" + name))
	data, _ := json.Marshal(events.TenantCreatedData{Name: name, Status: events.TenantActive,
		APIKeyHash: hex.EncodeToString(sum[:]), APIKeyPrefix: "gw_" + name[:2]})
	return events.AppendRequest{ExpectedHead: events.AnyHead, Events: []events.Envelope{{
		ID: uuid.NewString(), Type: events.TenantCreated, AggregateType: events.AggregateTenant,
		AggregateID: uuid.NewString(), AggregateVersion: 1, Actor: "fault-test", OccurredAt: time.Now().UTC(), Data: data,
	}}}
}

// TestFaultOneInstanceCutFromTheStore: one instance loses PostgreSQL (a
// black hole: queries hang) while Redis and the other instances are fine;
// writes made elsewhere still reach it through the stream, promptly.
func TestFaultOneInstanceCutFromTheStore(t *testing.T) {
	t.Parallel()
	e := newClusterEnv(t)
	c := startCluster(t, e, 1)
	px := newToxi(t, hostPort(t, e.directDSN))
	e.dsn = withHost(t, e.directDSN, px.addr())
	cut := startProc(t, "gw-cut", e.vars())
	c.procs = append(c.procs, cut)
	tid, key := createTenant(t, c.procs[0], "acme")
	c.waitConverged(5 * time.Second)

	px.blackhole()
	time.Sleep(time.Second) // the bus goes quiet: the cut instance checks the store's head, which hangs
	var lags []time.Duration
	for i := range 5 {
		createRoute(t, c.procs[0], tid, "/r"+strconv.Itoa(i), upstream(t, 0))
		start := time.Now()
		waitServing(t, key, "/r"+strconv.Itoa(i), cut)
		lags = append(lags, time.Since(start))
		time.Sleep(300 * time.Millisecond) // quiet again
	}
	px.clear()
	c.waitConverged(15 * time.Second)
	sortDurations(lags)
	figure(t, "one-instance-cut-from-store", "writes", len(lags), "max_propagation", ms(lags[len(lags)-1]), "min_propagation", ms(lags[0]))
	if lags[len(lags)-1] > time.Second {
		t.Errorf("writes reached the instance cut from the store after up to %v, want well under 1s (the stream is fine)", lags[len(lags)-1])
	}
}

// waitCached polls until p's local snapshot cache holds seq events (it is
// written right after they are applied; a kill -9 sooner loses the tail).
func waitCached(t *testing.T, p *proc, seq int64) {
	t.Helper()
	path := filepath.Join(p.env["DATA_DIR"], cacheFile)
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		if int64(bytes.Count(b, []byte("\n"))) >= seq {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the local cache holds %d events, want %d", p.name, bytes.Count(b, []byte("\n")), seq)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
