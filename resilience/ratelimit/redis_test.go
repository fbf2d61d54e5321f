package ratelimit

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/tenantgate/gateway/events/testenv"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func withDeadlines(o *redis.Options) *redis.Options {
	o.ContextTimeoutEnabled = true
	return o
}

// cluster returns n limiters, each on its own client, as n instances would be.
func cluster(t *testing.T, n int, cfg RedisConfig) []*Redis {
	t.Helper()
	url, prefix := testenv.Redis(t)
	cfg.Prefix = prefix
	out := make([]*Redis, n)
	for i := range out {
		opts, err := redis.ParseURL(url)
		if err != nil {
			t.Fatal(err)
		}
		c := redis.NewClient(withDeadlines(opts))
		t.Cleanup(func() { _ = c.Close() })
		r, err := NewRedis(c, cfg, quiet)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.Close() })
		out[i] = r
	}
	return out
}

// offer sends n requests spread over the limiters from several goroutines
// and returns how many were admitted.
func offer(limiters []*Redis, tenant string, rl Rule, n int) int {
	var admitted atomic.Int64
	var wg sync.WaitGroup
	per := n / (len(limiters) * 4)
	for i := range len(limiters) * 4 {
		wg.Go(func() {
			l := limiters[i%len(limiters)]
			for range per {
				if l.Allow(context.Background(), tenant, rl).Allowed {
					admitted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return int(admitted.Load())
}

func TestRedisExactAcrossInstances(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		limit   int
		offered int
		minimum int // admitted at least this many
	}{
		{name: "small limit checked per request", limit: 30, offered: 120, minimum: 30},
		{name: "large limit leased", limit: 3000, offered: 6000, minimum: 2940}, // 98%
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			limiters := cluster(t, 3, RedisConfig{})
			rl := Rule{Limit: tc.limit, Window: time.Minute}
			got := offer(limiters, "tenant-a", rl, tc.offered)
			t.Logf("admitted %d of %d offered, limit %d", got, tc.offered, tc.limit)
			if got > tc.limit || got < tc.minimum {
				t.Fatalf("3 instances admitted %d, want %d..%d", got, tc.minimum, tc.limit)
			}
			for _, l := range limiters {
				if !l.Up() {
					t.Fatal("a limiter fell back during the test")
				}
			}
		})
	}
}

// Leasing amortizes: far fewer Redis calls than decisions.
func TestRedisLeasingAmortizes(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	limiters := cluster(t, 1, RedisConfig{Registerer: reg})
	rl := Rule{Limit: 100_000, Window: time.Minute}
	if got := offer(limiters, "t", rl, 20_000); got != 20_000 {
		t.Fatalf("admitted %d of 20000 under a limit of 100000", got)
	}
	calls := counterValue(t, reg, "gateway_ratelimit_redis_calls_total")
	if calls > 20_000/10 {
		t.Fatalf("%v Redis calls for 20000 decisions, want at most one per 10", calls)
	}
	t.Logf("%v Redis calls for 20000 decisions", calls)
}

// Under steady traffic leases are fetched ahead of need: after the first
// request, requests do not wait for Redis (bounded by how often a lease ran
// out before its successor arrived, which a slow Redis or a busy machine
// makes more likely).
func TestRedisLeasesAheadOfNeed(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	limiters := cluster(t, 1, RedisConfig{Registerer: reg})
	l := limiters[0]
	rule := Rule{Limit: 1_000_000, Window: time.Minute} // leases of 10,000
	ctx := context.Background()
	const n = 200_000
	for i := range n {
		if !l.Allow(ctx, "steady", rule).Allowed {
			t.Fatalf("request %d refused under a limit never reached", i)
		}
		if i%5000 == 0 {
			time.Sleep(time.Millisecond) // let a refiller run on a busy machine
		}
	}
	waits := counterValue(t, reg, "gateway_ratelimit_redis_waits_total")
	calls := counterValue(t, reg, "gateway_ratelimit_redis_calls_total")
	t.Logf("%d requests: %v Redis calls, %v requests waited for one", n, calls, waits)
	// Without fetching ahead every lease (about 20) would be waited for; a
	// loaded machine lets a few run out before their successor arrives.
	if waits > 3 && 2*waits >= calls {
		t.Fatalf("%v of %d requests waited for Redis (of %v calls), want only the first few", waits, n, calls)
	}
}

func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

func TestRedisLimitChangeMidWindow(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		limit    int
		newLimit int
		wantMore int
	}{
		{name: "raised per request", limit: 10, newLimit: 15, wantMore: 5},
		{name: "lowered per request", limit: 10, newLimit: 6, wantMore: 0},
		{name: "raised leased", limit: 200, newLimit: 300, wantMore: 100},
		{name: "lowered leased", limit: 300, newLimit: 200, wantMore: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			limiters := cluster(t, 2, RedisConfig{})
			ctx := context.Background()
			rl := Rule{Limit: tc.limit, Window: time.Minute}
			got := 0
			for i := range tc.limit * 2 {
				if limiters[i%2].Allow(ctx, "t", rl).Allowed {
					got++
				}
			}
			if got != tc.limit {
				t.Fatalf("admitted %d before the change, want %d", got, tc.limit)
			}
			rl.Limit = tc.newLimit
			got = 0
			for i := range tc.newLimit * 2 {
				if limiters[i%2].Allow(ctx, "t", rl).Allowed {
					got++
				}
			}
			if got != tc.wantMore {
				t.Fatalf("admitted %d after the change to %d, want %d (counts kept)", got, tc.newLimit, tc.wantMore)
			}
		})
	}
}

func TestRedisHeaders(t *testing.T) {
	t.Parallel()
	l := cluster(t, 1, RedisConfig{})[0]
	ctx := context.Background()
	rl := Rule{Limit: 3, Window: 2 * time.Second}
	start := time.Now()
	for i, want := range []int{2, 1, 0} {
		d := l.Allow(ctx, "t", rl)
		if !d.Allowed || d.Remaining != want || d.Limit != 3 || d.RetryAfter != 0 {
			t.Fatalf("request %d: %+v, want allowed, remaining %d", i, d, want)
		}
		// Reset: when the first request leaves the window, about 2s after it.
		if r := d.Reset.Sub(start); r < 1900*time.Millisecond || r > 2200*time.Millisecond {
			t.Fatalf("request %d: reset in %v, want about 2s", i, r)
		}
	}
	d := l.Allow(ctx, "t", rl)
	if d.Allowed || d.Remaining != 0 {
		t.Fatalf("4th: %+v, want denied", d)
	}
	if d.RetryAfter <= 0 || d.RetryAfter > 2*time.Second || d.RetryAfterSeconds() != 2 {
		t.Fatalf("RetryAfter %v (header %d), want in (1s, 2s], header 2", d.RetryAfter, d.RetryAfterSeconds())
	}
	// The remembered denial answers the same without Redis.
	if again := l.Allow(ctx, "t", rl); again.Allowed || again.RetryAfter > d.RetryAfter {
		t.Fatalf("5th: %+v, want denied", again)
	}
}

func TestRedisUnreachableFallsBackFast(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		failClosed bool
	}{
		{name: "fail open to the local limiter"},
		{name: "fail closed", failClosed: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := testenv.StartRedis(t)
			client := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1,
				ContextTimeoutEnabled: true, DialTimeout: 100 * time.Millisecond})
			t.Cleanup(func() { _ = client.Close() })
			reg := prometheus.NewRegistry()
			l, err := NewRedis(client, RedisConfig{FailClosed: tc.failClosed, ProbeInterval: 20 * time.Millisecond, Registerer: reg}, quiet)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = l.Close() })
			ctx := context.Background()
			rl := Rule{Limit: 5, Window: time.Minute}
			if d := l.Allow(ctx, "t", rl); !d.Allowed || d.Remaining != 4 {
				t.Fatalf("with Redis up: %+v", d)
			}
			srv.Kill()
			l.Allow(ctx, "t", rl) // finds Redis gone
			if l.Up() {
				t.Fatal("limiter did not notice Redis is gone")
			}
			admitted := 0
			start := time.Now()
			for range 100 {
				if l.Allow(ctx, "t", rl).Allowed {
					admitted++
				}
			}
			if el := time.Since(start); el > 50*time.Millisecond {
				t.Fatalf("100 decisions took %v with Redis down, want fast local decisions", el)
			}
			want := 4 // the local limiter's own window: 5 minus the one that found Redis gone
			if tc.failClosed {
				want = 0
			}
			if admitted != want {
				t.Fatalf("admitted %d while Redis was down, want %d", admitted, want)
			}
			if fb := counterValue(t, reg, "gateway_ratelimit_redis_fallbacks_total"); fb < 100 {
				t.Fatalf("fallbacks counted %v, want >= 100", fb)
			}

			srv.Start(t) // Redis returns, empty
			testenv.WaitFor(t, "limiter uses Redis again", 3*time.Second, l.Up)
			if d := l.Allow(ctx, "t", rl); !d.Allowed || d.Remaining != 4 {
				t.Fatalf("after recovery: %+v, want the shared (fresh) count", d)
			}
		})
	}
}

func TestRedisClosedPort(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	client := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 100 * time.Millisecond, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = client.Close() })
	l, err := NewRedis(client, RedisConfig{}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	rl := Rule{Limit: 2, Window: time.Minute}
	var got []bool
	start := time.Now()
	for range 3 {
		got = append(got, l.Allow(context.Background(), "t", rl).Allowed)
	}
	if el := time.Since(start); el > 500*time.Millisecond {
		t.Fatalf("took %v", el)
	}
	if !got[0] || !got[1] || got[2] {
		t.Fatalf("decisions %v, want the local limit of 2", got)
	}
}

func TestNewRedisValidates(t *testing.T) {
	t.Parallel()
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true})
	plain := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { _ = c.Close(); _ = plain.Close() })
	tests := []struct {
		name   string
		client redis.UniversalClient
		cfg    RedisConfig
	}{
		{name: "nil client", client: nil},
		{name: "negative timeout", client: c, cfg: RedisConfig{Timeout: -1}},
		{name: "negative lease floor", client: c, cfg: RedisConfig{LeaseMinLimit: -3}},
		{name: "a client that ignores deadlines", client: plain},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := NewRedis(tc.client, tc.cfg, quiet); err == nil {
				t.Fatal("want an error")
			}
		})
	}
}

// BenchmarkRedisAllowLeased measures admitted requests spent from leases:
// the tenant changes before its limit is reached, so no denial is cached.
func BenchmarkRedisAllowLeased(b *testing.B) {
	client, prefix := testenv.RedisClient(b)
	l, err := NewRedis(client, RedisConfig{Prefix: prefix}, quiet)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	rl := Rule{Limit: 1_000_000, Window: time.Minute}
	ctx := context.Background()
	var n, denied atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		tenant, until := "", int64(0)
		for pb.Next() {
			if i := n.Add(1); i >= until {
				tenant = "tenant-" + strconv.FormatInt(i/500_000, 10)
				until = (i/500_000 + 1) * 500_000
			}
			if !l.Allow(ctx, tenant, rl).Allowed {
				denied.Add(1)
			}
		}
	})
	b.ReportMetric(float64(denied.Load())/float64(b.N), "denied/op")
}

func BenchmarkRedisAllowPerRequest(b *testing.B) {
	client, prefix := testenv.RedisClient(b)
	l, err := NewRedis(client, RedisConfig{Prefix: prefix, LeaseMinLimit: 1 << 30}, quiet)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	rl := Rule{Limit: 1_000_000, Window: time.Second}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		l.Allow(ctx, "tenant", rl)
	}
}

// hungRedis is a client of a Redis that accepts connections and never
// answers, with long client timeouts of its own.
func hungRedis(t *testing.T) *redis.Client {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held open, never answered
			mu.Unlock()
		}
	}()
	client := redis.NewClient(&redis.Options{Addr: ln.Addr().String(), MaxRetries: -1, ReadTimeout: 10 * time.Second, ContextTimeoutEnabled: true})
	t.Cleanup(func() {
		_ = client.Close()
		_ = ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return client
}

// A Redis that accepts connections and never answers: requests are still
// decided within Timeout, then at once through the fallback.
func TestRedisHungDecidesFast(t *testing.T) {
	t.Parallel()
	// The client's own timeouts are long: only the limiter's Timeout helps.
	client := hungRedis(t)
	l, err := NewRedis(client, RedisConfig{Timeout: 50 * time.Millisecond}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	rl := Rule{Limit: 10, Window: time.Minute}
	start := time.Now()
	if d := l.Allow(context.Background(), "t", rl); !d.Allowed {
		t.Fatalf("first request: %+v, want allowed by the fallback", d)
	}
	if el := time.Since(start); el > 500*time.Millisecond {
		t.Fatalf("first request took %v, want about the 50ms Timeout", el)
	}
	start = time.Now()
	for range 50 {
		l.Allow(context.Background(), "t", rl)
	}
	if el := time.Since(start); el > 50*time.Millisecond {
		t.Fatalf("50 requests took %v once Redis was known down", el)
	}
}

// Requests of one tenant arriving while a call to a Redis that hangs (a
// master lost in a failover) is in flight do not each wait for Redis in
// turn: under a leased limit they wait for that one call and then go to the
// fallback; under a per-request limit their calls run side by side, so all
// are decided within about one Timeout, not one Timeout each.
func TestRedisQueuedRequestsDoNotWaitInTurn(t *testing.T) {
	t.Parallel()
	const timeout = 200 * time.Millisecond
	for _, tc := range []struct {
		name      string
		limit     int
		wantCalls float64 // 0: any
	}{
		{name: "leased", limit: 1000, wantCalls: 1},
		{name: "per request", limit: 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			client := hungRedis(t)
			reg := prometheus.NewRegistry()
			l, err := NewRedis(client, RedisConfig{Timeout: timeout, ProbeInterval: time.Hour, Registerer: reg}, quiet)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = l.Close() })
			rl := Rule{Limit: tc.limit, Window: time.Minute}
			start := time.Now()
			var wg sync.WaitGroup
			for range 20 {
				wg.Go(func() { l.Allow(context.Background(), "t", rl) })
			}
			wg.Wait()
			// In turn, 20 requests would take 20 Timeouts (4 s).
			if el := time.Since(start); el > 8*timeout {
				t.Fatalf("20 requests took %v against a hung Redis, want about one Timeout (%v)", el, timeout)
			}
			if calls := counterValue(t, reg, "gateway_ratelimit_redis_calls_total"); tc.wantCalls > 0 && calls != tc.wantCalls {
				t.Fatalf("%v Redis calls for 20 requests behind a hung one, want %v", calls, tc.wantCalls)
			}
		})
	}
}

func TestRedisKeyLayout(t *testing.T) {
	t.Parallel()
	client, prefix := testenv.RedisClient(t)
	l, err := NewRedis(client, RedisConfig{Prefix: prefix}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	l.Allow(context.Background(), "tenant-7", Rule{Limit: 5, Window: 2 * time.Second})
	// The braces are a Redis Cluster hash tag: one slot per tenant.
	ttl, err := client.PTTL(context.Background(), prefix+"ratelimit:{tenant-7}").Result()
	if err != nil {
		t.Fatal(err)
	}
	if ttl <= 0 || ttl > 2000*time.Millisecond+time.Second {
		t.Fatalf("key %sratelimit:{tenant-7} has TTL %v, want it to expire after about a window", prefix, ttl)
	}
}

// Capacity comes back when the first requests leave the window, not before.
func TestRedisWindowSlides(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		limit int
	}{
		{name: "per request", limit: 3},
		{name: "leased", limit: 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			limiters := cluster(t, 2, RedisConfig{})
			ctx := context.Background()
			rl := Rule{Limit: tc.limit, Window: 300 * time.Millisecond}
			start := time.Now()
			admitted := 0
			for i := 0; admitted < tc.limit; i++ {
				if limiters[i%2].Allow(ctx, "t", rl).Allowed {
					admitted++
				}
				if time.Since(start) > 250*time.Millisecond {
					t.Fatalf("only %d of %d admitted in the first 250ms", admitted, tc.limit)
				}
			}
			if d := limiters[0].Allow(ctx, "t", rl); d.Allowed {
				t.Fatal("admitted over the limit")
			}
			var freed time.Duration
			for {
				if limiters[1].Allow(ctx, "t", rl).Allowed {
					freed = time.Since(start)
					break
				}
				if time.Since(start) > 2*time.Second {
					t.Fatal("capacity never came back")
				}
				time.Sleep(2 * time.Millisecond) // pacing the offered load
			}
			if freed < 290*time.Millisecond || freed > 700*time.Millisecond {
				t.Fatalf("capacity came back after %v, want about the 300ms window", freed)
			}
		})
	}
}
