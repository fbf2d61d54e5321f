package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/migrations"
	"github.com/tenantgate/gateway/projections"
)

// cacheFile is the local snapshot cache under DATA_DIR.
const cacheFile = "applied-events.jsonl"

// openLocalCache opens the snapshot cache when SNAPSHOT_CACHE is on in the
// distributed deployment (the embedded store already lives under DATA_DIR).
// The cache only helps a restart while the store is down, so a DATA_DIR that
// cannot hold it is logged, not fatal.
func openLocalCache(cfg Config, log *slog.Logger) (*projections.LocalCache, *projections.Snapshot) {
	if !cfg.Distributed() || !cfg.SnapshotCache {
		return nil, nil
	}
	cache, snap, err := projections.OpenLocalCache(filepath.Join(cfg.DataDir, cacheFile), log)
	if err != nil {
		log.Warn("no local snapshot cache: a restart while the store is down will wait for it", "err", err)
		return nil, nil
	}
	return cache, snap
}

// openServeStore opens and migrates the store. When it cannot be reached and
// there is a cached snapshot to serve, it returns a store that connects (and
// migrates) on first use instead of failing, so the gateway starts on its
// last known configuration.
func openServeStore(ctx context.Context, cfg Config, cache *projections.LocalCache, cached *projections.Snapshot, log *slog.Logger) (events.Store, error) {
	open := func(ctx context.Context) (*events.SQLStore, error) {
		s, err := openStore(ctx, cfg)
		if err != nil {
			return nil, err
		}
		if err := migrations.Migrate(ctx, s.DB()); err != nil {
			_ = s.Close()
			return nil, fmt.Errorf("migrate: %w", err)
		}
		return s, nil
	}
	s, err := open(ctx)
	if err == nil {
		return s, nil
	}
	if cache == nil || cached.Seq() == 0 || !cfg.Distributed() {
		return nil, err
	}
	log.Warn("store unreachable at start; serving the locally cached configuration and reconnecting in the background", "err", err)
	return &lazyStore{open: open, kind: events.KindPostgres, failed: make(chan struct{}), verify: func(ctx context.Context, s events.Store) error {
		ok, err := cache.Matches(ctx, s)
		switch {
		case err != nil:
			return err
		case !ok:
			if err := cache.Reset(); err != nil {
				log.Error("could not reset the local snapshot cache", "err", err)
			}
			return errCacheMismatch
		}
		log.Info("store reachable again; the local snapshot cache matches it")
		return nil
	}}, nil
}

// errCacheMismatch: the configuration served from the local cache is not the
// store's (another database, a restored backup). The gateway exits so that
// it restarts from the store rather than mix two histories.
var errCacheMismatch = errors.New("the local snapshot cache does not match the store it reconnected to; exiting to rebuild from the store")

// lazyStore connects on first use; until then every call fails with
// events.ErrUnavailable (admin writes answer 503, the projector retries).
type lazyStore struct {
	open func(context.Context) (*events.SQLStore, error)
	kind string
	// verify checks the store once connected, before anything reads it; an
	// errCacheMismatch is final: failed is closed and fatal set.
	verify func(context.Context, events.Store) error
	failed chan struct{}
	fatal  error

	mu       sync.Mutex
	s        atomic.Pointer[events.SQLStore]
	lastTry  time.Time
	lastErr  error
	closed   bool
	tryEvery time.Duration
}

func (l *lazyStore) get(ctx context.Context) (*events.SQLStore, error) {
	if s := l.s.Load(); s != nil {
		return s, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.s.Load(); s != nil {
		return s, nil
	}
	if l.closed {
		return nil, fmt.Errorf("%w: closed", events.ErrUnavailable)
	}
	if l.fatal != nil {
		return nil, fmt.Errorf("%w: %w", events.ErrUnavailable, l.fatal)
	}
	// Callers retry often (head checks, admin requests): dial at most every
	// tryEvery so that a dead store costs little.
	if every := max(l.tryEvery, 200*time.Millisecond); time.Since(l.lastTry) < every && l.lastErr != nil {
		return nil, fmt.Errorf("%w: %w", events.ErrUnavailable, l.lastErr)
	}
	l.lastTry = time.Now()
	s, err := l.open(ctx)
	if err == nil && l.verify != nil {
		if err = l.verify(ctx, s); err != nil {
			_ = s.Close()
		}
		if errors.Is(err, errCacheMismatch) {
			l.fatal = err
			close(l.failed)
		}
	}
	if err != nil {
		l.lastErr = err
		return nil, fmt.Errorf("%w: %w", events.ErrUnavailable, err)
	}
	l.s.Store(s)
	return s, nil
}

// wait returns errCacheMismatch if the store turns out not to match the
// cache, nil when ctx ends.
func (l *lazyStore) wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-l.failed:
		return l.fatal
	}
}

func (l *lazyStore) Append(ctx context.Context, req events.AppendRequest) ([]events.Envelope, error) {
	s, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	return s.Append(ctx, req)
}

func (l *lazyStore) Read(ctx context.Context, q events.Query) ([]events.Envelope, error) {
	s, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	return s.Read(ctx, q)
}

func (l *lazyStore) Head(ctx context.Context) (int64, error) {
	s, err := l.get(ctx)
	if err != nil {
		return 0, err
	}
	return s.Head(ctx)
}

func (l *lazyStore) Kind() string { return l.kind }

// The checkpoint methods make lazyStore a projections.CheckpointStore.

func (l *lazyStore) SaveCheckpoint(ctx context.Context, cp events.Checkpoint) (bool, error) {
	s, err := l.get(ctx)
	if err != nil {
		return false, err
	}
	return s.SaveCheckpoint(ctx, cp)
}

func (l *lazyStore) Checkpoints(ctx context.Context, version string, atOrBelow int64, limit int) ([]events.Checkpoint, error) {
	s, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	return s.Checkpoints(ctx, version, atOrBelow, limit)
}

func (l *lazyStore) LoadCheckpoint(ctx context.Context, seq int64, version string) (events.Checkpoint, error) {
	s, err := l.get(ctx)
	if err != nil {
		return events.Checkpoint{}, err
	}
	return s.LoadCheckpoint(ctx, seq, version)
}

var _ projections.CheckpointStore = (*lazyStore)(nil)

func (l *lazyStore) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	if s := l.s.Load(); s != nil {
		return s.Close()
	}
	return nil
}

// failpointStore exits the process right after a commit, before anything is
// published: the crash between commit and publish that the fault tests play
// (TEST_FAILPOINT=exit-after-commit). Never set in production.
type failpointStore struct {
	events.Store
}

func (f failpointStore) Append(ctx context.Context, req events.AppendRequest) ([]events.Envelope, error) {
	out, err := f.Store.Append(ctx, req)
	if err == nil {
		fmt.Fprintln(os.Stderr, "failpoint exit-after-commit: exiting after seq", out[len(out)-1].Seq)
		os.Exit(86)
	}
	return out, err
}

// checkLocalCache drops a cache the store does not agree with (another
// database, a restored backup). When the store cannot tell (it is down), the
// cache is kept: serving the last known configuration is the point.
func checkLocalCache(ctx context.Context, cache *projections.LocalCache, cached *projections.Snapshot, store events.Store, log *slog.Logger) (*projections.Snapshot, error) {
	if cached.Seq() == 0 {
		return cached, nil
	}
	if _, lazy := store.(*lazyStore); lazy {
		return cached, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ok, err := cache.Matches(ctx, store)
	switch {
	case err != nil:
		log.Warn("could not check the local snapshot cache against the store; using it", "err", err)
		return cached, nil
	case ok:
		log.Info("starting from the local snapshot cache", "seq", cached.Seq())
		return cached, nil
	}
	log.Warn("local snapshot cache does not match the store; discarding it", "seq", cached.Seq())
	if err := cache.Reset(); err != nil {
		return nil, err
	}
	return projections.Empty(), nil
}
