package migrations_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/events/testenv"
	"github.com/tenantgate/gateway/migrations"
)

// TestMigrateConcurrently runs Migrate from several "instances" (separate
// connection pools) at the same moment, then again: every call succeeds and
// the schema works.
func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		open func(ctx context.Context, t *testing.T) func() (*events.SQLStore, error)
	}{
		{"postgres", func(ctx context.Context, t *testing.T) func() (*events.SQLStore, error) {
			dsn := testenv.Postgres(t)
			return func() (*events.SQLStore, error) { return events.OpenPostgres(ctx, dsn) }
		}},
		{"sqlite", func(ctx context.Context, t *testing.T) func() (*events.SQLStore, error) {
			path := filepath.Join(t.TempDir(), "events.db")
			return func() (*events.SQLStore, error) { return events.OpenSQLite(ctx, path) }
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			open := tt.open(ctx, t)
			const instances = 4
			stores := make([]*events.SQLStore, instances)
			for i := range stores {
				s, err := open()
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				stores[i] = s
			}
			for round := range 2 {
				var wg sync.WaitGroup
				errs := make([]error, instances)
				for i, s := range stores {
					wg.Go(func() { errs[i] = migrations.Migrate(ctx, s.DB()) })
				}
				wg.Wait()
				for i, err := range errs {
					if err != nil {
						t.Fatalf("round %d, instance %d: Migrate: %v", round, i, err)
					}
				}
			}
			ev := events.Envelope{ID: "e1", Type: events.TenantCreated, AggregateType: events.AggregateTenant,
				AggregateID: "t1", AggregateVersion: 1, OccurredAt: time.Now(), Data: []byte(`{}`)}
			if _, err := stores[0].Append(ctx, events.AppendRequest{ExpectedHead: 0, Events: []events.Envelope{ev}}); err != nil {
				t.Fatalf("Append after Migrate: %v", err)
			}
			if h, err := stores[instances-1].Head(ctx); err != nil || h != 1 {
				t.Fatalf("Head from another instance = %d, %v; want 1", h, err)
			}
		})
	}
}

// TestMigrateClearsStaleLockOnPostgres: a lock row left by a crashed run does
// not block later runs on PostgreSQL, where the advisory lock proves nobody
// else is migrating.
func TestMigrateClearsStaleLockOnPostgres(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := events.OpenPostgres(ctx, testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := migrations.Migrate(ctx, s.DB()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB().ExecContext(ctx, "INSERT INTO bun_migration_locks (table_name) VALUES ('bun_migrations')"); err != nil {
		t.Fatalf("plant a stale lock: %v", err)
	}
	if err := migrations.Migrate(ctx, s.DB()); err != nil {
		t.Fatalf("Migrate with a stale lock: %v", err)
	}
	var n int
	if err := s.DB().NewRaw("SELECT count(*) FROM bun_migration_locks").Scan(ctx, &n); err != nil || n != 0 {
		t.Fatalf("lock rows after Migrate = %d, %v; want 0", n, err)
	}
}
