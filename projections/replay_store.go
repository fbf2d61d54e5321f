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
//
// The next page is read, and its event data decoded, while one is applied
// (together they cost about what Apply does), and all pages apply to one
// edit, so each part of the state is copied at most once for the whole
// replay.
func ReplayStore(ctx context.Context, store events.Store, s *Snapshot, until int64, skipped func(events.Envelope, error)) (*Snapshot, error) {
	return replayStore(ctx, store, s, until, skipped, replayPage)
}

// replayStore is ReplayStore reading pages of pageSize events.
func replayStore(ctx context.Context, store events.Store, s *Snapshot, until int64, skipped func(events.Envelope, error), pageSize int) (*Snapshot, error) {
	if s == nil {
		s = Empty()
	}
	if until > 0 && s.Seq() >= until {
		return s, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	pages := make(chan readPage, 1)
	go readPagesAhead(ctx, store, s.Seq(), until, pageSize, pages)
	defer func() {
		cancel()
		for range pages { // the reader ends before we return
		}
	}()
	ed := newEdit(s)
	for pg := range pages {
		if pg.err != nil {
			return nil, fmt.Errorf("read events: %w", pg.err)
		}
		ed.pre = pg.decoded
		if _, err := ed.applyAll(pg.evs, skipped); err != nil {
			return nil, fmt.Errorf("apply events: %w", err)
		}
	}
	ed.pre = nil
	if err := ctx.Err(); err != nil {
		// The reader may have stopped at ctx's end before the last page.
		return nil, fmt.Errorf("read events: %w", err)
	}
	return ed.result(), nil
}

// readPage is one page of events with their data decoded, or the error
// that ended the reading.
type readPage struct {
	evs     []events.Envelope
	decoded *decodedPage
	err     error
}

// readPagesAhead sends the pages of events after seq from up to until (0: all)
// in order, and closes out after the last one, an error, or ctx's end.
func readPagesAhead(ctx context.Context, store events.Store, from, until int64, pageSize int, out chan<- readPage) {
	defer close(out)
	for until == 0 || from < until {
		evs, err := store.Read(ctx, events.Query{After: from, Until: until, Limit: pageSize})
		if err == nil && len(evs) == 0 {
			return
		}
		pg := readPage{evs: evs, err: err}
		if err == nil {
			pg.decoded = predecode(evs)
		}
		select {
		case out <- pg:
		case <-ctx.Done():
			return
		}
		if err != nil || len(evs) < pageSize {
			return
		}
		from = evs[len(evs)-1].Seq
	}
}
