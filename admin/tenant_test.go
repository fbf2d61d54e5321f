package admin

import (
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/tenantgate/gateway/projections"
)

func TestTenantLifecycle(t *testing.T) {
	t.Parallel()
	e := newSQLiteEnv(t)

	created := e.createTenant(t, `{"name":"acme","rateLimit":{"limit":100,"windowMs":1000}}`)
	if created.Version != 1 || created.Status != "active" || created.RateLimit == nil || created.RateLimit.Limit != 100 ||
		!strings.HasPrefix(created.APIKey, "gw_") || created.APIKeyPrefix != created.APIKey[:7] || created.CreatedAt.IsZero() {
		t.Fatalf("created = %+v", created)
	}
	path := "/admin/tenants/" + created.ID

	r := do(t, e.app, http.MethodGet, path, "")
	if r.status != 200 || r.header.Get("ETag") != `"1"` || strings.Contains(string(r.raw), "apiKey\"") {
		t.Fatalf("get: %d %s %s", r.status, r.header.Get("ETag"), r.raw)
	}
	wantError(t, do(t, e.app, http.MethodPost, "/admin/tenants", `{"name":"acme"}`), 409, "conflict", "-")

	steps := []struct {
		name    string
		method  string
		body    string
		ifMatch string
		status  int
		code    string
		field   string
		version int64 // of the tenant afterwards
	}{
		{name: "stale If-Match", method: http.MethodPatch, body: `{"status":"suspended"}`, ifMatch: "2", status: 412, code: "version_mismatch", field: "-", version: 1},
		{name: "patch with bare If-Match", method: http.MethodPatch, body: `{"status":"suspended"}`, ifMatch: "1", status: 200, version: 2},
		{name: "patch with quoted If-Match", method: http.MethodPatch, body: `{"rateLimit":{"limit":5}}`, ifMatch: `"2"`, status: 200, version: 3},
		{name: "no-op patch appends nothing", method: http.MethodPatch, body: `{"status":"suspended"}`, status: 200, version: 3},
		{name: "rateLimit null is unlimited", method: http.MethodPatch, body: `{"rateLimit":null}`, ifMatch: "*", status: 200, version: 4},
		{name: "partial rateLimit on unlimited", method: http.MethodPatch, body: `{"rateLimit":{"limit":5}}`, status: 400, code: "validation_failed", field: "rateLimit.windowMs", version: 4},
		{name: "unknown field", method: http.MethodPatch, body: `{"apiKeyPrefix":"gw_x"}`, status: 400, code: "validation_failed", field: "apiKeyPrefix", version: 4},
		{name: "unknown field set to null", method: http.MethodPatch, body: `{"id":null}`, status: 400, code: "validation_failed", field: "id", version: 4},
		{name: "unknown nested field", method: http.MethodPatch, body: `{"rateLimit":{"limit":1,"windowMs":100,"x":1}}`, status: 400, code: "validation_failed", field: "rateLimit.x", version: 4},
		{name: "name removed", method: http.MethodPatch, body: `{"name":null}`, status: 400, code: "validation_failed", field: "name", version: 4},
		{name: "wrong type", method: http.MethodPatch, body: `{"status":1}`, status: 400, code: "validation_failed", field: "status", version: 4},
		{name: "not an object", method: http.MethodPatch, body: `[1]`, status: 400, code: "validation_failed", field: "", version: 4},
		{name: "malformed", method: http.MethodPatch, body: `{`, status: 400, code: "invalid_json", field: "-", version: 4},
		{name: "rename", method: http.MethodPatch, body: `{"name":"acme2","status":null}`, status: 200, version: 5},
		{name: "rotate with stale If-Match", method: http.MethodPost, body: "", ifMatch: "4", status: 412, code: "version_mismatch", field: "-", version: 5},
		{name: "delete with stale If-Match", method: http.MethodDelete, ifMatch: `"4"`, status: 412, code: "version_mismatch", field: "-", version: 5},
	}
	for _, s := range steps {
		p := path
		if s.method == http.MethodPost {
			p += "/api-key"
		}
		r := do(t, e.app, s.method, p, s.body, header{"If-Match", s.ifMatch}, header{"Content-Type", "application/merge-patch+json"})
		if s.status >= 400 {
			wantError(t, r, s.status, s.code, s.field)
		} else if r.status != s.status || r.header.Get("ETag") != fmt.Sprintf(`"%d"`, s.version) {
			t.Fatalf("%s: %d ETag %s: %s", s.name, r.status, r.header.Get("ETag"), r.raw)
		}
		got, _ := e.proj.Snapshot().Tenant(created.ID)
		if got.Version != s.version {
			t.Fatalf("%s: version %d, want %d", s.name, got.Version, s.version)
		}
	}
	got, _ := e.proj.Snapshot().Tenant(created.ID)
	if got.Name != "acme2" || got.Status != "active" || got.RateLimit != nil {
		t.Fatalf("tenant after patches: %+v", got)
	}
	// The old name is free again.
	e.createTenant(t, `{"name":"acme"}`)

	// Rotation: the old key stops working, the new one works.
	r = do(t, e.app, http.MethodPost, path+"/api-key", "", header{"If-Match", "5"})
	var rotated tenantJSON
	r.decode(t, &rotated)
	if r.status != 200 || rotated.Version != 6 || rotated.APIKey == "" || rotated.APIKey == created.APIKey || rotated.APIKeyPrefix != rotated.APIKey[:7] {
		t.Fatalf("rotate: %d %s", r.status, r.raw)
	}
	snap := e.proj.Snapshot()
	if _, found := snap.Authenticate(projections.KeyHash([]byte(created.APIKey))); found {
		t.Fatal("the old key still authenticates")
	}
	if tn, found := snap.Authenticate(projections.KeyHash([]byte(rotated.APIKey))); !found || tn.ID != created.ID {
		t.Fatal("the new key does not authenticate")
	}

	r = do(t, e.app, http.MethodDelete, path, "", header{"If-Match", "6"})
	if r.status != 204 || len(r.raw) != 0 {
		t.Fatalf("delete: %d %s", r.status, r.raw)
	}
	wantError(t, do(t, e.app, http.MethodGet, path, ""), 404, "not_found", "-")
	wantError(t, do(t, e.app, http.MethodDelete, path, ""), 404, "not_found", "-")
	wantError(t, do(t, e.app, http.MethodPatch, path, `{"status":"active"}`), 404, "not_found", "-")
	wantError(t, do(t, e.app, http.MethodPost, path+"/api-key", ""), 404, "not_found", "-")
	wantError(t, do(t, e.app, http.MethodGet, path+"/routes", ""), 404, "not_found", "-")
	if _, found := e.proj.Snapshot().Authenticate(projections.KeyHash([]byte(rotated.APIKey))); found {
		t.Fatal("a deleted tenant's key still authenticates")
	}

	// History: oldest first, every write once, versions 1..7, no digest.
	var hist eventPage
	r = do(t, e.app, http.MethodGet, path+"/history", "")
	r.decode(t, &hist)
	wantTypes := []string{"TenantCreated", "TenantUpdated", "TenantUpdated", "TenantUpdated", "TenantUpdated", "TenantApiKeyRotated", "TenantDeleted"}
	if len(hist.Items) != len(wantTypes) {
		t.Fatalf("history has %d events, want %d: %s", len(hist.Items), len(wantTypes), r.raw)
	}
	for i, ev := range hist.Items {
		if ev.Type != wantTypes[i] || ev.AggregateVersion != int64(i+1) || ev.AggregateID != created.ID || ev.TenantID != created.ID || ev.Actor != "admin" {
			t.Fatalf("history[%d] = %+v", i, ev)
		}
		if _, has := ev.Data["apiKeyHash"]; has {
			t.Fatalf("history[%d] shows the key digest", i)
		}
	}
	if hist.Items[1].Data["status"] != "suspended" || len(hist.Items[1].Data) != 1 {
		t.Fatalf("TenantUpdated data = %v, want only the changed status", hist.Items[1].Data)
	}
	// The stored events do carry the digest the projections need.
	evs := e.allEvents(t)
	sum := projections.KeyHash([]byte(created.APIKey))
	if !strings.Contains(string(evs[0].Data), hex.EncodeToString(sum[:])) {
		t.Fatalf("stored TenantCreated lacks the key digest: %s", evs[0].Data)
	}
	wantError(t, do(t, e.app, http.MethodGet, "/admin/tenants/nope/history", ""), 404, "not_found", "-")
}

func TestActorIsRecorded(t *testing.T) {
	t.Parallel()
	e := newSQLiteEnv(t)
	r := do(t, e.app, http.MethodPost, "/admin/tenants", `{"name":"a"}`, header{"X-Actor", "alice"})
	if r.status != 201 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	evs := e.allEvents(t)
	if len(evs) != 1 || evs[0].Actor != "alice" || evs[0].OccurredAt.Location().String() != "UTC" || evs[0].OccurredAt.Nanosecond()%1000 != 0 {
		t.Fatalf("events = %+v", evs)
	}
}

func TestPagination(t *testing.T) {
	t.Parallel()
	e := newSQLiteEnv(t)
	const n = 11
	want := map[string]bool{}
	for i := range n {
		want[e.createTenant(t, fmt.Sprintf(`{"name":"t%02d"}`, i)).ID] = true
	}
	for _, limit := range []int{1, 3, 11, 500} {
		seen := map[string]int{}
		cursor := ""
		pages := 0
		for {
			url := fmt.Sprintf("/admin/tenants?limit=%d", limit)
			if cursor != "" {
				url += "&cursor=" + cursor
			}
			var page struct {
				Items      []tenantJSON `json:"items"`
				NextCursor *string      `json:"nextCursor"`
			}
			r := do(t, e.app, http.MethodGet, url, "")
			r.decode(t, &page)
			pages++
			if len(page.Items) > limit || pages > n+1 {
				t.Fatalf("limit %d: page of %d", limit, len(page.Items))
			}
			for _, it := range page.Items {
				seen[it.ID]++
			}
			if page.NextCursor == nil {
				break
			}
			cursor = *page.NextCursor
		}
		if len(seen) != n {
			t.Fatalf("limit %d: saw %d tenants, want %d", limit, len(seen), n)
		}
		for id, c := range seen {
			if c != 1 || !want[id] {
				t.Fatalf("limit %d: tenant %s seen %d times", limit, id, c)
			}
		}
		if wantPages := (n + limit - 1) / limit; pages != wantPages {
			t.Fatalf("limit %d: %d pages, want %d", limit, pages, wantPages)
		}
	}
	// The default page holds every tenant here.
	var page struct {
		Items      []tenantJSON `json:"items"`
		NextCursor *string      `json:"nextCursor"`
	}
	do(t, e.app, http.MethodGet, "/admin/tenants", "").decode(t, &page)
	if len(page.Items) != n || page.NextCursor != nil {
		t.Fatalf("default page: %d items, cursor %v", len(page.Items), page.NextCursor)
	}
}
