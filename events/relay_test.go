package events_test

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/events/bustest"
	"github.com/tenantgate/gateway/events/testenv"
	"github.com/tenantgate/gateway/migrations"
)

// appendN appends n single-event tenants and returns the head.
func appendN(t testing.TB, s events.Store, n int) int64 {
	t.Helper()
	ctx := context.Background()
	var head int64
	for range n {
		id := uuid.NewString()
		out, err := s.Append(ctx, events.AppendRequest{ExpectedHead: events.AnyHead, Events: []events.Envelope{{
			ID: uuid.NewString(), Type: events.TenantCreated, AggregateType: events.AggregateTenant,
			AggregateID: id, AggregateVersion: 1, TenantID: id, Actor: "test", OccurredAt: time.Now(), Data: []byte(`{}`),
		}}})
		if err != nil {
			t.Fatalf("Append: %v", err)
		}
		head = out[0].Seq
	}
	return head
}

// streamSeqs returns the seqs of the stream's entries, checking that each
// entry's ID matches the event in it.
func streamSeqs(t testing.TB, client redis.UniversalClient, stream string) []int64 {
	t.Helper()
	msgs, err := client.XRange(context.Background(), stream, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]int64, len(msgs))
	for i, m := range msgs {
		var seq int64
		if _, err := fmt.Sscanf(m.ID, "%d-0", &seq); err != nil {
			t.Fatalf("entry ID %q: %v", m.ID, err)
		}
		out[i] = seq
	}
	return out
}

// wantRange fails t unless seqs is exactly from..to.
func wantRange(t testing.TB, seqs []int64, from, to int64) {
	t.Helper()
	if int64(len(seqs)) != to-from+1 {
		t.Fatalf("stream holds %d entries (%v...), want seqs %d..%d", len(seqs), seqs[:min(len(seqs), 5)], from, to)
	}
	for i, s := range seqs {
		if s != from+int64(i) {
			t.Fatalf("stream entry %d is seq %d, want %d", i, s, from+int64(i))
		}
	}
}

// waitLastSeq polls until the bus's LastSeq reaches want.
func waitLastSeq(t testing.TB, b events.Bus, want int64, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got, err := b.LastSeq(context.Background())
		if err == nil && got >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("bus LastSeq = %d (%v) after %v, want %d", got, err, within, want)
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
}

// runRelay runs r until the test ends.
func runRelay(t testing.TB, r *events.Relay) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Relay.Run = %v, want nil on cancel", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Relay.Run did not return after cancel")
		}
	})
}

func TestRelayPublishesBacklog(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		committed  int
		maxBacklog int64
		wantFrom   int64
	}{
		{"whole backlog", 1234, 0, 1},
		{"backlog capped", 300, 50, 251},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			store := openSQLite(t)
			defer store.Close()
			client, prefix := testenv.RedisClient(t)
			bus := newRedisBus(t, client, prefix, 0)
			// Committed while no relay runs.
			head := appendN(t, store, tt.committed)
			runRelay(t, events.NewRelay(store, bus, events.RelayConfig{MaxBacklog: tt.maxBacklog, BatchSize: 100}, nil))
			waitLastSeq(t, bus, head, 20*time.Second)
			wantRange(t, streamSeqs(t, client, prefix+"events"), tt.wantFrom, head)
		})
	}
}

// keepsFew is a memory bus that says it keeps only the newest n events,
// and records what it is given.
type keepsFew struct {
	*events.MemoryBus
	n         int64
	mu        sync.Mutex
	published []int64
}

func (k *keepsFew) Keeps() int64 { return k.n }

func (k *keepsFew) PublishAfter(ctx context.Context, after int64, evs ...events.Envelope) (bool, error) {
	k.mu.Lock()
	for _, ev := range evs {
		k.published = append(k.published, ev.Seq)
	}
	k.mu.Unlock()
	return k.MemoryBus.PublishAfter(ctx, after, evs...)
}

// TestRelayPublishesNoMoreThanTheBusKeeps: an in-process bus that keeps 40
// events is given the last 40 of a backlog, not MaxBacklog of them; a fresh
// one (the process just started, every subscriber reads the store first)
// only the newest event.
func TestRelayPublishesNoMoreThanTheBusKeeps(t *testing.T) {
	t.Parallel()
	if got := events.NewMemoryBus().Keeps(); got <= 0 || got > 100000 {
		t.Fatalf("MemoryBus.Keeps() = %d, want a positive bound below the default backlog", got)
	}
	for _, tt := range []struct {
		name     string
		busAt    int64 // what the bus held before the relay ran
		wantFrom int64
	}{
		{"fresh", 0, 300},
		{"behind", 10, 261},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			store := openSQLite(t)
			defer store.Close()
			head := appendN(t, store, 300)
			bus := &keepsFew{MemoryBus: events.NewMemoryBus(), n: 40}
			defer bus.Close()
			if tt.busAt > 0 {
				if err := bus.Publish(context.Background(), bustest.Events(1, tt.busAt)...); err != nil {
					t.Fatal(err)
				}
			}
			runRelay(t, events.NewRelay(store, bus, events.RelayConfig{MaxBacklog: 100, BatchSize: 25}, nil))
			waitLastSeq(t, bus, head, 20*time.Second)
			bus.mu.Lock()
			defer bus.mu.Unlock()
			var want []int64
			for s := tt.wantFrom; s <= head; s++ {
				want = append(want, s)
			}
			if !slices.Equal(bus.published, want) {
				t.Fatalf("published seqs %v, want %d..%d", bus.published, tt.wantFrom, head)
			}
		})
	}
}

// lostAfterRead is a bus that loses its events just after the relay's first
// read of LastSeq: that read answers what the bus held before (Redis
// restarting empty between the relay's two reads). It embeds the Bus
// interface, so that the relay treats it as the shared bus Redis is, not
// as the in-process memory bus beneath.
type lostAfterRead struct {
	events.Bus
	stale atomic.Int64
}

func (b *lostAfterRead) LastSeq(ctx context.Context) (int64, error) {
	if seq := b.stale.Swap(0); seq > 0 {
		return seq, nil
	}
	return b.Bus.LastSeq(ctx)
}

// TestRelayRepublishesABusLostMidPass: a pass that read the bus's last seq
// before the bus lost its events must not publish the newer events alone
// (the bus would then say it holds everything); the next pass rebuilds it
// from the start.
func TestRelayRepublishesABusLostMidPass(t *testing.T) {
	t.Parallel()
	store := openSQLite(t)
	defer store.Close()
	head := appendN(t, store, 8)
	mem := events.NewMemoryBus()
	defer mem.Close()
	bus := &lostAfterRead{Bus: mem}
	bus.stale.Store(5)
	runRelay(t, events.NewRelay(store, bus, events.RelayConfig{Interval: 20 * time.Millisecond}, nil))
	// Only the relay reads the stale answer: the checks read the bus itself.
	waitLastSeq(t, mem, head, 10*time.Second)
	ch, err := mem.Subscribe(bustest.Context(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	bustest.Collect(t, ch, 1, head)
}

// TestRelayDropsWhatTheStoreDoesNotHave: a store restored from an older
// backup is behind the stream. The relay drops the stream's entries the
// store never wrote, so that no consumer applies them, and the store's own
// next events (the same seqs, other events) are published.
func TestRelayDropsWhatTheStoreDoesNotHave(t *testing.T) {
	t.Parallel()
	store := openSQLite(t)
	defer store.Close()
	client, prefix := testenv.RedisClient(t)
	bus := newRedisBus(t, client, prefix, 0)
	appendN(t, store, 2)
	if err := bus.Publish(context.Background(), bustest.Events(1, 5)...); err != nil {
		t.Fatal(err)
	}
	runRelay(t, events.NewRelay(store, bus, events.RelayConfig{Interval: 20 * time.Millisecond}, nil))
	testenv.WaitFor(t, "the stream cut back to the store's head", 10*time.Second, func() bool {
		return len(streamSeqs(t, client, prefix+"events")) == 2
	})
	head := appendN(t, store, 2)
	waitLastSeq(t, bus, head, 10*time.Second)
	wantRange(t, streamSeqs(t, client, prefix+"events"), 1, 4)
	stored, err := store.Read(context.Background(), events.Query{After: 2})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := bus.Subscribe(bustest.Context(t), 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range stored {
		if d := bustest.Next(t, ch); d.Event.ID != want.ID {
			t.Fatalf("stream seq %d holds event %s, the store's is %s", d.Event.Seq, d.Event.ID, want.ID)
		}
	}
}

// TestRelayNotify: with a one-hour interval only Notify can trigger the
// passes that publish new events.
func TestRelayNotify(t *testing.T) {
	t.Parallel()
	store := openSQLite(t)
	defer store.Close()
	bus := events.NewMemoryBus()
	defer bus.Close()
	r := events.NewRelay(store, bus, events.RelayConfig{Interval: time.Hour}, nil)
	for range 1000 {
		r.Notify() // never blocks, even with no Run
	}
	runRelay(t, r)
	ch, err := bus.Subscribe(bustest.Context(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := int64(1); i <= 5; i++ {
		appendN(t, store, 1)
		r.Notify()
		bustest.Collect(t, ch, i, i)
	}
}

// TestRelayOutage: events committed while the bus or the store cannot be
// reached are published once it is back; the relay never exits meanwhile.
func TestRelayOutage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		breakStore bool
	}{
		{"redis down", false},
		{"postgres down", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			direct, dsn := openPostgresDSN(t)
			defer direct.Close()
			pgURL, err := url.Parse(dsn)
			if err != nil {
				t.Fatal(err)
			}
			pgProxy := newFaultProxy(t, pgURL.Host)
			pgURL.Host = pgProxy.addr()
			viaProxy, err := events.OpenPostgres(ctx, pgURL.String())
			if err != nil {
				t.Fatal(err)
			}
			defer viaProxy.Close()

			redisDirect, prefix := testenv.RedisClient(t)
			redisProxy := newFaultProxy(t, redisDirect.Options().Addr)
			redisVia := redis.NewClient(&redis.Options{Addr: redisProxy.addr(), DB: redisDirect.Options().DB, DialTimeout: 200 * time.Millisecond})
			defer redisVia.Close()
			bus := newRedisBus(t, redisVia, prefix, 0)
			check := newRedisBus(t, redisDirect, prefix, 0)

			appendN(t, direct, 10)
			r := events.NewRelay(viaProxy, bus, events.RelayConfig{Interval: 50 * time.Millisecond}, nil)
			runRelay(t, r)
			waitLastSeq(t, check, 10, 10*time.Second)

			broken := redisProxy
			if tt.breakStore {
				broken = pgProxy
			}
			broken.setDown(true)
			head := appendN(t, direct, 25)
			r.Notify()
			// Nothing can be published during the outage; give the relay's
			// passes time to fail so the check below means something.
			time.Sleep(300 * time.Millisecond)
			if got, _ := check.LastSeq(ctx); got != 10 {
				t.Fatalf("LastSeq = %d during the outage, want 10", got)
			}
			broken.setDown(false)
			waitLastSeq(t, check, head, 15*time.Second)
			wantRange(t, streamSeqs(t, redisDirect, prefix+"events"), 1, head)
		})
	}
}

// TestRelaysRacing: two instances' relays publish concurrently while events
// are appended: the stream holds every seq exactly once, in order.
func TestRelaysRacing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := testenv.Postgres(t)
	var stores [2]*events.SQLStore
	for i := range stores {
		s, err := events.OpenPostgres(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		stores[i] = s
	}
	if err := migrations.Migrate(ctx, stores[0].DB()); err != nil {
		t.Fatal(err)
	}
	client, prefix := testenv.RedisClient(t)
	var relays [2]*events.Relay
	for i := range relays {
		relays[i] = events.NewRelay(stores[i], newRedisBus(t, client, prefix, 0), events.RelayConfig{Interval: 5 * time.Millisecond, BatchSize: 7}, nil)
		runRelay(t, relays[i])
	}
	const writers, perWriter = 4, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for range perWriter {
				appendN(t, stores[w%2], 1)
				relays[0].Notify()
				relays[1].Notify()
			}
		})
	}
	wg.Wait()
	check := newRedisBus(t, client, prefix, 0)
	waitLastSeq(t, check, writers*perWriter, 20*time.Second)
	wantRange(t, streamSeqs(t, client, prefix+"events"), 1, writers*perWriter)
}

// TestRedisRestartedEmpty: while a subscriber is cut off, Redis loses the
// stream and more events are committed. The relay rebuilds the stream from
// the store; the subscriber then gets every new event, in order.
func TestRedisRestartedEmpty(t *testing.T) {
	t.Parallel()
	store := openSQLite(t)
	defer store.Close()
	direct, prefix := testenv.RedisClient(t)
	proxy := newFaultProxy(t, direct.Options().Addr)
	viaProxy := redis.NewClient(&redis.Options{Addr: proxy.addr(), DB: direct.Options().DB, DialTimeout: 200 * time.Millisecond})
	defer viaProxy.Close()
	relayBus := newRedisBus(t, direct, prefix, 0)
	r := events.NewRelay(store, relayBus, events.RelayConfig{Interval: 20 * time.Millisecond}, nil)
	runRelay(t, r)

	ch, err := newRedisBus(t, viaProxy, prefix, 0).Subscribe(bustest.Context(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, store, 5)
	bustest.Collect(t, ch, 1, 5)

	proxy.setDown(true)
	if err := direct.Del(context.Background(), prefix+"events").Err(); err != nil {
		t.Fatal(err)
	}
	head := appendN(t, store, 3)
	waitLastSeq(t, relayBus, head, 10*time.Second) // the relay rebuilt the stream
	wantRange(t, streamSeqs(t, direct, prefix+"events"), 1, head)

	// Whether the subscriber noticed the outage (go-redis may have hidden it
	// by retrying) decides whether a Resync comes first; either way nothing
	// after seq 5 is lost or reordered.
	proxy.setDown(false)
	for next := int64(6); next <= head; {
		d := bustest.Next(t, ch)
		if d.Resync {
			continue
		}
		if d.Event.Seq != next {
			t.Fatalf("got seq %d, want %d", d.Event.Seq, next)
		}
		next++
	}
}
