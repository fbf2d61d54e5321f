package admin

import (
	"testing"

	"github.com/valyala/fasthttp"
)

// BenchmarkAdminRead measures one admin read through the router and its
// middleware (authentication and authorization included), served straight
// by the fasthttp handler without a connection, so the authorizer's share
// is visible: GET /admin/tenants/:id with the root key.
func BenchmarkAdminRead(b *testing.B) {
	benchmarkAdminRead(b, testAdminKey)
}

func benchmarkAdminRead(b *testing.B, key string) {
	e := newSQLiteEnv(b)
	tn := e.createTenant(b, `{"name":"a"}`)
	if key == "" {
		r := do(b, e.app, "POST", "/admin/keys", `{"name":"scoped","role":"viewer","tenantIds":["`+tn.ID+`"]}`)
		var k struct{ Key string }
		r.decode(b, &k)
		key = k.Key
	}
	h := e.app.Handler()
	var ctx fasthttp.RequestCtx
	b.ReportAllocs()
	for b.Loop() {
		ctx.Request.Reset()
		ctx.Response.Reset()
		ctx.Request.Header.SetMethod("GET")
		ctx.Request.SetRequestURI("/admin/tenants/" + tn.ID)
		ctx.Request.Header.Set("X-Admin-Key", key)
		h(&ctx)
		if ctx.Response.StatusCode() != 200 {
			b.Fatalf("%d %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
}
