package projections

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/events/testenv"
)

// writeCache runs a cache over path, adds evs and stops it (which flushes).
func writeCache(t *testing.T, path string, evs []events.Envelope) {
	t.Helper()
	c, _, err := OpenLocalCache(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	for _, ev := range evs {
		c.Add(ev)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestLocalCacheRebuildsTheSnapshot(t *testing.T) {
	t.Parallel()
	l := randomLog(t, rand.New(rand.NewPCG(7, 7)), 300)
	want, _ := Replay(l.evs)
	n := int64(len(l.evs))
	tests := []struct {
		name    string
		mangle  func(t *testing.T, path string) // damage done to the file before reopening
		wantSeq int64
	}{
		{name: "whole log", mangle: func(*testing.T, string) {}, wantSeq: n},
		{name: "torn last line is cut off", wantSeq: n - 1, mangle: func(t *testing.T, path string) {
			b, _ := os.ReadFile(path)
			if err := os.WriteFile(path, b[:len(b)-5], 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "garbage line ends the prefix", wantSeq: n, mangle: func(t *testing.T, path string) {
			f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0o600)
			_, _ = f.WriteString("not json\n{\"seq\":302}\n")
			_ = f.Close()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "cache.jsonl")
			writeCache(t, path, l.evs)
			tt.mangle(t, path)
			c, snap, err := OpenLocalCache(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if snap.Seq() != tt.wantSeq || c.LastSeq() != tt.wantSeq {
				t.Fatalf("reopened at seq %d (cache %d), want %d", snap.Seq(), c.LastSeq(), tt.wantSeq)
			}
			ref, _ := Replay(l.evs[:tt.wantSeq])
			if snap.StateHash() != ref.StateHash() {
				t.Fatal("cached snapshot differs from a replay of the same events")
			}
			// Appending the rest after the cut gives the full state again.
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- c.Run(ctx) }()
			for _, ev := range l.evs[tt.wantSeq:] {
				c.Add(ev)
			}
			cancel()
			<-done
			_, again, err := OpenLocalCache(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if again.StateHash() != want.StateHash() || again.Seq() != n {
				t.Fatalf("after appending the rest: seq %d, state differs: %v", again.Seq(), again.StateHash() != want.StateHash())
			}
		})
	}
}

func TestLocalCacheIgnoresDuplicatesAndStopsAtAGap(t *testing.T) {
	t.Parallel()
	l := newLog(t)
	for i := range 5 {
		l.tenant("t" + string(rune('a'+i)))
	}
	path := filepath.Join(t.TempDir(), "cache.jsonl")
	// 1, 2, 2 (duplicate), 4 (gap): only 1..2 are a prefix.
	writeCache(t, path, []events.Envelope{l.evs[0], l.evs[1], l.evs[1], l.evs[3], l.evs[4]})
	_, snap, err := OpenLocalCache(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Seq() != 2 {
		t.Fatalf("seq %d, want 2", snap.Seq())
	}
}

func TestLocalCacheMatchesTheStore(t *testing.T) {
	t.Parallel()
	store := openSQLite(t)
	l := newLog(t)
	l.tenant("acme")
	l.tenant("beta")
	(&feeder{t: t, store: store, evs: l.evs}).append(2)

	other := newLog(t) // the same seqs, other events: another database
	other.tenant("acme")
	other.tenant("beta")
	for i := range other.evs {
		other.evs[i].ID = "other-" + other.evs[i].ID
	}
	tests := []struct {
		name string
		evs  []events.Envelope
		want bool
	}{
		{name: "same events", evs: l.evs, want: true},
		{name: "prefix of the store", evs: l.evs[:1], want: true},
		{name: "another database", evs: other.evs, want: false},
		{name: "empty cache", evs: nil, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "cache.jsonl")
			writeCache(t, path, tt.evs)
			c, _, err := OpenLocalCache(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			ok, err := c.Matches(testContext(t), store)
			if err != nil || ok != tt.want {
				t.Fatalf("Matches = %v, %v; want %v", ok, err, tt.want)
			}
		})
	}
}

// TestProjectorStartsFromTheCacheWhileTheStoreIsDown: fail static across a
// restart: ready at once on the cached snapshot, then caught up when the
// store answers.
func TestProjectorStartsFromTheCacheWhileTheStoreIsDown(t *testing.T) {
	t.Parallel()
	inner := openSQLite(t)
	store := &flakyStore{Store: inner}
	l := newLog(t)
	tid, _ := l.tenant("acme")
	l.route(tid, "GET", "prefix", "/api")
	l.tenant("beta")
	f := &feeder{t: t, store: inner, evs: l.evs}
	f.append(2)
	cached, _ := Replay(l.evs[:2])
	store.down.Store(true)

	p := newTestProjector(t, ProjectorConfig{HeadCheckInterval: 20 * time.Millisecond, Initial: cached}, store, events.NewMemoryBus())
	startProjector(t, p)
	testenv.WaitFor(t, "ready on the cached snapshot", 30*time.Second, p.Ready)
	if p.AppliedSeq() != 2 || len(p.Snapshot().Routes()) != 1 {
		t.Fatalf("serving seq %d with %d routes, want the cached seq 2 with 1 route", p.AppliedSeq(), len(p.Snapshot().Routes()))
	}
	f.append(1)
	store.down.Store(false)
	waitConverged(t, store, p)
}

// TestLocalCacheRebases: after Rebase the cache is the base checkpoint plus
// the events after it, reopening gives the same snapshot, a crash between
// writing the base and cutting the event file loses nothing, and a damaged
// base is dropped (logged), never served.
func TestLocalCacheRebases(t *testing.T) {
	t.Parallel()
	evs := randomLog(t, rand.New(rand.NewPCG(21, 21)), 500).evs
	path := filepath.Join(t.TempDir(), "cache.jsonl")
	c, _, err := OpenLocalCache(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	for _, ev := range evs[:300] {
		c.Add(ev)
	}
	base, _ := Replay(evs[:320])
	c.Rebase(base) // as when starting from a store checkpoint at 320
	for _, ev := range evs[300:] {
		c.Add(ev) // those up to 320 are already in the base
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if info, err := os.Stat(path + ".checkpoint"); err != nil || info.Size() == 0 {
		t.Fatalf("no base checkpoint file: %v", err)
	}
	want, _ := Replay(evs)
	reopen := func(t *testing.T) *Snapshot {
		t.Helper()
		c, snap, err := OpenLocalCache(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		return snap
	}
	got := reopen(t)
	assertSameState(t, got, want)
	if got.LastEventID() != evs[len(evs)-1].ID {
		t.Fatalf("last event id %q, want %q", got.LastEventID(), evs[len(evs)-1].ID)
	}
	lines, _ := os.ReadFile(path)
	if n := bytes.Count(lines, []byte("\n")); n != len(evs)-320 {
		t.Fatalf("event file holds %d events, want the %d after the base", n, len(evs)-320)
	}

	// A crash right after the base was renamed into place, before the event
	// file was cut: it still starts at seq 1.
	var all bytes.Buffer
	for _, ev := range evs {
		b, _ := json.Marshal(ev)
		all.Write(append(b, '\n'))
	}
	if err := os.WriteFile(path, all.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	assertSameState(t, reopen(t), want)

	// A damaged base: dropped; the event file alone (which starts at 1
	// here) rebuilds the state.
	b, _ := os.ReadFile(path + ".checkpoint")
	b[len(b)-10] ^= 0xff
	if err := os.WriteFile(path+".checkpoint", b, 0o600); err != nil {
		t.Fatal(err)
	}
	assertSameState(t, reopen(t), want)
	if _, err := os.Stat(path + ".checkpoint"); !os.IsNotExist(err) {
		t.Fatalf("the damaged base is still there: %v", err)
	}
}
