package health

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tenantgate/gateway/events/testenv"
)

// sharedCluster starts n instances on one Redis, each told targets.
func sharedCluster(t *testing.T, n int, targets ...Target) []*Shared {
	t.Helper()
	url, prefix := testenv.Redis(t)
	out := make([]*Shared, n)
	for i := range out {
		opts, err := redis.ParseURL(url)
		if err != nil {
			t.Fatal(err)
		}
		c := redis.NewClient(opts)
		t.Cleanup(func() { _ = c.Close() })
		s, err := NewShared(c, SharedConfig{Prefix: prefix}, quiet)
		if err != nil {
			t.Fatal(err)
		}
		s.SetTargets(targets)
		out[i] = s
	}
	for _, s := range out {
		run(t, s)
	}
	for _, s := range out {
		within(t, "subscribed", 5*time.Second, s.listener.Subscribed)
	}
	return out
}

// everywhere reports whether every instance sees k as healthy (or not).
func everywhere(ins []*Shared, k Key, healthy bool) func() bool {
	return func() bool {
		for _, s := range ins {
			if s.Healthy(k) != healthy {
				return false
			}
		}
		return true
	}
}

func TestSharedProbesOncePerInterval(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	hc := Check{Interval: 100 * time.Millisecond, Timeout: 100 * time.Millisecond, HealthyThreshold: 2, UnhealthyThreshold: 2}
	tg := up.target(t, "r1", hc)
	sharedCluster(t, 3, tg)
	within(t, "first probe", 2*time.Second, func() bool { return up.probes.Load() > 0 })
	start, before := time.Now(), up.probes.Load()
	time.Sleep(time.Second) // the measurement period itself, not a wait for an outcome
	got := up.probes.Load() - before
	intervals := time.Since(start) / (100 * time.Millisecond)
	t.Logf("%d probes in %d intervals by 3 instances", got, intervals)
	if got > int64(intervals)+2 || got < int64(intervals)/2 {
		t.Fatalf("%d probes in %d intervals by 3 instances, want about one per interval", got, intervals)
	}
}

func TestSharedFlipReachesEveryInstance(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	tg := up.target(t, "r1", fast)
	ins := sharedCluster(t, 3, tg)
	within(t, "first probe", 2*time.Second, func() bool { return up.probes.Load() > 0 })
	up.down.Store(true)
	limit := fast.Interval*time.Duration(fast.UnhealthyThreshold+1) + fast.Timeout + 150*time.Millisecond
	t.Logf("unhealthy everywhere after %v", within(t, "unhealthy everywhere", limit, everywhere(ins, tg.Key, false)))
	up.down.Store(false)
	limit = fast.Interval*time.Duration(fast.HealthyThreshold+1) + fast.Timeout + 150*time.Millisecond
	t.Logf("healthy everywhere after %v", within(t, "healthy everywhere", limit, everywhere(ins, tg.Key, true)))
}

func TestSharedProbesLocallyWithoutRedis(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	client := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 20 * time.Millisecond})
	t.Cleanup(func() { _ = client.Close() })
	up := newUpstream(t)
	tg := up.target(t, "r1", fast)
	s, err := NewShared(client, SharedConfig{}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	s.SetTargets([]Target{tg})
	run(t, s)
	up.down.Store(true)
	within(t, "unhealthy through local probes", 2*time.Second, func() bool { return !s.Healthy(tg.Key) })
	up.down.Store(false)
	within(t, "healthy again", 2*time.Second, func() bool { return s.Healthy(tg.Key) })
}

// The instance holding an upstream's lease dies: another takes the probing
// over once the lease expires (two intervals plus the timeout).
func TestSharedLeaseMovesWhenHolderDies(t *testing.T) {
	t.Parallel()
	url, prefix := testenv.Redis(t)
	up := newUpstream(t)
	hc := Check{Interval: 50 * time.Millisecond, Timeout: 50 * time.Millisecond, HealthyThreshold: 1, UnhealthyThreshold: 1}
	tg := up.target(t, "r1", hc)
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	var ins []*Shared
	var stops []context.CancelFunc
	for range 2 {
		c := redis.NewClient(opts)
		t.Cleanup(func() { _ = c.Close() })
		s, err := NewShared(c, SharedConfig{Prefix: prefix}, quiet)
		if err != nil {
			t.Fatal(err)
		}
		s.SetTargets([]Target{tg})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		stop := sync.OnceFunc(func() { cancel(); <-done })
		t.Cleanup(stop)
		ins = append(ins, s)
		stops = append(stops, stop)
	}
	check, _ := redis.ParseURL(url)
	rc := redis.NewClient(check)
	t.Cleanup(func() { _ = rc.Close() })
	leaseKey := ins[0].RedisKey(tg.Key) + ":lease"
	var holder string
	within(t, "a lease holder", 2*time.Second, func() bool {
		holder, _ = rc.Get(context.Background(), leaseKey).Result()
		return holder != ""
	})
	survivor := -1
	for i, s := range ins {
		if s.scfg.InstanceID == holder {
			stops[i]()
		} else {
			survivor = i
		}
	}
	if survivor < 0 {
		t.Fatalf("lease held by %q, not one of the instances", holder)
	}
	within(t, "the survivor holds the lease", time.Second, func() bool {
		v, _ := rc.Get(context.Background(), leaseKey).Result()
		return v == ins[survivor].scfg.InstanceID
	})
	up.down.Store(true)
	within(t, "the survivor sees the upstream fail", time.Second, func() bool { return !ins[survivor].Healthy(tg.Key) })
}

// A target new to the cluster is probed at once, by one instance: each is
// told of it (as each applies the route), one takes the lease and probes,
// the others follow. A changed target likewise, once more.
func TestSharedProbesANewTargetAtOnceFromOneInstance(t *testing.T) {
	t.Parallel()
	up := newUpstream(t)
	ins := sharedCluster(t, 3)
	tg := up.target(t, "r1", slow)
	up.down.Store(true)
	for _, s := range ins {
		s.SetTargets([]Target{tg})
	}
	// slow's next probe is an hour away, so these come from SetTargets alone.
	within(t, "the new target probed unhealthy on every instance", 10*time.Second, everywhere(ins, tg.Key, false))
	time.Sleep(100 * time.Millisecond) // a measuring period: probes by the other instances would arrive
	if n := up.probes.Load(); n != 1 {
		t.Fatalf("3 instances told of a new target probed it %d times, want once", n)
	}
	up.down.Store(false)
	tg.Check.HealthyThreshold = 1
	tg.URL += "?v=2"
	for _, s := range ins {
		s.SetTargets([]Target{tg})
	}
	within(t, "the changed target probed healthy on every instance", 10*time.Second, everywhere(ins, tg.Key, true))
	time.Sleep(100 * time.Millisecond)
	if n := up.probes.Load(); n != 2 {
		t.Fatalf("3 instances told of a changed target: %d probes in all, want 2", n)
	}
}
