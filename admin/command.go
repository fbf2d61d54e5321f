package admin

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/projections"
)

// maxAttempts bounds how often a command is re-run after losing a race with
// another writer (a version conflict or a moved head).
const maxAttempts = 20

// plan is what a command decided to append. No events: nothing changes.
type plan struct {
	// head is the seq the command validated against, for commands that check
	// invariants across aggregates; events.AnyHead otherwise.
	head   int64
	events []events.Envelope
}

// command validates against a snapshot and plans events. It must be a pure
// function of the snapshot so that it can be re-run after a lost race.
type command func(snap *projections.Snapshot) (plan, *Error)

// execute runs a command against the store's head: catch up, plan, append,
// wake the relay, and wait until this instance has applied the new events
// before returning the snapshot that includes them (read your writes).
//
// Commands of this instance run one at a time: optimistic retries alone
// starve some of many writers racing on one aggregate, while queueing them
// costs little at admin write rates. Retries then only happen against other
// instances.
func (a *API) execute(ctx context.Context, cmd command) (*projections.Snapshot, *Error) {
	if err := a.lockWrites(ctx); err != nil {
		return nil, err
	}
	defer a.unlockWrites()
	for attempt := 1; ; attempt++ {
		if err := a.catchUp(ctx); err != nil {
			return nil, a.storeError(err)
		}
		snap := a.proj.Snapshot()
		p, cerr := cmd(snap)
		if cerr != nil {
			return nil, cerr
		}
		if len(p.events) == 0 {
			return snap, nil
		}
		appended, err := a.appendEvents(ctx, p)
		if errors.Is(err, events.ErrVersionConflict) || errors.Is(err, events.ErrHeadMoved) {
			a.log.Debug("admin: lost a race with another writer, re-running the command", "attempt", attempt, "err", err)
			if attempt >= maxAttempts {
				return nil, errConflict("the resource changed concurrently too often; try again")
			}
			if err := pause(ctx, attempt); err != nil {
				return nil, a.storeError(err)
			}
			continue
		}
		if err != nil {
			return nil, a.storeError(err)
		}
		a.notify()
		traceAppended(ctx, appended)
		last := appended[len(appended)-1].Seq
		wctx, cancel := withTimeoutFor(ctx, len(appended))
		err = a.proj.WaitFor(wctx, last)
		cancel()
		if err != nil {
			return nil, a.storeError(err)
		}
		return a.proj.Snapshot(), nil
	}
}

// writeTurnWait bounds the wait for this instance's turn to write. It is a
// queue, not a store call: a hundred writers at once wait longer than one
// store call may take, and a long queue is contention, not a store down.
const writeTurnWait = 30 * time.Second

// lockWrites waits for this instance's turn to write, at most writeTurnWait.
func (a *API) lockWrites(ctx context.Context) *Error {
	t := time.NewTimer(writeTurnWait)
	defer t.Stop()
	select {
	case a.writes <- struct{}{}:
		return nil
	case <-t.C:
		a.log.Warn("admin: a write waited too long for its turn on this instance", "waited", writeTurnWait)
		return errConflict("too many writes are queued on this instance; try again")
	case <-ctx.Done():
		return a.storeError(ctx.Err())
	}
}

func (a *API) unlockWrites() { <-a.writes }

func (a *API) catchUp(ctx context.Context) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	return a.proj.CatchUp(ctx)
}

func (a *API) appendEvents(ctx context.Context, p plan) ([]events.Envelope, error) {
	if id := keyIDFrom(ctx); id != "" {
		for i := range p.events {
			p.events[i].ActorKeyID = id
		}
	}
	ctx, cancel := withTimeoutFor(ctx, len(p.events))
	defer cancel()
	out, err := a.store.Append(ctx, events.AppendRequest{ExpectedHead: p.head, Events: p.events})
	if err == nil && len(out) != len(p.events) {
		err = errors.New("admin: store appended a different number of events")
	}
	return out, err
}

// pause waits before a retry: exponential backoff (1, 2, 4 ... 64 ms) with
// full jitter, so that racing writers spread out instead of colliding again.
func pause(ctx context.Context, attempt int) error {
	ceiling := time.Millisecond << min(attempt, 6)
	t := time.NewTimer(time.Millisecond + rand.N(ceiling))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// eventFactory builds the envelopes of one command.
type eventFactory struct {
	actor string
	at    time.Time
}

func (a *API) events(actor string) eventFactory {
	return eventFactory{actor: actor, at: a.now().UTC().Truncate(time.Microsecond)}
}

// event builds one envelope; version is the aggregate's version after it.
func (f eventFactory) event(t events.Type, aggregateID string, version int64, tenantID string, data any) (events.Envelope, *Error) {
	id, err := uuid.NewV7()
	if err != nil {
		return events.Envelope{}, errInternal
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return events.Envelope{}, errInternal
	}
	return events.Envelope{
		ID:               id.String(),
		Type:             t,
		AggregateType:    events.AggregateTypeOf(t),
		AggregateID:      aggregateID,
		AggregateVersion: version,
		TenantID:         tenantID,
		Actor:            f.actor,
		OccurredAt:       f.at,
		Data:             raw,
	}, nil
}

func newID() (string, *Error) {
	id, err := uuid.NewV7()
	if err != nil {
		return "", errInternal
	}
	return id.String(), nil
}

// ifMatch is a parsed If-Match header: absent, "*", or a list of versions
// written as 3 or "3" (W/"3" is accepted too).
type ifMatch struct {
	set      bool
	any      bool
	versions []int64
}

func parseIfMatch(h string) ifMatch {
	h = strings.TrimSpace(h)
	if h == "" {
		return ifMatch{}
	}
	m := ifMatch{set: true}
	for _, part := range strings.Split(h, ",") {
		part = strings.TrimSpace(part)
		if part == "*" {
			m.any = true
			continue
		}
		part = strings.TrimPrefix(part, "W/")
		if len(part) >= 2 && part[0] == '"' && part[len(part)-1] == '"' {
			part = part[1 : len(part)-1]
		}
		// A value that is not a version can never match: it stays out of
		// the list and the request gets 412.
		if v, err := strconv.ParseInt(part, 10, 64); err == nil {
			m.versions = append(m.versions, v)
		}
	}
	return m
}

// liveTenant is tenant id for a command: 404 when it is not live, 412 when
// match refuses its version.
func liveTenant(snap *projections.Snapshot, id string, match ifMatch) (*projections.Tenant, *Error) {
	t, found := snap.Tenant(id)
	if !found {
		return nil, errNotFound("tenant")
	}
	return t, match.check(t.Version)
}

// liveRoute is liveTenant for route id.
func liveRoute(snap *projections.Snapshot, id string, match ifMatch) (*projections.Route, *Error) {
	r, found := snap.Route(id)
	if !found {
		return nil, errNotFound("route")
	}
	return r, match.check(r.Version)
}

// check fails with 412 when the header is set and does not name current.
func (m ifMatch) check(current int64) *Error {
	if !m.set || m.any {
		return nil
	}
	for _, v := range m.versions {
		if v == current {
			return nil
		}
	}
	return errVersionMismatch(current)
}
