package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tenantgate/gateway/events"
)

// DefaultCheckpointInterval is how many events lie between two checkpoints
// unless configured otherwise.
const DefaultCheckpointInterval = 10_000

// Checkpointer writes checkpoints in the background: the projector offers it
// the state at every seq that is a multiple of its interval (every instance
// at the same seqs, so instances write the same rows and the store keeps the
// first), and Save writes one at once (at shutdown).
//
// It keeps at most one checkpoint waiting: when the projector applies faster
// than checkpoints are written (a replay from zero), the newest waiting one
// replaces the older, so a cold start writes fewer checkpoints rather than
// holding many states in memory.
type Checkpointer struct {
	store CheckpointStore
	every int64
	log   *slog.Logger

	observe func(*Snapshot)
	claims  Claimer
	// claimFor is how long a claim of another instance is left alone;
	// claimRun how many consecutive checkpoints one claim is of; mine the
	// runs this instance claimed (Run's goroutine only).
	claimFor time.Duration
	claimRun int
	mine     map[int64]bool

	mu      sync.Mutex
	pending *Snapshot
	// missed are the seqs of states replaced while pending: written later
	// from the store's events, when nothing newer waits.
	missed []int64
	wake   chan struct{}
	// caughtUp is closed once the projector's start-up catch-up ended
	// (CaughtUp): until then checkpoints are written startUpGap apart.
	caughtUp     chan struct{}
	caughtUpOnce sync.Once
	caughtUpAt   atomic.Int64 // the seq it caught up to
	// saved is the highest seq known to have a checkpoint (written or found).
	saved atomic.Int64
	// latest is the newest state at a checkpoint seq this instance had
	// (restored, or passed while applying).
	latest atomic.Pointer[Snapshot]
}

// NewCheckpointer returns a checkpointer writing to store every `every`
// events; with 0 it writes none by itself (Save and Restore still work).
func NewCheckpointer(store CheckpointStore, every int64, log *slog.Logger) (*Checkpointer, error) {
	if every < 0 {
		return nil, fmt.Errorf("projections: checkpoint interval %d must be positive", every)
	}
	if store == nil {
		return nil, errors.New("projections: nil checkpoint store")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Checkpointer{store: store, every: every, log: log.With("component", "checkpointer"), wake: make(chan struct{}, 1),
		caughtUp: make(chan struct{})}, nil
}

// startUpGap is the least time between the starts of two checkpoint
// writes while the projector catches up at start. A replay from zero passes
// a checkpoint seq every few hundred milliseconds, and writing each kept a
// core from the replay (a cold start took about twice as long); one every
// few seconds still keeps the progress of a long catch-up. The newest state
// offered meanwhile is written next; the others once caught up (Run).
const startUpGap = 5 * time.Second

// CaughtUp tells the checkpointer that the projector's start-up catch-up
// ended at seq at: from now on an offered checkpoint is written at once,
// and the ones the store lacks up to at are written in the background.
func (c *Checkpointer) CaughtUp(at int64) {
	c.caughtUpOnce.Do(func() {
		c.caughtUpAt.Store(at)
		close(c.caughtUp)
	})
}

// A Claimer gives one of several instances a piece of shared work for a
// while: Claim reports whether this caller took key, which nobody else then
// takes until ttl passes (Redis SET NX PX).
type Claimer interface {
	Claim(ctx context.Context, key string, ttl time.Duration) (bool, error)
}

// claimTTL is how long put-off checkpoints claimed by one instance are left
// to it: writing a run of claimRun takes about 8 s with 100,000 routes.
// Past it, the others look again and write those the store still lacks
// (their writer stopped).
const claimTTL = 30 * time.Second

// claimRun is how many consecutive put-off checkpoints one claim is of.
const claimRun = 8

// ShareWith makes instances sharing the store split the writing of the
// checkpoints it lacks (after a cold start or an upgrade every instance
// finds the same ones missing): each claims a run of them before building
// it and leaves the runs others claimed. Call it before Run.
func (c *Checkpointer) ShareWith(claims Claimer) {
	c.claims, c.claimFor, c.claimRun, c.mine = claims, claimTTL, claimRun, map[int64]bool{}
}

// Store is where the checkpoints go.
func (c *Checkpointer) Store() CheckpointStore { return c.store }

// nextDue is the first seq after seq that gets a checkpoint.
func (c *Checkpointer) nextDue(seq int64) int64 { return (seq/c.every + 1) * c.every }

// Observe makes f hear of every state due for a checkpoint, whether or not
// the store has it already (the local cache rebases on them). Call it before
// the projector runs; f runs on the projector's writer and must be quick.
func (c *Checkpointer) Observe(f func(*Snapshot)) { c.observe = f }

// offer queues s (a snapshot no edit will change any more) for writing.
func (c *Checkpointer) offer(s *Snapshot) {
	c.latest.Store(s)
	if c.observe != nil {
		c.observe(s)
	}
	if s.Seq() <= c.saved.Load() {
		return
	}
	c.mu.Lock()
	if c.pending != nil && c.pending.Seq() < s.Seq() {
		c.log.Debug("checkpoint put off: a newer one is due before it was written", "seq", c.pending.Seq())
		c.missed = append(c.missed, c.pending.Seq())
	}
	if c.pending == nil || c.pending.Seq() < s.Seq() {
		c.pending = s
	}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Run writes offered checkpoints until ctx ends. Once the projector has
// caught up and nothing newer waits, it writes the checkpoints it put off,
// each rebuilt from the one before and the events between: a replay from
// zero ends with a checkpoint every interval, as if written as it went.
func (c *Checkpointer) Run(ctx context.Context) error {
	var prev *Snapshot // the state the last put-off checkpoint was written from
	scanned := false
	for {
		if !scanned && c.isCaughtUp() {
			scanned = true
			c.findMissing(ctx)
		}
		c.mu.Lock()
		s := c.pending
		c.pending = nil
		missed := int64(0)
		if s == nil && c.isCaughtUp() && len(c.missed) > 0 {
			missed, c.missed = c.missed[0], c.missed[1:]
		}
		c.mu.Unlock()
		switch {
		case s != nil:
			began := time.Now()
			if err := c.saveSafely(ctx, s); err != nil && ctx.Err() == nil {
				c.log.Warn("checkpoint not written; the next one will be tried", "seq", s.Seq(), "err", err)
			}
			c.pauseWhileCatchingUp(ctx, time.Until(began.Add(startUpGap)))
		case missed > 0:
			prev = c.writeMissed(ctx, missed, prev)
			// Each put-off checkpoint leaves a state's worth of garbage
			// beside the two states held (serving, and prev); collected
			// before the next, the peak stays there instead of growing
			// with the count (with 100,000 routes 390 MiB, not 680). Not
			// given back to the OS yet: the next one reuses those pages
			// (giving them back and faulting them in again took 10 % longer).
			runtime.GC()
		default:
			if prev != nil { // no more put-off checkpoints: let that state go
				prev = nil
				ReleaseMemory()
			}
			caughtUp := c.caughtUpOrNever()
			if !scanned {
				caughtUp = c.caughtUp // then look for missing ones
			}
			select {
			case <-ctx.Done():
				return nil
			case <-c.wake:
			case <-caughtUp:
			}
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// findMissing adds to the put-off checkpoints every seq due for one, up to
// the seq the projector caught up to, that the store has none of this Apply
// version for: those an earlier run put off and did not write before it
// stopped, and all of them after an upgrade to another Apply version.
func (c *Checkpointer) findMissing(ctx context.Context) {
	upTo := c.caughtUpAt.Load()
	if c.every == 0 || upTo <= 0 {
		return
	}
	have := map[int64]bool{}
	for below := upTo; below > 0; {
		list, err := c.store.Checkpoints(ctx, ApplyVersion, below, 1000)
		if err != nil {
			c.log.Warn("checkpoints not listed; the missing ones are not looked for", "err", err)
			return
		}
		for _, cp := range list {
			have[cp.Seq] = true
		}
		if len(list) < 1000 {
			break
		}
		below = list[len(list)-1].Seq - 1
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, seq := range c.missed {
		have[seq] = true // already listed
	}
	for seq := c.every; seq <= upTo; seq += c.every {
		if !have[seq] {
			c.missed = append(c.missed, seq)
		}
	}
	slices.Sort(c.missed)
	if n := len(c.missed); n > 0 {
		c.log.Info("writing the checkpoints the store lacks", "count", n, "first", c.missed[0], "last", c.missed[n-1])
	}
}

// writeMissed writes the checkpoint at seq that was put off, from prev (the
// state of the one before, when it is below seq) or the nearest checkpoint,
// and the events up to seq. It returns the state written (prev on failure).
func (c *Checkpointer) writeMissed(ctx context.Context, seq int64, prev *Snapshot) *Snapshot {
	store, ok := c.store.(events.Store)
	if !ok {
		return prev
	}
	// Another instance may have written it meanwhile.
	if have, err := c.store.Checkpoints(ctx, ApplyVersion, seq, 1); err == nil && len(have) == 1 && have[0].Seq == seq {
		return prev
	}
	if !c.claim(ctx, seq) {
		return prev
	}
	s, err := StateAt(ctx, store, seq, prev, c.log)
	if err == nil && s.Seq() != seq {
		err = fmt.Errorf("the store's events end at seq %d", s.Seq())
	}
	if err == nil {
		err = c.saveSafely(ctx, s)
	}
	if err != nil {
		if ctx.Err() == nil {
			c.log.Warn("put-off checkpoint not written", "seq", seq, "err", err)
		}
		return prev
	}
	return s
}

// claim reports whether this instance is to write the put-off checkpoint at
// seq: it is, unless another instance claimed it. Claims are of runs of
// claimRun consecutive checkpoints, each built from the one before: claimed
// one by one, two instances took turns and each replayed every event
// between. A checkpoint claimed elsewhere is looked at again once that claim
// lapsed, in case its holder stopped. Without claims, or when they cannot be
// asked, it writes (a duplicate is only work: the store keeps the first).
func (c *Checkpointer) claim(ctx context.Context, seq int64) bool {
	if c.claims == nil {
		return true
	}
	span := c.every * int64(c.claimRun)
	run := seq / span * span
	if c.mine[run] {
		return true
	}
	ok, err := c.claims.Claim(ctx, fmt.Sprintf("checkpoint:%s:%d", ApplyVersion, run), c.claimFor)
	if err != nil {
		c.log.Debug("put-off checkpoint not claimed; writing it anyway", "seq", seq, "err", err)
		return true
	}
	if !ok {
		c.log.Debug("put-off checkpoint left to the instance that claimed it", "seq", seq)
		time.AfterFunc(c.claimFor, func() { c.putOff(seq) })
		return false
	}
	c.mine[run] = true
	return true
}

// putOff adds seq to the put-off checkpoints and wakes Run.
func (c *Checkpointer) putOff(seq int64) {
	c.mu.Lock()
	c.missed = append(c.missed, seq)
	slices.Sort(c.missed)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *Checkpointer) isCaughtUp() bool {
	select {
	case <-c.caughtUp:
		return true
	default:
		return false
	}
}

// caughtUpOrNever is closed once the projector caught up, while there are
// put-off checkpoints to write; else it never is.
func (c *Checkpointer) caughtUpOrNever() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.missed) == 0 {
		return nil
	}
	return c.caughtUp
}

// pauseWhileCatchingUp waits d, unless the projector has caught up (or does
// meanwhile) or ctx ends.
func (c *Checkpointer) pauseWhileCatchingUp(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-c.caughtUp:
	case <-ctx.Done():
	}
}

func (c *Checkpointer) saveSafely(ctx context.Context, s *Snapshot) (err error) {
	defer func() {
		if v := recover(); v != nil {
			c.log.Error("checkpoint panicked", "panic", v, "stack", string(debug.Stack()))
			err = fmt.Errorf("panic: %v", v)
		}
	}()
	return c.Save(ctx, s)
}

// Save writes the checkpoint of s unless the store has it already.
func (c *Checkpointer) Save(ctx context.Context, s *Snapshot) error {
	if s.Seq() == 0 {
		return nil
	}
	have, err := c.store.Checkpoints(ctx, ApplyVersion, s.Seq(), 1)
	if err != nil {
		return err
	}
	if len(have) == 1 && have[0].Seq == s.Seq() {
		c.markSaved(s.Seq())
		return nil
	}
	start := time.Now()
	cp, err := EncodeCheckpoint(s)
	if err != nil {
		return fmt.Errorf("projections: encode checkpoint %d: %w", s.Seq(), err)
	}
	encoded := time.Since(start)
	stored, err := c.store.SaveCheckpoint(ctx, cp)
	if err != nil {
		return err
	}
	c.markSaved(s.Seq())
	c.log.Info("checkpoint written", "seq", cp.Seq, "bytes", len(cp.Data), "new", stored,
		"encodeMs", encoded.Milliseconds(), "totalMs", time.Since(start).Milliseconds())
	return nil
}

func (c *Checkpointer) markSaved(seq int64) {
	for {
		cur := c.saved.Load()
		if seq <= cur || c.saved.CompareAndSwap(cur, seq) {
			return
		}
	}
}

// Latest is the newest state at a checkpoint seq that this instance
// restored or applied its way through (nil before the first), kept in
// memory so that history queries after it need no checkpoint load. It
// shares with the current snapshot all but what changed since, at most an
// interval of events.
func (c *Checkpointer) Latest() *Snapshot { return c.latest.Load() }

// Saved is the highest seq this checkpointer wrote or found a checkpoint of.
func (c *Checkpointer) Saved() int64 { return c.saved.Load() }

// Restore returns the newest usable checkpoint at or below atOrBelow (nil
// when none) and notes it as saved. A checkpoint of another Apply version
// newer than it is logged: it is left alone, not used.
func (c *Checkpointer) Restore(ctx context.Context, atOrBelow int64) (*Snapshot, error) {
	s, err := LatestCheckpoint(ctx, c.store, atOrBelow, c.log)
	if err != nil {
		return nil, err
	}
	from := int64(0)
	if s != nil {
		from = s.Seq()
		c.markSaved(from)
		c.latest.Store(s)
	}
	if newest, err := c.store.Checkpoints(ctx, "", atOrBelow, 1); err == nil && len(newest) == 1 &&
		newest[0].Seq > from && newest[0].ApplyVersion != ApplyVersion {
		c.log.Info("checkpoints of another Apply version are not used", "seq", newest[0].Seq,
			"theirVersion", newest[0].ApplyVersion, "thisVersion", ApplyVersion)
	}
	return s, nil
}

// applyCheckpointed applies evs to ed like ed.applyAll, and at every seq
// due for a checkpoint hands the state to cp and continues in a new edit,
// so that state stays as it was. It returns the edit to continue with.
func applyCheckpointed(cp *Checkpointer, ed *edit, evs []events.Envelope, skipped func(events.Envelope, error)) (*edit, int, error) {
	if cp == nil || cp.every == 0 {
		n, err := ed.applyAll(evs, skipped)
		return ed, n, err
	}
	done := 0
	for done < len(evs) {
		due := cp.nextDue(ed.s.seq)
		k := min(int64(len(evs)-done), due-ed.s.seq)
		n, err := ed.applyAll(evs[done:done+int(k)], skipped)
		done += n
		if err != nil {
			return ed, done, err
		}
		if ed.s.seq == due {
			cp.offer(ed.result())
			pre := ed.pre
			ed = newEdit(ed.s)
			ed.pre = pre
		}
	}
	return ed, done, nil
}
