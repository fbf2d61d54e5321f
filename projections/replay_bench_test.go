package projections

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/events/testenv"
	"github.com/tenantgate/gateway/migrations"
)

// openBenchStore opens a fresh, migrated store of the given kind.
func openBenchStore(b *testing.B, kind string) *events.SQLStore {
	b.Helper()
	ctx := context.Background()
	var (
		s   *events.SQLStore
		err error
	)
	switch kind {
	case events.KindPostgres:
		s, err = events.OpenPostgres(ctx, testenv.Postgres(b)) // skips without PostgreSQL
	default:
		s, err = events.OpenSQLite(ctx, filepath.Join(b.TempDir(), "events.db"))
	}
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	if err := migrations.Migrate(ctx, s.DB()); err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkReplayFromStore measures a projector's catch-up from an empty
// snapshot to the store's head over the 110k-event benchmark log (10k
// tenants, 100k routes): store reads in pages and applying them, end to end,
// as an instance starting without a local cache does.
func BenchmarkReplayFromStore(b *testing.B) {
	evs := loadBench(b).log.evs
	for _, kind := range []string{events.KindPostgres, events.KindSQLite} {
		b.Run(kind, func(b *testing.B) {
			s := openBenchStore(b, kind)
			ctx := context.Background()
			const chunk = 2000 // one transaction per chunk keeps the setup short
			for i := 0; i < len(evs); i += chunk {
				if _, err := s.Append(ctx, events.AppendRequest{ExpectedHead: events.AnyHead, Events: evs[i:min(i+chunk, len(evs))]}); err != nil {
					b.Fatal(err)
				}
			}
			head := int64(len(evs))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				p, err := NewProjector(ProjectorConfig{}, s, events.NewMemoryBus(), nil)
				if err != nil {
					b.Fatal(err)
				}
				if err := p.CatchUp(ctx); err != nil {
					b.Fatal(err)
				}
				if got := p.AppliedSeq(); got != head {
					b.Fatalf("caught up to seq %d, want %d", got, head)
				}
			}
			b.ReportMetric(float64(head)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
