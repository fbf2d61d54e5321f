package admin

import (
	"fmt"
	"net/http"
	"testing"
)

func TestRouteLifecycle(t *testing.T) {
	t.Parallel()
	e := newSQLiteEnv(t)
	tn := e.createTenant(t, `{"name":"acme"}`)

	wantError(t, do(t, e.app, http.MethodPost, "/admin/routes", `{"tenantId":"nope","path":"/a","upstreams":[{"url":"http://u"}]}`),
		400, "validation_failed", "tenantId")

	rt := e.createRoute(t, fmt.Sprintf(`{"tenantId":%q,"path":"/api","upstreams":[{"url":"http://127.0.0.1:9001"}],"resilience":{"retry":{}}}`, tn.ID))
	if rt.Version != 1 || rt.Method != "*" || rt.PathType != "prefix" || rt.LoadBalancing != "round-robin" || rt.Upstreams[0].Weight != 1 ||
		rt.Resilience == nil || rt.Resilience.Retry == nil || rt.Resilience.Retry.MaxRetries != 3 || !rt.Resilience.Retry.Enabled {
		t.Fatalf("created route = %+v", rt)
	}
	path := "/admin/routes/" + rt.ID
	r := do(t, e.app, http.MethodGet, path, "")
	if r.status != 200 || r.header.Get("ETag") != `"1"` {
		t.Fatalf("get: %d %s", r.status, r.raw)
	}

	steps := []struct {
		name    string
		method  string
		body    string
		ifMatch string
		status  int
		code    string
		field   string
		version int64
	}{
		{name: "stale If-Match", method: http.MethodPatch, body: `{"path":"/v2"}`, ifMatch: "7", status: 412, code: "version_mismatch", field: "-", version: 1},
		{name: "change path", method: http.MethodPatch, body: `{"path":"/v2"}`, ifMatch: `"1"`, status: 200, version: 2},
		{name: "nested merge", method: http.MethodPatch, body: `{"resilience":{"retry":{"maxRetries":5},"fallback":{}}}`, status: 200, version: 3},
		{name: "no-op", method: http.MethodPatch, body: `{"path":"/v2","resilience":{"retry":{"maxRetries":5}}}`, status: 200, version: 3},
		{name: "tenant cannot change", method: http.MethodPatch, body: `{"tenantId":"other"}`, status: 400, code: "validation_failed", field: "tenantId", version: 3},
		{name: "tenant cannot be removed", method: http.MethodPatch, body: `{"tenantId":null}`, status: 400, code: "validation_failed", field: "tenantId", version: 3},
		{name: "unknown field", method: http.MethodPatch, body: `{"priority":1}`, status: 400, code: "validation_failed", field: "priority", version: 3},
		{name: "unknown nested field", method: http.MethodPatch, body: `{"resilience":{"retry":{"jitter":1}}}`, status: 400, code: "validation_failed", field: "resilience.retry.jitter", version: 3},
		{name: "invalid merged result", method: http.MethodPatch, body: `{"pathType":"regex","path":"/(("}`, status: 400, code: "validation_failed", field: "path", version: 3},
		{name: "bad url", method: http.MethodPatch, body: `{"upstreams":[{"url":"http://u/?q"}]}`, status: 400, code: "validation_failed", field: "upstreams[0].url", version: 3},
		{name: "remove a block", method: http.MethodPatch, body: `{"resilience":null}`, status: 200, version: 4},
		{name: "delete with stale If-Match", method: http.MethodDelete, ifMatch: "3", status: 412, code: "version_mismatch", field: "-", version: 4},
	}
	for _, s := range steps {
		r := do(t, e.app, s.method, path, s.body, header{"If-Match", s.ifMatch})
		if s.status >= 400 {
			wantError(t, r, s.status, s.code, s.field)
		} else if r.status != s.status || r.header.Get("ETag") != fmt.Sprintf(`"%d"`, s.version) {
			t.Fatalf("%s: %d ETag %s: %s", s.name, r.status, r.header.Get("ETag"), r.raw)
		}
		got, _ := e.proj.Snapshot().Route(rt.ID)
		if got.Version != s.version {
			t.Fatalf("%s: version %d, want %d", s.name, got.Version, s.version)
		}
	}
	got, _ := e.proj.Snapshot().Route(rt.ID)
	if got.Path != "/v2" || got.Resilience != nil {
		t.Fatalf("route after patches: %+v", got.RouteSpec)
	}

	var list struct {
		Items []routeJSON `json:"items"`
	}
	do(t, e.app, http.MethodGet, "/admin/tenants/"+tn.ID+"/routes", "").decode(t, &list)
	if len(list.Items) != 1 || list.Items[0].ID != rt.ID {
		t.Fatalf("tenant routes = %+v", list)
	}

	if r := do(t, e.app, http.MethodDelete, path, "", header{"If-Match", "4"}); r.status != 204 {
		t.Fatalf("delete: %d %s", r.status, r.raw)
	}
	wantError(t, do(t, e.app, http.MethodGet, path, ""), 404, "not_found", "-")
	wantError(t, do(t, e.app, http.MethodPatch, path, `{"path":"/x"}`), 404, "not_found", "-")
	wantError(t, do(t, e.app, http.MethodDelete, path, ""), 404, "not_found", "-")

	var hist eventPage
	do(t, e.app, http.MethodGet, path+"/history", "").decode(t, &hist)
	wantTypes := []string{"RouteCreated", "RouteUpdated", "RouteUpdated", "RouteUpdated", "RouteDeleted"}
	if len(hist.Items) != len(wantTypes) {
		t.Fatalf("history: %+v", hist)
	}
	for i, ev := range hist.Items {
		if ev.Type != wantTypes[i] || ev.AggregateVersion != int64(i+1) || ev.TenantID != tn.ID || ev.AggregateType != "route" {
			t.Fatalf("history[%d] = %+v", i, ev)
		}
	}
	// An update carries only the top-level fields that changed.
	if d := hist.Items[1].Data; len(d) != 1 || d["path"] != "/v2" {
		t.Fatalf("first RouteUpdated data = %v", d)
	}
	if d := hist.Items[3].Data; len(d) != 1 || d["resilience"] != nil {
		t.Fatalf("block removal data = %v", d)
	}
	wantError(t, do(t, e.app, http.MethodGet, "/admin/routes/nope/history", ""), 404, "not_found", "-")

	// The tenant's history includes its routes' events.
	var th eventPage
	do(t, e.app, http.MethodGet, "/admin/tenants/"+tn.ID+"/history", "").decode(t, &th)
	if len(th.Items) != 1+len(wantTypes) {
		t.Fatalf("tenant history has %d events", len(th.Items))
	}
	for i := 1; i < len(th.Items); i++ {
		if th.Items[i].Seq <= th.Items[i-1].Seq {
			t.Fatal("tenant history is not oldest first")
		}
	}
}

func TestDeleteTenantCascades(t *testing.T) {
	t.Parallel()
	e := newSQLiteEnv(t)
	tn := e.createTenant(t, `{"name":"acme"}`)
	other := e.createTenant(t, `{"name":"other"}`)
	var ids []string
	for i := range 3 {
		ids = append(ids, e.createRoute(t, fmt.Sprintf(`{"tenantId":%q,"path":"/r%d","upstreams":[{"url":"http://u"}]}`, tn.ID, i)).ID)
	}
	kept := e.createRoute(t, fmt.Sprintf(`{"tenantId":%q,"path":"/r","upstreams":[{"url":"http://u"}]}`, other.ID))
	// Bump one route's version so the cascade must use each route's own.
	do(t, e.app, http.MethodPatch, "/admin/routes/"+ids[1], `{"method":"GET"}`)
	before := len(e.allEvents(t))

	if r := do(t, e.app, http.MethodDelete, "/admin/tenants/"+tn.ID, ""); r.status != 204 {
		t.Fatalf("delete: %d %s", r.status, r.raw)
	}
	evs := e.allEvents(t)[before:]
	if len(evs) != 4 {
		t.Fatalf("delete appended %d events, want 4", len(evs))
	}
	for i, ev := range evs[:3] {
		if ev.Type != "RouteDeleted" || ev.AggregateID != ids[i] || ev.TenantID != tn.ID {
			t.Fatalf("event %d = %+v", i, ev)
		}
	}
	if evs[1].AggregateVersion != 3 || evs[0].AggregateVersion != 2 {
		t.Fatalf("cascade versions %d %d", evs[0].AggregateVersion, evs[1].AggregateVersion)
	}
	if evs[3].Type != "TenantDeleted" || evs[3].AggregateID != tn.ID {
		t.Fatalf("last event = %+v", evs[3])
	}
	for _, id := range ids {
		wantError(t, do(t, e.app, http.MethodGet, "/admin/routes/"+id, ""), 404, "not_found", "-")
	}
	if r := do(t, e.app, http.MethodGet, "/admin/routes/"+kept.ID, ""); r.status != 200 {
		t.Fatalf("another tenant's route is gone: %d", r.status)
	}
	// Routes cannot be created for the deleted tenant.
	wantError(t, do(t, e.app, http.MethodPost, "/admin/routes", fmt.Sprintf(`{"tenantId":%q,"path":"/a","upstreams":[{"url":"http://u"}]}`, tn.ID)),
		400, "validation_failed", "tenantId")
}
