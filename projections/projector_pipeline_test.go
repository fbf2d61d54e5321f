package projections

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tenantgate/gateway/events"
)

var errInjected = errors.New("injected read failure")

// pagedStore counts reads; its read number failAt fails, and its read
// number blockAt blocks until its context ends.
type pagedStore struct {
	events.Store
	failAt, blockAt int64
	reads           atomic.Int64
	inFlight        atomic.Int64
}

func (s *pagedStore) Read(ctx context.Context, q events.Query) ([]events.Envelope, error) {
	s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	switch n := s.reads.Add(1); n {
	case s.failAt:
		return nil, errInjected
	case s.blockAt:
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return s.Store.Read(ctx, q)
}

// TestCatchUpPipelined: a catch-up that reads ahead still applies and
// reports events exactly once and in order, keeps what it applied before a
// failed or cancelled read, leaves no read running when it returns, and reads
// no further than a WaitFor needs.
func TestCatchUpPipelined(t *testing.T) {
	t.Parallel()
	const batch = 10
	tests := []struct {
		name            string
		failAt, blockAt int64
		cancel          bool
		wantErr         error
		wantApplied     int64 // after the first catch-up
	}{
		{name: "whole log", wantApplied: 100},
		{name: "read fails", failAt: 4, wantErr: errInjected, wantApplied: 30},
		{name: "cancelled during a read", blockAt: 3, cancel: true, wantErr: context.Canceled, wantApplied: 20},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			inner := openSQLite(t)
			l := newLog(t)
			for range 20 {
				tid, _ := l.tenant("acme")
				for range 4 {
					l.route(tid, "GET", "prefix", "/api")
				}
			}
			(&feeder{t: t, store: inner, evs: l.evs}).append(len(l.evs))
			store := &pagedStore{Store: inner, failAt: tc.failAt, blockAt: tc.blockAt}
			var (
				mu   sync.Mutex
				seen []int64
			)
			p := newTestProjector(t, ProjectorConfig{BatchSize: batch, OnApplied: func(ev events.Envelope, _ time.Time) {
				mu.Lock()
				seen = append(seen, ev.Seq)
				mu.Unlock()
			}}, store, events.NewMemoryBus())

			ctx, cancel := context.WithCancel(testContext(t))
			defer cancel()
			if tc.cancel {
				go func() {
					for store.reads.Load() < tc.blockAt && ctx.Err() == nil {
						time.Sleep(time.Millisecond)
					}
					cancel()
				}()
			}
			err := p.CatchUp(ctx)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("CatchUp = %v, want %v", err, tc.wantErr)
			}
			if n := store.inFlight.Load(); n != 0 {
				t.Errorf("%d store reads still running after CatchUp returned", n)
			}
			if got := p.AppliedSeq(); got != tc.wantApplied {
				t.Errorf("applied seq %d after the first catch-up, want %d", got, tc.wantApplied)
			}
			if err := p.CatchUp(testContext(t)); err != nil {
				t.Fatalf("second CatchUp: %v", err)
			}
			mu.Lock()
			defer mu.Unlock()
			want := make([]int64, len(l.evs))
			for i := range want {
				want[i] = int64(i + 1)
			}
			if !slices.Equal(seen, want) {
				t.Errorf("OnApplied saw seqs %v, want 1..%d once each in order", seen, len(l.evs))
			}
			assertSameState(t, p.Snapshot(), storeState(t, inner))
		})
	}

	t.Run("WaitFor reads no further than needed", func(t *testing.T) {
		t.Parallel()
		inner := openSQLite(t)
		l := newLog(t)
		for range 100 {
			l.tenant("acme")
		}
		(&feeder{t: t, store: inner, evs: l.evs}).append(len(l.evs))
		store := &pagedStore{Store: inner}
		p := newTestProjector(t, ProjectorConfig{BatchSize: batch}, store, events.NewMemoryBus())
		if err := p.WaitFor(testContext(t), 25); err != nil {
			t.Fatal(err)
		}
		if got, reads := p.AppliedSeq(), store.reads.Load(); got != 30 || reads != 3 {
			t.Errorf("WaitFor(25): applied %d after %d reads, want 30 after 3", got, reads)
		}
	})
}

// TestCatchUpEqualsReplay: a catch-up, whose reader decodes each page's
// data ahead, ends in Replay's state over a log with garbage, in pages that
// checkpoints fall inside of, and offers each checkpoint the state at its seq.
func TestCatchUpEqualsReplay(t *testing.T) {
	t.Parallel()
	store := openSQLite(t)
	evs := randomLog(t, rand.New(rand.NewPCG(8, 8)), 300).evs
	if _, err := store.Append(testContext(t), events.AppendRequest{ExpectedHead: events.AnyHead, Events: evs}); err != nil {
		t.Fatal(err)
	}
	cp, err := NewCheckpointer(store, 5, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var offered []*Snapshot
	cp.Observe(func(s *Snapshot) { offered = append(offered, s) })
	p := newTestProjector(t, ProjectorConfig{BatchSize: 7, Checkpoints: cp}, store, events.NewMemoryBus())
	if err := p.CatchUp(testContext(t)); err != nil {
		t.Fatal(err)
	}
	if want, _ := Replay(evs); p.AppliedSeq() != want.Seq() || p.Snapshot().StateHash() != want.StateHash() {
		t.Fatalf("caught up to seq %d, state %s; Replay gives seq %d, state %s", p.AppliedSeq(), p.Snapshot().StateHash(), want.Seq(), want.StateHash())
	}
	if len(offered) != len(evs)/5 {
		t.Fatalf("%d checkpoints offered, want %d", len(offered), len(evs)/5)
	}
	for _, s := range offered {
		if want, _ := Replay(evs[:s.Seq()]); s.StateHash() != want.StateHash() {
			t.Fatalf("checkpoint at seq %d holds another state than Replay's", s.Seq())
		}
	}
}
