package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/projections"
)

func TestEventsQuery(t *testing.T) {
	t.Parallel()
	e := newSQLiteEnv(t)
	a := e.createTenant(t, `{"name":"a"}`)
	b := e.createTenant(t, `{"name":"b"}`)
	ra := e.createRoute(t, fmt.Sprintf(`{"tenantId":%q,"path":"/a","upstreams":[{"url":"http://u"}]}`, a.ID))
	do(t, e.app, http.MethodPatch, "/admin/tenants/"+b.ID, `{"status":"suspended"}`)
	do(t, e.app, http.MethodPost, "/admin/tenants/"+a.ID+"/api-key", "")
	// Log: 1 a created, 2 b created, 3 route created, 4 b updated, 5 a rotated.

	tests := []struct {
		name      string
		query     string
		wantSeqs  []int64
		nextAfter *int64
	}{
		{name: "all", query: "", wantSeqs: []int64{1, 2, 3, 4, 5}},
		{name: "after", query: "?after=3", wantSeqs: []int64{4, 5}},
		{name: "after head", query: "?after=5", wantSeqs: []int64{}},
		{name: "full page", query: "?limit=2", wantSeqs: []int64{1, 2}, nextAfter: ptr(int64(2))},
		{name: "next page", query: "?limit=2&after=2", wantSeqs: []int64{3, 4}, nextAfter: ptr(int64(4))},
		{name: "last full page", query: "?limit=1&after=4", wantSeqs: []int64{5}, nextAfter: ptr(int64(5))},
		{name: "short page", query: "?limit=3&after=3", wantSeqs: []int64{4, 5}},
		{name: "routes", query: "?aggregateType=route", wantSeqs: []int64{3}},
		{name: "tenants", query: "?aggregateType=tenant", wantSeqs: []int64{1, 2, 4, 5}},
		{name: "aggregate", query: "?aggregateId=" + b.ID, wantSeqs: []int64{2, 4}},
		{name: "tenant", query: "?tenantId=" + a.ID, wantSeqs: []int64{1, 3, 5}},
		{name: "combined", query: "?tenantId=" + a.ID + "&aggregateType=tenant&after=1", wantSeqs: []int64{5}},
		{name: "route aggregate", query: "?aggregateId=" + ra.ID, wantSeqs: []int64{3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := do(t, e.app, http.MethodGet, "/admin/events"+tt.query, "")
			var page eventPage
			r.decode(t, &page)
			var got []int64
			for _, ev := range page.Items {
				got = append(got, ev.Seq)
				if _, has := ev.Data["apiKeyHash"]; has {
					t.Fatalf("event %d shows the key digest", ev.Seq)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.wantSeqs) && (len(got) != 0 || len(tt.wantSeqs) != 0) {
				t.Fatalf("seqs = %v, want %v", got, tt.wantSeqs)
			}
			if (page.NextAfter == nil) != (tt.nextAfter == nil) || (page.NextAfter != nil && *page.NextAfter != *tt.nextAfter) {
				t.Fatalf("nextAfter = %v, want %v", page.NextAfter, tt.nextAfter)
			}
		})
	}

	// The event object is the contract's, with every field.
	var raw struct {
		Items []map[string]json.RawMessage `json:"items"`
	}
	do(t, e.app, http.MethodGet, "/admin/events?limit=1", "").decode(t, &raw)
	for _, k := range []string{"seq", "id", "type", "aggregateType", "aggregateId", "aggregateVersion", "tenantId", "actor", "occurredAt", "data"} {
		if _, has := raw.Items[0][k]; !has {
			t.Errorf("event object lacks %q", k)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func TestStateAt(t *testing.T) {
	t.Parallel()
	e := newSQLiteEnv(t)
	a := e.createTenant(t, `{"name":"a"}`)
	e.createRoute(t, fmt.Sprintf(`{"tenantId":%q,"path":"/a","upstreams":[{"url":"http://u"}]}`, a.ID))
	do(t, e.app, http.MethodPatch, "/admin/tenants/"+a.ID, `{"name":"a2"}`)
	e.createTenant(t, `{"name":"b"}`)
	do(t, e.app, http.MethodDelete, "/admin/tenants/"+a.ID, "")
	evs := e.allEvents(t)

	for n := int64(0); n <= int64(len(evs)); n++ {
		want, err := projections.Replay(evs[:n])
		if err != nil {
			t.Fatal(err)
		}
		r := do(t, e.app, http.MethodGet, fmt.Sprintf("/admin/state?at=%d", n), "")
		if r.status != 200 {
			t.Fatalf("at=%d: %d %s", n, r.status, r.raw)
		}
		if got, wantJSON := string(r.raw), mustJSON(t, NewStateDocument(want)); got != wantJSON {
			t.Fatalf("at=%d:\n got %s\nwant %s", n, got, wantJSON)
		}
	}
	var empty StateDocument
	do(t, e.app, http.MethodGet, "/admin/state?at=0", "").decode(t, &empty)
	if empty.At != 0 || empty.Tenants == nil || len(empty.Tenants) != 0 || len(empty.Routes) != 0 {
		t.Fatalf("at=0: %+v", empty)
	}
	wantError(t, do(t, e.app, http.MethodGet, fmt.Sprintf("/admin/state?at=%d", len(evs)+1), ""), 400, "validation_failed", "at")

	// Without at: the current snapshot.
	r := do(t, e.app, http.MethodGet, "/admin/state", "")
	if string(r.raw) != mustJSON(t, NewStateDocument(e.proj.Snapshot())) {
		t.Fatalf("current state: %s", r.raw)
	}
}

// downStore fails every call, as a store that cannot be reached.
type downStore struct{ events.Store }

func (downStore) Head(context.Context) (int64, error) { return 0, events.ErrUnavailable }
func (downStore) Append(context.Context, events.AppendRequest) ([]events.Envelope, error) {
	return nil, events.ErrUnavailable
}

func TestStatus(t *testing.T) {
	t.Parallel()
	e := newSQLiteEnv(t)
	e.createTenant(t, `{"name":"a"}`)
	var st struct {
		InstanceID   string `json:"instanceId"`
		AppliedSeq   int64  `json:"appliedSeq"`
		StoreHeadSeq int64  `json:"storeHeadSeq"`
		Bus          string `json:"bus"`
		Store        string `json:"store"`
		Ready        bool   `json:"ready"`
		StateHash    string `json:"stateHash"`
	}
	do(t, e.app, http.MethodGet, "/admin/status", "").decode(t, &st)
	if st.InstanceID != "it" || st.AppliedSeq != 1 || st.StoreHeadSeq != 1 || st.Bus != "memory" || st.Store != "sqlite" || !st.Ready ||
		st.StateHash != e.proj.Snapshot().StateHash() {
		t.Fatalf("status = %+v", st)
	}

	// With the store down: still 200 with the last known head; writes 503.
	api, err := New(Config{AdminKey: testAdminKey, InstanceID: "it"}, Deps{Store: downStore{e.store}, Projector: e.proj, BusKind: "memory"})
	if err != nil {
		t.Fatal(err)
	}
	api.lastHead.Store(1)
	app := newAppFor(api)
	r := do(t, app, http.MethodGet, "/admin/status", "")
	r.decode(t, &st)
	if r.status != 200 || st.StoreHeadSeq != 1 {
		t.Fatalf("status with the store down: %d %s", r.status, r.raw)
	}
	wantError(t, do(t, app, http.MethodPost, "/admin/tenants", `{"name":"b"}`), 503, "store_unavailable", "-")
}
