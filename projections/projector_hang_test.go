package projections

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/events/testenv"
)

// hangingStore's Head blocks until its context ends while hang is set, as a
// query to a partitioned database does until its read timeout.
type hangingStore struct {
	events.Store
	hang atomic.Bool
	hung atomic.Int64 // Head calls that hung
}

func (s *hangingStore) Head(ctx context.Context) (int64, error) {
	if s.hang.Load() {
		s.hung.Add(1)
		<-ctx.Done()
		return 0, ctx.Err()
	}
	return s.Store.Head(ctx)
}

// TestProjectorAppliesTheBusWhileTheStoreHangs: a head check stuck on an
// unreachable store does not hold up the events the bus delivers.
func TestProjectorAppliesTheBusWhileTheStoreHangs(t *testing.T) {
	t.Parallel()
	inner := openSQLite(t)
	store := &hangingStore{Store: inner}
	bus := events.NewMemoryBus()
	l := newLog(t)
	l.tenant("acme")
	l.tenant("beta")
	f := &feeder{t: t, store: inner, evs: l.evs}
	f.append(1)
	p := newTestProjector(t, ProjectorConfig{HeadCheckInterval: 10 * time.Millisecond}, store, bus)
	startProjector(t, p)
	testenv.WaitFor(t, "ready", 30*time.Second, p.Ready)

	store.hang.Store(true)
	testenv.WaitFor(t, "a head check to hang", 30*time.Second, func() bool { return store.hung.Load() > 0 })
	f.publish(bus, f.append(1))
	deadline := time.Now().Add(time.Second)
	for p.AppliedSeq() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("event from the bus not applied within 1s while a head check hangs (applied %d)", p.AppliedSeq())
		}
		time.Sleep(time.Millisecond)
	}
}
