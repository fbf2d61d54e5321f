package projections

import (
	"context"
	"fmt"

	"github.com/tenantgate/gateway/events"
)

// replayPage is how many events ReplayStore reads at a time.
const replayPage = 5000

// ReplayStore applies the store's events after s's seq, up to until (0: all),
// reading them page by page: what `gateway replay`, `state?at`, `diff` and
// the declarative commands build their states with. Events that cannot be
// applied advance seq, as on every instance; skipped, if not nil, hears of
// each. It never touches a projector.
func ReplayStore(ctx context.Context, store events.Store, s *Snapshot, until int64, skipped func(events.Envelope, error)) (*Snapshot, error) {
	if s == nil {
		s = Empty()
	}
	for until == 0 || s.Seq() < until {
		evs, err := store.Read(ctx, events.Query{After: s.Seq(), Until: until, Limit: replayPage})
		if err != nil {
			return nil, fmt.Errorf("read events: %w", err)
		}
		if len(evs) == 0 {
			break
		}
		if s, err = ApplyBatch(s, evs, skipped); err != nil {
			return nil, fmt.Errorf("apply events: %w", err)
		}
	}
	return s, nil
}
