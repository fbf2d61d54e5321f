package projections

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tenantgate/gateway/events"
)

func adminKeyEvent(seq int64, typ events.Type, id string, version int64, data any) events.Envelope {
	raw, _ := json.Marshal(data)
	return events.Envelope{Seq: seq, ID: uuid.NewString(), Type: typ, AggregateType: events.AggregateAdminKey,
		AggregateID: id, AggregateVersion: version, Actor: "root", OccurredAt: time.Unix(1_700_000_000+seq, 0), Data: raw}
}

// TestAdminKeysApplyAndCheckpoint: keys are created, found by digest and
// name, revoked; duplicates of a live name are skipped; a checkpoint holds
// the keys and gives the same state (hash included) as the replay.
func TestAdminKeysApplyAndCheckpoint(t *testing.T) {
	t.Parallel()
	plain1, hash1, prefix1 := NewAdminKey()
	_, hash2, prefix2 := NewAdminKey()
	_, hash3, _ := NewAdminKey()
	k1, k2, k3 := uuid.NewString(), uuid.NewString(), uuid.NewString()
	evs := []events.Envelope{
		adminKeyEvent(1, events.AdminKeyCreated, k1, 1, events.AdminKeyCreatedData{Name: "alice", Role: events.RoleAdmin, KeyHash: hash1, KeyPrefix: prefix1}),
		adminKeyEvent(2, events.AdminKeyCreated, k2, 1, events.AdminKeyCreatedData{Name: "ci", Role: events.RoleOperator, TenantIDs: []string{"t1"}, KeyHash: hash2, KeyPrefix: prefix2}),
		adminKeyEvent(3, events.AdminKeyCreated, k3, 1, events.AdminKeyCreatedData{Name: "alice", Role: events.RoleViewer, KeyHash: hash3, KeyPrefix: "x"}),
	}
	s, err := Replay(evs)
	if err == nil {
		t.Fatal("a second live key named alice was not skipped")
	}
	k, ok := s.AdminKeyByHash(KeyHash([]byte(plain1)))
	if !ok || k.ID != k1 || k.Role != events.RoleAdmin {
		t.Fatalf("AdminKeyByHash = %+v, %v", k, ok)
	}
	if _, ok := s.AdminKey(k3); ok {
		t.Fatal("the skipped key is live")
	}
	if got := len(s.AdminKeys()); got != 2 {
		t.Fatalf("%d keys, want 2", got)
	}
	b, _ := json.Marshal(s.AdminKeys())
	if contains(b, hash1) || contains(b, plain1) {
		t.Fatalf("key JSON holds a secret: %s", b)
	}
	cp, err := EncodeCheckpoint(s)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeCheckpoint(cp)
	if err != nil {
		t.Fatal(err)
	}
	if got.StateHash() != s.StateHash() || len(got.AdminKeys()) != 2 {
		t.Fatalf("checkpoint state differs: %d keys", len(got.AdminKeys()))
	}
	if k, ok := got.AdminKeyByName("ci"); !ok || len(k.TenantIDs) != 1 {
		t.Fatalf("checkpointed key ci = %+v, %v", k, ok)
	}
	revoked, err := Apply(got, adminKeyEvent(4, events.AdminKeyRevoked, k1, 2, events.AdminKeyRevokedData{}))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := revoked.AdminKeyByHash(KeyHash([]byte(plain1))); ok {
		t.Fatal("a revoked key still authenticates")
	}
	if revoked.StateHash() == got.StateHash() {
		t.Fatal("a revoke does not change the state hash")
	}
	if revoked.ConfigHash() != got.ConfigHash() {
		t.Fatal("keys are part of the config hash")
	}
}

func contains(b []byte, s string) bool { return strings.Contains(string(b), s) }
