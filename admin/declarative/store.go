package declarative

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	gojson "github.com/goccy/go-json"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/projections"
)

// maxAttempts bounds how often ApplyToStore re-plans after another writer
// moved the store's head.
const maxAttempts = 20

// Result is what applying a document did: the changes, the seq of the last
// event appended (nil when nothing was appended or on a dry run) and the keys
// of the tenants created, shown this once. It is the JSON of POST
// /admin/apply and of gateway apply.
type Result struct {
	Changes    []Change    `json:"changes"`
	AppliedSeq *int64      `json:"appliedSeq"`
	APIKeys    []IssuedKey `json:"apiKeys"`
}

// ApplyOptions configure ApplyToStore.
type ApplyOptions struct {
	// Actor is recorded on every event. Required.
	Actor string
	// DryRun plans without appending.
	DryRun bool
	// Now defaults to time.Now.
	Now func() time.Time
}

// Replay returns the state right after event at, read from store (from the
// nearest checkpoint on, when the store keeps them); at < 0 means the
// store's head.
func Replay(ctx context.Context, store events.Store, at int64) (*projections.Snapshot, error) {
	if at == 0 {
		return projections.Empty(), nil
	}
	until := at
	if at < 0 {
		head, err := store.Head(ctx)
		if err != nil {
			return nil, fmt.Errorf("declarative: %w", err)
		}
		until = head
	}
	snap, err := projections.StateAt(ctx, store, until, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("declarative: %w", err)
	}
	if at > 0 && snap.Seq() < at {
		return nil, fmt.Errorf("declarative: seq %d is beyond the store's head %d", at, snap.Seq())
	}
	return snap, nil
}

// catchUp applies the store's events after snap's seq, up to until (0: all).
func catchUp(ctx context.Context, store events.Store, snap *projections.Snapshot, until int64) (*projections.Snapshot, error) {
	s, err := projections.ReplayStore(ctx, store, snap, until, nil)
	if err != nil {
		return nil, fmt.Errorf("declarative: %w", err)
	}
	return s, nil
}

// PastVersions returns the last version of each of ids that has events in
// store (see Events). A few ids are looked up one by one (indexed); many,
// as when a large document is applied to a fresh store, in one pass over
// the log.
func PastVersions(ctx context.Context, store events.Store, ids []string) (map[string]int64, error) {
	past := map[string]int64{}
	if len(ids) <= onePassThreshold {
		for _, id := range ids {
			evs, err := store.Read(ctx, events.Query{AggregateID: id})
			if err != nil {
				return nil, fmt.Errorf("declarative: read events: %w", err)
			}
			for id, v := range LastVersions(evs) {
				past[id] = v
			}
		}
		return past, nil
	}
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	for after := int64(0); ; {
		evs, err := store.Read(ctx, events.Query{After: after, Limit: 5000})
		if err != nil {
			return nil, fmt.Errorf("declarative: read events: %w", err)
		}
		if len(evs) == 0 {
			return past, nil
		}
		for _, ev := range evs {
			if want[ev.AggregateID] {
				past[ev.AggregateID] = max(past[ev.AggregateID], ev.AggregateVersion)
			}
		}
		after = evs[len(evs)-1].Seq
	}
}

// onePassThreshold is how many ids PastVersions looks up one by one.
const onePassThreshold = 32

// ApplyToStore makes the store's state equal desired, writing to the store
// directly (the command line's apply): it plans against the state at the
// head, appends one event per change in one append at that head, and plans
// again when another writer moved the head meanwhile. desired must be
// normalized (admin.DecodeDocument). Running gateway instances pick the
// events up at their next head check.
func ApplyToStore(ctx context.Context, store events.Store, desired Document, opts ApplyOptions) (Result, error) {
	if opts.Actor == "" {
		return Result{}, errors.New("declarative: ApplyOptions.Actor is required")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	snap, err := Replay(ctx, store, -1)
	if err != nil {
		return Result{}, err
	}
	for attempt := 1; ; attempt++ {
		changes, err := Plan(snap, desired)
		if err != nil {
			return Result{}, err
		}
		res := Result{Changes: changes, APIKeys: []IssuedKey{}}
		if opts.DryRun || len(changes) == 0 {
			return res, nil
		}
		past, err := PastVersions(ctx, store, Recreated(changes))
		if err != nil {
			return Result{}, err
		}
		batch, err := Events(snap, changes, opts.Actor, opts.Now(), past)
		if err != nil {
			return Result{}, err
		}
		appended, err := store.Append(ctx, events.AppendRequest{ExpectedHead: snap.Seq(), Events: batch.Events})
		if (errors.Is(err, events.ErrHeadMoved) || errors.Is(err, events.ErrVersionConflict)) && attempt < maxAttempts {
			if snap, err = catchUp(ctx, store, snap, 0); err != nil {
				return Result{}, err
			}
			continue
		}
		if err != nil {
			return Result{}, fmt.Errorf("declarative: append: %w", err)
		}
		if len(appended) == 0 {
			return Result{}, errors.New("declarative: the store appended no events")
		}
		seq := appended[len(appended)-1].Seq
		res.AppliedSeq, res.APIKeys = &seq, batch.Keys
		return res, nil
	}
}

// WriteResult writes res as WriteJSON does, byte for byte, one change at a
// time: the answer of an apply of 100,000 routes is 150 MiB of indented
// JSON, which WriteJSON builds whole and then indents in a second copy.
// go-json writes each change, as it does for the admin API's answer.
func WriteResult(w io.Writer, res Result) error { return writeResult(w, res, true) }

// WriteResultCompact writes res as go-json's Marshal does, one change at a
// time (the admin API's answer).
func WriteResultCompact(w io.Writer, res Result) error { return writeResult(w, res, false) }

func writeResult(w io.Writer, res Result, indent bool) error {
	nl, nlItem, colon := "", "", ":"
	marshal := func(v any, prefix string) ([]byte, error) { return gojson.Marshal(v) }
	if indent {
		nl, nlItem, colon = "\n  ", "\n    ", ": "
		marshal = func(v any, prefix string) ([]byte, error) { return gojson.MarshalIndent(v, prefix, "  ") }
	}
	bw := bufio.NewWriterSize(w, 256<<10)
	_, _ = bw.WriteString("{" + nl + `"changes"` + colon)
	if res.Changes == nil {
		_, _ = bw.WriteString("null")
	} else {
		_ = bw.WriteByte('[')
	}
	for i, c := range res.Changes {
		if i > 0 {
			_ = bw.WriteByte(',')
		}
		_, _ = bw.WriteString(nlItem)
		b, err := marshal(c, "    ")
		if err != nil {
			return err
		}
		_, _ = bw.Write(b)
	}
	if len(res.Changes) > 0 {
		_, _ = bw.WriteString(nl)
	}
	if res.Changes != nil {
		_ = bw.WriteByte(']')
	}
	_, _ = bw.WriteString("," + nl + `"appliedSeq"` + colon)
	seq, err := marshal(res.AppliedSeq, "  ")
	if err != nil {
		return err
	}
	_, _ = bw.Write(seq)
	_, _ = bw.WriteString("," + nl + `"apiKeys"` + colon)
	keys, err := marshal(res.APIKeys, "  ")
	if err != nil {
		return err
	}
	_, _ = bw.Write(keys)
	if indent {
		_, _ = bw.WriteString("\n}\n")
	} else {
		_ = bw.WriteByte('}')
	}
	return bw.Flush() // a bufio.Writer keeps its first error
}
