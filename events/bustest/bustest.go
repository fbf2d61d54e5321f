// Package bustest is the conformance suite every events.Bus must pass, and
// helpers to consume a subscription in tests.
package bustest

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/tenantgate/gateway/events"
)

// Wait bounds every wait of the suite for a delivery.
const Wait = 10 * time.Second

// Run runs the suite. open must return a new, empty bus; Run closes it.
func Run(t *testing.T, open func(t *testing.T) events.Bus) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, b events.Bus)
	}{
		{"LastSeq", testLastSeq},
		{"Ordering", testOrdering},
		{"IdempotentPublish", testIdempotent},
		{"PublishAfter", testPublishAfter},
		{"SubscribeFromOffset", testOffset},
		{"LiveDelivery", testLive},
		{"TwoSubscribers", testTwoSubscribers},
		{"CancelClosesChannel", testCancel},
		{"DropAfter", testDropAfter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := open(t)
			t.Cleanup(func() { _ = b.Close() })
			tt.fn(t, b)
		})
	}
}

// Event returns a minimal valid event with the given seq.
func Event(seq int64) events.Envelope {
	return events.Envelope{
		Seq:              seq,
		ID:               fmt.Sprintf("ev-%d", seq),
		Type:             events.TenantUpdated,
		AggregateType:    events.AggregateTenant,
		AggregateID:      "agg",
		AggregateVersion: seq,
		TenantID:         "agg",
		Actor:            "bustest",
		OccurredAt:       time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC),
		Data:             json.RawMessage(fmt.Sprintf(`{"n":%d}`, seq)),
	}
}

// Events returns Event(from) .. Event(to).
func Events(from, to int64) []events.Envelope {
	var out []events.Envelope
	for s := from; s <= to; s++ {
		out = append(out, Event(s))
	}
	return out
}

// Context returns a context cancelled when t ends.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx
}

// Next returns the next delivery, failing t if none comes within Wait or the
// channel closes.
func Next(t testing.TB, ch <-chan events.Delivery) events.Delivery {
	t.Helper()
	select {
	case d, ok := <-ch:
		if !ok {
			t.Fatalf("subscription closed")
		}
		return d
	case <-time.After(Wait):
		t.Fatalf("no delivery within %v", Wait)
	}
	return events.Delivery{}
}

// Collect reads events until it has seen seq `until`, failing on a Resync,
// on an event out of order (each must be the previous seq + 1, starting at
// from) or on a timeout. It returns the events' seqs.
func Collect(t testing.TB, ch <-chan events.Delivery, from, until int64) []int64 {
	t.Helper()
	var got []int64
	next := from
	for next <= until {
		d := Next(t, ch)
		if d.Resync {
			t.Fatalf("unexpected Resync after seqs %v", got)
		}
		if d.Event.Seq != next {
			t.Fatalf("got seq %d, want %d (after %v)", d.Event.Seq, next, got)
		}
		got = append(got, d.Event.Seq)
		next++
	}
	return got
}

// Quiet fails t if a delivery arrives within d.
func Quiet(t testing.TB, ch <-chan events.Delivery, d time.Duration) {
	t.Helper()
	select {
	case dl, ok := <-ch:
		if ok {
			t.Fatalf("unexpected delivery %+v", dl)
		}
	case <-time.After(d):
	}
}

func publish(t *testing.T, b events.Bus, evs ...events.Envelope) {
	t.Helper()
	if err := b.Publish(Context(t), evs...); err != nil {
		t.Fatalf("Publish: %v", err)
	}
}

func lastSeq(t *testing.T, b events.Bus) int64 {
	t.Helper()
	n, err := b.LastSeq(Context(t))
	if err != nil {
		t.Fatalf("LastSeq: %v", err)
	}
	return n
}

func subscribe(t *testing.T, b events.Bus, after int64) <-chan events.Delivery {
	t.Helper()
	ch, err := b.Subscribe(Context(t), after)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	return ch
}

func testLastSeq(t *testing.T, b events.Bus) {
	if n := lastSeq(t, b); n != 0 {
		t.Fatalf("LastSeq of an empty bus = %d, want 0", n)
	}
	publish(t, b, Events(1, 3)...)
	if n := lastSeq(t, b); n != 3 {
		t.Fatalf("LastSeq = %d, want 3", n)
	}
	publish(t, b, Event(4))
	publish(t, b, Event(2)) // a stale republish does not move it back
	if n := lastSeq(t, b); n != 4 {
		t.Fatalf("LastSeq = %d, want 4", n)
	}
}

func testOrdering(t *testing.T, b events.Bus) {
	for from := int64(1); from <= 300; from += 30 {
		publish(t, b, Events(from, from+29)...)
	}
	ch := subscribe(t, b, 0)
	Collect(t, ch, 1, 300)

	// The payload arrives intact.
	ch = subscribe(t, b, 41)
	d := Next(t, ch)
	want := Event(42)
	var gotData, wantData any
	_ = json.Unmarshal(d.Event.Data, &gotData)
	_ = json.Unmarshal(want.Data, &wantData)
	if !reflect.DeepEqual(gotData, wantData) || !d.Event.OccurredAt.Equal(want.OccurredAt) {
		t.Fatalf("delivered %+v, want %+v", d.Event, want)
	}
	d.Event.Data, want.Data = nil, nil
	d.Event.OccurredAt, want.OccurredAt = time.Time{}, time.Time{}
	if !reflect.DeepEqual(d.Event, want) {
		t.Fatalf("delivered %+v, want %+v", d.Event, want)
	}
}

func testIdempotent(t *testing.T, b events.Bus) {
	publish(t, b, Events(1, 10)...)
	publish(t, b, Events(5, 12)...) // overlaps: 5..10 skipped, 11, 12 added
	publish(t, b, Events(1, 12)...) // all known
	ch := subscribe(t, b, 0)
	Collect(t, ch, 1, 12)
	Quiet(t, ch, 300*time.Millisecond)
	if n := lastSeq(t, b); n != 12 {
		t.Fatalf("LastSeq = %d, want 12", n)
	}
}

// testPublishAfter: a batch is published only on top of the last seq it
// names; on a bus that moved (ahead, or behind after losing events) nothing
// of it is.
func testPublishAfter(t *testing.T, b events.Bus) {
	publishAfter := func(after int64, evs ...events.Envelope) bool {
		t.Helper()
		ok, err := b.PublishAfter(Context(t), after, evs...)
		if err != nil {
			t.Fatalf("PublishAfter(%d): %v", after, err)
		}
		return ok
	}
	if !publishAfter(0, Events(1, 3)...) {
		t.Fatal("PublishAfter(0) on an empty bus refused")
	}
	if publishAfter(2, Events(3, 5)...) {
		t.Fatal("PublishAfter(2) accepted on a bus at 3")
	}
	if publishAfter(5, Events(6, 7)...) {
		t.Fatal("PublishAfter(5) accepted on a bus at 3")
	}
	if n := lastSeq(t, b); n != 3 {
		t.Fatalf("LastSeq after refused publishes = %d, want 3", n)
	}
	if !publishAfter(3, Events(4, 6)...) {
		t.Fatal("PublishAfter(3) on a bus at 3 refused")
	}
	ch := subscribe(t, b, 0)
	Collect(t, ch, 1, 6)
	Quiet(t, ch, 300*time.Millisecond)
}

func testOffset(t *testing.T, b events.Bus) {
	publish(t, b, Events(1, 20)...)
	tests := []struct {
		name  string
		after int64
	}{
		{"from the start", 0},
		{"from the middle", 7},
		{"from the last", 19},
	}
	for _, tt := range tests {
		ch := subscribe(t, b, tt.after)
		Collect(t, ch, tt.after+1, 20)
	}
	// Subscribed at the head, nothing arrives until the next publish.
	ch := subscribe(t, b, 20)
	Quiet(t, ch, 300*time.Millisecond)
	publish(t, b, Event(21))
	Collect(t, ch, 21, 21)
}

func testLive(t *testing.T, b events.Bus) {
	ch := subscribe(t, b, 0)
	done := make(chan []int64, 1)
	go func() {
		done <- collectQuiet(ch, 1, 200)
	}()
	for from := int64(1); from <= 200; from += 10 {
		publish(t, b, Events(from, from+9)...)
	}
	select {
	case got := <-done:
		if len(got) != 200 {
			t.Fatalf("live subscriber got %d events in order, want 200 (got %v)", len(got), got)
		}
	case <-time.After(2 * Wait):
		t.Fatal("live subscriber did not finish")
	}
}

// collectQuiet is Collect without t, for other goroutines: it stops at the
// first unexpected delivery and returns the in-order prefix.
func collectQuiet(ch <-chan events.Delivery, from, until int64) []int64 {
	var got []int64
	for next := from; next <= until; next++ {
		select {
		case d, ok := <-ch:
			if !ok || d.Resync || d.Event.Seq != next {
				return got
			}
			got = append(got, next)
		case <-time.After(Wait):
			return got
		}
	}
	return got
}

func testTwoSubscribers(t *testing.T, b events.Bus) {
	a, c := subscribe(t, b, 0), subscribe(t, b, 0)
	publish(t, b, Events(1, 50)...)
	Collect(t, a, 1, 50)
	Collect(t, c, 1, 50)
}

func testCancel(t *testing.T, b events.Bus) {
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := b.Subscribe(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	publish(t, b, Event(1))
	Collect(t, ch, 1, 1)
	cancel()
	deadline := time.After(Wait)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatalf("channel still open %v after cancel", Wait)
		}
	}
}

// testDropAfter: events dropped after a seq are not delivered, and that seq's
// successors can be published again (another history after a restore).
func testDropAfter(t *testing.T, b events.Bus) {
	if n, err := b.DropAfter(Context(t), 0); err != nil || n != 0 {
		t.Fatalf("DropAfter on an empty bus = %d, %v; want 0, nil", n, err)
	}
	publish(t, b, Events(1, 5)...)
	if n, err := b.DropAfter(Context(t), 3); err != nil || n != 2 {
		t.Fatalf("DropAfter(3) of 1..5 = %d, %v; want 2, nil", n, err)
	}
	if n := lastSeq(t, b); n != 3 {
		t.Fatalf("LastSeq after DropAfter(3) = %d, want 3", n)
	}
	if n, err := b.DropAfter(Context(t), 7); err != nil || n != 0 || lastSeq(t, b) != 3 {
		t.Fatalf("DropAfter(7) of 1..3 = %d, %v, LastSeq %d; want 0, nil, 3", n, err, lastSeq(t, b))
	}
	other := Events(4, 6)
	for i := range other {
		other[i].ID = fmt.Sprintf("other-%d", other[i].Seq)
	}
	publish(t, b, other...)
	ch := subscribe(t, b, 2)
	for seq := int64(3); seq <= 6; seq++ {
		d := Next(t, ch)
		want := Event(seq).ID
		if seq > 3 {
			want = fmt.Sprintf("other-%d", seq)
		}
		if d.Resync || d.Event.Seq != seq || d.Event.ID != want {
			t.Fatalf("delivered %+v, want seq %d id %s", d, seq, want)
		}
	}
	Quiet(t, ch, 300*time.Millisecond)
}
