package events_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/events/storetest"
	"github.com/tenantgate/gateway/events/testenv"
	"github.com/tenantgate/gateway/migrations"
)

func openPostgres(t testing.TB) *events.SQLStore {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := events.OpenPostgres(ctx, testenv.Postgres(t))
	if err != nil {
		t.Fatalf("OpenPostgres: %v", err)
	}
	if err := migrations.Migrate(ctx, s.DB()); err != nil {
		_ = s.Close()
		t.Fatalf("Migrate: %v", err)
	}
	return s
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
