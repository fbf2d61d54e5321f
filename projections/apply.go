package projections

import (
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sync"
	"time"

	json "github.com/goccy/go-json"

	"github.com/tenantgate/gateway/events"
)

// ErrOutOfOrder is returned (wrapped) when an event's seq is not the next one.
// The state is then unchanged and Apply returns a nil snapshot.
var ErrOutOfOrder = errors.New("projections: event out of order")

// SkippedError describes an event that advanced seq but changed nothing else
// because it could not be applied meaningfully.
type SkippedError struct {
	Seq  int64
	Type events.Type
	Err  error
}

func (e *SkippedError) Error() string {
	return fmt.Sprintf("projections: event %d (%s) skipped: %v", e.Seq, e.Type, e.Err)
}

func (e *SkippedError) Unwrap() error { return e.Err }

// Apply returns the state right after ev. It is pure and deterministic and
// never changes s, which readers may be using.
//
//   - ev.Seq must be s.Seq()+1; otherwise Apply returns nil and an error
//     wrapping ErrOutOfOrder.
//   - An event that cannot be applied meaningfully (unknown type, malformed
//     data, a missing or already existing aggregate, such as a route of a
//     deleted tenant) still advances seq: Apply returns s with only seq
//     advanced and a *SkippedError, so a projector logs it and keeps going,
//     and every instance stays at the same seq with the same state.
//
// An aggregate's version is the event's AggregateVersion, its createdAt the
// OccurredAt of its create event, its updatedAt that of its latest event;
// times are kept in UTC at microsecond precision (what PostgreSQL stores), so
// instances agree whether they read an event from the store or the bus.
// A route whose regex path or rewrite pattern does not compile (the admin API
// rejects those) is kept but never matches.
func Apply(s *Snapshot, ev events.Envelope) (*Snapshot, error) {
	b := edit{tok: new(token), s: s.next()}
	if err := b.apply(ev); err != nil {
		if errors.Is(err, ErrOutOfOrder) {
			return nil, err
		}
		return b.result(), err
	}
	return b.result(), nil
}

// ApplyBatch applies evs in order, exactly like calling Apply for each, but
// copies each changed part of the state at most once for the whole batch, so
// catching up and replaying are fast. skipped, if not nil, is called with
// each event Apply would have answered with a *SkippedError. On an event out
// of order it stops and returns the state before that event with the error.
func ApplyBatch(s *Snapshot, evs []events.Envelope, skipped func(events.Envelope, error)) (*Snapshot, error) {
	b := newEdit(s)
	_, err := b.applyAll(evs, skipped)
	return b.result(), err
}

// Replay builds the state from an empty one and the log evs. The returned
// snapshot holds every event up to the first one out of order (all of them
// normally); the error joins the errors of events out of order or skipped.
func Replay(evs []events.Envelope) (*Snapshot, error) {
	var errs []error
	s, err := ApplyBatch(Empty(), evs, func(_ events.Envelope, err error) { errs = append(errs, err) })
	if err != nil {
		errs = append(errs, err)
	}
	return s, errors.Join(errs...)
}

// edit applies events to a snapshot no reader has seen yet, changing in
// place the parts it owns (those tagged with tok).
type edit struct {
	tok *token
	s   *Snapshot
	// pre, if set, holds the data of the events being applied, decoded
	// beforehand (see predecode.go).
	pre *decodedPage
	// pending are the ids of the routes filed stale (digests not computed,
	// not in the sums) since the last settle; an id may be listed twice.
	pending []string
}

// result returns the edited state, settled: every state an edit hands out
// (to a reader, a checkpoint, the next edit) goes through here.
func (b *edit) result() *Snapshot {
	b.settle()
	return b.s
}

// settle computes the digests of the routes filed stale and adds them to
// the sums. Putting them off to here computes them once per route and
// settle, not once per event: a replay changes a route about three times.
func (b *edit) settle() {
	s := b.s
	for _, id := range b.pending {
		e, ok := s.routes.get(id)
		if !ok || !e.stale {
			continue // dropped since, or listed twice
		}
		e.digests, e.stale = routeDigests(e.r), false
		e.addTo(&s.sum, &s.configSum)
		s.routes = s.routes.set(b.tok, id, e)
	}
	b.pending = b.pending[:0]
}

// unsumRoute takes e's digests out of the sums; a stale entry's are not in them.
func (b *edit) unsumRoute(e routeEntry) {
	if !e.stale {
		e.addTo(&b.s.sum, &b.s.configSum)
	}
}

// newEdit starts an edit of the state that follows s.
func newEdit(s *Snapshot) *edit { return &edit{tok: new(token), s: s.next()} }

// applyAll applies evs in order as ApplyBatch does, and returns how many it
// applied (skipped ones included) before an event out of order, if any.
func (b *edit) applyAll(evs []events.Envelope, skipped func(events.Envelope, error)) (int, error) {
	for i, ev := range evs {
		if err := b.apply(ev); err != nil {
			if errors.Is(err, ErrOutOfOrder) {
				return i, err
			}
			if skipped != nil {
				skipped(ev, err)
			}
		}
	}
	return len(evs), nil
}

// apply validates everything before it changes anything, so an event that is
// skipped leaves the state as it was.
func (b *edit) apply(ev events.Envelope) error {
	if ev.Seq != b.s.seq+1 {
		return fmt.Errorf("%w: got seq %d, want %d", ErrOutOfOrder, ev.Seq, b.s.seq+1)
	}
	b.s.seq, b.s.lastID = ev.Seq, ev.ID
	if err := b.change(ev); err != nil {
		return &SkippedError{Seq: ev.Seq, Type: ev.Type, Err: err}
	}
	return nil
}

func (b *edit) change(ev events.Envelope) error {
	if err := checkTime(ev); err != nil {
		return err
	}
	switch ev.Type {
	case events.TenantCreated:
		return b.tenantCreated(ev)
	case events.TenantUpdated:
		return b.tenantUpdated(ev)
	case events.TenantAPIKeyRotated:
		return b.tenantKeyRotated(ev)
	case events.TenantDeleted:
		return b.tenantDeleted(ev)
	case events.RouteCreated:
		return b.routeCreated(ev)
	case events.RouteUpdated:
		return b.routeUpdated(ev)
	case events.RouteDeleted:
		return b.routeDeleted(ev)
	case events.AdminKeyCreated:
		return b.adminKeyCreated(ev)
	case events.AdminKeyRevoked:
		return b.adminKeyRevoked(ev)
	}
	return errors.New("unknown event type")
}

func eventTime(ev events.Envelope) time.Time {
	return ev.OccurredAt.UTC().Truncate(time.Microsecond)
}

// checkTime rejects times JSON cannot encode, which the state hash needs.
func checkTime(ev events.Envelope) error {
	if y := ev.OccurredAt.UTC().Year(); y < 0 || y > 9999 {
		return fmt.Errorf("occurredAt year %d out of range", y)
	}
	return nil
}

// decode uses go-json: decoding event data is most of the cost of a replay,
// and it is about five times faster than encoding/json for the same result
// (TestDecodeMatchesEncodingJSON).
func decode(ev events.Envelope, v any) error {
	if len(ev.Data) == 0 {
		return errors.New("no data")
	}
	if err := json.Unmarshal(ev.Data, v); err != nil {
		return fmt.Errorf("malformed data: %w", err)
	}
	return nil
}

func decodeKeyHash(s string) ([32]byte, error) {
	var h [32]byte
	if hex.DecodedLen(len(s)) != len(h) {
		return h, errors.New("apiKeyHash is not 64 hex digits")
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, fmt.Errorf("apiKeyHash: %w", err)
	}
	return h, nil
}

func (b *edit) liveTenant(ev events.Envelope) (*Tenant, error) {
	e, ok := b.s.tenants.get(ev.AggregateID)
	if !ok {
		return nil, fmt.Errorf("tenant %q does not exist", ev.AggregateID)
	}
	return e.t, nil
}

func (b *edit) tenantCreated(ev events.Envelope) error {
	if ev.AggregateID == "" {
		return errors.New("no aggregate id")
	}
	if _, ok := b.s.tenants.get(ev.AggregateID); ok {
		return fmt.Errorf("tenant %q already exists", ev.AggregateID)
	}
	d, err := decodeData[events.TenantCreatedData](b, ev)
	if err != nil {
		return err
	}
	kh, err := decodeKeyHash(d.APIKeyHash)
	if err != nil {
		return err
	}
	at := eventTime(ev)
	b.putTenant(nil, &Tenant{
		ID: ev.AggregateID, Name: d.Name, Status: d.Status, RateLimit: d.RateLimit,
		KeyPrefix: d.APIKeyPrefix, Version: ev.AggregateVersion,
		CreatedAt: at, UpdatedAt: at, KeyHash: kh,
	})
	return nil
}

func (b *edit) tenantUpdated(ev events.Envelope) error {
	old, err := b.liveTenant(ev)
	if err != nil {
		return err
	}
	d, err := decodeData[events.TenantUpdatedData](b, ev)
	if err != nil {
		return err
	}
	t := *old
	d.Name.ApplyTo(&t.Name)
	d.Status.ApplyTo(&t.Status)
	d.RateLimit.ApplyTo(&t.RateLimit)
	t.Version, t.UpdatedAt = ev.AggregateVersion, eventTime(ev)
	b.putTenant(old, &t)
	return nil
}

func (b *edit) tenantKeyRotated(ev events.Envelope) error {
	old, err := b.liveTenant(ev)
	if err != nil {
		return err
	}
	d, err := decodeData[events.TenantAPIKeyRotatedData](b, ev)
	if err != nil {
		return err
	}
	kh, err := decodeKeyHash(d.APIKeyHash)
	if err != nil {
		return err
	}
	t := *old
	t.KeyHash, t.KeyPrefix = kh, d.APIKeyPrefix
	t.Version, t.UpdatedAt = ev.AggregateVersion, eventTime(ev)
	b.putTenant(old, &t)
	return nil
}

func (b *edit) tenantDeleted(ev events.Envelope) error {
	old, err := b.liveTenant(ev)
	if err != nil {
		return err
	}
	// Routes normally go first, each by its own RouteDeleted; drop any left.
	if b.s.unfiled {
		b.fileTables() // to find them
	}
	if tb, ok := b.s.tables.get(old.ID); ok {
		var left []string
		tb.routes.all(func(id string, _ *Route) bool {
			left = append(left, id)
			return true
		})
		for _, id := range left {
			e, _ := b.s.routes.get(id)
			b.unsumRoute(e)
			b.s.routes = b.s.routes.delete(b.tok, id)
		}
		b.s.tables = b.s.tables.delete(b.tok, old.ID)
	}
	b.putTenant(old, nil)
	return nil
}

// putTenant replaces old with t; either may be nil (create, delete).
func (b *edit) putTenant(old, t *Tenant) {
	s, tok := b.s, b.tok
	if old != nil {
		e, _ := s.tenants.get(old.ID)
		e.addTo(&s.sum, &s.configSum)
		if cur, _ := s.byKey.get(old.KeyHash); cur == old {
			s.byKey = s.byKey.delete(tok, old.KeyHash)
		}
		if cur, _ := s.byName.get(old.Name); cur == old {
			s.byName = s.byName.delete(tok, old.Name)
		}
		if t == nil {
			s.tenants = s.tenants.delete(tok, old.ID)
		}
	}
	if t != nil {
		b.addTenant(t, tenantDigests(t))
	}
}

// addTenant files t, whose digests are dg, in the indexes.
func (b *edit) addTenant(t *Tenant, dg digests) {
	s, tok := b.s, b.tok
	b.fileTenant(t, dg)
	s.byKey = s.byKey.set(tok, t.KeyHash, t)
	s.byName = s.byName.set(tok, t.Name, t)
}

// fileTenant adds t to the tenants and the sums, but not to the indexes.
func (b *edit) fileTenant(t *Tenant, dg digests) {
	s := b.s
	e := tenantEntry{t: t, digests: dg}
	e.addTo(&s.sum, &s.configSum)
	s.tenants = s.tenants.set(b.tok, t.ID, e)
}

func (b *edit) routeCreated(ev events.Envelope) error {
	if ev.AggregateID == "" {
		return errors.New("no aggregate id")
	}
	if _, ok := b.s.routes.get(ev.AggregateID); ok {
		return fmt.Errorf("route %q already exists", ev.AggregateID)
	}
	spec, err := decodeData[events.RouteSpec](b, ev)
	if err != nil {
		return err
	}
	if spec.TenantID == "" {
		spec.TenantID = ev.TenantID
	}
	if ev.TenantID != "" && ev.TenantID != spec.TenantID {
		return fmt.Errorf("event tenant %q differs from route tenant %q", ev.TenantID, spec.TenantID)
	}
	if _, ok := b.s.tenants.get(spec.TenantID); !ok {
		return fmt.Errorf("tenant %q of route does not exist", spec.TenantID)
	}
	at := eventTime(ev)
	r := &Route{ID: ev.AggregateID, RouteSpec: *spec, Version: ev.AggregateVersion, CreatedAt: at, UpdatedAt: at}
	compile(r, nil)
	b.putRoute(r)
	return nil
}

func (b *edit) liveRoute(ev events.Envelope) (*Route, error) {
	e, ok := b.s.routes.get(ev.AggregateID)
	if !ok {
		return nil, fmt.Errorf("route %q does not exist", ev.AggregateID)
	}
	return e.r, nil
}

func (b *edit) routeUpdated(ev events.Envelope) error {
	old, err := b.liveRoute(ev)
	if err != nil {
		return err
	}
	d, err := decodeData[events.RouteUpdatedData](b, ev)
	if err != nil {
		return err
	}
	r := *old
	d.Method.ApplyTo(&r.Method)
	d.Path.ApplyTo(&r.Path)
	d.PathType.ApplyTo(&r.PathType)
	d.Upstreams.ApplyTo(&r.Upstreams)
	d.LoadBalancing.ApplyTo(&r.LoadBalancing)
	d.Resilience.ApplyTo(&r.Resilience)
	d.Transform.ApplyTo(&r.Transform)
	r.Version, r.UpdatedAt = ev.AggregateVersion, eventTime(ev)
	compile(&r, old)
	b.dropRoute(old)
	b.putRoute(&r)
	return nil
}

func (b *edit) routeDeleted(ev events.Envelope) error {
	old, err := b.liveRoute(ev)
	if err != nil {
		return err
	}
	b.dropRoute(old)
	return nil
}

// putRoute files r, stale until the edit settles; its tenant exists.
func (b *edit) putRoute(r *Route) {
	b.s.routes = b.s.routes.set(b.tok, r.ID, routeEntry{r: r, stale: true})
	b.pending = append(b.pending, r.ID)
	if b.s.unfiled {
		return
	}
	s, tok := b.s, b.tok
	old, _ := s.tables.get(r.TenantID)
	tb := old.editable(tok)
	tb.add(tok, r)
	if tb != old {
		s.tables = s.tables.set(tok, r.TenantID, tb)
	}
}

// fileRoute files r, whose digests are dg, by id, and not in its tenant's
// table (putRoute does both; a checkpoint load files the tables after, or
// leaves them unfiled).
func (b *edit) fileRoute(r *Route, dg digests) {
	s := b.s
	e := routeEntry{r: r, digests: dg}
	e.addTo(&s.sum, &s.configSum)
	s.routes = s.routes.set(b.tok, r.ID, e)
}

// fileTables files every route in its tenant's table, each table sized once
// for its routes: after a checkpoint load filed the routes by id, this
// spares each tenant's maps from growing route by route. The routes are
// grouped by tenant first (a counting sort), so that each table is built in
// one go from routes side by side; tables share nothing, so one worker per
// core builds its share of them. (Filed route by route, in id order, this
// was a third of a checkpoint load, on one core.)
func (b *edit) fileTables() {
	s, tok := b.s, b.tok
	type filed struct {
		r     *Route
		group int32
	}
	routes := make([]filed, 0, s.routes.len())
	group := make(map[string]int32, s.tenants.len())
	var tenantIDs []string
	var counts []int
	s.routes.all(func(_ string, e routeEntry) bool {
		g, ok := group[e.r.TenantID]
		if !ok {
			g = int32(len(tenantIDs))
			group[e.r.TenantID] = g
			tenantIDs, counts = append(tenantIDs, e.r.TenantID), append(counts, 0)
		}
		counts[g]++
		routes = append(routes, filed{e.r, g})
		return true
	})
	starts := make([]int, len(counts)+1)
	for g, n := range counts {
		starts[g+1] = starts[g] + n
	}
	grouped := make([]*Route, len(routes))
	next := slices.Clone(starts[:len(counts)])
	for _, f := range routes {
		grouped[next[f.group]] = f.r
		next[f.group]++
	}
	tables := make([]*table, len(counts))
	workers := decodeWorkers()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for g := w; g < len(tables); g += workers {
				rs := grouped[starts[g]:starts[g+1]]
				tb := &table{owner: tok, routes: presized[string, *Route, stringHasher](tok, len(rs))}
				for _, r := range rs {
					tb.add(tok, r)
				}
				tables[g] = tb
			}
		})
	}
	wg.Wait()
	s.tables = presized[string, *table, stringHasher](tok, len(tables))
	for g, tb := range tables {
		s.tables = s.tables.set(tok, tenantIDs[g], tb)
	}
	s.unfiled = false
}

func (b *edit) dropRoute(r *Route) {
	s, tok := b.s, b.tok
	e, _ := s.routes.get(r.ID)
	b.unsumRoute(e)
	s.routes = s.routes.delete(tok, r.ID)
	if s.unfiled {
		return
	}
	if old, ok := s.tables.get(r.TenantID); ok {
		tb := old.editable(tok)
		tb.remove(tok, r)
		if tb != old {
			s.tables = s.tables.set(tok, r.TenantID, tb)
		}
	}
}

// compile sets r's compiled patterns, reusing prev's where the pattern is
// unchanged. A pattern that does not compile leaves nil, so the route never
// matches (see matchable).
func compile(r, prev *Route) {
	r.PathRegexp, r.Rewrite = nil, nil
	if r.PathType == events.PathRegex {
		if prev != nil && prev.PathRegexp != nil && prev.PathRegexp.String() == r.Path {
			r.PathRegexp = prev.PathRegexp
		} else if re, err := regexp.Compile(r.Path); err == nil {
			r.PathRegexp = re
		}
	}
	if rw := rewriteOf(r); rw != nil {
		if prev != nil && prev.Rewrite != nil && prev.Rewrite.String() == rw.Pattern {
			r.Rewrite = prev.Rewrite
		} else if re, err := regexp.Compile(rw.Pattern); err == nil {
			r.Rewrite = re
		}
	}
}
