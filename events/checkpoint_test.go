package events_test

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/tenantgate/gateway/events"
)

// TestCheckpointRows: in both stores, saving is insert-or-ignore per (seq,
// version), so instances saving the same checkpoint at once leave one row
// and the first content; listing is newest first, filtered by version and
// seq; loading a missing one is ErrNoCheckpoint.
func TestCheckpointRows(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		open func(testing.TB) *events.SQLStore
	}{
		{"postgres", openPostgres},
		{"sqlite", openSQLite},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := tt.open(t)
			defer s.Close()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cp := func(seq int64, version string, data string) events.Checkpoint {
				return events.Checkpoint{Seq: seq, ApplyVersion: version, StateHash: "h" + data, Data: []byte(data)}
			}
			var wg sync.WaitGroup
			stored := make([]bool, 6)
			for i := range stored {
				wg.Go(func() {
					ok, err := s.SaveCheckpoint(ctx, cp(100, "v1", "first"))
					if err != nil {
						t.Errorf("SaveCheckpoint: %v", err)
					}
					stored[i] = ok
				})
			}
			wg.Wait()
			n := 0
			for _, ok := range stored {
				if ok {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("%d of the concurrent saves stored a row, want 1", n)
			}
			if ok, err := s.SaveCheckpoint(ctx, cp(100, "v1", "second")); ok || err != nil {
				t.Fatalf("saving over an existing checkpoint = %v, %v; want false, nil", ok, err)
			}
			for _, c := range []events.Checkpoint{cp(100, "v2", "other"), cp(200, "v1", "b"), cp(300, "v2", "c")} {
				if _, err := s.SaveCheckpoint(ctx, c); err != nil {
					t.Fatal(err)
				}
			}
			got, err := s.LoadCheckpoint(ctx, 100, "v1")
			if err != nil || !bytes.Equal(got.Data, []byte("first")) || got.StateHash != "hfirst" {
				t.Fatalf("LoadCheckpoint = %+v, %v; want the first content", got, err)
			}
			if _, err := s.LoadCheckpoint(ctx, 150, "v1"); !errors.Is(err, events.ErrNoCheckpoint) {
				t.Fatalf("LoadCheckpoint of a missing one: %v, want ErrNoCheckpoint", err)
			}
			list := func(version string, at int64, limit int) []int64 {
				t.Helper()
				cps, err := s.Checkpoints(ctx, version, at, limit)
				if err != nil {
					t.Fatal(err)
				}
				var seqs []int64
				for _, c := range cps {
					if c.Data != nil {
						t.Fatal("Checkpoints returned data")
					}
					seqs = append(seqs, c.Seq)
				}
				return seqs
			}
			for _, c := range []struct {
				version string
				at      int64
				limit   int
				want    []int64
			}{
				{"v1", 1 << 40, 0, []int64{200, 100}},
				{"v2", 1 << 40, 0, []int64{300, 100}},
				{"", 1 << 40, 0, []int64{300, 200, 100, 100}},
				{"v1", 199, 0, []int64{100}},
				{"", 1 << 40, 1, []int64{300}},
				{"v1", 99, 0, nil},
			} {
				if got := list(c.version, c.at, c.limit); !equalSeqs(got, c.want) {
					t.Errorf("Checkpoints(%q, %d, %d) = %v, want %v", c.version, c.at, c.limit, got, c.want)
				}
			}
		})
	}
}

func equalSeqs(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
