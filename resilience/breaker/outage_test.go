package breaker

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tenantgate/gateway/events/testenv"
)

// Redis goes away and comes back: breakers work locally meanwhile, and the
// instances share openings again afterwards without a restart.
func TestSharedRecoversAfterRedisOutage(t *testing.T) {
	t.Parallel()
	rs := testenv.StartRedis(t)
	var ins []*Shared
	for range 2 {
		c := redis.NewClient(&redis.Options{Addr: rs.Addr, MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
		t.Cleanup(func() { _ = c.Close() })
		s, err := NewShared(c, SharedConfig{}, quiet)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		testenv.WaitFor(t, "subscribed", 5*time.Second, s.listener.Subscribed)
		ins = append(ins, s)
	}
	a, b := ins[0], ins[1]
	cfg := Config{FailureThreshold: 1, SuccessThreshold: 1, OpenFor: 60_000 * time.Millisecond}

	rs.Kill()
	testenv.WaitFor(t, "subscriptions notice the outage", 5*time.Second, func() bool { return !a.listener.Subscribed() && !b.listener.Subscribed() })
	a.Report(key, cfg, false)
	if a.Allow(key, cfg) {
		t.Fatal("a allows after its failure with Redis down")
	}
	if !b.Allow(key, cfg) {
		t.Fatal("b refuses without having seen any failure or announcement")
	}

	rs.Start(t)
	testenv.WaitFor(t, "resubscribed", 5*time.Second, func() bool { return a.listener.Subscribed() && b.listener.Subscribed() })
	testenv.WaitFor(t, "b learns the opening made during the outage", 2*time.Second, func() bool { return !b.Allow(key, cfg) })
	other := Key{TenantID: "t1", RouteID: "r9", Upstream: "http://127.0.0.1:9009"}
	a.Report(other, cfg, false)
	testenv.WaitFor(t, "b refuses the breaker opened after the outage", time.Second, func() bool { return !b.Allow(other, cfg) })
}
