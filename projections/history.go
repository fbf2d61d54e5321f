package projections

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/tenantgate/gateway/events"
)

// History answers an instance's queries of past states (state?at, diff,
// rollback): StateAt, remembering the checkpoint states its last queries
// loaded for a while, so that the next query near one (the console shows a
// state, then a diff, then a rollback's preview around one seq) costs the
// events from it, not another load. Safe for concurrent use.
type History struct {
	store events.Store
	log   *slog.Logger
	keep  time.Duration

	mu     sync.Mutex
	recent []*Snapshot // newest last, at most historyStates
	loads  int         // states remembered so far
	forget *time.Timer
}

// historyStates is how many loaded checkpoint states a History keeps: a
// diff loads two. At 100,000 routes one is about 100 MiB.
const historyStates = 2

// NewHistory returns a History over store that keeps what it loaded for
// keep after its last load; log may be nil.
func NewHistory(store events.Store, keep time.Duration, log *slog.Logger) *History {
	return &History{store: store, keep: keep, log: log}
}

// StateAt is StateAt starting from the nearest of near (states in memory,
// such as the current snapshot) and the checkpoint states loaded lately.
func (h *History) StateAt(ctx context.Context, at int64, near ...*Snapshot) (*Snapshot, error) {
	h.mu.Lock()
	near = append(near, h.recent...)
	h.mu.Unlock()
	return stateAt(ctx, h.store, at, near, h.remember, h.log)
}

// remember keeps s among the recent states, and forgets them all once
// keep passes without a load.
func (h *History) remember(s *Snapshot) {
	h.mu.Lock()
	defer h.mu.Unlock()
	// A new slice each time: one the dropped states stay reachable from
	// would keep them in memory.
	h.recent = append(slices.Clone(h.recent[max(0, len(h.recent)-historyStates+1):]), s)
	h.loads++
	if h.forget != nil {
		h.forget.Stop()
	}
	loads := h.loads
	h.forget = time.AfterFunc(h.keep, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.loads == loads { // not a timer stopped too late
			h.recent = nil
			ReleaseMemory()
		}
	})
}
