package events

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/uptrace/bun"
)

// Checkpoint is the encoded state right after event Seq, as the Apply of
// version ApplyVersion made it. It is a cache of the log kept beside it,
// never instead of it: events are never deleted or rewritten because of a
// checkpoint. The store keeps the bytes; projections encodes, decodes and
// verifies them (StateHash is the state's hash as the writer computed it).
type Checkpoint struct {
	Seq          int64
	ApplyVersion string
	StateHash    string
	Data         []byte
	CreatedAt    time.Time
}

// ErrNoCheckpoint: no checkpoint has the asked seq and version.
var ErrNoCheckpoint = errors.New("events: no such checkpoint")

type checkpointRow struct {
	bun.BaseModel `bun:"table:checkpoints"`

	Seq          int64  `bun:"seq,pk"`
	ApplyVersion string `bun:"apply_version,pk"`
	StateHash    string `bun:"state_hash"`
	Data         []byte `bun:"data"`
	CreatedAt    dbTime `bun:"created_at"`
}

// SaveCheckpoint stores cp unless a checkpoint of the same seq and version
// exists already, and reports whether it stored it. Instances that write the
// same checkpoint at once write the same content, so the first one wins and
// the others are harmless.
func (s *SQLStore) SaveCheckpoint(ctx context.Context, cp Checkpoint) (bool, error) {
	if cp.Seq <= 0 || cp.ApplyVersion == "" || cp.StateHash == "" || len(cp.Data) == 0 {
		return false, errors.New("events: save checkpoint: seq, version, hash and data are required")
	}
	if cp.CreatedAt.IsZero() {
		cp.CreatedAt = time.Now()
	}
	row := checkpointRow{Seq: cp.Seq, ApplyVersion: cp.ApplyVersion, StateHash: cp.StateHash, Data: cp.Data, CreatedAt: dbTime(NormalizeTime(cp.CreatedAt))}
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	res, err := s.db.NewInsert().Model(&row).On("CONFLICT DO NOTHING").Exec(ctx)
	if err != nil {
		return false, s.wrap(ctx, fmt.Errorf("events: save checkpoint %d: %w", cp.Seq, err))
	}
	n, err := res.RowsAffected()
	return err == nil && n == 1, nil
}

// Checkpoints lists, newest first, at most limit checkpoints (all when limit
// <= 0) of Apply version version (every version when "") with a seq at or
// below atOrBelow, without their data.
func (s *SQLStore) Checkpoints(ctx context.Context, version string, atOrBelow int64, limit int) ([]Checkpoint, error) {
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	var rows []checkpointRow
	if err := s.listCheckpoints(&rows, version, atOrBelow, limit).Scan(ctx); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, s.wrap(ctx, fmt.Errorf("events: list checkpoints: %w", err))
	}
	out := make([]Checkpoint, len(rows))
	for i, r := range rows {
		out[i] = Checkpoint{Seq: r.Seq, ApplyVersion: r.ApplyVersion, StateHash: r.StateHash, CreatedAt: time.Time(r.CreatedAt)}
	}
	return out, nil
}

// listCheckpoints is the query of Checkpoints. Its columns are those of
// the index checkpoints_list (SQLite), so that it never reads a blob.
func (s *SQLStore) listCheckpoints(rows *[]checkpointRow, version string, atOrBelow int64, limit int) *bun.SelectQuery {
	q := s.db.NewSelect().Model(rows).Column("seq", "apply_version", "state_hash", "created_at").
		Where("seq <= ?", atOrBelow).OrderExpr("seq DESC, apply_version ASC")
	if version != "" {
		q = q.Where("apply_version = ?", version)
	}
	if limit > 0 {
		q = q.Limit(limit)
	}
	return q
}

// LoadCheckpoint returns the checkpoint of seq and version with its data, or
// ErrNoCheckpoint.
func (s *SQLStore) LoadCheckpoint(ctx context.Context, seq int64, version string) (Checkpoint, error) {
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	var row checkpointRow
	err := s.db.NewSelect().Model(&row).Where("seq = ? AND apply_version = ?", seq, version).Scan(ctx)
	if errors.Is(err, sql.ErrNoRows) {
		return Checkpoint{}, fmt.Errorf("%w: seq %d, version %s", ErrNoCheckpoint, seq, version)
	}
	if err != nil {
		return Checkpoint{}, s.wrap(ctx, fmt.Errorf("events: load checkpoint %d: %w", seq, err))
	}
	return Checkpoint{Seq: row.Seq, ApplyVersion: row.ApplyVersion, StateHash: row.StateHash, Data: row.Data, CreatedAt: time.Time(row.CreatedAt)}, nil
}
