package admin

import (
	"fmt"
	"net/http"
	"testing"
)

// BenchmarkDecodeRoute measures strict decoding, validation and
// normalization of the full example route of API.md.
func BenchmarkDecodeRoute(b *testing.B) {
	body := []byte(fullRouteBody)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		v, err := parseJSON(body)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := decodeRoute(v); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCreateTenant measures a whole write through the handler on
// SQLite: validate, append, wait for the projection, answer.
func BenchmarkCreateTenant(b *testing.B) {
	e := newSQLiteEnv(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if r := do(b, e.app, http.MethodPost, "/admin/tenants", fmt.Sprintf(`{"name":"t%d"}`, i)); r.status != 201 {
			b.Fatalf("%d %s", r.status, r.raw)
		}
	}
}

// BenchmarkPatchRoute measures a route update (merge, validate, diff,
// append, wait) on SQLite.
func BenchmarkPatchRoute(b *testing.B) {
	e := newSQLiteEnv(b)
	tn := e.createTenant(b, `{"name":"a"}`)
	rt := e.createRoute(b, fmt.Sprintf(`{"tenantId":%q,"path":"/a","upstreams":[{"url":"http://u"}],"resilience":{"retry":{},"circuitBreaker":{}}}`, tn.ID))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if r := do(b, e.app, http.MethodPatch, "/admin/routes/"+rt.ID, fmt.Sprintf(`{"path":"/p%d"}`, i)); r.status != 200 {
			b.Fatalf("%d %s", r.status, r.raw)
		}
	}
}

// BenchmarkGetTenant measures a read, answered from the snapshot.
func BenchmarkGetTenant(b *testing.B) {
	e := newSQLiteEnv(b)
	tn := e.createTenant(b, `{"name":"a"}`)
	b.ReportAllocs()
	for b.Loop() {
		if r := do(b, e.app, http.MethodGet, "/admin/tenants/"+tn.ID, ""); r.status != 200 {
			b.Fatalf("%d %s", r.status, r.raw)
		}
	}
}
