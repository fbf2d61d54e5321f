package projections

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/tenantgate/gateway/events"
)

func TestReplayStoreEqualsReplayAtEverySeq(t *testing.T) {
	t.Parallel()
	store := openSQLite(t)
	evs := randomLog(t, rand.New(rand.NewPCG(7, 7)), 300).evs
	if _, err := store.Append(testContext(t), events.AppendRequest{ExpectedHead: events.AnyHead, Events: evs}); err != nil {
		t.Fatal(err)
	}
	for _, until := range []int64{1, 17, 150, int64(len(evs)), 0} {
		n := until
		if n == 0 {
			n = int64(len(evs))
		}
		want, _ := Replay(evs[:n])
		got, err := ReplayStore(testContext(t), store, nil, until, nil)
		if err != nil {
			t.Fatalf("until %d: %v", until, err)
		}
		if got.Seq() != n || got.StateHash() != want.StateHash() {
			t.Fatalf("until %d: seq %d hash %s, want seq %d hash %s", until, got.Seq(), got.StateHash(), n, want.StateHash())
		}
	}
	// From a state part of the way: only the rest is read and applied.
	part, _ := Replay(evs[:100])
	got, err := ReplayStore(testContext(t), store, part, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if full, _ := Replay(evs); got.StateHash() != full.StateHash() {
		t.Fatal("continuing from a partial state differs from a full replay")
	}
	// Many pages, read and their data decoded ahead while the previous one
	// applies: the same state at every page boundary and between them, and
	// the same events skipped for the same reasons (the log has garbage).
	for _, until := range []int64{7, 8, 49, 50, 293, 0} {
		n := until
		if n == 0 {
			n = int64(len(evs))
		}
		var wantSkipped, gotSkipped []string
		want, err := ApplyBatch(Empty(), evs[:n], func(ev events.Envelope, err error) { wantSkipped = append(wantSkipped, err.Error()) })
		if err != nil {
			t.Fatal(err)
		}
		got, err := replayStore(testContext(t), store, nil, until, func(ev events.Envelope, err error) { gotSkipped = append(gotSkipped, err.Error()) }, 7)
		if err != nil {
			t.Fatalf("pages of 7, until %d: %v", until, err)
		}
		if got.Seq() != n || got.StateHash() != want.StateHash() {
			t.Fatalf("pages of 7, until %d: seq %d, want %d (or another state)", until, got.Seq(), n)
		}
		if !slices.Equal(gotSkipped, wantSkipped) || (n == int64(len(evs)) && len(wantSkipped) == 0) {
			t.Fatalf("pages of 7, until %d: skipped %q, want %q", until, gotSkipped, wantSkipped)
		}
	}
}

// TestReplayStoreEndsWithItsContext: a replay whose context ends fails with
// the store's error instead of returning a partial state, and its reader
// goroutine is gone when it returns (the race detector and the closed store
// would catch a read after it).
func TestReplayStoreEndsWithItsContext(t *testing.T) {
	t.Parallel()
	store := openSQLite(t)
	evs := randomLog(t, rand.New(rand.NewPCG(8, 8)), 200).evs
	if _, err := store.Append(testContext(t), events.AppendRequest{ExpectedHead: events.AnyHead, Events: evs}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(testContext(t))
	cancel()
	if s, err := replayStore(ctx, store, nil, 0, nil, 3); err == nil {
		t.Fatalf("a cancelled replay returned seq %d and no error", s.Seq())
	}
}
