package declarative

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/projections"
)

const (
	tenantA = "0190a0b0-0000-7000-8000-00000000000a"
	tenantB = "0190a0b0-0000-7000-8000-00000000000b"
	routeA1 = "0190a0b0-0000-7000-8000-0000000000a1"
	routeA2 = "0190a0b0-0000-7000-8000-0000000000a2"
	routeB1 = "0190a0b0-0000-7000-8000-0000000000b1"
)

var t0 = time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)

func route(id, tenant, path string) RouteConfig {
	return RouteConfig{ID: id, RouteSpec: events.RouteSpec{
		TenantID: tenant, Method: "*", Path: path, PathType: events.PathPrefix,
		Upstreams:     []events.Upstream{{URL: "http://127.0.0.1:9001", Weight: 1}},
		LoadBalancing: events.BalanceRoundRobin,
	}}
}

func sampleDoc() Document {
	a2 := route(routeA2, tenantA, "/b")
	a2.Resilience = &events.Resilience{Retry: &events.Retry{Enabled: true, MaxRetries: 3, BaseDelayMs: 100, MaxDelayMs: 2000, RetryableStatusCodes: []int{502}}}
	return Document{
		Tenants: []TenantConfig{
			{ID: tenantB, Name: "beta", Status: events.TenantSuspended},
			{ID: tenantA, Name: "acme", Status: events.TenantActive, RateLimit: &events.RateLimit{Limit: 10, WindowMs: 1000}},
		},
		Routes: []RouteConfig{route(routeB1, tenantB, "/c"), route(routeA1, tenantA, "/a"), a2},
	}
}

// history keeps a log and the state it gives, as a store and a projector would.
type history struct {
	t    *testing.T
	log  []events.Envelope
	snap *projections.Snapshot
}

func newHistory(t *testing.T) *history {
	return &history{t: t, snap: projections.Empty()}
}

// apply plans doc against the state, appends the events and returns the changes and keys.
func (h *history) apply(doc Document, actor string) ([]Change, Batch) {
	h.t.Helper()
	changes, err := Plan(h.snap, doc)
	if err != nil {
		h.t.Fatalf("Plan: %v", err)
	}
	b, err := Events(h.snap, changes, actor, t0.Add(time.Duration(len(h.log))*time.Second), LastVersions(h.log))
	if err != nil {
		h.t.Fatalf("Events: %v", err)
	}
	h.append(b.Events...)
	return changes, b
}

func (h *history) append(evs ...events.Envelope) {
	h.t.Helper()
	for _, ev := range evs {
		ev.Seq = int64(len(h.log)) + 1
		h.log = append(h.log, ev)
		next, err := projections.Apply(h.snap, ev)
		if err != nil {
			h.t.Fatalf("Apply seq %d (%s %s v%d): %v", ev.Seq, ev.Type, ev.AggregateID, ev.AggregateVersion, err)
		}
		h.snap = next
	}
}

func (h *history) at(seq int64) *projections.Snapshot {
	h.t.Helper()
	s, err := projections.Replay(h.log[:seq])
	if err != nil {
		h.t.Fatalf("Replay: %v", err)
	}
	return s
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func summary(changes []Change) []string {
	out := make([]string, len(changes))
	for i, c := range changes {
		out[i] = string(c.Change) + " " + string(c.AggregateType) + " " + c.AggregateID[len(c.AggregateID)-2:]
	}
	return out
}

func TestApplyCreatesExportedDocumentAndIsIdempotent(t *testing.T) {
	t.Parallel()
	h := newHistory(t)
	doc := sampleDoc()
	changes, batch := h.apply(doc, "alice")

	want := []string{"created tenant 0a", "created tenant 0b", "created route a1", "created route a2", "created route b1"}
	if got := summary(changes); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("changes = %v, want %v", got, want)
	}
	if got := changes[0].Fields["name"]; got.From != nil || got.To != "acme" {
		t.Errorf("created tenant's name change = %+v, want from null to acme", got)
	}
	for _, ev := range batch.Events {
		if ev.Actor != "alice" || ev.AggregateVersion != 1 {
			t.Errorf("event %s %s: actor %q version %d, want alice 1", ev.Type, ev.AggregateID, ev.Actor, ev.AggregateVersion)
		}
	}

	exported := Export(h.snap)
	if len(exported.Tenants) != 2 || exported.Tenants[0].ID != tenantA || exported.Routes[0].ID != routeA1 {
		t.Fatalf("export not ordered by id: %s", jsonOf(t, exported))
	}
	// The export holds exactly the document, whatever its order.
	again, err := Plan(h.snap, exported)
	if err != nil || len(again) != 0 {
		t.Fatalf("plan of the export = %v, %v; want no changes", summary(again), err)
	}
	again, err = Plan(h.snap, doc)
	if err != nil || len(again) != 0 {
		t.Fatalf("second plan of the document = %v, %v; want no changes", summary(again), err)
	}
	if s := jsonOf(t, exported); strings.Contains(s, "apiKey") || strings.Contains(s, "version") || strings.Contains(s, "createdAt") {
		t.Errorf("export carries keys, versions or timestamps: %s", s)
	}
}

func TestCreatedTenantsGetKeysWhoseDigestIsStored(t *testing.T) {
	t.Parallel()
	h := newHistory(t)
	_, batch := h.apply(sampleDoc(), "admin")
	if len(batch.Keys) != 2 {
		t.Fatalf("keys = %d, want 2", len(batch.Keys))
	}
	for _, k := range batch.Keys {
		if !strings.HasPrefix(k.APIKey, "gw_") || len(k.APIKey) < 3+22 {
			t.Fatalf("key %s does not look like a 128+ bit gw_ key", k)
		}
		tenant, ok := h.snap.Authenticate(projections.KeyHash([]byte(k.APIKey)))
		if !ok || tenant.ID != k.TenantID {
			t.Errorf("key of %s does not authenticate its tenant", k.TenantID)
		}
		for _, ev := range h.log {
			if strings.Contains(string(ev.Data), k.APIKey) {
				t.Errorf("event %s carries a plaintext key", ev.Type)
			}
		}
		if strings.Contains(k.String(), k.APIKey) {
			t.Errorf("IssuedKey.String shows the key")
		}
	}
}

func TestPlanUpdatesAndDeletes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		edit    func(d *Document)
		want    []string
		fields  map[string][]string // aggregate id -> changed fields
		version map[string]int64    // aggregate id -> version its event carries
	}{
		{
			name: "tenant fields",
			edit: func(d *Document) {
				d.Tenants[1].Name = "acme2"
				d.Tenants[1].RateLimit = nil
			},
			want:    []string{"updated tenant 0a"},
			fields:  map[string][]string{tenantA: {"name", "rateLimit"}},
			version: map[string]int64{tenantA: 2},
		},
		{
			name: "route path and nested block",
			edit: func(d *Document) {
				d.Routes[1].Path = "/z"
				d.Routes[2].Resilience = nil
			},
			want:   []string{"updated route a1", "updated route a2"},
			fields: map[string][]string{routeA1: {"path"}, routeA2: {"resilience"}},
		},
		{
			name: "tenant with routes deleted, routes first",
			edit: func(d *Document) {
				d.Tenants = d.Tenants[1:]
				d.Routes = d.Routes[1:]
			},
			want:    []string{"deleted route b1", "deleted tenant 0b"},
			version: map[string]int64{routeB1: 2, tenantB: 2},
		},
		{
			name: "route added and one removed",
			edit: func(d *Document) {
				d.Routes = append(d.Routes[:1], route("0190a0b0-0000-7000-8000-0000000000a3", tenantA, "/n"))
			},
			want: []string{"deleted route a1", "deleted route a2", "created route a3"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHistory(t)
			h.apply(sampleDoc(), "admin")
			doc := sampleDoc()
			tt.edit(&doc)
			changes, batch := h.apply(doc, "bob")
			if got := summary(changes); strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("changes = %v, want %v", got, tt.want)
			}
			for id, names := range tt.fields {
				for _, c := range changes {
					if c.AggregateID != id {
						continue
					}
					if len(c.Fields) != len(names) {
						t.Errorf("%s fields = %s, want %v", id, jsonOf(t, c.Fields), names)
					}
					for _, n := range names {
						if _, ok := c.Fields[n]; !ok {
							t.Errorf("%s: field %s not reported in %s", id, n, jsonOf(t, c.Fields))
						}
					}
				}
			}
			for id, v := range tt.version {
				for _, ev := range batch.Events {
					if ev.AggregateID == id && ev.AggregateVersion != v {
						t.Errorf("%s event version = %d, want %d", id, ev.AggregateVersion, v)
					}
				}
			}
			if again, _ := Plan(h.snap, doc); len(again) != 0 {
				t.Errorf("after applying, plan = %v, want none", summary(again))
			}
			if got, want := jsonOf(t, Export(h.snap)), jsonOf(t, Export(h.at(int64(len(h.log))))); got != want {
				t.Errorf("live state and replay differ")
			}
		})
	}
}

func TestRollbackRecreatesDeletedTenantWithNewKeyAndNextVersion(t *testing.T) {
	t.Parallel()
	h := newHistory(t)
	_, first := h.apply(sampleDoc(), "admin")
	n := int64(len(h.log))
	doc := sampleDoc()
	doc.Tenants = doc.Tenants[1:] // delete beta and its route
	doc.Routes = doc.Routes[1:]
	h.apply(doc, "admin")

	changes, batch := h.apply(Export(h.at(n)), "carol")
	if got := summary(changes); strings.Join(got, ",") != "created tenant 0b,created route b1" {
		t.Fatalf("rollback changes = %v", got)
	}
	for _, ev := range batch.Events {
		if ev.AggregateVersion != 3 { // created 1, deleted 2, re-created 3
			t.Errorf("%s %s version = %d, want 3", ev.Type, ev.AggregateID, ev.AggregateVersion)
		}
	}
	if jsonOf(t, Export(h.snap)) != jsonOf(t, Export(h.at(n))) {
		t.Fatalf("state after rollback differs from the state at %d", n)
	}
	var oldKey string
	for _, k := range first.Keys {
		if k.TenantID == tenantB {
			oldKey = k.APIKey
		}
	}
	if len(batch.Keys) != 1 || batch.Keys[0].TenantID != tenantB || batch.Keys[0].APIKey == oldKey {
		t.Fatalf("re-created tenant must get a new key, got %v", batch.Keys)
	}
	if _, ok := h.snap.Authenticate(projections.KeyHash([]byte(oldKey))); ok {
		t.Errorf("the deleted tenant's old key works again")
	}
}

func TestCheckRejectsInconsistentDocuments(t *testing.T) {
	t.Parallel()
	h := newHistory(t)
	h.apply(sampleDoc(), "admin")
	tests := []struct {
		name  string
		edit  func(d *Document)
		field string
	}{
		{name: "missing tenant id", edit: func(d *Document) { d.Tenants[0].ID = "" }, field: "tenants[0].id"},
		{name: "duplicate tenant name", edit: func(d *Document) { d.Tenants[0].Name = "acme" }, field: "tenants[1].name"},
		{name: "route id reused", edit: func(d *Document) { d.Routes[1].ID = routeB1 }, field: "routes[1].id"},
		{name: "route of a tenant not in the document", edit: func(d *Document) { d.Tenants = d.Tenants[1:] }, field: "routes[0].tenantId"},
		{name: "route moved to another tenant", edit: func(d *Document) { d.Routes[1].TenantID = tenantB }, field: "routes[1].tenantId"},
		{name: "tenant id of a live route", edit: func(d *Document) { d.Tenants[0].ID = routeA1 }, field: "tenants[0].id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			doc := sampleDoc()
			tt.edit(&doc)
			_, err := Plan(h.snap, doc)
			var inv *InvalidError
			if !errors.As(err, &inv) {
				t.Fatalf("Plan error = %v, want *InvalidError", err)
			}
			found := false
			for _, p := range inv.Problems {
				found = found || p.Field == tt.field
			}
			if !found {
				t.Errorf("problems = %+v, want one on %s", inv.Problems, tt.field)
			}
		})
	}
}

func TestDiffListsFieldsChangedBetweenSeqs(t *testing.T) {
	t.Parallel()
	h := newHistory(t)
	h.apply(sampleDoc(), "admin")
	a := int64(len(h.log))
	doc := sampleDoc()
	doc.Tenants[0].Status = events.TenantActive
	doc.Routes[1].Upstreams = []events.Upstream{{URL: "http://127.0.0.1:9009", Weight: 2}}
	h.apply(doc, "admin")
	// A key rotation is part of the history too.
	t1, _ := h.snap.Tenant(tenantA)
	_, rotatedHash, rotatedPrefix := projections.NewAPIKey()
	data, _ := json.Marshal(events.TenantAPIKeyRotatedData{APIKeyHash: rotatedHash, APIKeyPrefix: rotatedPrefix})
	h.append(events.Envelope{ID: "rot", Type: events.TenantAPIKeyRotated, AggregateType: events.AggregateTenant,
		AggregateID: tenantA, AggregateVersion: t1.Version + 1, TenantID: tenantA, OccurredAt: t0, Data: data})
	b := int64(len(h.log))

	got := Diff(h.at(a), h.at(b))
	if s := summary(got); strings.Join(s, ",") != "updated tenant 0a,updated tenant 0b,updated route a1" {
		t.Fatalf("diff = %v", s)
	}
	if f := got[0].Fields; len(f) != 1 || f["apiKeyPrefix"].To != rotatedPrefix {
		t.Errorf("tenant a fields = %s, want only apiKeyPrefix", jsonOf(t, f))
	}
	if f := got[1].Fields; len(f) != 1 || f["status"].From != events.TenantSuspended || f["status"].To != events.TenantActive {
		t.Errorf("tenant b fields = %s, want status suspended -> active", jsonOf(t, f))
	}
	if f := jsonOf(t, got[2].Fields); f != `{"upstreams":{"from":[{"url":"http://127.0.0.1:9001","weight":1}],"to":[{"url":"http://127.0.0.1:9009","weight":2}]}}` {
		t.Errorf("route fields = %s", f)
	}
	if rev := Diff(h.at(b), h.at(a)); len(rev) != 3 {
		t.Errorf("reverse diff = %v", summary(rev))
	}
	if same := Diff(h.at(b), h.at(b)); len(same) != 0 {
		t.Errorf("diff of a state with itself = %v", summary(same))
	}
	if all := Diff(projections.Empty(), h.at(a)); len(all) != 5 || all[0].Change != Created {
		t.Errorf("diff from the empty state = %v", summary(all))
	}
	// Changed and changed back: new versions, the same configuration, so
	// only the key rotation is a difference.
	h.apply(sampleDoc(), "admin")
	back := h.at(int64(len(h.log)))
	if r, _ := back.Route(routeA1); r.Version < 2 {
		t.Fatalf("route a1 at version %d: the document changed nothing back", r.Version)
	}
	if s := summary(Diff(h.at(a), back)); strings.Join(s, ",") != "updated tenant 0a" {
		t.Errorf("diff to a state changed back = %v, want only tenant a's key", s)
	}
}

func TestEventsRejectsChangesNotFromPlan(t *testing.T) {
	t.Parallel()
	_, err := Events(projections.Empty(), []Change{{AggregateType: events.AggregateTenant, AggregateID: tenantA, Change: Created}}, "x", t0, nil)
	if err == nil {
		t.Fatal("Events accepted a created change without its desired value")
	}
	_, err = Events(projections.Empty(), []Change{{AggregateType: events.AggregateRoute, AggregateID: routeA1, Change: Deleted}}, "x", t0, nil)
	if err == nil {
		t.Fatal("Events accepted deleting a route that is not live")
	}
}
