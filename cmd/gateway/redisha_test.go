package main

// Redis high availability with real processes on loopback: gateways on a
// Sentinel-managed master through failovers under load, and on a Redis
// Cluster. Figures are logged as "FIGURE <case>: key=value ..." and as a
// fault table.

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/events/testenv"
)

// haFailureThreshold is the breaker threshold of haTenant's route.
const haFailureThreshold = 3

// haTenant creates a tenant with a rate limit and a route to up with a
// circuit breaker and a health check, so traffic exercises every piece of
// shared runtime state.
func haTenant(t *testing.T, p *proc, name string, limit int, windowMs int64, up string) (id, key string) {
	t.Helper()
	code, body := p.admin("POST", "/admin/tenants", map[string]any{"name": name, "rateLimit": map[string]any{"limit": limit, "windowMs": windowMs}})
	if code != http.StatusCreated {
		t.Fatalf("create tenant: %d %v", code, body)
	}
	id, key = body["id"].(string), body["apiKey"].(string)
	code, body = p.admin("POST", "/admin/routes", map[string]any{
		"tenantId": id, "path": "/api", "upstreams": []map[string]any{{"url": up}},
		"resilience": map[string]any{
			"circuitBreaker": map[string]any{"failureThreshold": haFailureThreshold, "successThreshold": 1, "timeout": 1000},
			"healthCheck":    map[string]any{"endpoint": "/health", "intervalMs": 500, "timeoutMs": 200},
		},
	})
	if code != http.StatusCreated {
		t.Fatalf("create route: %d %v", code, body)
	}
	return id, key
}

// metric sums the samples of series on p's /metrics (-1 if unreadable).
func (p *proc) metric(series string) float64 {
	code, b, err := p.call("GET", "/metrics", nil, map[string]string{"X-Admin-Key": testAdminKey})
	if err != nil || code != http.StatusOK {
		return -1
	}
	v, ok := metricValue(string(b), series)
	if !ok {
		return -1
	}
	return v
}

// exactLimit creates a tenant with a limit of 15 per minute and sends 45
// requests round robin over the instances, 9 at a time; it returns how many
// were admitted (15 when the limit holds across the instances together).
func exactLimit(t *testing.T, c *cluster, name, up string) int64 {
	t.Helper()
	_, key := haTenant(t, c.procs[0], name, 15, 60_000, up)
	c.waitConverged(10 * time.Second)
	var ok atomic.Int64
	done := make(chan struct{})
	for w := range 9 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := w; i < 45; i += 9 {
				code, _, err := c.procs[i%len(c.procs)].call("GET", "/api/x", nil, map[string]string{"X-API-Key": key})
				if err == nil && code == http.StatusOK {
					ok.Add(1)
				}
			}
		}()
	}
	for range 9 {
		<-done
	}
	return ok.Load()
}

// trafficMark is where traffic and writes stood when a fault began.
type trafficMark struct {
	sent, failed, writesOK, writesFailed int64
	latencies                            int
}

func mark(tr *traffic, w *writer) trafficMark {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return trafficMark{sent: tr.sent.Load(), failed: failures(tr), writesOK: w.ok.Load(), writesFailed: w.failed.Load(), latencies: len(tr.latencies)}
}

// failures counts the failed requests; tr.mu is held.
func failures(tr *traffic) int64 {
	var n int64
	for _, c := range tr.failures {
		n += int64(c)
	}
	return n
}

// since is what traffic and writes saw from m on (requests still in flight
// count as sent, not failed).
func since(tr *traffic, w *writer, m trafficMark) (sent, failed, writesOK, writesFailed int64, worst time.Duration) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, l := range tr.latencies[m.latencies:] {
		worst = max(worst, l)
	}
	return tr.sent.Load() - m.sent, failures(tr) - m.failed, w.ok.Load() - m.writesOK, w.failed.Load() - m.writesFailed, worst
}

// breakerOpensEverywhere sends requests to a failing upstream through the
// first instance until its breaker opens, then polls the others until they
// refuse too, and returns how long that took. The others must refuse
// without having seen a failure of their own: they learnt it from the
// announcement. A request polled before the announcement arrived may still
// pass (it is asynchronous), but fewer than the threshold: an instance that
// then refuses could not have opened its breaker on its own failures.
func breakerOpensEverywhere(t *testing.T, ps []*proc, key string) time.Duration {
	t.Helper()
	pollUntil(t, 5*time.Second, "the breaker opens on "+ps[0].name, func() bool {
		code, _, _ := ps[0].call("GET", "/api/x", nil, map[string]string{"X-API-Key": key})
		return code == http.StatusServiceUnavailable
	})
	passed := map[string]int{}
	return pollUntil(t, 5*time.Second, "the other instances refuse too", func() bool {
		for _, p := range ps[1:] {
			code, _, _ := p.call("GET", "/api/x", nil, map[string]string{"X-API-Key": key})
			if code == http.StatusInternalServerError {
				if passed[p.name]++; passed[p.name] >= haFailureThreshold {
					t.Fatalf("%s passed %d requests to the failing upstream: the opening did not reach it", p.name, passed[p.name])
				}
				return false
			}
			if code != http.StatusServiceUnavailable {
				return false
			}
		}
		return true
	})
}

// streamHead is the last seq in the stream on the master at addr.
func streamHead(t *testing.T, addr, stream string) int64 {
	t.Helper()
	cl := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer cl.Close()
	b, err := events.NewRedisBus(cl, events.RedisBusConfig{Stream: stream}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	n, err := b.LastSeq(ctx)
	if err != nil {
		return -1
	}
	return n
}

// TestFaultSentinelFailoverUnderLoad: three gateway processes on a Sentinel
// set (a master, a replica, three sentinels) with proxied traffic (rate
// limited, breaker and health check on) and admin writes going on; the
// master is switched over with SENTINEL FAILOVER, then the new master is
// killed. Traffic and writes keep succeeding, no event is lost or applied
// twice, every instance ends on one seq and stateHash, and after each fault
// the stream, the shared rate limit and the instance list work again.
func TestFaultSentinelFailoverUnderLoad(t *testing.T) {
	t.Parallel()
	s := testenv.StartSentinel(t, testenv.SentinelAuth{})
	e := newClusterEnv(t)
	e.redisURL = "redis+sentinel://" + strings.Join(s.Sentinels, ",") + "/0?master_name=" + s.MasterName
	c := startCluster(t, e, 3)
	failing := newE2EUpstream(t)
	up := failing.url
	_, key := haTenant(t, c.procs[0], "acme", 100_000, 1000, up)
	waitServing(t, key, "/api/warm", c.procs...)
	c.waitConverged(5 * time.Second)
	c.markBaseline()
	if n := exactLimit(t, c, "limited-before", up); n != 15 {
		t.Fatalf("before any fault, 45 requests under a limit of 15 across 3 instances: %d admitted", n)
	}

	tr := startTraffic(targets(c.procs...), "/api/x", key, 150)
	w := startWriter(t, "ha", 100*time.Millisecond, c.procs...)
	type row struct{ fault, traffic, writes, events, recovery string }
	// The same load without a fault first: the baseline of the table.
	base := mark(tr, w)
	time.Sleep(2 * time.Second)
	bSent, bFailed, bOK, bWFailed, bWorst := since(tr, w, base)
	rows := []row{{fault: "none (baseline, 2 s)", traffic: fmt.Sprintf("%d requests, %d failed, max latency %s", bSent, bFailed, ms(bWorst)),
		writes: fmt.Sprintf("%d admin writes, %d failed", bOK, bWFailed), events: "-", recovery: "-"}}
	faults := []struct {
		short, name string
		fault       func() string // returns the old master
	}{
		{"switch-over", "SENTINEL FAILOVER (switch-over)", func() string { from, _ := s.Failover(); return from }},
		{"master-killed", "kill -9 of the master", s.KillMaster},
	}
	for i, f := range faults {
		m := mark(tr, w)
		start := time.Now()
		old := f.fault()
		master := s.WaitNewMaster(old, 30*time.Second)
		elected := time.Since(start)
		// Recovery, each measured from the fault.
		stream := pollUntil(t, 30*time.Second, "the new master's stream holds the store's head", func() bool {
			return streamHead(t, master, e.prefix+"events") >= c.head()
		}) + elected
		shared := pollUntil(t, 30*time.Second, "every instance rate-limits through Redis again", func() bool {
			for _, p := range c.procs {
				if p.metric("gateway_ratelimit_redis_up") != 1 {
					return false
				}
			}
			return true
		}) + stream
		listed := pollUntil(t, 30*time.Second, "every instance lists the three", func() bool {
			for _, p := range c.procs {
				if got, ok := p.instances(); !ok || len(got) != 3 {
					return false
				}
			}
			return true
		}) + shared
		createTenant(t, c.procs[i%3], fmt.Sprintf("after-fault-%d", i))
		converged := c.waitConverged(10*time.Second) + listed
		time.Sleep(time.Second) // load after the recovery, in the same window
		sent, failed, wOK, wFailed, worst := since(tr, w, m)
		limited := exactLimit(t, c, fmt.Sprintf("limited-after-%d", i), up)
		figure(t, "sentinel-"+f.short, "new_master_in", ms(elected), "stream_caught_up_in", ms(stream),
			"ratelimit_shared_in", ms(shared), "instances_listed_in", ms(listed), "write_converged_in", ms(converged),
			"requests", sent, "failed_requests", failed, "latency_max", ms(worst), "writes", wOK, "failed_writes", wFailed,
			"limit_15_admitted", limited)
		rows = append(rows, row{
			fault:    f.name,
			traffic:  fmt.Sprintf("%d requests, %d failed, max latency %s", sent, failed, ms(worst)),
			writes:   fmt.Sprintf("%d admin writes, %d failed; limit 15 across 3 instances admitted %d after", wOK, wFailed, limited),
			events:   "every instance on the store's head, one stateHash",
			recovery: fmt.Sprintf("master %s, stream %s, shared rate limit %s, instance list %s, converged %s", ms(elected), ms(stream), ms(shared), ms(listed), ms(converged)),
		})
		if failed > 0 || wFailed > 0 {
			_, _, why := tr.end()
			_, _, wWhy := w.end()
			t.Fatalf("%s: %d of %d requests and %d admin writes failed: %v %v", f.name, failed, sent, wFailed, why, wWhy)
		}
		if limited != 15 {
			t.Errorf("%s: after recovery, a limit of 15 across 3 instances admitted %d of 45", f.name, limited)
		}
	}
	sent, failed, why := tr.end()
	wOK, wFailed, wWhy := w.end()
	if failed > 0 || wFailed > 0 {
		t.Errorf("over the whole run %d of %d requests and %d of %d admin writes failed: %v %v", failed, sent, wFailed, wOK+wFailed, why, wWhy)
	}
	c.waitConverged(10 * time.Second)
	lost, twice := eventsLostOrTwice(t, c)

	// Announcements after the faults: a breaker opened on one instance
	// refuses on the others (pub/sub on the new master).
	failing.status.Store(http.StatusInternalServerError)
	announced := breakerOpensEverywhere(t, c.procs, key)
	var b strings.Builder
	b.WriteString("\n| fault | traffic saw | events saw | time to recover (from the fault) |\n| --- | --- | --- | --- |\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s; %s | %s |\n", r.fault, r.traffic, r.writes, r.events, r.recovery)
	}
	fmt.Fprintf(&b, "events lost %d, applied twice %d (store 1..%d gap-free; every instance applied each committed event once); "+
		"afterwards a breaker opened on one instance refused on the others in %s\n", lost, twice, c.head(), ms(announced))
	t.Log(b.String())
}

// TestRedisClusterEndToEnd: three gateway processes on a three-node Redis
// Cluster (REDIS_URL=redis+cluster://...). Writes reach every instance
// through the stream (the store's head check is off), a rate limit holds
// across the instances, a breaker opened on one instance refuses on all, a
// health flip reaches all, and every instance lists the three.
func TestRedisClusterEndToEnd(t *testing.T) {
	t.Parallel()
	rc := testenv.StartCluster(t, 3)
	e := newClusterEnv(t)
	e.redisURL = "redis+cluster://" + strings.Join(rc.Addrs, ",")
	e.extra = map[string]string{"HEAD_CHECK_INTERVAL": "1h"} // only the stream can carry the writes
	c := startCluster(t, e, 3)
	up := newE2EUpstream(t)
	tid, key := haTenant(t, c.procs[0], "acme", 30, 60_000, up.url)
	took := c.waitConverged(10 * time.Second)

	var ok, limited atomic.Int64
	done := make(chan struct{})
	for w := range 9 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := w; i < 90; i += 9 {
				switch code, _, _ := c.procs[i%3].call("GET", "/api/x", nil, map[string]string{"X-API-Key": key}); code {
				case http.StatusOK:
					ok.Add(1)
				case http.StatusTooManyRequests:
					limited.Add(1)
				}
			}
		}()
	}
	for range 9 {
		<-done
	}
	if ok.Load() != 30 || limited.Load() != 60 {
		t.Errorf("limit 30 across 3 instances: %d admitted, %d limited of 90", ok.Load(), limited.Load())
	}

	// A breaker: failures through one instance open it everywhere. A tenant
	// without a limit, so the requests are not refused before the breaker.
	code, body := c.procs[0].admin("PATCH", "/admin/tenants/"+tid, map[string]any{"rateLimit": nil})
	if code != http.StatusOK {
		t.Fatalf("remove the limit: %d %v", code, body)
	}
	c.waitConverged(10 * time.Second)
	up.status.Store(http.StatusInternalServerError)
	opened := breakerOpensEverywhere(t, c.procs, key)
	up.status.Store(0)

	// A health flip: one instance holds the probe lease, all follow.
	up.unhealthy.Store(true)
	unhealthy := pollUntil(t, 15*time.Second, "every instance sees the upstream unhealthy", func() bool {
		for _, p := range c.procs {
			code, b, _ := p.call("GET", "/api/x", nil, map[string]string{"X-API-Key": key})
			if code != http.StatusServiceUnavailable || !strings.Contains(string(b), "no_healthy_upstream") {
				return false
			}
		}
		return true
	})
	up.unhealthy.Store(false)

	listed := pollUntil(t, 10*time.Second, "every instance lists the three", func() bool {
		for _, p := range c.procs {
			if got, ok := p.instances(); !ok || len(got) != 3 {
				return false
			}
		}
		return true
	})
	figure(t, "redis-cluster", "write_reached_all_by_stream_in", ms(took), "limit_30_admitted", ok.Load(),
		"breaker_refused_everywhere_in", ms(opened), "unhealthy_everywhere_in", ms(unhealthy), "instances_listed_in", ms(listed))
}
