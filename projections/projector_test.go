package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/events/testenv"
	"github.com/tenantgate/gateway/migrations"
)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func openSQLite(t *testing.T) *events.SQLStore {
	t.Helper()
	ctx := testContext(t)
	s, err := events.OpenSQLite(ctx, filepath.Join(t.TempDir(), "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := migrations.Migrate(ctx, s.DB()); err != nil {
		t.Fatal(err)
	}
	return s
}

func openPostgres(t *testing.T) *events.SQLStore {
	t.Helper()
	ctx := testContext(t)
	s, err := events.OpenPostgres(ctx, testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := migrations.Migrate(ctx, s.DB()); err != nil {
		t.Fatal(err)
	}
	return s
}

// feeder appends a prepared log to a store in pieces, so that store seqs are
// the log's seqs.
type feeder struct {
	t     *testing.T
	store events.Store
	evs   []events.Envelope
	next  int
}

// append commits the next n events (without publishing them) and returns them.
func (f *feeder) append(n int) []events.Envelope {
	f.t.Helper()
	n = min(n, len(f.evs)-f.next)
	out, err := f.store.Append(testContext(f.t), events.AppendRequest{ExpectedHead: events.AnyHead, Events: f.evs[f.next : f.next+n]})
	if err != nil {
		f.t.Fatal(err)
	}
	for i, ev := range out {
		if want := f.evs[f.next+i].Seq; ev.Seq != want {
			f.t.Fatalf("store gave seq %d, log has %d", ev.Seq, want)
		}
	}
	f.next += n
	return out
}

func (f *feeder) publish(bus events.Bus, evs []events.Envelope) {
	f.t.Helper()
	if err := bus.Publish(testContext(f.t), evs...); err != nil {
		f.t.Fatal(err)
	}
}

// startProjector runs p until the test ends and checks that Run returns nil
// once its context ends.
func startProjector(t *testing.T, p *Projector) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	})
}

// storeState replays everything the store holds.
func storeState(t *testing.T, store events.Store) *Snapshot {
	t.Helper()
	evs, err := store.Read(testContext(t), events.Query{})
	if err != nil {
		t.Fatal(err)
	}
	s, _ := Replay(evs)
	return s
}

func waitConverged(t *testing.T, store events.Store, ps ...*Projector) {
	t.Helper()
	head, err := store.Head(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		// Ready is set right after the start-up catch-up publishes the head.
		testenv.WaitFor(t, "projector to reach the store head and be ready", 30*time.Second, func() bool { return p.AppliedSeq() == head && p.Ready() })
	}
	want := storeState(t, store)
	for i, p := range ps {
		assertSameState(t, p.Snapshot(), want)
		if got := p.Snapshot().StateHash(); got != want.StateHash() {
			t.Fatalf("projector %d: StateHash %s, replay of the store %s", i, got, want.StateHash())
		}
	}
}

func newTestProjector(t *testing.T, cfg ProjectorConfig, store events.Store, bus events.Bus) *Projector {
	t.Helper()
	p, err := NewProjector(cfg, store, bus, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNewProjectorConfig(t *testing.T) {
	t.Parallel()
	store, bus := events.Store(&flakyStore{}), events.NewMemoryBus()
	tests := []struct {
		name    string
		cfg     ProjectorConfig
		store   events.Store
		bus     events.Bus
		wantErr bool
	}{
		{"defaults", ProjectorConfig{}, store, bus, false},
		{"nil store", ProjectorConfig{}, nil, bus, true},
		{"nil bus", ProjectorConfig{}, store, nil, true},
		{"negative interval", ProjectorConfig{HeadCheckInterval: -time.Second}, store, bus, true},
		{"negative batch", ProjectorConfig{BatchSize: -1}, store, bus, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := NewProjector(tc.cfg, tc.store, tc.bus, nil)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if p.cfg.HeadCheckInterval != time.Second || p.cfg.BatchSize != 1000 {
				t.Errorf("defaults = %+v", p.cfg)
			}
			if p.Snapshot() == nil || p.AppliedSeq() != 0 || p.Ready() {
				t.Error("a new projector must have the empty snapshot and not be ready")
			}
		})
	}
}

// TestProjectorSQLite: start-up catch-up, tailing the in-process bus, the
// head check finding an event that was never published, OnApplied in order.
func TestProjectorSQLite(t *testing.T) {
	t.Parallel()
	store, bus := openSQLite(t), events.NewMemoryBus()
	f := &feeder{t: t, store: store, evs: randomLog(t, rand.New(rand.NewPCG(11, 12)), 200).evs}
	f.append(100) // before the projector starts

	var mu sync.Mutex
	var seen []int64
	p := newTestProjector(t, ProjectorConfig{
		HeadCheckInterval: 50 * time.Millisecond, BatchSize: 30, // several reads per catch-up
		OnApplied: func(ev events.Envelope, _ time.Time) {
			mu.Lock()
			seen = append(seen, ev.Seq)
			mu.Unlock()
		},
	}, store, bus)
	startProjector(t, p)
	waitConverged(t, store, p)

	f.publish(bus, f.append(50)) // the normal path
	waitConverged(t, store, p)

	f.append(10) // committed, never published: only the head check finds it
	waitConverged(t, store, p)

	mu.Lock()
	defer mu.Unlock()
	for i, seq := range seen {
		if seq != int64(i+1) {
			t.Fatalf("OnApplied order: call %d got seq %d", i, seq)
		}
	}
	if len(seen) != 160 {
		t.Errorf("OnApplied called %d times, want 160", len(seen))
	}
}

// TestProjectorWaitFor: the instance that wrote reads its write without the
// bus, whether or not Run is going.
func TestProjectorWaitFor(t *testing.T) {
	t.Parallel()
	for _, running := range []bool{true, false} {
		name := map[bool]string{true: "running", false: "not running"}[running]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			store := openSQLite(t)
			l := newLog(t)
			id, _ := l.tenant("acme")
			f := &feeder{t: t, store: store, evs: l.evs}
			// A bus that never delivers and a head check that never comes.
			p := newTestProjector(t, ProjectorConfig{HeadCheckInterval: time.Hour}, store, events.NewMemoryBus())
			if running {
				startProjector(t, p)
				testenv.WaitFor(t, "ready", 30*time.Second, p.Ready)
			}
			written := f.append(1)
			if err := p.WaitFor(testContext(t), written[0].Seq); err != nil {
				t.Fatal(err)
			}
			if _, ok := p.Snapshot().Tenant(id); !ok {
				t.Fatal("the write is not in the snapshot after WaitFor")
			}
			// A seq the store does not have: WaitFor ends with its context.
			ctx, cancel := context.WithTimeout(testContext(t), 100*time.Millisecond)
			defer cancel()
			if err := p.WaitFor(ctx, 99); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("WaitFor(99) = %v, want DeadlineExceeded", err)
			}
		})
	}
}

// Changed wakes a follower once per published snapshot or burst of them,
// and the snapshot it then reads holds every event applied so far.
func TestProjectorChanged(t *testing.T) {
	t.Parallel()
	store := openSQLite(t)
	l := newLog(t)
	for i := range 5 {
		l.tenant(fmt.Sprintf("t%d", i))
	}
	f := &feeder{t: t, store: store, evs: l.evs}
	p := newTestProjector(t, ProjectorConfig{HeadCheckInterval: time.Hour}, store, events.NewMemoryBus())
	changed := p.Changed()
	select {
	case <-changed:
		t.Fatal("Changed is closed before any snapshot was published")
	default:
	}
	written := f.append(2)
	if err := p.WaitFor(testContext(t), written[1].Seq); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	default:
		t.Fatal("Changed is still open after a snapshot was published")
	}
	next := p.Changed()
	select {
	case <-next:
		t.Fatal("the channel taken after the publish is already closed")
	default:
	}
	written = f.append(3)
	if err := p.WaitFor(testContext(t), written[2].Seq); err != nil {
		t.Fatal(err)
	}
	<-next
	if p.Snapshot().Seq() != written[2].Seq {
		t.Fatalf("after Changed the snapshot is at %d, want %d", p.Snapshot().Seq(), written[2].Seq)
	}
}

// flakyStore fails reads and head checks while down.
type flakyStore struct {
	events.Store
	down  atomic.Bool
	fails atomic.Int64
}

func (s *flakyStore) Read(ctx context.Context, q events.Query) ([]events.Envelope, error) {
	if s.down.Load() {
		s.fails.Add(1)
		return nil, events.ErrUnavailable
	}
	return s.Store.Read(ctx, q)
}

func (s *flakyStore) Head(ctx context.Context) (int64, error) {
	if s.down.Load() {
		s.fails.Add(1)
		return 0, events.ErrUnavailable
	}
	return s.Store.Head(ctx)
}

// TestProjectorStoreDownAtStart: not ready while the store is down, retries,
// ready once it answers.
func TestProjectorStoreDownAtStart(t *testing.T) {
	t.Parallel()
	inner := openSQLite(t)
	store := &flakyStore{Store: inner}
	l := newLog(t)
	l.tenant("acme")
	(&feeder{t: t, store: inner, evs: l.evs}).append(1)
	store.down.Store(true)
	p := newTestProjector(t, ProjectorConfig{HeadCheckInterval: 50 * time.Millisecond}, store, events.NewMemoryBus())
	startProjector(t, p)
	testenv.WaitFor(t, "retries", 30*time.Second, func() bool { return store.fails.Load() >= 2 })
	if p.Ready() || p.AppliedSeq() != 0 {
		t.Fatal("ready while the store is down")
	}
	store.down.Store(false)
	waitConverged(t, store, p)
}

// panickyStore panics in one Read, like a bug in the writer would.
type panickyStore struct {
	events.Store
	armed atomic.Bool
}

func (s *panickyStore) Read(ctx context.Context, q events.Query) ([]events.Envelope, error) {
	if s.armed.CompareAndSwap(true, false) {
		panic("boom")
	}
	return s.Store.Read(ctx, q)
}

// TestProjectorRecoversFromPanic: a panic in the writer does not stop the
// projector, and a panicking OnApplied changes nothing but its own calls.
func TestProjectorRecoversFromPanic(t *testing.T) {
	t.Parallel()
	inner, bus := openSQLite(t), events.NewMemoryBus()
	store := &panickyStore{Store: inner}
	f := &feeder{t: t, store: inner, evs: randomLog(t, rand.New(rand.NewPCG(5, 6)), 30).evs}
	var panicked atomic.Bool
	p := newTestProjector(t, ProjectorConfig{
		HeadCheckInterval: 20 * time.Millisecond,
		OnApplied: func(ev events.Envelope, _ time.Time) {
			if ev.Seq == 12 && panicked.CompareAndSwap(false, true) {
				panic("boom in OnApplied")
			}
		},
	}, store, bus)
	f.append(10)
	startProjector(t, p)
	waitConverged(t, store, p)
	f.publish(bus, f.append(5))
	testenv.WaitFor(t, "the OnApplied panic", 30*time.Second, panicked.Load)
	waitConverged(t, store, p)

	store.armed.Store(true)
	f.append(5) // unpublished: the head check's catch-up reads, and panics
	testenv.WaitFor(t, "the Read panic", 30*time.Second, func() bool { return !store.armed.Load() })
	f.publish(bus, f.append(10))
	waitConverged(t, store, p)
}

// gatedBus holds deliveries while closed, like a consumer that stopped
// reading: the Redis subscription behind it stops reading the stream too.
type gatedBus struct {
	events.Bus
	mu   sync.Mutex
	gate chan struct{} // closed when open
}

func newGatedBus(b events.Bus) *gatedBus {
	g := &gatedBus{Bus: b, gate: make(chan struct{})}
	close(g.gate)
	return g
}

func (g *gatedBus) hold() {
	g.mu.Lock()
	g.gate = make(chan struct{})
	g.mu.Unlock()
}

func (g *gatedBus) release() {
	g.mu.Lock()
	close(g.gate)
	g.mu.Unlock()
}

func (g *gatedBus) Subscribe(ctx context.Context, after int64) (<-chan events.Delivery, error) {
	in, err := g.Bus.Subscribe(ctx, after)
	if err != nil {
		return nil, err
	}
	out := make(chan events.Delivery)
	go func() {
		defer close(out)
		for d := range in {
			g.mu.Lock()
			gate := g.gate
			g.mu.Unlock()
			select {
			case <-gate:
			case <-ctx.Done():
				return
			}
			select {
			case out <- d:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// TestProjectorsConverge: two projectors on one PostgreSQL and one Redis
// stream reach the same state after every way the bus can lose events.
func TestProjectorsConverge(t *testing.T) {
	t.Parallel()
	store := openPostgres(t)
	client, prefix := testenv.RedisClient(t)
	stream := prefix + "events"
	newBus := func() *events.RedisBus {
		b, err := events.NewRedisBus(client, events.RedisBusConfig{Stream: stream, MaxLen: 10, Block: 100 * time.Millisecond}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	pub := newBus()
	f := &feeder{t: t, store: store, evs: randomLog(t, rand.New(rand.NewPCG(21, 22)), 1200).evs}
	f.publish(pub, f.append(50))

	// a checks the head often; b practically never, so only the bus (a gap
	// or a Resync) can tell b that it missed something.
	a := newTestProjector(t, ProjectorConfig{HeadCheckInterval: 50 * time.Millisecond}, store, newBus())
	gated := newGatedBus(newBus())
	b := newTestProjector(t, ProjectorConfig{HeadCheckInterval: time.Hour}, store, gated)
	startProjector(t, a)
	startProjector(t, b)
	waitConverged(t, store, a, b)

	t.Run("lost publish found by the head check", func(t *testing.T) {
		f.append(3)
		testenv.WaitFor(t, "a to find it", 30*time.Second, func() bool { return a.AppliedSeq() == int64(f.next) })
		// b finds it at the next gap.
		f.publish(pub, f.append(2))
		waitConverged(t, store, a, b)
	})
	t.Run("stream deleted", func(t *testing.T) {
		if err := client.Del(testContext(t), stream).Err(); err != nil {
			t.Fatal(err)
		}
		f.append(2) // lost too
		f.publish(pub, f.append(3))
		waitConverged(t, store, a, b)
	})
	t.Run("all test keys flushed", func(t *testing.T) {
		ctx := testContext(t)
		keys, err := client.Keys(ctx, prefix+"*").Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) > 0 {
			if err := client.Del(ctx, keys...).Err(); err != nil {
				t.Fatal(err)
			}
		}
		f.publish(pub, f.append(4))
		waitConverged(t, store, a, b)
	})
	t.Run("consumer behind a trimmed stream", func(t *testing.T) {
		gated.hold()
		for range 8 {
			f.publish(pub, f.append(100))
		}
		if n, err := client.XLen(testContext(t), stream).Result(); err != nil || n >= 800 {
			t.Fatalf("stream not trimmed: %d entries (%v)", n, err)
		}
		testenv.WaitFor(t, "a to keep up", 30*time.Second, func() bool { return a.AppliedSeq() == int64(f.next) })
		gated.release()
		waitConverged(t, store, a, b)
	})
}

// closingBus closes its first subscription at once, as a bus may when its
// connection drops.
type closingBus struct {
	events.Bus
	subs atomic.Int64
}

func (c *closingBus) Subscribe(ctx context.Context, after int64) (<-chan events.Delivery, error) {
	if c.subs.Add(1) == 1 {
		ch := make(chan events.Delivery)
		close(ch)
		return ch, nil
	}
	return c.Bus.Subscribe(ctx, after)
}

func TestProjectorResubscribes(t *testing.T) {
	t.Parallel()
	store, mem := openSQLite(t), events.NewMemoryBus()
	bus := &closingBus{Bus: mem}
	f := &feeder{t: t, store: store, evs: randomLog(t, rand.New(rand.NewPCG(7, 8)), 20).evs}
	// Only the bus can bring new events: the head check never comes.
	p := newTestProjector(t, ProjectorConfig{HeadCheckInterval: time.Hour}, store, bus)
	startProjector(t, p)
	testenv.WaitFor(t, "ready", 30*time.Second, p.Ready)
	f.publish(mem, f.append(20))
	waitConverged(t, store, p)
	if n := bus.subs.Load(); n < 2 {
		t.Errorf("%d subscriptions, want a second one after the first closed", n)
	}
}

// TestProjectorStopsWhenTheStoreIsBehind: a bus event the store never wrote
// (the store was restored from an older backup) is applied like any other,
// but the next head check finds the store behind, and Run returns
// ErrDiverged for the process to restart from the store rather than serve
// a history the store does not have.
func TestProjectorStopsWhenTheStoreIsBehind(t *testing.T) {
	t.Parallel()
	store := openSQLite(t)
	l := newLog(t)
	l.tenant("acme")
	l.tenant("beta")
	l.tenant("lost-with-the-backup")
	f := &feeder{t: t, store: store, evs: l.evs}
	f.append(2)
	bus := events.NewMemoryBus()
	p := newTestProjector(t, ProjectorConfig{HeadCheckInterval: 50 * time.Millisecond}, store, bus)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	testenv.WaitFor(t, "ready on the store's two events", 30*time.Second, func() bool { return p.Ready() && p.AppliedSeq() == 2 })

	// Two quiet head checks with the store level with the projector: it goes on.
	time.Sleep(150 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("Run returned %v with the store level", err)
	default:
	}
	f.publish(bus, l.evs[2:])
	select {
	case err := <-done:
		if !errors.Is(err, ErrDiverged) {
			t.Fatalf("Run returned %v, want ErrDiverged", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("Run went on at seq %d with the store at 2", p.AppliedSeq())
	}
}

// TestProjectorSkipsABusAheadOfTheStore: started on a store restored from
// an older backup, with the bus still holding the lost events, the
// projector does not subscribe (it would apply them); it follows the store
// until the relay has dropped them, then tails the bus again.
func TestProjectorSkipsABusAheadOfTheStore(t *testing.T) {
	t.Parallel()
	store := openSQLite(t)
	lost := newLog(t)
	lost.tenant("acme")
	lost.tenant("lost-with-the-backup")
	l := newLog(t)
	l.tenant("acme")
	l.tenant("written-after-the-restore")
	f := &feeder{t: t, store: store, evs: l.evs}
	f.append(1)
	bus := events.NewMemoryBus()
	f.publish(bus, lost.evs)
	p := newTestProjector(t, ProjectorConfig{HeadCheckInterval: 50 * time.Millisecond}, store, bus)
	startProjector(t, p)
	waitConverged(t, store, p)
	time.Sleep(300 * time.Millisecond) // time to subscribe and apply seq 2, were it to
	if p.AppliedSeq() != 1 {
		t.Fatalf("applied seq %d from a bus ahead of the store (head 1)", p.AppliedSeq())
	}

	if _, err := bus.DropAfter(testContext(t), 1); err != nil { // what the relay does
		t.Fatal(err)
	}
	f.publish(bus, f.append(1))
	waitConverged(t, store, p)
}
