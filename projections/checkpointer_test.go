package projections

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/events/testenv"
)

// countingStore counts the events read from the store, to show where a
// replay started.
type countingStore struct {
	*events.SQLStore
	read   atomic.Int64
	loaded atomic.Int64 // checkpoints
}

func (c *countingStore) LoadCheckpoint(ctx context.Context, seq int64, version string) (events.Checkpoint, error) {
	c.loaded.Add(1)
	return c.SQLStore.LoadCheckpoint(ctx, seq, version)
}

func (c *countingStore) Read(ctx context.Context, q events.Query) ([]events.Envelope, error) {
	evs, err := c.SQLStore.Read(ctx, q)
	c.read.Add(int64(len(evs)))
	return evs, err
}

type syncBuffer = testenv.SyncBuffer

var storeKinds = []struct {
	name string
	open func(*testing.T) *events.SQLStore
}{{"sqlite", openSQLite}, {"postgres", openPostgres}}

// checkpointedStore is a store holding a random log of n events and
// checkpoints at every multiple of every.
func checkpointedStore(t *testing.T, open func(*testing.T) *events.SQLStore, seed uint64, n int, every int64) (*events.SQLStore, []events.Envelope) {
	t.Helper()
	store := open(t)
	evs := randomLog(t, rand.New(rand.NewPCG(seed, seed)), n).evs
	if _, err := store.Append(testContext(t), events.AppendRequest{ExpectedHead: events.AnyHead, Events: evs}); err != nil {
		t.Fatal(err)
	}
	cp, err := NewCheckpointer(store, every, nil)
	if err != nil {
		t.Fatal(err)
	}
	for at := every; at <= int64(n); at += every {
		s, _ := Replay(evs[:at])
		if err := cp.Save(testContext(t), s); err != nil {
			t.Fatal(err)
		}
	}
	return store, evs
}

// startAndWait runs a projector on store until it is ready at the head.
func startAndWait(t *testing.T, store events.Store, cfg ProjectorConfig, log *slog.Logger) *Projector {
	t.Helper()
	p, err := NewProjector(cfg, store, events.NewMemoryBus(), log)
	if err != nil {
		t.Fatal(err)
	}
	startProjector(t, p)
	head, err := store.Head(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "projector ready at the head", 30*time.Second, func() bool { return p.Ready() && p.AppliedSeq() == head })
	return p
}

func newCheckpointer(t *testing.T, store CheckpointStore, every int64, log *slog.Logger) *Checkpointer {
	t.Helper()
	cp, err := NewCheckpointer(store, every, log)
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

// TestStartFromACheckpointEqualsStartFromZero: in both stores, a projector
// starting with checkpoints reads only the events after the newest one and
// ends at the same seq with the same state as one replaying from zero.
func TestStartFromACheckpointEqualsStartFromZero(t *testing.T) {
	t.Parallel()
	for _, kind := range storeKinds {
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			sql, evs := checkpointedStore(t, kind.open, 11, 1234, 300)
			fromZero := startAndWait(t, sql, ProjectorConfig{}, nil)

			counted := &countingStore{SQLStore: sql}
			fromCheckpoint := startAndWait(t, counted, ProjectorConfig{Checkpoints: newCheckpointer(t, sql, 300, nil)}, nil)
			if got, want := counted.read.Load(), int64(len(evs)-1200); got != want {
				t.Fatalf("read %d events at start, want the %d after the checkpoint at 1200", got, want)
			}
			assertSameState(t, fromCheckpoint.Snapshot(), fromZero.Snapshot())
			assertSameJSON(t, fromCheckpoint.Snapshot(), fromZero.Snapshot())
			if fromCheckpoint.Snapshot().ConfigHash() != fromZero.Snapshot().ConfigHash() {
				t.Fatal("config hashes differ")
			}
		})
	}
}

// TestCorruptCheckpointIsSkipped: a checkpoint row whose data was damaged
// in the store is logged and skipped; start-up uses the one before it.
func TestCorruptCheckpointIsSkipped(t *testing.T) {
	t.Parallel()
	for _, kind := range storeKinds {
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			sql, evs := checkpointedStore(t, kind.open, 12, 1000, 300)
			ctx := testContext(t)
			cp, err := sql.LoadCheckpoint(ctx, 900, ApplyVersion)
			if err != nil {
				t.Fatal(err)
			}
			damaged := bytes.Clone(cp.Data)
			damaged[len(damaged)/3] ^= 0xff
			if _, err := sql.DB().ExecContext(ctx, "UPDATE checkpoints SET data = ? WHERE seq = 900", damaged); err != nil {
				t.Fatal(err)
			}
			// And one whose stored hash was changed, at 600.
			if _, err := sql.DB().ExecContext(ctx, "UPDATE checkpoints SET state_hash = ? WHERE seq = 600", Empty().StateHash()); err != nil {
				t.Fatal(err)
			}
			var logs syncBuffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			counted := &countingStore{SQLStore: sql}
			p := startAndWait(t, counted, ProjectorConfig{Checkpoints: newCheckpointer(t, sql, 300, log)}, log)
			if got, want := counted.read.Load(), int64(len(evs)-300); got != want {
				t.Fatalf("read %d events at start, want the %d after the good checkpoint at 300", got, want)
			}
			want, _ := Replay(evs)
			assertSameState(t, p.Snapshot(), want)
			for _, seq := range []string{"seq=900", "seq=600"} {
				if !strings.Contains(logs.String(), "checkpoint skipped") || !strings.Contains(logs.String(), seq) {
					t.Fatalf("no log line about the skipped checkpoint at %s:\n%s", seq, logs.String())
				}
			}
		})
	}
}

// TestCheckpointOfAnotherApplyVersionIsNotUsed: a newer checkpoint written
// by a build with another Apply version (here: holding a wrong state, as an
// older Apply would give) is left alone.
func TestCheckpointOfAnotherApplyVersionIsNotUsed(t *testing.T) {
	t.Parallel()
	for _, kind := range storeKinds {
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			sql, evs := checkpointedStore(t, kind.open, 13, 700, 300)
			ctx := testContext(t)
			other, _ := Replay(evs[:10])
			foreign, err := EncodeCheckpoint(other)
			if err != nil {
				t.Fatal(err)
			}
			foreign.Seq, foreign.ApplyVersion = 700, "0000000000000000"
			if _, err := sql.SaveCheckpoint(ctx, foreign); err != nil {
				t.Fatal(err)
			}
			var logs syncBuffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			counted := &countingStore{SQLStore: sql}
			p := startAndWait(t, counted, ProjectorConfig{Checkpoints: newCheckpointer(t, sql, 300, log)}, log)
			if got, want := counted.read.Load(), int64(len(evs)-600); got != want {
				t.Fatalf("read %d events at start, want the %d after this version's checkpoint at 600", got, want)
			}
			want, _ := Replay(evs)
			assertSameState(t, p.Snapshot(), want)
			if !strings.Contains(logs.String(), "another Apply version") {
				t.Fatalf("no log line about the foreign checkpoint:\n%s", logs.String())
			}
		})
	}
}

// TestStateAtThroughCheckpointsEqualsReplay is property-style: over random
// logs and random seqs, the state StateAt builds from the nearest checkpoint
// equals the replay of the log up to that seq, and it reads only the events
// after that checkpoint.
func TestStateAtThroughCheckpointsEqualsReplay(t *testing.T) {
	t.Parallel()
	for _, kind := range storeKinds {
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			const every = 250
			sql, evs := checkpointedStore(t, kind.open, 14, 1600, every)
			counted := &countingStore{SQLStore: sql}
			r := rand.New(rand.NewPCG(8, 8))
			ats := []int64{0, 1, every - 1, every, every + 1, int64(len(evs))}
			for range 12 {
				ats = append(ats, 1+r.Int64N(int64(len(evs))))
			}
			for _, at := range ats {
				before := counted.read.Load()
				got, err := StateAt(testContext(t), counted, at, nil, nil)
				if err != nil {
					t.Fatalf("at %d: %v", at, err)
				}
				want, _ := Replay(evs[:at])
				assertSameState(t, got, want)
				assertSameJSON(t, got, want)
				if read, most := counted.read.Load()-before, at%every; read != most {
					t.Fatalf("at %d: read %d events, want the %d after the nearest checkpoint", at, read, most)
				}
			}
			// From a state in memory nearer than any checkpoint.
			near, _ := Replay(evs[:every+100])
			before := counted.read.Load()
			got, err := StateAt(testContext(t), counted, every+120, near, nil)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := Replay(evs[:every+120])
			assertSameState(t, got, want)
			if read := counted.read.Load() - before; read != 20 {
				t.Fatalf("read %d events from the near state, want 20", read)
			}
		})
	}
}

// TestProjectorWritesCheckpointsAtFixedSeqs: a running projector with a
// checkpointer writes checkpoints at multiples of the interval (the same
// seqs on every instance), each equal to the replay of the log up to it,
// and two projectors writing at once leave one row per seq.
func TestProjectorWritesCheckpointsAtFixedSeqs(t *testing.T) {
	t.Parallel()
	for _, kind := range storeKinds {
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			sql := kind.open(t)
			evs := randomLog(t, rand.New(rand.NewPCG(15, 15)), 500).evs
			f := &feeder{t: t, store: sql, evs: evs}
			var ps []*Projector
			for range 2 {
				cp := newCheckpointer(t, sql, 100, nil)
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() { defer close(done); _ = cp.Run(ctx) }()
				t.Cleanup(func() { cancel(); <-done })
				ps = append(ps, startAndWait(t, sql, ProjectorConfig{Checkpoints: cp, HeadCheckInterval: 20 * time.Millisecond}, nil))
			}
			// Small appends, so that no checkpoint is dropped for a newer one.
			for f.next < len(evs) {
				f.append(20)
				head := int64(f.next)
				for _, p := range ps {
					testenv.WaitFor(t, "projector at the head", 30*time.Second, func() bool { return p.AppliedSeq() == head })
				}
				if head%100 == 0 {
					testenv.WaitFor(t, "checkpoint written", 30*time.Second, func() bool {
						list, err := sql.Checkpoints(testContext(t), ApplyVersion, head, 1)
						return err == nil && len(list) == 1 && list[0].Seq == head
					})
					// Each projector holds the state at that seq in memory.
					want, _ := Replay(evs[:head])
					for _, p := range ps {
						r := p.Retained()
						if r == nil || r.Seq() != head {
							t.Fatalf("retained state %v at head %d, want the state at %d", r, head, head)
						}
						assertSameState(t, r, want)
					}
				}
			}
			list, err := sql.Checkpoints(testContext(t), "", 1<<62, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(list) != 5 {
				t.Fatalf("%d checkpoints, want 5 (one per 100 events): %+v", len(list), list)
			}
			for _, info := range list {
				cp, err := sql.LoadCheckpoint(testContext(t), info.Seq, info.ApplyVersion)
				if err != nil {
					t.Fatal(err)
				}
				got, err := DecodeCheckpoint(cp)
				if err != nil {
					t.Fatalf("checkpoint %d: %v", info.Seq, err)
				}
				want, _ := Replay(evs[:info.Seq])
				assertSameState(t, got, want)
			}
		})
	}
}

// TestHistoryKeepsWhatItLoaded: a query near a checkpoint a query before it
// loaded starts from that state (no second load, only the events after
// it), gives the state a replay gives, and the states are forgotten once
// keep passes without a load.
func TestHistoryKeepsWhatItLoaded(t *testing.T) {
	t.Parallel()
	const every = 250
	sql, evs := checkpointedStore(t, openSQLite, 15, 1200, every)
	counted := &countingStore{SQLStore: sql}
	h := NewHistory(counted, time.Hour, nil)
	at := func(seq int64) {
		t.Helper()
		got, err := h.StateAt(testContext(t), seq)
		if err != nil {
			t.Fatalf("at %d: %v", seq, err)
		}
		want, _ := Replay(evs[:seq])
		assertSameState(t, got, want)
	}
	at(2*every + 10)
	if n := counted.loaded.Load(); n != 1 {
		t.Fatalf("first query loaded %d checkpoints, want 1", n)
	}
	before := counted.read.Load()
	at(2*every + 40) // the same checkpoint is the nearest start
	if n, read := counted.loaded.Load(), counted.read.Load()-before; n != 1 || read != 40 {
		t.Fatalf("second query: %d checkpoints loaded in all, %d events read; want 1 and 40", n, read)
	}
	at(4*every + 5) // another one: loaded, and both kept
	at(2*every + 1)
	if n := counted.loaded.Load(); n != 2 {
		t.Fatalf("%d checkpoints loaded, want 2", n)
	}
	// Forgotten once keep passes without a load.
	h = NewHistory(counted, 50*time.Millisecond, nil)
	at(2*every + 10)
	if n := counted.loaded.Load(); n != 3 {
		t.Fatalf("a new history: %d checkpoints loaded in all, want 3", n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		h.mu.Lock()
		kept := len(h.recent)
		h.mu.Unlock()
		if kept == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d states still kept long after keep", kept)
		}
		time.Sleep(20 * time.Millisecond)
	}
	at(2*every + 10)
	if n := counted.loaded.Load(); n != 4 {
		t.Fatalf("after keep: %d checkpoints loaded in all, want 4 (the forgotten one again)", n)
	}
}

// TestCheckpointsAreSpacedWhileCatchingUp: before the projector has caught
// up at start, a checkpoint is written, then the states offered within
// startUpGap wait and only the newest of them is written, at once when the
// catch-up ends; the ones put off are written after it, rebuilt from the
// store's events, each holding the state a replay gives.
func TestCheckpointsAreSpacedWhileCatchingUp(t *testing.T) {
	t.Parallel()
	store := openSQLite(t)
	evs := randomLog(t, rand.New(rand.NewPCG(21, 21)), 60).evs
	if _, err := store.Append(testContext(t), events.AppendRequest{ExpectedHead: events.AnyHead, Events: evs}); err != nil {
		t.Fatal(err)
	}
	cp := newCheckpointer(t, store, 10, nil)
	ctx, cancel := context.WithCancel(testContext(t))
	done := make(chan error, 1)
	go func() { done <- cp.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	saved := func() map[int64]string {
		list, err := store.Checkpoints(testContext(t), ApplyVersion, 1<<62, 10)
		if err != nil {
			t.Fatal(err)
		}
		out := map[int64]string{}
		for _, c := range list {
			out[c.Seq] = c.StateHash
		}
		return out
	}
	state := func(at int) *Snapshot { s, _ := Replay(evs[:at]); return s }
	cp.offer(state(10))
	testenv.WaitFor(t, "the first checkpoint", 10*time.Second, func() bool { return len(saved()) == 1 })
	for _, at := range []int{20, 30, 40} {
		cp.offer(state(at))
	}
	if got := saved(); len(got) != 1 {
		t.Fatalf("checkpoints %v written within the start-up gap, want only the first", got)
	}
	cp.CaughtUp(40)
	testenv.WaitFor(t, "the newest waiting checkpoint and the ones put off", 10*time.Second, func() bool { return len(saved()) == 4 })
	cp.offer(state(50)) // caught up: at once
	testenv.WaitFor(t, "a checkpoint once caught up", 10*time.Second, func() bool { return len(saved()) == 5 })
	for seq, hash := range saved() {
		if want := state(int(seq)).StateHash(); hash != want {
			t.Fatalf("checkpoint %d holds state %s, a replay gives %s", seq, hash, want)
		}
	}
}

// TestMissingCheckpointsAreWrittenOnceCaughtUp: the checkpoints a store
// lacks up to the newest state the instance passed (an earlier run stopped
// before writing them, or they are of another Apply version) are written
// once the projector caught up, each holding the state a replay gives.
func TestMissingCheckpointsAreWrittenOnceCaughtUp(t *testing.T) {
	t.Parallel()
	store := openSQLite(t)
	evs := randomLog(t, rand.New(rand.NewPCG(22, 22)), 60).evs
	if _, err := store.Append(testContext(t), events.AppendRequest{ExpectedHead: events.AnyHead, Events: evs}); err != nil {
		t.Fatal(err)
	}
	state := func(at int) *Snapshot { s, _ := Replay(evs[:at]); return s }
	cp := newCheckpointer(t, store, 10, nil)
	for _, at := range []int{10, 40} {
		if err := cp.Save(testContext(t), state(at)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(testContext(t))
	done := make(chan error, 1)
	go func() { done <- cp.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	// Caught up at 55 (from a local cache, say) with nothing offered.
	cp.CaughtUp(55)
	var list []events.Checkpoint
	testenv.WaitFor(t, "the checkpoints at 20, 30 and 50", 10*time.Second, func() bool {
		var err error
		list, err = store.Checkpoints(testContext(t), ApplyVersion, 1<<62, 10)
		return err == nil && len(list) == 5
	})
	for _, c := range list {
		if c.Seq%10 != 0 || c.StateHash != state(int(c.Seq)).StateHash() {
			t.Fatalf("checkpoint %d holds state %s, a replay gives %s", c.Seq, c.StateHash, state(int(c.Seq)).StateHash())
		}
	}
}

// claimsFor is a Claimer of one process: a key is taken until its ttl ends.
type claimsFor struct {
	mu    sync.Mutex
	until map[string]time.Time
}

func (c *claimsFor) Claim(_ context.Context, key string, ttl time.Duration) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Now().Before(c.until[key]) {
		return false, nil
	}
	c.until[key] = time.Now().Add(ttl)
	return true, nil
}

// savesStore records the checkpoints written through it.
type savesStore struct {
	*events.SQLStore
	mu    sync.Mutex
	saved []int64
}

func (s *savesStore) SaveCheckpoint(ctx context.Context, cp events.Checkpoint) (bool, error) {
	s.mu.Lock()
	s.saved = append(s.saved, cp.Seq)
	s.mu.Unlock()
	return s.SQLStore.SaveCheckpoint(ctx, cp)
}

func (s *savesStore) savedSeqs() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.saved)
}

// TestPutOffCheckpointsClaimedElsewhereAreLeftUntilTheClaimLapses: instances
// sharing a store split the checkpoints it lacks. One leaves those another
// claimed, and writes them itself once the claim lapsed without them
// written (their writer stopped).
func TestPutOffCheckpointsClaimedElsewhereAreLeftUntilTheClaimLapses(t *testing.T) {
	t.Parallel()
	sql := openSQLite(t)
	evs := randomLog(t, rand.New(rand.NewPCG(23, 23)), 60).evs
	if _, err := sql.Append(testContext(t), events.AppendRequest{ExpectedHead: events.AnyHead, Events: evs}); err != nil {
		t.Fatal(err)
	}
	store := &savesStore{SQLStore: sql}
	claims := &claimsFor{until: map[string]time.Time{}}
	const lapse = 300 * time.Millisecond
	// Claims are of runs of two checkpoints: 10; 20 and 30; 40 and 50. The
	// one of 20 and 30 is held by an instance that then stopped.
	if ok, _ := claims.Claim(testContext(t), fmt.Sprintf("checkpoint:%s:%d", ApplyVersion, 20), lapse); !ok {
		t.Fatal("claim refused")
	}
	cp := newCheckpointer(t, store, 10, nil)
	cp.ShareWith(claims)
	cp.claimFor, cp.claimRun = lapse, 2
	ctx, cancel := context.WithCancel(testContext(t))
	done := make(chan error, 1)
	go func() { done <- cp.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	cp.CaughtUp(55)

	testenv.WaitFor(t, "the unclaimed checkpoints", 10*time.Second, func() bool { return len(store.savedSeqs()) == 3 })
	if got := store.savedSeqs(); !slices.Equal(got, []int64{10, 40, 50}) {
		t.Fatalf("first wrote the checkpoints at %v, want the unclaimed 10, 40, 50", got)
	}
	testenv.WaitFor(t, "the lapsed claims' checkpoints", 10*time.Second, func() bool { return len(store.savedSeqs()) == 5 })
	if got := store.savedSeqs(); !slices.Equal(got[3:], []int64{20, 30}) {
		t.Fatalf("then wrote %v, want 20 and 30", got[3:])
	}
	list, err := sql.Checkpoints(testContext(t), ApplyVersion, 1<<62, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range list {
		if s, _ := Replay(evs[:c.Seq]); c.StateHash != s.StateHash() {
			t.Fatalf("checkpoint %d holds state %s, a replay gives %s", c.Seq, c.StateHash, s.StateHash())
		}
	}
}
