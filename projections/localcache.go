package projections

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"

	"github.com/tenantgate/gateway/events"
)

// LocalCache keeps a copy of the applied state on local disk, so that an
// instance restarted while the store is down can rebuild the snapshot it
// last served instead of starting empty (fail static across restarts).
//
// It is a base checkpoint (path + ".checkpoint", the encoding of the store's
// checkpoints) and the events applied after it, one JSON envelope a line in
// path. The events only ever form a gap-free run right after the base (seq 1
// on without one): they are appended in seq order and a torn last line (a
// crash mid-write) is cut off at the next open. The base moves forward with
// the store's checkpoints (Rebase), so opening costs one checkpoint decode
// and a few thousand events whatever the length of the log. Applying the run
// to the base gives exactly the snapshot at its last seq, because Apply is
// pure. Both hold key digests only, so no API key is on disk.
type LocalCache struct {
	path string
	log  *slog.Logger

	mu      sync.Mutex
	pending []events.Envelope
	rebase  *Snapshot // a new base to write before pending
	base    int64     // seq of the base (written or queued)
	last    int64     // last seq written or queued
	lastID  string
	wake    chan struct{}
	f       *os.File
	broken  bool // a write failed or a gap came: add nothing more until the next base
	close   sync.Once
}

func (c *LocalCache) basePath() string { return c.path + ".checkpoint" }

// OpenLocalCache opens (creating it if missing) the cache file at path and
// returns it with the snapshot its events rebuild (Empty if none). A
// malformed or out-of-order line ends what is read; the file is cut there.
func OpenLocalCache(path string, log *slog.Logger) (*LocalCache, *Snapshot, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, nil, fmt.Errorf("projections: local cache: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("projections: local cache: %w", err)
	}
	c := &LocalCache{path: path, log: log.With("component", "local-cache"), f: f, wake: make(chan struct{}, 1)}
	base := c.readBase()
	evs, valid, err := readCache(f, base.Seq())
	if err != nil {
		_ = f.Close()
		return nil, nil, fmt.Errorf("projections: local cache %s: %w", path, err)
	}
	if err := f.Truncate(valid); err != nil {
		_ = f.Close()
		return nil, nil, fmt.Errorf("projections: local cache: %w", err)
	}
	if _, err := f.Seek(valid, 0); err != nil {
		_ = f.Close()
		return nil, nil, fmt.Errorf("projections: local cache: %w", err)
	}
	snap, _ := ApplyBatch(base, evs, nil) // skipped events count as applied, as live
	c.base, c.last, c.lastID = base.Seq(), base.Seq(), base.LastEventID()
	if len(evs) > 0 {
		c.last, c.lastID = evs[len(evs)-1].Seq, evs[len(evs)-1].ID
	}
	if snap.Seq() != c.last {
		// ApplyBatch stops only on a non-skippable error: keep what applied.
		c.log.Warn("local cache replay stopped early; starting from the store", "applied", snap.Seq(), "cached", c.last)
		if err := c.resetLocked(); err != nil {
			_ = f.Close()
			return nil, nil, err
		}
		return c, Empty(), nil
	}
	return c, snap, nil
}

// readBase returns the base checkpoint's snapshot, Empty when there is none
// or it does not verify (then it is removed, and logged).
func (c *LocalCache) readBase() *Snapshot {
	b, err := os.ReadFile(c.basePath())
	if errors.Is(err, os.ErrNotExist) {
		return Empty()
	}
	var cp events.Checkpoint
	if err == nil {
		head, data, found := bytes.Cut(b, []byte("\n"))
		var h baseHeader
		if err = json.Unmarshal(head, &h); err == nil && !found {
			err = errors.New("no data")
		}
		cp = events.Checkpoint{Seq: h.Seq, ApplyVersion: h.ApplyVersion, StateHash: h.StateHash, Data: data}
	}
	var s *Snapshot
	if err == nil {
		s, err = DecodeCheckpoint(cp)
	}
	if err != nil {
		c.log.Warn("local cache base checkpoint unusable; dropped", "err", err)
		_ = os.Remove(c.basePath())
		return Empty()
	}
	return s
}

// baseHeader is the first line of the base checkpoint file; the encoded
// checkpoint follows.
type baseHeader struct {
	Seq          int64  `json:"seq"`
	ApplyVersion string `json:"applyVersion"`
	StateHash    string `json:"stateHash"`
}

// readCache returns the gap-free run of envelopes right after seq after and
// the length in bytes of the lines it read (lines at or below after, left
// by a crash between writing a base and cutting the file, are skipped). A
// last line without its newline is a torn write and is not part of it.
func readCache(f *os.File, after int64) ([]events.Envelope, int64, error) {
	r := bufio.NewReaderSize(f, 64<<10)
	var evs []events.Envelope
	var valid int64
	next := after + 1
	for {
		line, err := r.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			return evs, valid, nil
		}
		if err != nil {
			return nil, 0, err
		}
		var ev events.Envelope
		if json.Unmarshal(line, &ev) != nil || (ev.Seq != next && (ev.Seq > after || len(evs) > 0)) {
			return evs, valid, nil
		}
		if ev.Seq == next {
			evs = append(evs, ev)
			next++
		}
		valid += int64(len(line))
	}
}

// LastSeq is the seq of the last event in the cache (written or queued).
func (c *LocalCache) LastSeq() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// Matches reports whether the store holds the cache's last event, the same
// one (by ID): a cache written against another database, or before the store
// was restored from an older backup, must not be served. It returns the
// store's error when the store cannot tell.
func (c *LocalCache) Matches(ctx context.Context, store events.Store) (bool, error) {
	c.mu.Lock()
	last, id := c.last, c.lastID
	c.mu.Unlock()
	if last == 0 {
		return true, nil
	}
	evs, err := store.Read(ctx, events.Query{After: last - 1, Until: last, Limit: 1})
	if err != nil {
		return false, err
	}
	return len(evs) == 1 && evs[0].ID == id, nil
}

// Reset empties the cache (for a cache that does not match the store).
func (c *LocalCache) Reset() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.resetLocked()
}

func (c *LocalCache) resetLocked() error {
	c.pending, c.rebase, c.base, c.last, c.lastID, c.broken = nil, nil, 0, 0, "", false
	if err := os.Remove(c.basePath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("projections: local cache reset: %w", err)
	}
	if err := c.f.Truncate(0); err != nil {
		return fmt.Errorf("projections: local cache reset: %w", err)
	}
	if _, err := c.f.Seek(0, 0); err != nil {
		return fmt.Errorf("projections: local cache reset: %w", err)
	}
	return nil
}

// Add queues an applied event for writing; it never blocks on the disk, so
// it fits ProjectorConfig.OnApplied. Events at or below the last seq are
// ignored; a gap stops the cache (it would no longer be a prefix).
func (c *LocalCache) Add(ev events.Envelope) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.broken || ev.Seq <= c.last:
		return
	case ev.Seq != c.last+1:
		// What is queued is still a prefix: it gets written, nothing after.
		c.broken = true
		c.log.Error("local cache got a gap; not writing until restart", "last", c.last, "seq", ev.Seq)
		return
	}
	c.pending = append(c.pending, ev)
	c.last, c.lastID = ev.Seq, ev.ID
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Rebase makes s (an applied snapshot no edit changes any more) the cache's
// new base: the base file is rewritten with its checkpoint and the events up
// to it are dropped from the event file. The projector calls it with every
// checkpoint state and when it starts from a store checkpoint, before the
// events after it; it never blocks on the disk. A base older than what the
// cache holds is ignored.
func (c *LocalCache) Rebase(s *Snapshot) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.Seq() <= c.base || s.Seq() < c.last {
		return
	}
	// Everything queued is at or below s: the base covers it.
	c.rebase, c.base, c.broken = s, s.Seq(), false
	c.pending, c.last, c.lastID = nil, s.Seq(), s.LastEventID()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// writeBase writes the base checkpoint file (atomically: a temporary file
// renamed over it) and then empties the event file.
func (c *LocalCache) writeBase(s *Snapshot) error {
	cp, err := EncodeCheckpoint(s)
	if err != nil {
		return err
	}
	head, err := json.Marshal(baseHeader{Seq: cp.Seq, ApplyVersion: cp.ApplyVersion, StateHash: cp.StateHash})
	if err != nil {
		return err
	}
	tmp := c.basePath() + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(append(append(head, '\n'), cp.Data...))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, c.basePath())
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	// The base is in place: the events up to it can go.
	if err := c.f.Truncate(0); err != nil {
		return err
	}
	_, err = c.f.Seek(0, 0)
	return err
}

// Run writes queued events as they come until ctx ends, then flushes what is
// left and closes the file. Events queued during a write go out together in
// the next one, so a burst costs few syncs.
func (c *LocalCache) Run(ctx context.Context) error {
	defer func() { _ = c.Close() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.wake:
		}
		c.flushSafely()
	}
}

// Close writes what is queued and closes the file; later calls do nothing.
func (c *LocalCache) Close() error {
	var err error
	c.close.Do(func() {
		c.flushSafely()
		err = c.f.Close()
	})
	return err
}

func (c *LocalCache) flushSafely() {
	defer func() {
		if v := recover(); v != nil {
			c.log.Error("local cache flush panicked", "panic", v, "stack", string(debug.Stack()))
		}
	}()
	c.mu.Lock()
	evs, base := c.pending, c.rebase
	c.pending, c.rebase = nil, nil
	c.mu.Unlock()
	if base != nil {
		if err := c.writeBase(base); err != nil {
			c.fail(err)
			return
		}
	}
	if len(evs) == 0 {
		return
	}
	w := bufio.NewWriterSize(c.f, 64<<10)
	for _, ev := range evs {
		b, err := json.Marshal(ev)
		if err == nil {
			_, err = w.Write(append(b, '\n'))
		}
		if err != nil {
			c.fail(err)
			return
		}
	}
	if err := w.Flush(); err != nil {
		c.fail(err)
		return
	}
	if err := c.f.Sync(); err != nil {
		c.fail(err)
	}
}

// fail stops writing: a half-written batch leaves a torn prefix that the
// next open cuts off, which is still a valid cache.
func (c *LocalCache) fail(err error) {
	c.mu.Lock()
	c.broken = true
	c.pending = nil
	c.mu.Unlock()
	c.log.Error("local cache write failed; not writing until restart", "err", err)
}
