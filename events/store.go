package events

import (
	"context"
	"errors"
)

// Errors a Store returns. Implementations wrap them, so test with errors.Is.
var (
	// ErrVersionConflict: an event's (AggregateID, AggregateVersion) already
	// exists, so another writer changed the aggregate first.
	ErrVersionConflict = errors.New("events: aggregate version conflict")
	// ErrHeadMoved: AppendRequest.ExpectedHead was set and the log has grown.
	ErrHeadMoved = errors.New("events: store head moved")
	// ErrUnavailable: the store cannot be reached.
	ErrUnavailable = errors.New("events: store unavailable")
	// ErrTimeout: the store answers but the call ran past its deadline (a
	// slow query on a healthy store, not an unreachable one).
	ErrTimeout = errors.New("events: store call timed out")
)

// AnyHead disables the head check of an append.
const AnyHead int64 = -1

// AppendRequest is a batch of events committed in one transaction.
type AppendRequest struct {
	// ExpectedHead, unless AnyHead, is the seq the command was validated
	// against; the append fails with ErrHeadMoved if the log moved past it.
	// Commands that check invariants across aggregates (a unique tenant
	// name, a route's tenant existing) use it.
	ExpectedHead int64
	// Events to append, in order. Seq is assigned by the store; ID,
	// OccurredAt and the rest are the caller's.
	Events []Envelope
}

// Query selects events for reading. Zero values mean "no filter".
type Query struct {
	After         int64 // only events with Seq > After
	Until         int64 // only events with Seq <= Until (0: no bound)
	Limit         int   // at most this many (0: no limit)
	AggregateType AggregateType
	AggregateID   string
	TenantID      string
	// TenantIDs, when not nil, keeps only events of these tenants (an
	// empty, non-nil list keeps none): what a key scoped to them may read.
	TenantIDs []string
}

// Store is the append-only event log.
type Store interface {
	// Append commits the request's events atomically and returns them with
	// their Seq. Appends are serialized: seq is global, gap-free and in
	// commit order.
	Append(ctx context.Context, req AppendRequest) ([]Envelope, error)
	// Read returns the events matching q in seq order.
	Read(ctx context.Context, q Query) ([]Envelope, error)
	// Head returns the highest committed seq (0 for an empty log).
	Head(ctx context.Context) (int64, error)
	// Kind names the implementation ("postgres" or "sqlite").
	Kind() string
	Close() error
}

// Bus fans events out to every gateway instance. Publishing is idempotent:
// an event whose seq was already published is skipped.
type Bus interface {
	// Publish publishes events in seq order.
	Publish(ctx context.Context, evs ...Envelope) error
	// PublishAfter publishes events, which follow seq after, in one step,
	// only if the bus's LastSeq is still after; it reports false, publishing
	// nothing, when the bus moved since the caller read it (another relay
	// published, or the bus lost its events). The relay publishes with it,
	// so the bus never holds a newer run of events without the older ones.
	PublishAfter(ctx context.Context, after int64, evs ...Envelope) (bool, error)
	// LastSeq returns the seq of the newest published event (0 if none).
	LastSeq(ctx context.Context) (int64, error)
	// Subscribe delivers every event published after seq `after`, in order,
	// until ctx ends. A Delivery with Resync set tells the consumer it may
	// have missed events (stream trimmed, deleted or Redis restarted) and
	// must catch up from the store.
	Subscribe(ctx context.Context, after int64) (<-chan Delivery, error)
	// DropAfter removes the published events after seq, so that the next
	// publish may be seq+1 again. The relay calls it when the bus holds seqs
	// the store never wrote (the store was restored from a backup): no
	// consumer may apply those. It returns how many it removed.
	DropAfter(ctx context.Context, seq int64) (int, error)
	// Kind names the implementation ("redis" or "memory").
	Kind() string
	Close() error
}

// Delivery is one message of a subscription.
type Delivery struct {
	Event  Envelope
	Resync bool
}
