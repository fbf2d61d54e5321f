package projections

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/tenantgate/gateway/events"
)

func TestApplyTenantLifecycle(t *testing.T) {
	t.Parallel()
	l := newLog(t)
	id, created := l.tenant("acme")
	s1 := l.replay()

	ten, ok := s1.Tenant(id)
	if !ok {
		t.Fatal("created tenant not found")
	}
	want := &Tenant{
		ID: id, Name: "acme", Status: events.TenantActive, KeyPrefix: "gw_acme", Version: 1,
		CreatedAt: created.OccurredAt, UpdatedAt: created.OccurredAt, KeyHash: KeyHash(testKey(id)),
	}
	if !reflect.DeepEqual(ten, want) {
		t.Fatalf("tenant = %+v, want %+v", ten, want)
	}
	if got, ok := s1.Authenticate(KeyHash(testKey(id))); !ok || got != ten {
		t.Fatal("Authenticate with the key failed")
	}
	if got, ok := s1.TenantByName("acme"); !ok || got != ten {
		t.Fatal("TenantByName failed")
	}

	upd := l.add(events.TenantUpdated, id, id, events.TenantUpdatedData{
		Name: events.NewPatch("acme2"), Status: events.NewPatch(events.TenantSuspended),
		RateLimit: events.NewPatch(&events.RateLimit{Limit: 5, WindowMs: 1000}),
	})
	s2, err := Apply(s1, upd)
	if err != nil {
		t.Fatal(err)
	}
	ten2, _ := s2.Tenant(id)
	if ten2.Name != "acme2" || ten2.Status != events.TenantSuspended || ten2.RateLimit.Limit != 5 ||
		ten2.Version != 2 || !ten2.UpdatedAt.Equal(upd.OccurredAt) || !ten2.CreatedAt.Equal(created.OccurredAt) {
		t.Fatalf("updated tenant = %+v", ten2)
	}
	if _, ok := s2.TenantByName("acme"); ok {
		t.Error("old name still found")
	}
	if _, ok := s2.TenantByName("acme2"); !ok {
		t.Error("new name not found")
	}
	// The old snapshot is untouched.
	if ten, _ := s1.Tenant(id); ten.Name != "acme" || ten.Version != 1 {
		t.Errorf("Apply changed the previous snapshot: %+v", ten)
	}
	if _, ok := s1.TenantByName("acme"); !ok {
		t.Error("Apply changed the previous snapshot's name index")
	}

	unlimit := l.add(events.TenantUpdated, id, id, json.RawMessage(`{"rateLimit": null}`))
	s3, err := Apply(s2, unlimit)
	if err != nil {
		t.Fatal(err)
	}
	if ten, _ := s3.Tenant(id); ten.RateLimit != nil || ten.Name != "acme2" {
		t.Errorf("rateLimit null: tenant = %+v", ten)
	}

	rot := l.add(events.TenantAPIKeyRotated, id, id, events.TenantAPIKeyRotatedData{APIKeyHash: keyHex([]byte("new")), APIKeyPrefix: "gw_new"})
	s4, err := Apply(s3, rot)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s4.Authenticate(KeyHash(testKey(id))); ok {
		t.Error("old key still works after rotation")
	}
	if got, ok := s4.Authenticate(KeyHash([]byte("new"))); !ok || got.Version != 4 || got.KeyPrefix != "gw_new" {
		t.Errorf("new key: %+v, %v", got, ok)
	}
	if _, ok := s3.Authenticate(KeyHash(testKey(id))); !ok {
		t.Error("rotation changed the previous snapshot")
	}

	s5, err := Apply(s4, l.add(events.TenantDeleted, id, id, nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s5.Tenant(id); ok {
		t.Error("deleted tenant still there")
	}
	if _, ok := s5.Authenticate(KeyHash([]byte("new"))); ok {
		t.Error("deleted tenant's key still works")
	}
	if _, ok := s5.TenantByName("acme2"); ok {
		t.Error("deleted tenant's name still taken")
	}
	if len(s5.Tenants()) != 0 || s5.Seq() != 5 {
		t.Errorf("after delete: %d tenants, seq %d", len(s5.Tenants()), s5.Seq())
	}
}

func TestApplyRouteLifecycle(t *testing.T) {
	t.Parallel()
	l := newLog(t)
	tid, _ := l.tenant("acme")
	rid, created := l.route(tid, "GET", "prefix", "/api/users")
	s1 := l.replay()
	r, ok := s1.Route(rid)
	if !ok || r.TenantID != tid || r.Version != 1 || !r.CreatedAt.Equal(created.OccurredAt) || r.Path != "/api/users" {
		t.Fatalf("created route = %+v", r)
	}
	ten, _ := s1.Tenant(tid)

	upd := l.updateRoute(rid, events.RouteUpdatedData{
		Path: events.NewPatch(`^/v2/(.*)$`), PathType: events.NewPatch(events.PathRegex), Method: events.NewPatch("*"),
	})
	s2, err := Apply(s1, upd)
	if err != nil {
		t.Fatal(err)
	}
	r2, _ := s2.Route(rid)
	if r2.Version != 2 || !r2.UpdatedAt.Equal(upd.OccurredAt) || !r2.CreatedAt.Equal(created.OccurredAt) ||
		r2.PathRegexp == nil || len(r2.Upstreams) != 1 {
		t.Fatalf("updated route = %+v", r2)
	}
	if _, ok := s2.Match(ten, "GET", "/api/users/7"); ok {
		t.Error("old path still matches after update")
	}
	if got := matchID(s2, ten, "POST", "/v2/x"); got != rid {
		t.Errorf("new path does not match: %q", got)
	}
	if got := matchID(s1, ten, "GET", "/api/users/7"); got != rid {
		t.Error("update changed the previous snapshot's matcher")
	}

	s3, err := Apply(s2, l.deleteRoute(rid))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s3.Route(rid); ok {
		t.Error("deleted route still there")
	}
	if _, ok := s3.Match(ten, "POST", "/v2/x"); ok {
		t.Error("deleted route still matches")
	}
	if n := len(s3.TenantRoutes(tid)); n != 0 {
		t.Errorf("TenantRoutes after delete: %d", n)
	}
}

func TestApplyTenantDeletedRemovesLeftoverRoutes(t *testing.T) {
	t.Parallel()
	l := newLog(t)
	a, _ := l.tenant("a")
	b, _ := l.tenant("b")
	ra, _ := l.route(a, "*", "prefix", "/")
	rb, _ := l.route(b, "*", "prefix", "/")
	l.add(events.TenantDeleted, a, a, nil)
	s := l.replay()
	if _, ok := s.Route(ra); ok {
		t.Error("leftover route of the deleted tenant is still there")
	}
	if _, ok := s.Route(rb); !ok {
		t.Error("other tenant's route was removed")
	}
	if got := len(s.Routes()); got != 1 {
		t.Errorf("Routes() = %d, want 1", got)
	}
}

func TestApplySkipsEventsItCannotApply(t *testing.T) {
	t.Parallel()
	l := newLog(t)
	tid, _ := l.tenant("acme")
	rid, _ := l.route(tid, "GET", "exact", "/a")
	base := l.replay()
	at := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	ev := func(typ events.Type, id, tenant, data string) events.Envelope {
		return events.Envelope{Seq: base.Seq() + 1, Type: typ, AggregateID: id, TenantID: tenant, AggregateVersion: 9, OccurredAt: at, Data: json.RawMessage(data)}
	}
	key := `"` + keyHex([]byte("k")) + `"`
	tests := []struct {
		name string
		ev   events.Envelope
	}{
		{"unknown type", ev("TenantRenamed", tid, tid, `{}`)},
		{"malformed data", ev(events.TenantUpdated, tid, tid, `{"name": 7}`)},
		{"truncated data", ev(events.RouteUpdated, rid, tid, `{"path": "/b"`)},
		{"no data", ev(events.TenantCreated, "t-new", "t-new", ``)},
		{"tenant exists", ev(events.TenantCreated, tid, tid, `{"name":"x","apiKeyHash":`+key+`}`)},
		{"bad key hash", ev(events.TenantCreated, "t-new", "t-new", `{"name":"x","apiKeyHash":"zz"}`)},
		{"short key hash", ev(events.TenantAPIKeyRotated, tid, tid, `{"apiKeyHash":"abcd"}`)},
		{"update of missing tenant", ev(events.TenantUpdated, "t-gone", "t-gone", `{"name":"x"}`)},
		{"rotate of missing tenant", ev(events.TenantAPIKeyRotated, "t-gone", "t-gone", `{"apiKeyHash":`+key+`}`)},
		{"delete of missing tenant", ev(events.TenantDeleted, "t-gone", "t-gone", `{}`)},
		{"route of missing tenant", ev(events.RouteCreated, "r-new", "t-gone", `{"tenantId":"t-gone","path":"/","pathType":"prefix"}`)},
		{"route tenant mismatch", ev(events.RouteCreated, "r-new", "t-other", `{"tenantId":"`+tid+`","path":"/","pathType":"prefix"}`)},
		{"route exists", ev(events.RouteCreated, rid, tid, `{"tenantId":"`+tid+`","path":"/","pathType":"prefix"}`)},
		{"update of missing route", ev(events.RouteUpdated, "r-gone", tid, `{"path":"/x"}`)},
		{"delete of missing route", ev(events.RouteDeleted, "r-gone", tid, `{}`)},
		{"time out of range", events.Envelope{Seq: base.Seq() + 1, Type: events.TenantUpdated, AggregateID: tid, OccurredAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), Data: json.RawMessage(`{"name":"x"}`)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			next, err := Apply(base, tc.ev)
			var skipped *SkippedError
			if !errors.As(err, &skipped) || skipped.Seq != tc.ev.Seq || skipped.Type != tc.ev.Type {
				t.Fatalf("err = %v, want a *SkippedError for seq %d", err, tc.ev.Seq)
			}
			if next == nil || next.Seq() != base.Seq()+1 {
				t.Fatalf("seq did not advance")
			}
			if next.sum != base.sum || !reflect.DeepEqual(next.Tenants(), base.Tenants()) || !reflect.DeepEqual(next.Routes(), base.Routes()) {
				t.Error("state changed beyond seq")
			}
			if next.StateHash() == base.StateHash() {
				t.Error("StateHash ignores seq")
			}
		})
	}
}

func TestApplyOutOfOrder(t *testing.T) {
	t.Parallel()
	l := newLog(t)
	l.tenant("a")
	l.tenant("b")
	s := l.replay()
	for _, seq := range []int64{0, 1, 2, 4, 100} {
		ev := l.evs[0]
		ev.Seq = seq
		next, err := Apply(s, ev)
		if next != nil || !errors.Is(err, ErrOutOfOrder) {
			t.Errorf("seq %d on state at 2: (%v, %v), want nil and ErrOutOfOrder", seq, next, err)
		}
	}
	if s.Seq() != 2 || len(s.Tenants()) != 2 {
		t.Error("state changed")
	}
	// ApplyBatch stops at the gap and keeps what came before.
	l2 := newLog(t)
	l2.tenant("a")
	l2.tenant("b")
	l2.tenant("c")
	evs := append([]events.Envelope{}, l2.evs...)
	evs[2].Seq = 4
	got, err := ApplyBatch(Empty(), evs, nil)
	if !errors.Is(err, ErrOutOfOrder) || got.Seq() != 2 || len(got.Tenants()) != 2 {
		t.Errorf("ApplyBatch over a gap: seq %d, err %v", got.Seq(), err)
	}
}

func TestApplyInvalidRegexKeepsRoute(t *testing.T) {
	t.Parallel()
	l := newLog(t)
	tid, _ := l.tenant("acme")
	rid, _ := l.route(tid, "*", "regex", "(")
	s := l.replay()
	r, ok := s.Route(rid)
	if !ok || r.PathRegexp != nil {
		t.Fatalf("route %+v, %v", r, ok)
	}
	ten, _ := s.Tenant(tid)
	if _, ok := s.Match(ten, "GET", "("); ok {
		t.Error("invalid regex route matched")
	}
}

func TestApplyTimesAreUTCMicroseconds(t *testing.T) {
	t.Parallel()
	l := newLog(t)
	tid, _ := l.tenant("acme")
	ev := l.evs[0]
	ev.OccurredAt = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.FixedZone("X", 3600))
	s, err := Apply(Empty(), ev)
	if err != nil {
		t.Fatal(err)
	}
	ten, _ := s.Tenant(tid)
	want := time.Date(2026, 3, 1, 11, 0, 0, 123456000, time.UTC)
	if ten.CreatedAt != want {
		t.Errorf("createdAt = %v, want %v", ten.CreatedAt, want)
	}
	// The same event read back at another precision or zone gives the same state.
	ev2 := ev
	ev2.OccurredAt = want.In(time.Local)
	s2, _ := Apply(Empty(), ev2)
	if s.StateHash() != s2.StateHash() {
		t.Error("StateHash depends on the time zone or sub-microsecond precision of OccurredAt")
	}
}

func TestStateHash(t *testing.T) {
	t.Parallel()
	build := func(order []int) *Snapshot {
		// Two tenants created in either order with the same ids and
		// times: the same state, reached in a different order.
		at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		evs := []events.Envelope{
			{Type: events.TenantCreated, AggregateID: "t1", AggregateVersion: 1, OccurredAt: at, Data: json.RawMessage(`{"name":"a","apiKeyHash":"` + keyHex([]byte("a")) + `"}`)},
			{Type: events.TenantCreated, AggregateID: "t2", AggregateVersion: 1, OccurredAt: at, Data: json.RawMessage(`{"name":"b","apiKeyHash":"` + keyHex([]byte("b")) + `"}`)},
		}
		s := Empty()
		for i, k := range order {
			ev := evs[k]
			ev.Seq = int64(i + 1)
			s, _ = Apply(s, ev)
		}
		return s
	}
	tests := []struct {
		name  string
		a, b  *Snapshot
		equal bool
	}{
		{"order of independent creates", build([]int{0, 1}), build([]int{1, 0}), true},
		{"empty vs empty", Empty(), Empty(), true},
		{"different content", build([]int{0}), func() *Snapshot {
			s := build([]int{1})
			return s
		}(), false},
		{"state vs empty", build([]int{0, 1}), Empty(), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tc.a.StateHash() == tc.b.StateHash(); got != tc.equal {
				t.Errorf("hashes equal = %v, want %v", got, tc.equal)
			}
		})
	}
	// Every field is covered: changing any one changes the hash.
	base := newLog(t)
	tid, _ := base.tenant("acme")
	rid, _ := base.route(tid, "GET", "prefix", "/a")
	s := base.replay()
	seen := map[string]string{s.StateHash(): "base"}
	variants := map[string]events.RouteUpdatedData{
		"method":    {Method: events.NewPatch("POST")},
		"upstreams": {Upstreams: events.NewPatch([]events.Upstream{{URL: "http://127.0.0.1:9002", Weight: 1}})},
		"lb":        {LoadBalancing: events.NewPatch(events.BalanceRandom)},
		"resilience": {Resilience: events.NewPatch(&events.Resilience{Timeout: &events.Timeout{
			Enabled: true, Default: 100, ByMethod: map[string]int{"GET": 5, "POST": 6},
		}})},
	}
	for name, d := range variants {
		ev := events.Envelope{Seq: s.Seq() + 1, Type: events.RouteUpdated, AggregateID: rid, TenantID: tid, AggregateVersion: 1,
			OccurredAt: base.at}
		ev.Data, _ = json.Marshal(d)
		// Same seq, version and time: only the field differs.
		n, err := Apply(s, ev)
		if err != nil {
			t.Fatal(err)
		}
		h := n.StateHash()
		if other, dup := seen[h]; dup {
			t.Errorf("variant %s hashes like %s", name, other)
		}
		seen[h] = name
	}
}

// applyLive applies evs one at a time, as a projector does off the bus.
func applyLive(t *testing.T, evs []events.Envelope) *Snapshot {
	t.Helper()
	s := Empty()
	for _, ev := range evs {
		next, err := Apply(s, ev)
		if next == nil {
			t.Fatalf("apply seq %d: %v", ev.Seq, err)
		}
		s = next
	}
	return s
}

// assertSameState compares two snapshots field by field, not just by hash.
func assertSameState(t *testing.T, a, b *Snapshot) {
	t.Helper()
	if a.Seq() != b.Seq() || a.StateHash() != b.StateHash() {
		t.Fatalf("seq %d/%d, hash %s/%s", a.Seq(), b.Seq(), a.StateHash(), b.StateHash())
	}
	if !reflect.DeepEqual(a.Tenants(), b.Tenants()) {
		t.Fatal("tenants differ")
	}
	if !reflect.DeepEqual(a.Routes(), b.Routes()) {
		t.Fatal("routes differ")
	}
	for _, ten := range a.Tenants() {
		an, _ := a.TenantByName(ten.Name)
		bn, _ := b.TenantByName(ten.Name)
		if idOfTenant(an) != idOfTenant(bn) {
			t.Fatalf("TenantByName(%q) = %s / %s", ten.Name, idOfTenant(an), idOfTenant(bn))
		}
		ak, _ := a.Authenticate(ten.KeyHash)
		bk, _ := b.Authenticate(ten.KeyHash)
		if ak == nil || idOfTenant(ak) != idOfTenant(bk) {
			t.Fatalf("Authenticate = %s / %s", idOfTenant(ak), idOfTenant(bk))
		}
		if !reflect.DeepEqual(a.TenantRoutes(ten.ID), b.TenantRoutes(ten.ID)) {
			t.Fatal("TenantRoutes differ")
		}
	}
}

func idOfTenant(t *Tenant) string {
	if t == nil {
		return ""
	}
	return t.ID
}

// FuzzApply checks, for random logs with events that must be skipped, that
// nothing panics, that applying live one event at a time gives exactly the
// state of replaying the log in one batch, that every route's tenant is live,
// and that the matchers of both agree with the reference.
func FuzzApply(f *testing.F) {
	for _, seed := range []uint64{1, 7, 99, 12345} {
		f.Add(seed, uint16(200))
	}
	f.Fuzz(func(t *testing.T, seed uint64, n uint16) {
		r := rand.New(rand.NewPCG(seed, 0x5eed))
		l := randomLog(t, r, int(n%600))
		live := applyLive(t, l.evs)
		replayed, _ := Replay(l.evs)
		assertSameState(t, live, replayed)
		// Replaying in two batches, the way a projector catches up, too.
		half := len(l.evs) / 2
		first, err := ApplyBatch(Empty(), l.evs[:half], nil)
		if err != nil {
			t.Fatal(err)
		}
		second, err := ApplyBatch(first, l.evs[half:], nil)
		if err != nil {
			t.Fatal(err)
		}
		assertSameState(t, live, second)
		if half > 0 {
			// The first batch's snapshot is not changed by the second.
			again, _ := Replay(l.evs[:half])
			assertSameState(t, first, again)
		}
		for _, rt := range live.Routes() {
			if _, ok := live.Tenant(rt.TenantID); !ok {
				t.Fatalf("route %s of missing tenant %s", rt.ID, rt.TenantID)
			}
		}
		checkMatcher(t, live, r)
		checkMatcher(t, second, r)
	})
}
