// Package storetest is the conformance suite every events.Store must pass.
// A store's test calls Run with a function that opens a fresh, empty,
// migrated store.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tenantgate/gateway/events"
)

// Run runs the suite. open must return a new, empty, migrated store; Run
// closes it when the subtest ends.
func Run(t *testing.T, open func(t *testing.T) events.Store) {
	t.Helper()
	fresh := func(t *testing.T) events.Store {
		t.Helper()
		s := open(t)
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, s events.Store)
	}{
		{"EmptyHead", testEmptyHead},
		{"AppendAssignsSeq", testAppendAssignsSeq},
		{"RoundTrip", testRoundTrip},
		{"VersionConflict", testVersionConflict},
		{"ConcurrentSameVersion", testConcurrentSameVersion},
		{"ConflictingBatchCommitsNothing", testConflictingBatch},
		{"ExpectedHead", testExpectedHead},
		{"QueryFilters", testQueryFilters},
		{"ConcurrentAppendsAndTail", testConcurrentAppendsAndTail},
		{"LargeBatch", testLargeBatch},
		{"LargeConflictingBatch", testLargeConflictingBatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, fresh(t))
		})
	}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// event returns a valid event of aggregate id at version.
func event(id string, version int64, tenant string) events.Envelope {
	typ := events.TenantUpdated
	if version == 1 {
		typ = events.TenantCreated
	}
	return events.Envelope{
		ID:               uuid.NewString(),
		Type:             typ,
		AggregateType:    events.AggregateTenant,
		AggregateID:      id,
		AggregateVersion: version,
		TenantID:         tenant,
		Actor:            "storetest",
		OccurredAt:       time.Now(),
		Data:             json.RawMessage(`{"name":"n"}`),
	}
}

func mustAppend(t *testing.T, s events.Store, evs ...events.Envelope) []events.Envelope {
	t.Helper()
	out, err := s.Append(ctxFor(t), events.AppendRequest{ExpectedHead: events.AnyHead, Events: evs})
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return out
}

func mustRead(t *testing.T, s events.Store, q events.Query) []events.Envelope {
	t.Helper()
	out, err := s.Read(ctxFor(t), q)
	if err != nil {
		t.Fatalf("Read(%+v): %v", q, err)
	}
	return out
}

func mustHead(t *testing.T, s events.Store) int64 {
	t.Helper()
	h, err := s.Head(ctxFor(t))
	if err != nil {
		t.Fatalf("Head: %v", err)
	}
	return h
}

func seqs(evs []events.Envelope) []int64 {
	out := make([]int64, len(evs))
	for i, e := range evs {
		out[i] = e.Seq
	}
	return out
}

func testEmptyHead(t *testing.T, s events.Store) {
	if h := mustHead(t, s); h != 0 {
		t.Fatalf("Head of an empty store = %d, want 0", h)
	}
	if evs := mustRead(t, s, events.Query{}); len(evs) != 0 {
		t.Fatalf("Read of an empty store = %d events, want 0", len(evs))
	}
}

func testAppendAssignsSeq(t *testing.T, s events.Store) {
	a := uuid.NewString()
	got := mustAppend(t, s, event(a, 1, a))
	if want := []int64{1}; !reflect.DeepEqual(seqs(got), want) {
		t.Fatalf("first append seqs = %v, want %v", seqs(got), want)
	}
	got = mustAppend(t, s, event(a, 2, a), event(a, 3, a), event(a, 4, a))
	if want := []int64{2, 3, 4}; !reflect.DeepEqual(seqs(got), want) {
		t.Fatalf("batch seqs = %v, want %v", seqs(got), want)
	}
	if h := mustHead(t, s); h != 4 {
		t.Fatalf("Head = %d, want 4", h)
	}
	if out, err := s.Append(ctxFor(t), events.AppendRequest{ExpectedHead: events.AnyHead}); err != nil || len(out) != 0 {
		t.Fatalf("empty Append = %v, %v; want nothing, nil", out, err)
	}
	if h := mustHead(t, s); h != 4 {
		t.Fatalf("Head after an empty append = %d, want 4", h)
	}
}

func testRoundTrip(t *testing.T, s events.Store) {
	loc := time.FixedZone("X", 5*3600+30*60)
	at := time.Date(2026, 3, 4, 5, 6, 7, 123456789, loc)
	data := json.RawMessage(`{"z":1,"a":{"nested":[1,2.5,"x",null,true]},"unicode":"é€😀","empty":{}}`)
	tenant := uuid.NewString()
	in := events.Envelope{
		ID:               uuid.NewString(),
		Type:             events.RouteCreated,
		AggregateType:    events.AggregateRoute,
		AggregateID:      uuid.NewString(),
		AggregateVersion: 1,
		TenantID:         tenant,
		Actor:            "alice <a@example.com>",
		ActorKeyID:       uuid.NewString(),
		OccurredAt:       at,
		Data:             data,
	}
	appended := mustAppend(t, s, in)
	read := mustRead(t, s, events.Query{})
	if len(read) != 1 {
		t.Fatalf("Read = %d events, want 1", len(read))
	}
	wantAt := time.Date(2026, 3, 4, 5, 6, 7, 123456000, loc).UTC()
	for name, got := range map[string]events.Envelope{"Append": appended[0], "Read": read[0]} {
		if !got.OccurredAt.Equal(wantAt) || got.OccurredAt.Location() != time.UTC {
			t.Errorf("%s OccurredAt = %v, want %v in UTC", name, got.OccurredAt, wantAt)
		}
		if got.OccurredAt != wantAt {
			t.Errorf("%s OccurredAt = %#v, want exactly %#v", name, got.OccurredAt, wantAt)
		}
		var gotData, wantData any
		if err := json.Unmarshal(got.Data, &gotData); err != nil {
			t.Fatalf("%s Data %s: %v", name, got.Data, err)
		}
		_ = json.Unmarshal(data, &wantData)
		if !reflect.DeepEqual(gotData, wantData) {
			t.Errorf("%s Data = %s, want %s", name, got.Data, data)
		}
		got.Data, got.OccurredAt = nil, time.Time{}
		want := in
		want.Seq, want.Data, want.OccurredAt = 1, nil, time.Time{}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %+v, want %+v", name, got, want)
		}
	}

	// A typed payload decodes to the same value.
	spec := events.RouteSpec{
		TenantID: tenant, Method: "GET", Path: "/x", PathType: events.PathPrefix,
		Upstreams:     []events.Upstream{{URL: "http://u:1/base", Weight: 3}},
		LoadBalancing: events.BalanceWeighted,
		Resilience:    &events.Resilience{Timeout: &events.Timeout{Enabled: true, Default: 100, ByMethod: map[string]int{"POST": 50}}},
	}
	raw, _ := json.Marshal(spec)
	ev := in
	ev.ID, ev.AggregateID, ev.Data = uuid.NewString(), uuid.NewString(), raw
	mustAppend(t, s, ev)
	got := mustRead(t, s, events.Query{After: 1})
	var back events.RouteSpec
	if err := json.Unmarshal(got[0].Data, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, spec) {
		t.Errorf("RouteSpec round trip = %+v, want %+v", back, spec)
	}

	// Invalid JSON is refused and nothing is written.
	bad := event(uuid.NewString(), 1, tenant)
	bad.Data = json.RawMessage(`{"a":`)
	if _, err := s.Append(ctxFor(t), events.AppendRequest{ExpectedHead: events.AnyHead, Events: []events.Envelope{bad}}); err == nil {
		t.Errorf("Append with invalid JSON data succeeded")
	}
	if h := mustHead(t, s); h != 2 {
		t.Errorf("Head = %d, want 2", h)
	}
}

func testVersionConflict(t *testing.T, s events.Store) {
	a := uuid.NewString()
	mustAppend(t, s, event(a, 1, a), event(a, 2, a))
	tests := []struct {
		name    string
		version int64
	}{
		{"stale version", 1},
		{"current version again", 2},
	}
	for _, tt := range tests {
		_, err := s.Append(ctxFor(t), events.AppendRequest{ExpectedHead: events.AnyHead, Events: []events.Envelope{event(a, tt.version, a)}})
		if !errors.Is(err, events.ErrVersionConflict) {
			t.Errorf("%s: Append = %v, want ErrVersionConflict", tt.name, err)
		}
	}
	if h := mustHead(t, s); h != 2 {
		t.Fatalf("Head = %d, want 2 (conflicts commit nothing)", h)
	}
	// The next version still goes through, at the next seq.
	got := mustAppend(t, s, event(a, 3, a))
	if got[0].Seq != 3 {
		t.Fatalf("seq after conflicts = %d, want 3 (no gap)", got[0].Seq)
	}
}

func testConcurrentSameVersion(t *testing.T, s events.Store) {
	const rounds, writers = 10, 4
	a := uuid.NewString()
	mustAppend(t, s, event(a, 1, a))
	for r := range rounds {
		version := int64(r + 2)
		var wg sync.WaitGroup
		errs := make([]error, writers)
		start := make(chan struct{})
		for w := range writers {
			wg.Go(func() {
				<-start
				_, errs[w] = s.Append(ctxFor(t), events.AppendRequest{ExpectedHead: events.AnyHead, Events: []events.Envelope{event(a, version, a)}})
			})
		}
		close(start)
		wg.Wait()
		wins := 0
		for _, err := range errs {
			switch {
			case err == nil:
				wins++
			case !errors.Is(err, events.ErrVersionConflict):
				t.Fatalf("round %d: Append = %v, want nil or ErrVersionConflict", r, err)
			}
		}
		if wins != 1 {
			t.Fatalf("round %d: %d writers of version %d won, want exactly 1", r, wins, version)
		}
	}
	if h := mustHead(t, s); h != rounds+1 {
		t.Fatalf("Head = %d, want %d", h, rounds+1)
	}
}

func testConflictingBatch(t *testing.T, s events.Store) {
	a, b := uuid.NewString(), uuid.NewString()
	mustAppend(t, s, event(a, 1, a))
	batch := []events.Envelope{event(b, 1, b), event(b, 2, b), event(a, 1, a), event(b, 3, b)}
	_, err := s.Append(ctxFor(t), events.AppendRequest{ExpectedHead: events.AnyHead, Events: batch})
	if !errors.Is(err, events.ErrVersionConflict) {
		t.Fatalf("Append = %v, want ErrVersionConflict", err)
	}
	if h := mustHead(t, s); h != 1 {
		t.Fatalf("Head = %d, want 1", h)
	}
	if got := mustRead(t, s, events.Query{AggregateID: b}); len(got) != 0 {
		t.Fatalf("events of the failed batch are readable: %v", seqs(got))
	}
	// A batch that conflicts with itself fails the same way.
	_, err = s.Append(ctxFor(t), events.AppendRequest{ExpectedHead: events.AnyHead, Events: []events.Envelope{event(b, 1, b), event(b, 1, b)}})
	if !errors.Is(err, events.ErrVersionConflict) {
		t.Fatalf("self-conflicting batch: Append = %v, want ErrVersionConflict", err)
	}
	if got := mustAppend(t, s, event(b, 1, b)); got[0].Seq != 2 {
		t.Fatalf("seq after failed batches = %d, want 2", got[0].Seq)
	}
}

// largeBatch is more events than any store's small-append path takes (an
// apply of a large document): they go through COPY on PostgreSQL and chunked
// inserts on SQLite.
const largeBatch = 3000

// testLargeBatch appends a large batch whose fields hold characters that
// text formats escape (backslashes, tabs, newlines, quotes) and reads it
// back exactly.
func testLargeBatch(t *testing.T, s events.Store) {
	mustAppend(t, s, event(uuid.NewString(), 1, "t"))
	in := make([]events.Envelope, largeBatch)
	for i := range in {
		in[i] = event(uuid.NewString(), 1, "tenant\\with\tspecial\n"+strconv.Itoa(i))
		in[i].Actor = "alice \\N \t\r\n \"quoted\" é"
		in[i].ActorKeyID = "key\\" + strconv.Itoa(i)
		in[i].Data = json.RawMessage(fmt.Sprintf(`{"path":"C:\\dir\\n%d","text":"tab\there\nnewline","n":%d,`+"\n\t"+`"u":"\u00e9"}`, i, i))
	}
	out, err := s.Append(ctxFor(t), events.AppendRequest{ExpectedHead: 1, Events: in})
	if err != nil {
		t.Fatalf("Append of %d events: %v", largeBatch, err)
	}
	if out[0].Seq != 2 || out[len(out)-1].Seq != largeBatch+1 {
		t.Fatalf("seqs %d..%d, want 2..%d", out[0].Seq, out[len(out)-1].Seq, largeBatch+1)
	}
	read := mustRead(t, s, events.Query{After: 1})
	if len(read) != largeBatch {
		t.Fatalf("Read = %d events, want %d", len(read), largeBatch)
	}
	for i, got := range read {
		want := out[i]
		var gd, wd any
		if json.Unmarshal(got.Data, &gd) != nil || json.Unmarshal(want.Data, &wd) != nil || !reflect.DeepEqual(gd, wd) {
			t.Fatalf("event %d: data %s, want %s", i, got.Data, want.Data)
		}
		got.Data, want.Data = nil, nil
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("event %d:\n got %+v\nwant %+v", i, got, want)
		}
	}
}

// testLargeConflictingBatch: a large batch with one conflicting event near
// its end commits nothing.
func testLargeConflictingBatch(t *testing.T, s events.Store) {
	a := uuid.NewString()
	mustAppend(t, s, event(a, 1, a))
	in := make([]events.Envelope, largeBatch)
	for i := range in {
		in[i] = event(uuid.NewString(), 1, "t")
	}
	in[largeBatch-2] = event(a, 1, a)
	if _, err := s.Append(ctxFor(t), events.AppendRequest{ExpectedHead: events.AnyHead, Events: in}); !errors.Is(err, events.ErrVersionConflict) {
		t.Fatalf("Append = %v, want ErrVersionConflict", err)
	}
	if _, err := s.Append(ctxFor(t), events.AppendRequest{ExpectedHead: 0, Events: in[:largeBatch-2]}); !errors.Is(err, events.ErrHeadMoved) {
		t.Fatalf("Append at a stale head = %v, want ErrHeadMoved", err)
	}
	if h := mustHead(t, s); h != 1 {
		t.Fatalf("Head = %d after failed batches, want 1", h)
	}
	if got := mustAppend(t, s, in[:largeBatch-2]...); got[len(got)-1].Seq != largeBatch-1 {
		t.Fatalf("seq after the failed batches = %d, want %d", got[len(got)-1].Seq, largeBatch-1)
	}
}

func testExpectedHead(t *testing.T, s events.Store) {
	a := uuid.NewString()
	tests := []struct {
		name    string
		head    int64
		version int64
		wantErr error
	}{
		{"empty log, expected 0", 0, 1, nil},
		{"expected the current head", 1, 2, nil},
		{"stale head", 1, 3, events.ErrHeadMoved},
		{"head from the future", 7, 3, events.ErrHeadMoved},
		{"any head", events.AnyHead, 3, nil},
	}
	for _, tt := range tests {
		before := mustHead(t, s)
		_, err := s.Append(ctxFor(t), events.AppendRequest{ExpectedHead: tt.head, Events: []events.Envelope{event(a, tt.version, a)}})
		if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
			t.Fatalf("%s: Append = %v, want %v", tt.name, err, tt.wantErr)
		}
		after := mustHead(t, s)
		if tt.wantErr != nil && after != before {
			t.Fatalf("%s: head moved from %d to %d on a failed append", tt.name, before, after)
		}
	}
}

func testQueryFilters(t *testing.T, s events.Store) {
	t1, t2 := uuid.NewString(), uuid.NewString()
	r1 := uuid.NewString()
	route := func(id string, v int64, tenant string) events.Envelope {
		e := event(id, v, tenant)
		e.Type, e.AggregateType = events.RouteCreated, events.AggregateRoute
		return e
	}
	// seq: 1 t1, 2 t2, 3 r1(t1), 4 t1 v2, 5 r1 v2, 6 t2 v2
	mustAppend(t, s, event(t1, 1, t1), event(t2, 1, t2))
	mustAppend(t, s, route(r1, 1, t1))
	mustAppend(t, s, event(t1, 2, t1), route(r1, 2, t1), event(t2, 2, t2))
	tests := []struct {
		name string
		q    events.Query
		want []int64
	}{
		{"all", events.Query{}, []int64{1, 2, 3, 4, 5, 6}},
		{"after", events.Query{After: 4}, []int64{5, 6}},
		{"after the head", events.Query{After: 6}, []int64{}},
		{"until", events.Query{Until: 2}, []int64{1, 2}},
		{"after and until", events.Query{After: 2, Until: 4}, []int64{3, 4}},
		{"limit", events.Query{Limit: 4}, []int64{1, 2, 3, 4}},
		{"after and limit", events.Query{After: 3, Limit: 2}, []int64{4, 5}},
		{"aggregate type", events.Query{AggregateType: events.AggregateRoute}, []int64{3, 5}},
		{"aggregate id", events.Query{AggregateID: t1}, []int64{1, 4}},
		{"tenant", events.Query{TenantID: t1}, []int64{1, 3, 4, 5}},
		{"tenant and type", events.Query{TenantID: t1, AggregateType: events.AggregateTenant}, []int64{1, 4}},
		{"tenant, after, limit", events.Query{TenantID: t2, After: 1, Limit: 1}, []int64{2}},
		{"unknown tenant", events.Query{TenantID: uuid.NewString()}, []int64{}},
		{"tenant list", events.Query{TenantIDs: []string{t2, uuid.NewString()}}, []int64{2, 6}},
		{"tenant list, after, limit", events.Query{TenantIDs: []string{t1, t2}, After: 2, Limit: 2}, []int64{3, 4}},
		{"empty tenant list", events.Query{TenantIDs: []string{}}, []int64{}},
	}
	for _, tt := range tests {
		got := seqs(mustRead(t, s, tt.q))
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: Read(%+v) seqs = %v, want %v", tt.name, tt.q, got, tt.want)
		}
	}
}

// testConcurrentAppendsAndTail: 16 writers append 250 events each while a
// reader tails the log; the reader must see 1..4000 once each, in order.
func testConcurrentAppendsAndTail(t *testing.T, s events.Store) {
	const writers, perWriter = 16, 250
	const total = writers * perWriter
	ctx := ctxFor(t)

	tail := make(chan error, 1)
	writersDone := make(chan struct{})
	go func() {
		var last int64
		var deadline time.Time // set once the writers are done
		for last < total {
			select {
			case <-writersDone:
				if deadline.IsZero() {
					deadline = time.Now().Add(30 * time.Second)
				}
			default:
			}
			if !deadline.IsZero() && time.Now().After(deadline) {
				tail <- fmt.Errorf("tail stopped at seq %d of %d", last, total)
				return
			}
			evs, err := s.Read(ctx, events.Query{After: last, Limit: 500})
			if err != nil {
				tail <- err
				return
			}
			for _, e := range evs {
				if e.Seq != last+1 {
					tail <- fmt.Errorf("reader saw seq %d after %d", e.Seq, last)
					return
				}
				last = e.Seq
			}
			if len(evs) == 0 {
				time.Sleep(time.Millisecond) // poll interval of the tail, not a wait for an outcome
			}
		}
		tail <- nil
	}()

	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for range writers {
		wg.Go(func() {
			agg := uuid.NewString()
			for v := int64(1); v <= perWriter; v++ {
				if _, err := s.Append(ctx, events.AppendRequest{ExpectedHead: events.AnyHead, Events: []events.Envelope{event(agg, v, agg)}}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(writersDone)
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent Append: %v", err)
	}
	if err := <-tail; err != nil {
		t.Fatal(err)
	}
	if h := mustHead(t, s); h != total {
		t.Fatalf("Head = %d, want %d", h, total)
	}
	all := mustRead(t, s, events.Query{})
	perAgg := map[string]int64{}
	for i, e := range all {
		if e.Seq != int64(i+1) {
			t.Fatalf("seq %d at position %d: not gap-free", e.Seq, i)
		}
		// Per aggregate, versions appear in order.
		if e.AggregateVersion != perAgg[e.AggregateID]+1 {
			t.Fatalf("aggregate %s: version %d after %d", e.AggregateID, e.AggregateVersion, perAgg[e.AggregateID])
		}
		perAgg[e.AggregateID] = e.AggregateVersion
	}
}
