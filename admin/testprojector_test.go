package admin

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/projections"
)

// testProjector keeps a snapshot current by reading the store, standing in
// for projections.Projector until it lands.
type testProjector struct {
	mu    sync.Mutex
	store events.Store
	snap  atomic.Pointer[projections.Snapshot]
}

func newTestProjector(store events.Store) *testProjector {
	p := &testProjector{store: store}
	p.snap.Store(projections.Empty())
	return p
}

func (p *testProjector) Snapshot() *projections.Snapshot { return p.snap.Load() }
func (p *testProjector) Ready() bool                     { return true }
func (p *testProjector) AppliedSeq() int64               { return p.snap.Load().Seq() }

func (p *testProjector) CatchUp(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	cur := p.snap.Load()
	evs, err := p.store.Read(ctx, events.Query{After: cur.Seq()})
	if err != nil || len(evs) == 0 {
		return err
	}
	next, err := projections.ApplyBatch(cur, evs, nil)
	if err != nil {
		return err
	}
	p.snap.Store(next)
	return nil
}

func (p *testProjector) WaitFor(ctx context.Context, seq int64) error {
	if p.AppliedSeq() >= seq {
		return nil
	}
	if err := p.CatchUp(ctx); err != nil {
		return err
	}
	if p.AppliedSeq() < seq {
		return fmt.Errorf("test projector at %d, want %d", p.AppliedSeq(), seq)
	}
	return nil
}
