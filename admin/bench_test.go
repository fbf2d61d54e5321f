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

// BenchmarkValidateRoute validates a typical route of a large apply (two
// weighted upstreams, retry and timeout) with validateStruct and with
// invopop's ValidateStruct, which it replaced.
func BenchmarkValidateRoute(b *testing.B) {
	v, err := parseJSON([]byte(resilience(`"retry":{"enabled":true,"maxRetries":3,"baseDelayMs":100,"maxDelayMs":2000,"retryableStatusCodes":[500,502,503,504]},"timeout":{"enabled":true,"default":10000}`)))
	if err != nil {
		b.Fatal(err)
	}
	var body routeBody
	if err := bind(v, &body); err != nil {
		b.Fatal(err)
	}
	for _, reference := range []bool{false, true} {
		b.Run(map[bool]string{false: "validateStruct", true: "ValidateStruct"}[reference], func(b *testing.B) {
			useReference.Store(reference)
			defer useReference.Store(false)
			b.ReportAllocs()
			for b.Loop() {
				if err := body.Validate(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
