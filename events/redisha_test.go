package events_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/events/bustest"
	"github.com/tenantgate/gateway/events/testenv"
)

// The Redis bus on a Sentinel set and on a Cluster: real redis-server
// processes on loopback (testenv), the same conformance suite as one server,
// and the failovers and restarts HA exists for.

func TestRedisBusOnSentinel(t *testing.T) {
	t.Parallel()
	s := testenv.StartSentinel(t, testenv.SentinelAuth{})
	client := func(t *testing.T) *redis.Client {
		c := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: s.MasterName, SentinelAddrs: s.Sentinels})
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	t.Run("Conformance", func(t *testing.T) {
		bustest.Run(t, func(t *testing.T) events.Bus { return newRedisBus(t, client(t), t.Name()+":", 0) })
	})
	// The failovers run one after the other on the same set: a switch asked
	// of the sentinels, then the new master killed.
	b := newRedisBus(t, client(t), "ha:", 0)
	ctx := bustest.Context(t)
	ch, err := b.Subscribe(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	publishUntil(t, b, 20)
	bustest.Collect(t, ch, 1, 20)
	faults := []struct {
		name  string
		fault func() string // returns the old master
	}{
		{"SENTINEL FAILOVER", func() string { from, _ := s.Failover(); return from }},
		{"master killed", s.KillMaster},
	}
	next := int64(21)
	for _, f := range faults {
		start := time.Now()
		old := f.fault()
		s.WaitNewMaster(old, 30*time.Second)
		// What the outbox relay does: publish from the stream's last seq on
		// until the new master has everything.
		publishUntil(t, b, next+19)
		resynced := collectAcross(t, ch, next, next+19)
		// A Resync comes when the subscription lost its server; after a
		// switch the demoted master, now a replica, may go on serving it.
		t.Logf("%s: master %s replaced, events %d..%d delivered %v after the fault (resync: %v)",
			f.name, old, next, next+19, time.Since(start).Round(time.Millisecond), resynced)
		next += 20
	}
}

func TestRedisBusOnCluster(t *testing.T) {
	t.Parallel()
	c := testenv.StartCluster(t, 3)
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs})
	t.Cleanup(func() { _ = client.Close() })
	t.Run("Conformance", func(t *testing.T) {
		// Each subtest has its own stream, so the streams spread over the nodes.
		bustest.Run(t, func(t *testing.T) events.Bus { return newRedisBus(t, client, t.Name()+":", 0) })
	})
	t.Run("StreamNodeRestartedEmpty", func(t *testing.T) {
		b := newRedisBus(t, client, "restart:", 0)
		ctx := bustest.Context(t)
		ch, err := b.Subscribe(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		publishUntil(t, b, 5)
		bustest.Collect(t, ch, 1, 5)
		node := c.NodeFor(t, "restart:events")
		node.Kill()
		node.Start(t) // same slots (nodes.conf), no data
		publishUntil(t, b, 7)
		if !collectAcross(t, ch, 6, 7) {
			t.Error("no Resync after the stream's node restarted empty (events before 6 are gone from Redis)")
		}
	})
}

// publishUntil publishes the events after the stream's last seq up to seq
// until Redis takes them, as the relay would, failing after 30 s.
func publishUntil(t *testing.T, b *events.RedisBus, seq int64) {
	t.Helper()
	testenv.WaitFor(t, "the stream takes the events", 30*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		last, err := b.LastSeq(ctx)
		if err != nil {
			return false
		}
		if last >= seq {
			return true
		}
		_ = b.Publish(ctx, bustest.Events(last+1, seq)...)
		return false
	})
}

// collectAcross reads until seqs from..until have been delivered in order,
// skipping Resyncs and repeated older seqs, and reports whether a Resync came.
func collectAcross(t *testing.T, ch <-chan events.Delivery, from, until int64) (resynced bool) {
	t.Helper()
	next := from
	for next <= until {
		d := bustest.Next(t, ch)
		switch {
		case d.Resync:
			resynced = true
		case d.Event.Seq < next:
		case d.Event.Seq == next:
			next++
		default:
			t.Fatalf("got seq %d, want %d", d.Event.Seq, next)
		}
	}
	return resynced
}
