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

func TestMemoryBus(t *testing.T) {
	t.Parallel()
	bustest.Run(t, func(t *testing.T) events.Bus { return events.NewMemoryBus() })
}

func TestRedisBus(t *testing.T) {
	t.Parallel()
	bustest.Run(t, func(t *testing.T) events.Bus {
		client, prefix := testenv.RedisClient(t)
		return newRedisBus(t, client, prefix, 0)
	})
}

func newRedisBus(t testing.TB, client redis.UniversalClient, prefix string, maxLen int64) *events.RedisBus {
	t.Helper()
	b, err := events.NewRedisBus(client, events.RedisBusConfig{Stream: prefix + "events", MaxLen: maxLen, Block: 100 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNewRedisBusValidates(t *testing.T) {
	t.Parallel()
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer client.Close()
	tests := []struct {
		name   string
		client redis.UniversalClient
		cfg    events.RedisBusConfig
	}{
		{"nil client", nil, events.RedisBusConfig{Stream: "s"}},
		{"no stream", client, events.RedisBusConfig{}},
	}
	for _, tt := range tests {
		if _, err := events.NewRedisBus(tt.client, tt.cfg, nil); err == nil {
			t.Errorf("%s: NewRedisBus succeeded", tt.name)
		}
	}
}

// expectResync reads deliveries until a Resync, failing on events or timeout.
func expectResync(t *testing.T, ch <-chan events.Delivery) {
	t.Helper()
	d := bustest.Next(t, ch)
	if !d.Resync {
		t.Fatalf("got event %d, want a Resync", d.Event.Seq)
	}
}

func TestMemoryBusTrimmedHistoryResyncs(t *testing.T) {
	t.Parallel()
	b := events.NewMemoryBus()
	defer b.Close()
	ctx := bustest.Context(t)
	const n = 25000 // more than the retained history
	for from := int64(1); from <= n; from += 1000 {
		if err := b.Publish(ctx, bustest.Events(from, from+999)...); err != nil {
			t.Fatal(err)
		}
	}
	ch, err := b.Subscribe(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	expectResync(t, ch)
	first := bustest.Next(t, ch).Event.Seq
	if first <= 1 {
		t.Fatalf("first event after the Resync = %d, want a trimmed start", first)
	}
	bustest.Collect(t, ch, first+1, n)
}

func TestMemoryBusClose(t *testing.T) {
	t.Parallel()
	b := events.NewMemoryBus()
	ch, err := b.Subscribe(bustest.Context(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	_ = b.Close()
	if _, ok := <-ch; ok {
		t.Fatal("delivery after Close")
	}
	if err := b.Publish(context.Background(), bustest.Event(1)); err == nil {
		t.Fatal("Publish after Close succeeded")
	}
}

func TestRedisBusStreamDeletedResyncs(t *testing.T) {
	t.Parallel()
	client, prefix := testenv.RedisClient(t)
	b := newRedisBus(t, client, prefix, 0)
	ctx := bustest.Context(t)
	if err := b.Publish(ctx, bustest.Events(1, 5)...); err != nil {
		t.Fatal(err)
	}
	ch, err := b.Subscribe(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	bustest.Collect(t, ch, 1, 5)
	if err := client.Del(ctx, prefix+"events").Err(); err != nil {
		t.Fatal(err)
	}
	expectResync(t, ch)
	if n, err := b.LastSeq(ctx); err != nil || n != 0 {
		t.Fatalf("LastSeq of a deleted stream = %d, %v; want 0", n, err)
	}
	// A relay republishes; the subscription goes on after seq 5.
	if err := b.Publish(ctx, bustest.Events(1, 7)...); err != nil {
		t.Fatal(err)
	}
	bustest.Collect(t, ch, 6, 7)
}

func TestRedisBusMalformedEntrySkipped(t *testing.T) {
	t.Parallel()
	client, prefix := testenv.RedisClient(t)
	b := newRedisBus(t, client, prefix, 0)
	ctx := bustest.Context(t)
	stream := prefix + "events"
	if err := b.Publish(ctx, bustest.Events(1, 2)...); err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		name   string
		id     string
		values []any
	}{
		{"not JSON", "3-0", []any{"event", "{not json"}},
		{"no event field", "4-0", []any{"other", "x"}},
		{"seq does not match the ID", "5-0", []any{"event", `{"seq":99,"id":"x"}`}},
		{"ID not of the form seq-0", "5-1", []any{"event", `{"seq":5,"id":"x"}`}},
	}
	for _, e := range bad {
		if err := client.XAdd(ctx, &redis.XAddArgs{Stream: stream, ID: e.id, Values: e.values}).Err(); err != nil {
			t.Fatalf("%s: XADD: %v", e.name, err)
		}
	}
	if last, err := b.LastSeq(ctx); err != nil || last != 5 {
		t.Fatalf("LastSeq after a foreign entry 5-1 = %d, %v; want 5", last, err)
	}
	if err := b.Publish(ctx, bustest.Events(6, 8)...); err != nil {
		t.Fatal(err)
	}
	ch, err := b.Subscribe(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	bustest.Collect(t, ch, 1, 2)
	for range bad {
		expectResync(t, ch)
	}
	bustest.Collect(t, ch, 6, 8)
}

func TestRedisBusTrimmedStream(t *testing.T) {
	t.Parallel()
	client, prefix := testenv.RedisClient(t)
	const capLen, n = 10, 1000
	b := newRedisBus(t, client, prefix, capLen)
	ctx := bustest.Context(t)
	for from := int64(1); from <= n; from += 50 {
		if err := b.Publish(ctx, bustest.Events(from, from+49)...); err != nil {
			t.Fatal(err)
		}
	}
	length, err := client.XLen(ctx, prefix+"events").Result()
	if err != nil {
		t.Fatal(err)
	}
	// "~" trims whole radix-tree nodes (100 entries by default).
	if length >= n/2 {
		t.Fatalf("stream length %d with a cap of %d: not trimmed", length, capLen)
	}
	if last, err := b.LastSeq(ctx); err != nil || last != n {
		t.Fatalf("LastSeq = %d, %v; want %d", last, err, n)
	}
	// A consumer behind the trimmed part is told to resync, then goes on.
	ch, err := b.Subscribe(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	expectResync(t, ch)
	first := bustest.Next(t, ch).Event.Seq
	if first != n-length+1 {
		t.Fatalf("first entry after trimming = %d, want %d", first, n-length+1)
	}
	bustest.Collect(t, ch, first+1, n)
	// Republishing a trimmed seq is still skipped, not an error.
	if err := b.Publish(ctx, bustest.Event(5)); err != nil {
		t.Fatalf("republish of a trimmed seq: %v", err)
	}
}

// TestRedisBusOutage takes Redis away from a subscription and brings it back:
// the subscription keeps retrying, sends a Resync when Redis answers again,
// then delivers what is published next.
func TestRedisBusOutage(t *testing.T) {
	t.Parallel()
	direct, prefix := testenv.RedisClient(t)
	proxy := newFaultProxy(t, direct.Options().Addr)
	viaProxy := redis.NewClient(&redis.Options{
		Addr: proxy.addr(), DB: direct.Options().DB,
		DialTimeout: 200 * time.Millisecond, ReadTimeout: time.Second, MaxRetries: -1,
	})
	defer viaProxy.Close()
	sub := newRedisBus(t, viaProxy, prefix, 0)
	pub := newRedisBus(t, direct, prefix, 0)
	ctx := bustest.Context(t)

	ch, err := sub.Subscribe(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, bustest.Events(1, 3)...); err != nil {
		t.Fatal(err)
	}
	bustest.Collect(t, ch, 1, 3)

	proxy.setDown(true)
	if _, err := sub.LastSeq(ctx); err == nil {
		t.Fatal("LastSeq through a downed proxy succeeded")
	}
	if err := sub.Publish(ctx, bustest.Event(4)); err == nil {
		t.Fatal("Publish through a downed proxy succeeded")
	}
	// Published while the subscriber cannot see Redis.
	if err := pub.Publish(ctx, bustest.Events(4, 6)...); err != nil {
		t.Fatal(err)
	}
	bustest.Quiet(t, ch, 500*time.Millisecond) // retrying, not closed
	proxy.setDown(false)
	expectResync(t, ch)
	bustest.Collect(t, ch, 4, 6)
	if err := pub.Publish(ctx, bustest.Event(7)); err != nil {
		t.Fatal(err)
	}
	bustest.Collect(t, ch, 7, 7)
}
