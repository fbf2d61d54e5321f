package events

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tenantgate/gateway/migrations"
)

// TestListingCheckpointsReadsNoBlob: SQLite answers the listing from the
// index checkpoints_list alone. Reading the table instead reads each listed
// checkpoint's blob (megabytes) to reach created_at, which made every
// start-up and history query list tens of megabytes.
func TestListingCheckpointsReadsNoBlob(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := OpenSQLite(ctx, filepath.Join(t.TempDir(), "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := migrations.Migrate(ctx, s.DB()); err != nil {
		t.Fatal(err)
	}
	for _, version := range []string{"a1b2", ""} {
		var rows []checkpointRow
		q := s.listCheckpoints(&rows, version, 1000, 8).String()
		plan, err := s.db.QueryContext(ctx, "EXPLAIN QUERY PLAN "+q)
		if err != nil {
			t.Fatal(err)
		}
		var steps []string
		for plan.Next() {
			var id, parent, unused int
			var detail string
			if err := plan.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			steps = append(steps, detail)
		}
		if err := plan.Close(); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(strings.Join(steps, "; "), "USING COVERING INDEX checkpoints_list") {
			t.Errorf("version %q: %s\nplanned as %q, want a covering index", version, q, steps)
		}
	}
}
