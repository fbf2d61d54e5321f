package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/events/testenv"
	"github.com/tenantgate/gateway/migrations"
	"github.com/tenantgate/gateway/projections"
)

// TestReplayVerifyChecksEveryCheckpoint: `replay --verify` passes the
// checkpoints that hold the events' state and fails on one whose row names
// the right seq and state hash over the data of another state.
func TestReplayVerifyChecksEveryCheckpoint(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	store, err := events.OpenSQLite(ctx, filepath.Join(dir, "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if err := migrations.Migrate(ctx, store.DB()); err != nil {
		t.Fatal(err)
	}
	var evs []events.Envelope
	for i := range 6 {
		data, _ := json.Marshal(events.TenantCreatedData{
			Name: fmt.Sprintf("t%d", i), Status: events.TenantActive,
			APIKeyHash: strings.Repeat(fmt.Sprintf("%02x", i), 32), APIKeyPrefix: "gw_",
		})
		evs = append(evs, events.Envelope{
			ID: uuid.NewString(), Type: events.TenantCreated, AggregateType: events.AggregateTenant,
			AggregateID: uuid.NewString(), AggregateVersion: 1, Actor: "test", OccurredAt: time.Now(), Data: data,
		})
	}
	if _, err := store.Append(ctx, events.AppendRequest{ExpectedHead: events.AnyHead, Events: evs}); err != nil {
		t.Fatal(err)
	}
	stateAt := func(seq int64) *projections.Snapshot {
		s, err := projections.ReplayStore(ctx, store, nil, seq, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	save := func(cp events.Checkpoint) {
		if _, err := store.SaveCheckpoint(ctx, cp); err != nil {
			t.Fatal(err)
		}
	}
	for _, seq := range []int64{2, 5} {
		cp, err := projections.EncodeCheckpoint(stateAt(seq))
		if err != nil {
			t.Fatal(err)
		}
		save(cp)
	}
	forged, err := projections.EncodeCheckpoint(stateAt(3))
	if err != nil {
		t.Fatal(err)
	}
	forged.Seq, forged.StateHash = 4, stateAt(4).StateHash()
	save(forged)

	var out bytes.Buffer
	code := run(ctx, []string{"replay", "--verify"}, envOf(map[string]string{"DATA_DIR": dir}), &out, io.Discard)
	for _, want := range []string{"seq 2: ok", "seq 4: BAD", "seq 5: ok", "3 checkpoints of this Apply version checked"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("replay --verify says no %q:\n%s", want, out.String())
		}
	}
	if code == 0 {
		t.Errorf("replay --verify exit 0 with a bad checkpoint:\n%s", out.String())
	}
}

// TestRedisClaimsGiveAKeyToOneInstanceUntilItLapses: of instances sharing a
// Redis, one claims a put-off checkpoint; the others get it only once the
// claim expired (its holder stopped without writing it).
func TestRedisClaimsGiveAKeyToOneInstanceUntilItLapses(t *testing.T) {
	t.Parallel()
	rdb, prefix := testenv.RedisClient(t)
	first, second := redisClaims{rdb: rdb, prefix: prefix}, redisClaims{rdb: rdb, prefix: prefix}
	ctx := context.Background()
	const ttl = 300 * time.Millisecond
	if ok, err := first.Claim(ctx, "checkpoint:v:10", ttl); err != nil || !ok {
		t.Fatalf("first claim = %v, %v; want taken", ok, err)
	}
	if ok, err := second.Claim(ctx, "checkpoint:v:10", ttl); err != nil || ok {
		t.Fatalf("second claim of a held key = %v, %v; want refused", ok, err)
	}
	if ok, err := second.Claim(ctx, "checkpoint:v:20", ttl); err != nil || !ok {
		t.Fatalf("claim of another key = %v, %v; want taken", ok, err)
	}
	testenv.WaitFor(t, "the claim to lapse", 5*time.Second, func() bool {
		ok, err := second.Claim(ctx, "checkpoint:v:10", ttl)
		return err == nil && ok
	})
}
