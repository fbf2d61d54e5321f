package breaker

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tenantgate/gateway/events/testenv"
	"github.com/tenantgate/gateway/resilience/announce"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// instances starts n Shared breakers on their own clients, running until the
// test ends, and waits until each has subscribed.
func instances(t *testing.T, n int) []*Shared {
	t.Helper()
	url, prefix := testenv.Redis(t)
	out := make([]*Shared, n)
	for i := range out {
		out[i] = startShared(t, url, prefix)
	}
	return out
}

func startShared(t *testing.T, url, prefix string) *Shared {
	t.Helper()
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opts)
	s, err := NewShared(c, SharedConfig{Prefix: prefix}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		_ = c.Close()
	})
	testenv.WaitFor(t, "subscribed", 5*time.Second, s.listener.Subscribed)
	return s
}

func TestSharedOpeningReachesOtherInstances(t *testing.T) {
	t.Parallel()
	ins := instances(t, 3)
	a, b, c := ins[0], ins[1], ins[2]
	cfg := Config{FailureThreshold: 3, SuccessThreshold: 1, OpenFor: 60_000 * time.Millisecond}
	for range 3 {
		if !a.Allow(key, cfg) {
			t.Fatal("refused before opening")
		}
		a.Report(key, cfg, false)
	}
	if a.Allow(key, cfg) {
		t.Fatal("the instance that saw the failures still allows")
	}
	start := time.Now()
	testenv.WaitFor(t, "other instances refuse", 200*time.Millisecond, func() bool { return !b.Allow(key, cfg) && !c.Allow(key, cfg) })
	t.Logf("opening reached the other instances in %v", time.Since(start))
	other := key
	other.RouteID = "r2"
	if !b.Allow(other, cfg) {
		t.Fatal("another route's breaker opened too")
	}
}

func TestSharedClosingAndLateJoiner(t *testing.T) {
	t.Parallel()
	url, prefix := testenv.Redis(t)
	a, b := startShared(t, url, prefix), startShared(t, url, prefix)
	cfg := Config{FailureThreshold: 1, SuccessThreshold: 1, OpenFor: 300 * time.Millisecond}
	a.Report(key, cfg, false)
	testenv.WaitFor(t, "b opens", time.Second, func() bool { return b.State(key) == Open })

	// An instance started now reads the breakers opened before it.
	late := startShared(t, url, prefix)
	if late.State(key) != Open || late.Allow(key, cfg) {
		t.Fatalf("late instance: state %v, want open and refusing", late.State(key))
	}

	// After the timeout a probes and succeeds: everyone closes.
	testenv.WaitFor(t, "a half-open", 2*time.Second, func() bool { return a.Allow(key, cfg) })
	a.Report(key, cfg, true)
	if a.State(key) != Closed {
		t.Fatalf("a: %v after a good probe, want closed", a.State(key))
	}
	testenv.WaitFor(t, "b and the late instance close", time.Second, func() bool {
		return b.State(key) == Closed && late.State(key) == Closed
	})
}

func TestSharedWorksLocallyWithoutRedis(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	client := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 50 * time.Millisecond})
	t.Cleanup(func() { _ = client.Close() })
	s, err := NewShared(client, SharedConfig{}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	cfg := Config{FailureThreshold: 2, SuccessThreshold: 1, OpenFor: 50 * time.Millisecond}
	s.Report(key, cfg, false)
	s.Report(key, cfg, false)
	if s.Allow(key, cfg) {
		t.Fatal("allowed after the failures with Redis down")
	}
	testenv.WaitFor(t, "half-open", time.Second, func() bool { return s.Allow(key, cfg) })
	s.Report(key, cfg, true)
	if s.State(key) != Closed {
		t.Fatalf("state %v, want closed", s.State(key))
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not stop on cancel")
	}
}

func TestRedisKey(t *testing.T) {
	t.Parallel()
	s, err := NewShared(redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}), SharedConfig{Prefix: "p:"}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	got := s.RedisKey(key)
	want := "p:cb:{t1}:r1:" + announce.URLHash(key.Upstream) // {t1}: the tenant's Cluster hash slot
	if got != want || len(announce.URLHash(key.Upstream)) != 16 {
		t.Fatalf("RedisKey = %q, want %q", got, want)
	}
}

func BenchmarkSharedSuccessPath(b *testing.B) {
	client, prefix := testenv.RedisClient(b)
	s, err := NewShared(client, SharedConfig{Prefix: prefix}, quiet)
	if err != nil {
		b.Fatal(err)
	}
	s.Report(key, cb, false)
	s.Report(key, cb, true)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if s.Allow(key, cb) {
				s.Report(key, cb, true)
			}
		}
	})
}

// On a real three-node Cluster: breakers of many tenants (their keys spread
// over the nodes) opened on one instance are known to an instance started
// later, which reads them from every master, and a closing announced on the
// cluster's pub/sub reaches it.
func TestSharedOnCluster(t *testing.T) {
	t.Parallel()
	c := testenv.StartCluster(t, 3)
	start := func() *Shared {
		client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs})
		s, err := NewShared(client, SharedConfig{Prefix: "gw:"}, quiet)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			<-done
			_ = client.Close()
		})
		testenv.WaitFor(t, "subscribed", 5*time.Second, s.listener.Subscribed)
		return s
	}
	a := start()
	cfg := Config{FailureThreshold: 1, SuccessThreshold: 1, OpenFor: time.Minute}
	var keys []Key
	nodes := map[string]bool{}
	for i := range 12 {
		k := Key{TenantID: "tenant-" + strconv.Itoa(i), RouteID: "r1", Upstream: "http://127.0.0.1:9001"}
		keys = append(keys, k)
		nodes[c.NodeFor(t, a.RedisKey(k)).Addr] = true
		a.Report(k, cfg, false)
	}
	if len(nodes) < 2 {
		t.Fatalf("the breakers' keys landed on %d node(s): the test needs them spread", len(nodes))
	}
	check := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs})
	t.Cleanup(func() { _ = check.Close() })
	testenv.WaitFor(t, "every opening written", 5*time.Second, func() bool {
		for _, k := range keys {
			if check.Exists(context.Background(), a.RedisKey(k)).Val() != 1 {
				return false
			}
		}
		return true
	})

	late := start()
	for _, k := range keys {
		if late.State(k) != Open {
			t.Fatalf("late instance: %s is %v, want open (keys on %d nodes)", k.TenantID, late.State(k), len(nodes))
		}
	}
	// Openings and closings made now travel on the cluster's pub/sub.
	short := Config{FailureThreshold: 1, SuccessThreshold: 1, OpenFor: 200 * time.Millisecond}
	k := Key{TenantID: "tenant-live", RouteID: "r1", Upstream: "http://127.0.0.1:9001"}
	a.Report(k, short, false)
	testenv.WaitFor(t, "the opening reaches the late instance", 5*time.Second, func() bool { return late.State(k) == Open })
	testenv.WaitFor(t, "a half-open", 5*time.Second, func() bool { return a.Allow(k, short) })
	a.Report(k, short, true)
	testenv.WaitFor(t, "the closing reaches the late instance", 5*time.Second, func() bool { return late.State(k) == Closed })
}
