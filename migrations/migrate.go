// Package migrations holds the event store's schema, one set of SQL files per
// dialect (postgres, sqlite), embedded in the binary and applied with
// bun/migrate. Migrate is safe to run from several instances at once.
package migrations

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
	"github.com/uptrace/bun/migrate"
)

//go:embed postgres/*.sql sqlite/*.sql
var files embed.FS

// migrateLockKey is the PostgreSQL session advisory lock every Migrate takes,
// so that concurrent Init (CREATE TABLE IF NOT EXISTS) calls cannot race. It is
// distinct from the store's append lock.
const migrateLockKey int64 = 0x7467_6d69_6772_6174 // "tgmigrat"

// lockWait bounds how long Migrate waits for another instance's migration.
const lockWait = 2 * time.Minute

// Migrate applies every migration that db has not applied yet. db must use the
// PostgreSQL or the SQLite dialect.
func Migrate(ctx context.Context, db *bun.DB) error {
	name := db.Dialect().Name()
	var dir string
	switch name {
	case dialect.PG:
		dir = "postgres"
	case dialect.SQLite:
		dir = "sqlite"
	default:
		return fmt.Errorf("migrations: unsupported dialect %s", name)
	}
	sub, err := fs.Sub(files, dir)
	if err != nil {
		return err
	}
	ms := migrate.NewMigrations()
	if err := ms.Discover(sub); err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	// Mark a migration applied only once it ran, so a failed one is retried.
	m := migrate.NewMigrator(db, ms, migrate.WithMarkAppliedOnSuccess(true))

	ctx, cancel := context.WithTimeout(ctx, lockWait)
	defer cancel()
	if name == dialect.PG {
		unlock, err := pgSessionLock(ctx, db)
		if err != nil {
			return err
		}
		defer unlock()
	}
	if err := m.Init(ctx); err != nil {
		return fmt.Errorf("migrations: init: %w", err)
	}
	if err := lock(ctx, m, name == dialect.PG); err != nil {
		return err
	}
	defer func() { _ = m.Unlock(context.WithoutCancel(ctx)) }()
	if _, err := m.Migrate(ctx); err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	return nil
}

// pgSessionLock takes the migration advisory lock on a dedicated connection
// and returns the function that releases it.
func pgSessionLock(ctx context.Context, db *bun.DB) (func(), error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrations: connect: %w", err)
	}
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock(?)", migrateLockKey); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("migrations: advisory lock: %w", err)
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = conn.ExecContext(ctx, "SELECT pg_advisory_unlock(?)", migrateLockKey)
		// Closing the connection releases the lock anyway if the unlock failed.
		_ = conn.Close()
	}, nil
}

// lock takes bun/migrate's table lock, waiting while another instance holds
// it. Under the PostgreSQL advisory lock nobody else can be migrating, so a
// lock row found there was left by a crashed run and is cleared.
func lock(ctx context.Context, m *migrate.Migrator, exclusive bool) error {
	if exclusive {
		if err := m.Lock(ctx); err == nil {
			return nil
		}
		if err := m.Unlock(ctx); err != nil {
			return fmt.Errorf("migrations: clear stale lock: %w", err)
		}
		if err := m.Lock(ctx); err != nil {
			return fmt.Errorf("migrations: %w", err)
		}
		return nil
	}
	wait := 50 * time.Millisecond
	for {
		err := m.Lock(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("migrations: waiting for the migration lock (a crashed run may have left a row in bun_migration_locks): %w",
				errors.Join(err, ctx.Err()))
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}
