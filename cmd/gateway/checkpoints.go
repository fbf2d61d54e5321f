package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/projections"
)

// newCheckpointer writes a checkpoint every CHECKPOINT_INTERVAL events to a
// store that keeps them (nil for one that does not).
func newCheckpointer(cfg Config, store events.Store, log *slog.Logger) (*projections.Checkpointer, error) {
	cs, ok := store.(projections.CheckpointStore)
	if !ok {
		return nil, nil
	}
	return projections.NewCheckpointer(cs, cfg.CheckpointInterval, log)
}

// redisClaims lets the instances sharing a Redis split the checkpoints
// their store lacks (projections.Claimer): a claim is a key set only if
// absent, expiring by itself, so a claim of an instance that stopped lapses.
type redisClaims struct {
	rdb    redis.UniversalClient
	prefix string
}

func (r redisClaims) Claim(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	return r.rdb.SetNX(ctx, r.prefix+key, 1, ttl).Result()
}

// shutdownCheckpointTimeout bounds the checkpoint written at shutdown.
const shutdownCheckpointTimeout = 10 * time.Second

// saveShutdownCheckpoint stores the state this instance stops at, so the
// next start applies nothing or little. Instances stopping at the same seq
// write the same row; the store keeps one.
func saveShutdownCheckpoint(ctx context.Context, cfg Config, cp *projections.Checkpointer, snap *projections.Snapshot, log *slog.Logger) {
	if cp == nil || cfg.CheckpointInterval == 0 || snap.Seq() <= cp.Saved() {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownCheckpointTimeout)
	defer cancel()
	if err := cp.Save(ctx, snap); err != nil {
		log.Warn("checkpoint at shutdown not written", "seq", snap.Seq(), "err", err)
	}
}

// verifyCheckpoints replays the log from zero and compares the state at
// every checkpoint's seq with the checkpoint: each one of this build's Apply
// version must hold exactly that state. A checkpoint whose data is the
// encoding of that state passes without being decoded (a third of the
// cost); any other is decoded and passes only if it gives that state. It
// reports each on out and fails if any does not.
func verifyCheckpoints(ctx context.Context, store *events.SQLStore, out io.Writer) error {
	all, err := store.Checkpoints(ctx, "", 1<<62, 0)
	if err != nil {
		return err
	}
	snap := projections.Empty()
	bad, checked := 0, 0
	// The replay and the checkpoint decodes are timed apart: the first is
	// the store's replay speed, the second grows with the checkpoints.
	var replayed, decoding time.Duration
	for i := len(all) - 1; i >= 0; i-- { // oldest first, one forward replay
		info := all[i]
		if info.ApplyVersion != projections.ApplyVersion {
			fmt.Fprintf(out, "seq %d: skipped, written by Apply version %s (this build: %s)\n", info.Seq, info.ApplyVersion, projections.ApplyVersion)
			continue
		}
		t0 := time.Now()
		if snap, err = projections.ReplayStore(ctx, store, snap, info.Seq, nil); err != nil {
			return err
		}
		replayed += time.Since(t0)
		if snap.Seq() != info.Seq {
			bad++
			fmt.Fprintf(out, "seq %d: BAD, beyond the store's head %d\n", info.Seq, snap.Seq())
			continue
		}
		checked++
		t0 = time.Now()
		cp, err := store.LoadCheckpoint(ctx, info.Seq, info.ApplyVersion)
		if err != nil {
			return err
		}
		if projections.CheckpointHolds(cp, snap) {
			decoding += time.Since(t0)
			fmt.Fprintf(out, "seq %d: ok, state %s\n", info.Seq, snap.StateHash())
			continue
		}
		// Not the bytes this build writes: decode it to say what it holds.
		got, err := projections.DecodeCheckpoint(cp)
		decoding += time.Since(t0)
		switch {
		case err != nil:
			bad++
			fmt.Fprintf(out, "seq %d: BAD, %v\n", info.Seq, err)
		case got.StateHash() != snap.StateHash():
			bad++
			fmt.Fprintf(out, "seq %d: BAD, holds state %s, the events give %s\n", info.Seq, got.StateHash(), snap.StateHash())
		default:
			fmt.Fprintf(out, "seq %d: ok, state %s\n", info.Seq, got.StateHash())
		}
	}
	fmt.Fprintf(out, "replayed %d events in %d ms (%.0f events/s); %d checkpoints of this Apply version checked in %d ms, %d bad\n",
		snap.Seq(), replayed.Milliseconds(), float64(snap.Seq())/max(replayed.Seconds(), 1e-9), checked, decoding.Milliseconds(), bad)
	if bad > 0 {
		return errors.New("replay --verify: some checkpoints do not match the events (they are skipped at load; delete them to write new ones)")
	}
	return nil
}
