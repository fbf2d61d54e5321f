package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/tenantgate/gateway/admin"
	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/migrations"
	"github.com/tenantgate/gateway/projections"
)

// openMigratedStore is openStore with the schema migrated, for the commands
// that use the store directly.
func openMigratedStore(ctx context.Context, cfg Config) (*events.SQLStore, error) {
	store, err := openStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := migrations.Migrate(ctx, store.DB()); err != nil {
		_ = store.Close()
		return nil, fmt.Errorf("migrate: %w", err)
	}
	return store, nil
}

// openStore opens PostgreSQL when DATABASE_URL is set, else the embedded SQLite
// store under DATA_DIR. It does not migrate.
func openStore(ctx context.Context, cfg Config) (*events.SQLStore, error) {
	if cfg.Distributed() {
		return events.OpenPostgres(ctx, cfg.DatabaseURL)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("DATA_DIR: %w", err)
	}
	return events.OpenSQLite(ctx, filepath.Join(cfg.DataDir, "events.db"))
}

func migrateCommand(ctx context.Context, cfg Config, log *slog.Logger) error {
	store, err := openMigratedStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer store.Close()
	log.Info("migrations applied", "store", store.Kind())
	return nil
}

// replayCommand rebuilds the state from the store, as every instance does at
// start (from the nearest checkpoint), and prints it; --verify checks every
// checkpoint against a replay from zero instead.
func replayCommand(ctx context.Context, cfg Config, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	until := fs.Int64("until-seq", 0, "replay events up to and including this seq (0: all)")
	verify := fs.Bool("verify", false, "replay from zero and compare the state with every checkpoint instead of printing it")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: replay: %v", errUsage, err)
	}
	if *until < 0 || fs.NArg() > 0 || (*verify && *until != 0) {
		return fmt.Errorf("%w: replay takes only --until-seq N with N >= 0, or --verify", errUsage)
	}
	store, err := openMigratedStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer store.Close()
	if *verify {
		return verifyCheckpoints(ctx, store, stdout)
	}
	at := *until
	if at == 0 {
		if at, err = store.Head(ctx); err != nil {
			return err
		}
	}
	// From the nearest checkpoint at or below the seq.
	snap, err := projections.StateAt(ctx, store, at, nil, nil)
	if err != nil {
		return err
	}
	return admin.WriteStateDocument(stdout, snap, true)
}
