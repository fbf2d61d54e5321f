package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/tenantgate/gateway/events"
)

// ProjectorConfig configures a Projector. Zero values take the defaults.
type ProjectorConfig struct {
	// HeadCheckInterval: when the bus was quiet this long, the store's head
	// is checked and, if it moved, the projector catches up (this finds an
	// event that was committed but never published). Default 1s.
	HeadCheckInterval time.Duration
	// BatchSize is how many events one store read carries. Default 1000.
	BatchSize int
	// OnApplied, if set, is called for each applied event (skipped ones
	// included) in seq order, right after the snapshot holding it was
	// published, by the projector's single writer; it must be quick.
	OnApplied func(ev events.Envelope, appliedAt time.Time)
	// OnRestored, if set, is called when the projector takes a checkpoint's
	// state instead of applying the events up to it (OnApplied does not hear
	// of those), right after publishing it, by the single writer.
	OnRestored func(s *Snapshot)
	// Initial, if set, is the snapshot to start from (rebuilt from a
	// LocalCache): the projector catches up after its seq, and when the store
	// cannot be reached at start and Initial is not empty, it is ready at once
	// on it (fail static across a restart) instead of waiting for the store.
	Initial *Snapshot
	// Checkpoints, if set, is offered the state at every checkpoint seq, and
	// start-up begins at the newest usable checkpoint when it is beyond
	// Initial, applying only the events after it.
	Checkpoints *Checkpointer
}

// Projector keeps this instance's Snapshot current: it catches up from the
// store, then tails the bus, and goes back to the store whenever the bus may
// have lost something (a gap, a Resync, a quiet bus while the head moved).
//
// One writer at a time applies events (a lock that readers never take);
// readers only Load the published snapshot.
type Projector struct {
	cfg   ProjectorConfig
	store events.Store
	bus   events.Bus
	log   *slog.Logger

	snap    atomic.Pointer[Snapshot]
	ready   atomic.Bool
	running atomic.Bool
	// changed is closed and replaced whenever a snapshot is published.
	changed atomic.Pointer[chan struct{}]
	// writer is the writer lock: a channel so that waiting for it can end
	// with a context.
	writer chan struct{}
	// diverged is set once by tail when the store is behind the applied seq;
	// Run then returns it.
	diverged error
}

// ErrDiverged: this projector applied events the store does not hold. The
// store was restored from an older backup, or the bus is shared with
// another database. The state cannot be rolled back event by event, so Run
// returns this error and the process restarts from the store.
var ErrDiverged = errors.New("projections: this instance applied events the store does not have (store restored from a backup, or the bus shared with another database)")

// Retry bounds while the store or the bus fail.
const (
	minRetry    = 100 * time.Millisecond
	maxRetry    = 5 * time.Second
	errLogEvery = 30 * time.Second
)

// NewProjector returns a projector reading store and bus; log may be nil.
func NewProjector(cfg ProjectorConfig, store events.Store, bus events.Bus, log *slog.Logger) (*Projector, error) {
	if cfg.HeadCheckInterval == 0 {
		cfg.HeadCheckInterval = time.Second
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 1000
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var errs []error
	if cfg.HeadCheckInterval < 0 {
		errs = append(errs, fmt.Errorf("projections: HeadCheckInterval %v must be positive", cfg.HeadCheckInterval))
	}
	if cfg.BatchSize < 0 {
		errs = append(errs, fmt.Errorf("projections: BatchSize %d must be positive", cfg.BatchSize))
	}
	if store == nil {
		errs = append(errs, errors.New("projections: nil store"))
	}
	if bus == nil {
		errs = append(errs, errors.New("projections: nil bus"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	p := &Projector{cfg: cfg, store: store, bus: bus, log: log.With("component", "projector"), writer: make(chan struct{}, 1)}
	p.snap.Store(Empty())
	if cfg.Initial != nil {
		p.snap.Store(cfg.Initial)
	}
	ch := make(chan struct{})
	p.changed.Store(&ch)
	return p, nil
}

// Snapshot returns the current snapshot; never nil (Empty before any event).
func (p *Projector) Snapshot() *Snapshot { return p.snap.Load() }

// AppliedSeq is the seq of the current snapshot.
func (p *Projector) AppliedSeq() int64 { return p.snap.Load().Seq() }

// Ready reports whether the start-up catch-up from the store has finished.
func (p *Projector) Ready() bool { return p.ready.Load() }

// Retained is the newest state at a checkpoint seq this projector has held
// (Checkpointer.Latest), nil without a checkpointer or before the first:
// where a history query a little behind the current state can start.
func (p *Projector) Retained() *Snapshot {
	if p.cfg.Checkpoints == nil {
		return nil
	}
	return p.cfg.Checkpoints.Latest()
}

// Changed returns a channel that is closed when a snapshot newer than the
// current one is published. Take it before reading Snapshot, so that no
// change can fall between the two; a burst of changes wakes a slow reader
// once:
//
//	for {
//		changed := p.Changed()
//		use(p.Snapshot())
//		<-changed
//	}
func (p *Projector) Changed() <-chan struct{} { return *p.changed.Load() }

func (p *Projector) lock(ctx context.Context) error {
	select {
	case p.writer <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *Projector) unlock() { <-p.writer }

// publish makes s current and wakes WaitFor; the writer lock is held. pages
// are the events s added, in order.
func (p *Projector) publish(s *Snapshot, pages [][]events.Envelope) {
	p.snap.Store(s)
	ch := make(chan struct{})
	close(*p.changed.Swap(&ch))
	if p.cfg.OnApplied != nil {
		p.notifyApplied(pages)
	}
}

// notifyApplied calls OnApplied; a panic in it is logged, not spread to
// whoever is writing (Run, or an admin request in WaitFor).
func (p *Projector) notifyApplied(pages [][]events.Envelope) {
	defer func() {
		if v := recover(); v != nil {
			p.log.Error("OnApplied panicked", "panic", v, "stack", string(debug.Stack()))
		}
	}()
	now := time.Now()
	for _, evs := range pages {
		for _, ev := range evs {
			p.cfg.OnApplied(ev, now)
		}
	}
}

// applyLocked applies evs, which follow the current snapshot, and publishes
// the result; the writer lock is held.
func (p *Projector) applyLocked(evs []events.Envelope) error {
	if len(evs) == 0 {
		return nil
	}
	ed, n, err := applyCheckpointed(p.cfg.Checkpoints, newEdit(p.snap.Load()), evs, p.logSkipped)
	if n > 0 {
		p.publish(ed.result(), [][]events.Envelope{evs[:n]})
	}
	return err
}

func (p *Projector) logSkipped(ev events.Envelope, err error) {
	p.log.Warn("event skipped", "seq", ev.Seq, "type", ev.Type, "aggregateId", ev.AggregateID, "err", err)
}

// CatchUp reads the store after the applied seq up to its head and applies
// what it finds.
func (p *Projector) CatchUp(ctx context.Context) error {
	if err := p.lock(ctx); err != nil {
		return err
	}
	defer p.unlock()
	return p.catchUpLocked(ctx, 0)
}

// catchUpTo catches up until seq is applied or the store has no more.
func (p *Projector) catchUpTo(ctx context.Context, seq int64) error {
	if err := p.lock(ctx); err != nil {
		return err
	}
	defer p.unlock()
	return p.catchUpLocked(ctx, seq)
}

// catchUpLocked reads until the store has nothing more or, if until > 0,
// until that seq is applied. A reader goroutine fetches the next page, and
// decodes its event data, while this one applies the current page, so a long
// catch-up costs about the slower of the two rather than their sum.
func (p *Projector) catchUpLocked(ctx context.Context, until int64) error {
	from := p.AppliedSeq()
	if until > 0 && from >= until {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	pages := make(chan page, readAhead)
	done := make(chan struct{})
	interrupted := false // the reader stopped because ctx ended
	go func() {
		defer close(done)
		interrupted = !p.readPages(ctx, from, until, pages)
	}()
	defer func() {
		cancel()
		<-done // no read outlives the catch-up (nor the writer lock)
	}()
	// Pages apply to one edit, published when the reader is behind and
	// publishBehind pages wait (so the snapshot shows what is applied
	// meanwhile) or every publishEvery pages: the fewer snapshots published,
	// the less of the state is copied (the edit after a publish copies each
	// part it changes, with 1000-event pages about all of a map).
	var (
		ed          *edit
		unpublished [][]events.Envelope // applied to ed, for OnApplied
	)
	publish := func() {
		if len(unpublished) > 0 {
			p.publish(ed.result(), unpublished)
		}
		ed, unpublished = nil, unpublished[:0]
	}
	for {
		var (
			pg  page
			ok  bool
			err error
		)
		select {
		case pg, ok = <-pages:
		default:
			if len(unpublished) >= publishBehind {
				publish()
			}
			pg, ok = <-pages
		}
		if !ok {
			break
		}
		if pg.panicked != nil {
			publish()
			panic(pg.panicked) // as if the read had run here: Run recovers it
		}
		if pg.err != nil {
			publish()
			return pg.err
		}
		if ed == nil {
			ed = newEdit(p.snap.Load())
		}
		ed.pre = pg.decoded
		var n int
		ed, n, err = applyCheckpointed(p.cfg.Checkpoints, ed, pg.evs, p.logSkipped)
		ed.pre = nil
		if n > 0 {
			unpublished = append(unpublished, pg.evs[:n])
		}
		if err != nil {
			publish()
			return fmt.Errorf("projections: catch up after seq %d: %w", pg.after, err)
		}
		if last := pg.evs[len(pg.evs)-1].Seq; ed.s.Seq() != last {
			// Unreachable with a gap-free store; stop rather than apply
			// the pages read ahead on a wrong assumption.
			publish()
			return fmt.Errorf("projections: catch up after seq %d: applied seq %d, want %d", pg.after, p.AppliedSeq(), last)
		}
		if pg.final {
			break // publish now, not after another look at the channel
		}
		if len(unpublished) >= publishEvery {
			publish()
		}
	}
	publish()
	<-done
	if interrupted {
		return fmt.Errorf("projections: catch up after seq %d: %w", p.AppliedSeq(), ctx.Err())
	}
	return nil
}

// readAhead is how many pages a catch-up reads ahead of the one applied,
// publishEvery how many it applies at most before publishing (they bound
// the memory a catch-up holds), and publishBehind how many it applies at
// least before publishing while it waits for the reader.
const (
	readAhead     = 4
	publishEvery  = 16
	publishBehind = 8
)

// page is one store read of a catch-up: events (never empty) or what ended
// the reading.
type page struct {
	after    int64 // the read's Query.After
	evs      []events.Envelope
	decoded  *decodedPage // evs' data, decoded by the reader (predecode.go)
	err      error
	panicked any  // a panic in the read, re-raised by the writer
	final    bool // no read follows
}

// readPages reads pages after seq from, and sends the non-empty ones in
// order, until a short page, until (if > 0) is reached, an error or ctx
// ends. It closes out, and reports false if ctx ended first.
func (p *Projector) readPages(ctx context.Context, from, until int64, out chan<- page) (ok bool) {
	defer close(out)
	send := func(pg page) bool {
		select {
		case out <- pg:
			return true
		case <-ctx.Done():
			return false
		}
	}
	defer func() {
		if v := recover(); v != nil {
			ok = send(page{after: from, panicked: fmt.Sprintf("%v (in a store read)\n%s", v, debug.Stack())})
		}
	}()
	for until <= 0 || from < until {
		evs, err := p.store.Read(ctx, events.Query{After: from, Limit: p.cfg.BatchSize})
		if err != nil {
			return send(page{after: from, err: fmt.Errorf("projections: catch up after seq %d: %w", from, err)})
		}
		if len(evs) == 0 {
			return true
		}
		last := evs[len(evs)-1].Seq
		final := len(evs) < p.cfg.BatchSize || (until > 0 && last >= until)
		if !send(page{after: from, evs: evs, decoded: predecode(evs), final: final}) {
			return false
		}
		if final {
			return true
		}
		from = last
	}
	return true
}

// WaitFor returns once the applied seq is at least seq. If it is not yet,
// it catches up from the store itself rather than wait for the bus, so the
// instance that accepted a write reads it right after (read your writes).
func (p *Projector) WaitFor(ctx context.Context, seq int64) error {
	retry := 10 * time.Millisecond
	for {
		changed := p.Changed()
		if p.AppliedSeq() >= seq {
			return nil
		}
		err := p.catchUpTo(ctx, seq)
		if p.AppliedSeq() >= seq {
			return nil
		}
		// The store failed or does not have seq yet: try again soon, or as
		// soon as another writer publishes.
		t := time.NewTimer(retry)
		select {
		case <-ctx.Done():
			t.Stop()
			if err != nil && !errors.Is(err, ctx.Err()) {
				return fmt.Errorf("projections: wait for seq %d: %w (last error: %w)", seq, ctx.Err(), err)
			}
			return fmt.Errorf("projections: wait for seq %d (applied %d): %w", seq, p.AppliedSeq(), ctx.Err())
		case <-changed:
		case <-t.C:
		}
		t.Stop()
		retry = min(2*retry, 500*time.Millisecond)
	}
}

// Run catches up from the store (retrying while it is down), marks the
// projector ready, then tails the bus until ctx ends. It returns nil when ctx
// ends; failures are logged and retried, and a panic restarts the loop.
func (p *Projector) Run(ctx context.Context) error {
	if !p.running.CompareAndSwap(false, true) {
		return errors.New("projections: projector already running")
	}
	defer p.running.Store(false)
	retry := minRetry
	for ctx.Err() == nil {
		ok := p.runSafely(ctx)
		if p.diverged != nil {
			return p.diverged
		}
		if ok {
			retry = minRetry
			continue
		}
		if !sleep(ctx, retry) {
			break
		}
		retry = min(2*retry, maxRetry)
	}
	return nil
}

// runSafely runs the loop once, turning a panic into a log line. It reports
// whether the loop ended normally (ctx ended, or a resubscription is due).
func (p *Projector) runSafely(ctx context.Context) (ok bool) {
	defer func() {
		if v := recover(); v != nil {
			p.log.Error("projector panic, restarting", "panic", v, "stack", string(debug.Stack()))
			ok = false
		}
	}()
	if !p.Ready() {
		if !p.startUp(ctx) {
			return true
		}
	}
	return p.tail(ctx)
}

// startUp catches up until it succeeds once; false if ctx ended first.
func (p *Projector) startUp(ctx context.Context) bool {
	fails := failureLog{log: p.log, what: "start-up catch-up from the store"}
	retry := minRetry
	for {
		err := p.restoreCheckpoint(ctx)
		if err == nil {
			err = p.CatchUp(ctx)
		}
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return false
		}
		fails.failed(err)
		if p.cfg.Initial != nil && p.cfg.Initial.Seq() > 0 && p.AppliedSeq() >= p.cfg.Initial.Seq() {
			// Serve the last known configuration; the head checks of tail
			// catch up once the store answers.
			p.caughtUp()
			p.log.Warn("store unreachable at start: serving the locally cached snapshot", "seq", p.AppliedSeq())
			return true
		}
		if !sleep(ctx, retry) {
			return false
		}
		retry = min(2*retry, maxRetry)
	}
	fails.recovered()
	// Loading a checkpoint and catching up leave several times the state's
	// size as garbage (the decoded data, the pages read): collect it and
	// give it back to the OS once, or RSS keeps it for the gateway's life
	// (with 100,000 routes, 2.3 KiB per route instead of 1.4). It is done
	// once ready, beside serving: a full collection of 100,000 routes takes
	// about 150 ms, a tenth of the start.
	p.caughtUp()
	p.log.Info("projector ready", "seq", p.AppliedSeq())
	ReleaseMemory()
	return true
}

// caughtUp marks the projector ready and lets its checkpointer write
// checkpoints at once.
func (p *Projector) caughtUp() {
	if p.cfg.Checkpoints != nil {
		p.cfg.Checkpoints.CaughtUp(p.AppliedSeq())
	}
	p.ready.Store(true)
}

// restoreCheckpoint starts from the newest usable checkpoint at or below
// the store's head when it is beyond the applied seq: start-up then applies
// only the events after it.
func (p *Projector) restoreCheckpoint(ctx context.Context) error {
	if p.cfg.Checkpoints == nil {
		return nil
	}
	if err := p.lock(ctx); err != nil {
		return err
	}
	defer p.unlock()
	head, err := p.store.Head(ctx)
	if err != nil {
		return err
	}
	if head <= p.AppliedSeq() {
		return nil
	}
	start := time.Now()
	s, err := p.cfg.Checkpoints.Restore(ctx, head)
	if err != nil || s == nil || s.Seq() <= p.AppliedSeq() {
		return err
	}
	p.log.Info("starting from a checkpoint", "seq", s.Seq(), "head", head, "ms", time.Since(start).Milliseconds())
	p.publish(s, nil)
	if p.cfg.OnRestored != nil {
		p.cfg.OnRestored(s)
	}
	return nil
}

// tail follows one subscription until ctx ends (true) or the subscription
// channel closes (true: resubscribe) or fails to start (false: back off).
func (p *Projector) tail(ctx context.Context) bool {
	if p.busAhead(ctx) {
		p.tryCatchUp(ctx, nil)
		return false
	}
	subCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := p.bus.Subscribe(subCtx, p.AppliedSeq())
	if err != nil {
		p.log.Warn("bus subscribe failed, retrying", "err", err)
		p.tryCatchUp(ctx, nil) // stay current from the store meanwhile
		return false
	}
	ticker := time.NewTicker(p.cfg.HeadCheckInterval)
	defer ticker.Stop()
	heads := failureLog{log: p.log, what: "store head check"}
	// The head check runs beside the loop: a store that hangs (a network
	// partition) must not hold up the events the bus keeps delivering.
	type headResult struct {
		head int64
		err  error
	}
	headDone := make(chan headResult, 1)
	checking := false
	lastDelivery := time.Now()
	stale := false // a catch-up failed; retry it at the next tick
	batch := make([]events.Delivery, 0, 64)
	for {
		select {
		case <-ctx.Done():
			return true
		case d, ok := <-ch:
			if !ok {
				if ctx.Err() == nil {
					p.log.Warn("bus subscription closed, resubscribing")
					sleep(ctx, minRetry) // no hot loop if it keeps closing
				}
				return true
			}
			lastDelivery = time.Now()
			batch = append(batch[:0], d)
			// Take whatever else is already waiting, up to one batch.
		drain:
			for len(batch) < p.cfg.BatchSize {
				select {
				case d, ok := <-ch:
					if !ok {
						break drain
					}
					batch = append(batch, d)
				default:
					break drain
				}
			}
			if !p.deliver(ctx, batch) {
				stale = true
			}
		case <-ticker.C:
			if checking || (!stale && time.Since(lastDelivery) < p.cfg.HeadCheckInterval) {
				continue
			}
			checking = true
			go func() {
				head, err := p.store.Head(subCtx)
				headDone <- headResult{head, err}
			}()
		case r := <-headDone:
			checking = false
			head, err := r.head, r.err
			if err != nil {
				if ctx.Err() == nil {
					heads.failed(err)
				}
				continue
			}
			heads.recovered()
			if head < p.AppliedSeq() && p.storeBehind(subCtx) {
				p.diverged = fmt.Errorf("%w: applied seq %d, store head %d", ErrDiverged, p.AppliedSeq(), head)
				p.log.Error("store is behind this instance: exiting to rebuild from the store", "applied", p.AppliedSeq(), "head", head)
				return true
			}
			if stale || head > p.AppliedSeq() {
				if head > p.AppliedSeq() {
					p.log.Info("store ahead of bus, catching up", "applied", p.AppliedSeq(), "head", head)
				}
				stale = !p.tryCatchUp(ctx, &heads)
			}
		}
	}
}

// busAhead reports whether the bus holds seqs the store never wrote (the
// store was restored from an older backup): a subscription would deliver
// them as the next events. The relay drops them; until then the projector
// stays current from the store alone. The bus is read first: an event
// published after that read is in the store by the time its head is read.
func (p *Projector) busAhead(ctx context.Context) bool {
	last, err := p.bus.LastSeq(ctx)
	if err != nil {
		return false // Subscribe fails too and says why
	}
	head, err := p.store.Head(ctx)
	if err != nil || last <= head {
		return false
	}
	p.log.Warn("the bus holds events the store does not have; not subscribing until the relay drops them", "bus", last, "store", head)
	return true
}

// storeBehind reads the store's head again and reports whether it is still
// below the applied seq. The head read of the tick may have begun before the
// last bus events were applied; this one begins after, and a bus only
// carries committed events, so a head below them here is a real divergence.
func (p *Projector) storeBehind(ctx context.Context) bool {
	applied := p.AppliedSeq()
	head, err := p.store.Head(ctx)
	return err == nil && head < applied
}

// deliver applies the deliveries' events that follow the applied seq in
// order, skipping older ones; after a gap or a Resync it catches up from the
// store. It reports false if that catch-up failed.
func (p *Projector) deliver(ctx context.Context, ds []events.Delivery) bool {
	if err := p.lock(ctx); err != nil {
		return true // ctx ended
	}
	defer p.unlock()
	next := p.AppliedSeq() + 1
	evs := make([]events.Envelope, 0, len(ds))
	catchUp := false
	for _, d := range ds {
		switch {
		case d.Resync:
			catchUp = true
		case d.Event.Seq < next:
			// Already applied (from the store, or a duplicate).
		case d.Event.Seq == next:
			evs = append(evs, d.Event)
			next++
		default:
			catchUp = true // a gap: the store has what is missing
		}
	}
	if err := p.applyLocked(evs); err != nil {
		p.log.Error("applying bus events", "err", err)
		catchUp = true
	}
	if !catchUp {
		return true
	}
	p.log.Info("bus gap or resync: catching up from the store", "applied", p.AppliedSeq())
	if err := p.catchUpLocked(ctx, 0); err != nil {
		if ctx.Err() == nil {
			p.log.Warn("catch-up after a bus gap failed; retrying at the next head check", "err", err)
		}
		return false
	}
	return true
}

// tryCatchUp catches up and logs a failure; it reports success.
func (p *Projector) tryCatchUp(ctx context.Context, fails *failureLog) bool {
	err := p.CatchUp(ctx)
	switch {
	case err == nil:
		if fails != nil {
			fails.recovered()
		}
		return true
	case ctx.Err() != nil:
	case fails != nil:
		fails.failed(err)
	default:
		p.log.Warn("catch-up from the store failed", "err", err)
	}
	return false
}

// failureLog logs the first failure of an episode, then at most every
// errLogEvery, and the recovery.
type failureLog struct {
	log     *slog.Logger
	what    string
	since   time.Time
	lastLog time.Time
}

func (f *failureLog) failed(err error) {
	now := time.Now()
	switch {
	case f.since.IsZero():
		f.since, f.lastLog = now, now
		f.log.Warn(f.what+" failing, retrying", "err", err)
	case now.Sub(f.lastLog) >= errLogEvery:
		f.lastLog = now
		f.log.Warn(f.what+" still failing", "err", err, "since", f.since)
	}
}

func (f *failureLog) recovered() {
	if !f.since.IsZero() {
		f.log.Info(f.what+" recovered", "down", time.Since(f.since).Round(time.Millisecond))
		f.since = time.Time{}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
