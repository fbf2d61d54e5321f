package admin

import (
	"net/http"
	"strings"
	"testing"
)

func TestAuth(t *testing.T) {
	t.Parallel()
	app := newStubApp(t, stubProjector{})
	tests := []struct {
		name   string
		method string
		path   string
		key    string
	}{
		{name: "missing key", method: http.MethodGet, path: "/admin/tenants", key: ""},
		{name: "wrong key", method: http.MethodGet, path: "/admin/tenants", key: "nope"},
		{name: "key prefix", method: http.MethodGet, path: "/admin/tenants", key: testAdminKey[:5]},
		{name: "key with suffix", method: http.MethodPost, path: "/admin/tenants", key: testAdminKey + "x"},
		{name: "unknown admin path", method: http.MethodGet, path: "/admin/nothing", key: "nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := do(t, app, tt.method, tt.path, `{"name":"a"}`, header{"X-Admin-Key", tt.key})
			wantError(t, r, http.StatusUnauthorized, "unauthorized", "-")
		})
	}
}

func TestRouting(t *testing.T) {
	t.Parallel()
	app := newStubApp(t, stubProjector{})
	tests := []struct {
		name   string
		method string
		path   string
		status int
		code   string
	}{
		{name: "unknown admin path", method: http.MethodGet, path: "/admin/nothing", status: 404, code: "not_found"},
		{name: "admin root", method: http.MethodGet, path: "/admin", status: 404, code: "not_found"},
		{name: "wrong method", method: http.MethodPut, path: "/admin/tenants", status: 404, code: "not_found"},
		{name: "unknown sub-resource", method: http.MethodGet, path: "/admin/tenants/x/secrets", status: 404, code: "not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wantError(t, do(t, app, tt.method, tt.path, ""), tt.status, tt.code, "-")
		})
	}
}

func TestNonAdminPathsPassThrough(t *testing.T) {
	t.Parallel()
	app := newStubApp(t, stubProjector{})
	for _, path := range []string{"/administrator", "/admins/tenants", "/api/admin"} {
		r := do(t, app, http.MethodGet, path, "", header{"X-Admin-Key", ""})
		if r.status != 299 {
			t.Errorf("GET %s = %d %s, want the proxy's 299", path, r.status, r.raw)
		}
	}
}

func TestPanicIsJSON500(t *testing.T) {
	t.Parallel()
	app := newStubApp(t, stubProjector{panics: true})
	wantError(t, do(t, app, http.MethodGet, "/admin/tenants", ""), 500, "internal_error", "-")
}

func TestActorHeader(t *testing.T) {
	t.Parallel()
	app := newStubApp(t, stubProjector{})
	r := do(t, app, http.MethodPost, "/admin/tenants", `{"name":"a"}`, header{"X-Actor", strings.Repeat("a", 201)})
	wantError(t, r, 400, "validation_failed", "X-Actor")
	r = do(t, app, http.MethodPost, "/admin/tenants", `{"name":"a"}`, header{"X-Actor", "a\tb"})
	wantError(t, r, 400, "validation_failed", "X-Actor")
	// 200 characters are fine (the request then fails at the stub store).
	r = do(t, app, http.MethodPost, "/admin/tenants", `{"name":"a"}`, header{"X-Actor", strings.Repeat("é", 200)})
	wantError(t, r, 503, "store_unavailable", "-")
}

func TestOversizeByContentLength(t *testing.T) {
	t.Parallel()
	app := newStubApp(t, stubProjector{})
	r := do(t, app, http.MethodPatch, "/admin/tenants/x", `{"name":"`+strings.Repeat("a", 2<<20)+`"}`)
	wantError(t, r, 413, "payload_too_large", "-")
}

func TestQueryValidation(t *testing.T) {
	t.Parallel()
	app := newStubApp(t, stubProjector{})
	tests := []struct {
		name  string
		path  string
		field string
	}{
		{name: "limit zero", path: "/admin/tenants?limit=0", field: "limit"},
		{name: "limit too high", path: "/admin/tenants?limit=501", field: "limit"},
		{name: "limit not a number", path: "/admin/tenants?limit=ten", field: "limit"},
		{name: "bad cursor", path: "/admin/tenants?cursor=%%%", field: "cursor"},
		{name: "events after negative", path: "/admin/events?after=-1", field: "after"},
		{name: "events limit too high", path: "/admin/events?limit=1001", field: "limit"},
		{name: "events bad aggregate type", path: "/admin/events?aggregateType=user", field: "aggregateType"},
		{name: "state at negative", path: "/admin/state?at=-1", field: "at"},
		{name: "state at not a number", path: "/admin/state?at=x", field: "at"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wantError(t, do(t, app, http.MethodGet, tt.path, ""), 400, "validation_failed", tt.field)
		})
	}
}

func TestNewValidatesConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
		deps Deps
	}{
		{name: "no admin key", cfg: Config{}, deps: Deps{Store: stubStore{}, Projector: stubProjector{}}},
		{name: "negative body limit", cfg: Config{AdminKey: "k", BodyLimit: -1}, deps: Deps{Store: stubStore{}, Projector: stubProjector{}}},
		{name: "no store", cfg: Config{AdminKey: "k"}, deps: Deps{Projector: stubProjector{}}},
		{name: "no projector", cfg: Config{AdminKey: "k"}, deps: Deps{Store: stubStore{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := New(tt.cfg, tt.deps); err == nil {
				t.Fatal("New accepted an invalid configuration")
			}
		})
	}
}
