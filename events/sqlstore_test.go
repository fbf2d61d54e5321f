package events_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/events/bustest"
	"github.com/tenantgate/gateway/events/storetest"
	"github.com/tenantgate/gateway/events/testenv"
	"github.com/tenantgate/gateway/migrations"
)

func openPostgres(t testing.TB) *events.SQLStore {
	t.Helper()
	s, _ := openPostgresDSN(t)
	return s
}

// openPostgresDSN opens a fresh migrated database and returns its DSN too.
func openPostgresDSN(t testing.TB) (*events.SQLStore, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dsn := testenv.Postgres(t)
	s, err := events.OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatalf("OpenPostgres: %v", err)
	}
	if err := migrations.Migrate(ctx, s.DB()); err != nil {
		_ = s.Close()
		t.Fatalf("Migrate: %v", err)
	}
	return s, dsn
}

func openSQLite(t testing.TB) *events.SQLStore {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := events.OpenSQLite(ctx, filepath.Join(t.TempDir(), "nested", "events.db"))
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	if err := migrations.Migrate(ctx, s.DB()); err != nil {
		_ = s.Close()
		t.Fatalf("Migrate: %v", err)
	}
	return s
}

func TestPostgresStore(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) events.Store { return openPostgres(t) })
}

func TestSQLiteStore(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) events.Store { return openSQLite(t) })
}

func TestKind(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		open func(testing.TB) *events.SQLStore
		want string
	}{
		{"postgres", openPostgres, "postgres"},
		{"sqlite", openSQLite, "sqlite"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := tt.open(t)
			defer s.Close()
			if got := s.Kind(); got != tt.want {
				t.Fatalf("Kind = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestOpenPostgresUnreachable(t *testing.T) {
	t.Parallel()
	start := time.Now()
	_, err := events.OpenPostgres(context.Background(), "postgres://postgres@127.0.0.1:1/x?sslmode=disable")
	if !errors.Is(err, events.ErrUnavailable) {
		t.Fatalf("OpenPostgres on a closed port = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("OpenPostgres took %v to fail", d)
	}
}

// TestPostgresOutage: with PostgreSQL unreachable every call fails quickly
// (its timeout, plus the one-second ping that tells an unreachable database
// from a slow one) with ErrUnavailable; once it is back the store works again.
func TestPostgresOutage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	direct, dsn := openPostgresDSN(t)
	defer direct.Close()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newFaultProxy(t, u.Host)
	u.Host = proxy.addr()
	s, err := events.OpenPostgres(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	appendN(t, s, 3)

	calls := []struct {
		name string
		call func() error
	}{
		{"Append", func() error {
			_, err := s.Append(ctx, events.AppendRequest{ExpectedHead: events.AnyHead, Events: []events.Envelope{bustest.Event(1)}})
			return err
		}},
		{"Read", func() error { _, err := s.Read(ctx, events.Query{}); return err }},
		{"Head", func() error { _, err := s.Head(ctx); return err }},
	}
	outages := []struct {
		name string
		set  func()
	}{
		{"connections refused", func() { proxy.setDown(true) }},
		{"black hole", func() { proxy.setHang(true) }},
	}
	for _, o := range outages {
		o.set()
		var wg sync.WaitGroup
		for _, c := range calls {
			wg.Go(func() {
				start := time.Now()
				if err := c.call(); !errors.Is(err, events.ErrUnavailable) {
					t.Errorf("%s, %s: %v, want ErrUnavailable", o.name, c.name, err)
				}
				if d := time.Since(start); d > 7*time.Second {
					t.Errorf("%s, %s took %v to fail", o.name, c.name, d)
				}
			})
		}
		wg.Wait()
	}

	proxy.setHang(false)
	deadline := time.Now().Add(10 * time.Second)
	for {
		h, err := s.Head(ctx)
		if err == nil {
			if h != 3 {
				t.Fatalf("Head after the outage = %d, want 3", h)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("store still failing after PostgreSQL came back: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
	if got := appendN(t, s, 1); got != 4 {
		t.Fatalf("seq after the outage = %d, want 4", got)
	}
}

// TestSlowAppendOnAHealthyStoreIsATimeout: an append that runs past its
// deadline while PostgreSQL answers (here: waiting for the append lock that
// another session holds) fails with ErrTimeout, not ErrUnavailable.
func TestSlowAppendOnAHealthyStoreIsATimeout(t *testing.T) {
	t.Parallel()
	s := openPostgres(t)
	defer s.Close()
	ctx := context.Background()
	conn, err := s.DB().Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const appendLockKey = 0x7467_6170_7065_6e64 // the store's
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock(?)", int64(appendLockKey)); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1, 300} { // the insert and the COPY paths
		evs := make([]events.Envelope, n)
		for i := range evs {
			evs[i] = bustest.Event(int64(i + 1))
		}
		short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		_, err := s.Append(short, events.AppendRequest{ExpectedHead: events.AnyHead, Events: evs})
		cancel()
		if !errors.Is(err, events.ErrTimeout) || errors.Is(err, events.ErrUnavailable) {
			t.Fatalf("%d events: Append = %v, want ErrTimeout", n, err)
		}
	}
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_unlock(?)", int64(appendLockKey)); err != nil {
		t.Fatal(err)
	}
	if got := appendN(t, s, 1); got != 1 {
		t.Fatalf("seq after the timeouts = %d, want 1 (nothing committed)", got)
	}
}

// TestSQLiteReadsAwkwardText holds SQLite reads, which pack a row's text
// columns into one blob and cut it up, to exactly what was appended,
// whatever the text holds: the packing's own separators and digits,
// multi-byte runes, empty and long strings; on their own, among plain rows,
// in pages and filtered. (SQLite drops NUL bytes from text when it is
// written, packing or not.) A row the packing cannot carry, a blob holding
// a NUL where text belongs, which printf's %s would cut short, is read
// column by column.
func TestSQLiteReadsAwkwardText(t *testing.T) {
	t.Parallel()
	s := openSQLite(t)
	defer s.Close()
	ctx := context.Background()
	awkward := []string{"", "1,2;3", ";", ",,,", "9", "0;", "é€😀", strings.Repeat("x,", 500)}
	at := time.Date(2026, 3, 4, 5, 6, 7, 123456000, time.UTC)
	var in []events.Envelope
	for i := range 40 {
		w := func(k int) string { return awkward[(i+k)%len(awkward)] }
		ev := events.Envelope{
			ID: fmt.Sprintf("id%d%s", i, w(0)), Type: events.Type("T" + w(1)), AggregateType: events.AggregateType(w(2)),
			AggregateID: fmt.Sprintf("agg%d%s", i, w(3)), AggregateVersion: 1, TenantID: w(4), Actor: w(5), ActorKeyID: w(6),
			OccurredAt: at.Add(time.Duration(i) * time.Microsecond), Data: jsonString(t, w(7)),
		}
		if i%3 == 0 { // plain rows between the awkward ones
			ev.ID, ev.AggregateID, ev.TenantID, ev.Actor, ev.ActorKeyID = fmt.Sprintf("plain%d", i), fmt.Sprintf("pagg%d", i), "t", "cli", ""
		}
		in = append(in, ev)
	}
	appended, err := s.Append(ctx, events.AppendRequest{ExpectedHead: events.AnyHead, Events: in})
	if err != nil {
		t.Fatal(err)
	}
	check := func(t *testing.T, got, want []events.Envelope) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("read %d events, want %d", len(got), len(want))
		}
		for i := range want {
			if !reflect.DeepEqual(got[i], want[i]) {
				t.Errorf("event %d = %+v, want %+v", i, got[i], want[i])
			}
		}
	}
	t.Run("all", func(t *testing.T) {
		got, err := s.Read(ctx, events.Query{})
		if err != nil {
			t.Fatal(err)
		}
		check(t, got, appended)
	})
	t.Run("pages", func(t *testing.T) {
		var got []events.Envelope
		for after := int64(0); ; {
			page, err := s.Read(ctx, events.Query{After: after, Limit: 7})
			if err != nil {
				t.Fatal(err)
			}
			if len(page) == 0 {
				break
			}
			got, after = append(got, page...), page[len(page)-1].Seq
		}
		check(t, got, appended)
	})
	t.Run("filtered", func(t *testing.T) {
		for _, want := range appended {
			got, err := s.Read(ctx, events.Query{AggregateID: want.AggregateID})
			if err != nil {
				t.Fatal(err)
			}
			check(t, got, []events.Envelope{want})
		}
	})
	t.Run("not packable", func(t *testing.T) {
		if _, err := s.DB().ExecContext(ctx, `INSERT INTO events (seq, id, type, aggregate_type, aggregate_id, aggregate_version, actor, occurred_at, data)
			VALUES (1000, 'odd', 'T', 'tenant', 'odd', 1, x'610062', '2026-03-04T05:06:07.000001Z', '{}')`); err != nil {
			t.Fatal(err)
		}
		got, err := s.Read(ctx, events.Query{After: appended[len(appended)-2].Seq})
		if err != nil {
			t.Fatal(err)
		}
		want := []events.Envelope{appended[len(appended)-1], {
			Seq: 1000, ID: "odd", Type: "T", AggregateType: events.AggregateTenant, AggregateID: "odd", AggregateVersion: 1,
			Actor: "a\x00b", OccurredAt: time.Date(2026, 3, 4, 5, 6, 7, 1000, time.UTC), Data: json.RawMessage(`{}`),
		}}
		check(t, got, want)
	})
}

func jsonString(t *testing.T, v string) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(map[string]string{"s": v})
	if err != nil {
		t.Fatal(err)
	}
	return b
}
