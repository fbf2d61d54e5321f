package events

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// RelayConfig configures a Relay.
type RelayConfig struct {
	// Interval between passes when nothing calls Notify. Default 1s.
	Interval time.Duration
	// MaxBacklog: when the bus is further behind the store than this, only
	// the last MaxBacklog events are published (consumers that need older
	// ones catch up from the store). Default 100000, the default stream cap.
	MaxBacklog int64
	// BatchSize is how many events one read and one publish carry. Default 500.
	BatchSize int
}

// Relay is the outbox relay: it publishes every committed event the bus has
// not seen yet. The event table is the outbox, so an event committed while
// the bus was down, or by an instance that crashed before publishing, is
// still published. Relays of several instances may race: a batch is
// published only on top of the bus's last seq as the relay read it.
type Relay struct {
	store  Store
	bus    Bus
	cfg    RelayConfig
	log    *slog.Logger
	notify chan struct{}
}

// localBus is an in-process bus (the memory bus): it keeps only its newest
// Keeps() events, and its subscribers are in this process and read the
// store before they subscribe. A relay gives it no more of a backlog than
// it keeps, and a fresh one (this process just started) only the newest
// event, which sets its last seq: no subscriber needs the rest, and reading
// it would compete with the start-up's own catch-up.
type localBus interface {
	Keeps() int64
}

// NewRelay returns a relay from store to bus. Zero or negative config values
// take their defaults.
func NewRelay(store Store, bus Bus, cfg RelayConfig, log *slog.Logger) *Relay {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.MaxBacklog <= 0 {
		cfg.MaxBacklog = 100000
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 500
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Relay{store: store, bus: bus, cfg: cfg, log: log.With("component", "relay"), notify: make(chan struct{}, 1)}
}

// Notify asks for a pass soon. It never blocks; calls made while a pass is
// pending coalesce into one.
func (r *Relay) Notify() {
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// Run publishes at start, on Notify and every Interval until ctx ends. Store
// or bus failures are logged (rate-limited) and retried with backoff; Run
// returns nil when ctx ends.
func (r *Relay) Run(ctx context.Context) error {
	ticker := time.NewTicker(r.cfg.Interval)
	defer ticker.Stop()
	backoff := minBackoff
	var failingSince, lastLog time.Time
	for {
		n, err := r.passSafely(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			now := time.Now()
			if failingSince.IsZero() {
				failingSince, lastLog = now, now
				r.log.Warn("relay failing, retrying", "err", err)
			} else if now.Sub(lastLog) >= errLogEvery {
				lastLog = now
				r.log.Warn("relay still failing", "err", err, "since", failingSince)
			}
			if !sleep(ctx, backoff) {
				return nil
			}
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		if !failingSince.IsZero() {
			r.log.Info("relay recovered", "down", time.Since(failingSince).Round(time.Millisecond))
			failingSince, backoff = time.Time{}, minBackoff
		}
		if n > 0 {
			r.log.Debug("relay published", "events", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		case <-r.notify:
		}
	}
}

// passSafely is one pass, a panic turned into an error so the loop goes on.
func (r *Relay) passSafely(ctx context.Context) (n int, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("relay: panic: %v", p)
		}
	}()
	return r.pass(ctx)
}

// pass publishes the events after the bus's last seq, oldest first, and
// returns how many it sent.
func (r *Relay) pass(ctx context.Context) (int, error) {
	last, err := r.bus.LastSeq(ctx)
	if err != nil {
		return 0, err
	}
	head, err := r.store.Head(ctx)
	if err != nil {
		return 0, err
	}
	if last > head {
		// The stream holds seqs this store never wrote (it was restored
		// from an older backup, or the stream is shared with another
		// database). Consumers must not apply them, and XADD would refuse
		// the store's next events as "already published": drop them.
		n, err := r.bus.DropAfter(ctx, head)
		if err != nil {
			return 0, err
		}
		r.log.Warn("the bus held events the store does not have (store restored from a backup, or the stream shared with another database?); dropped them",
			"bus", last, "store", head, "dropped", n)
		return 0, nil
	}
	if head == last {
		return 0, nil
	}
	backlog := r.cfg.MaxBacklog
	if local, ok := r.bus.(localBus); ok {
		backlog = min(backlog, local.Keeps())
		if last == 0 {
			backlog = 1
		}
	}
	from := max(last, head-backlog)
	sent := 0
	for from < head {
		evs, err := r.store.Read(ctx, Query{After: from, Until: head, Limit: r.cfg.BatchSize})
		if err != nil {
			return sent, err
		}
		if len(evs) == 0 {
			return sent, fmt.Errorf("relay: store returned nothing after seq %d below head %d", from, head)
		}
		published, err := r.bus.PublishAfter(ctx, last, evs...)
		if err != nil {
			return sent, err
		}
		if !published {
			// The bus moved since this pass read it: another relay
			// published, or the bus lost its events. The next pass reads
			// it again and goes on from what it holds then.
			r.Notify()
			return sent, nil
		}
		sent += len(evs)
		from = evs[len(evs)-1].Seq
		last = from
	}
	return sent, nil
}
