package admin

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/tenantgate/gateway/events"
)

// authzSpec is the specification of who may do what, written out here
// independently of the code's table: TestAuthorizerTable requires the two to
// be equal and to cover every operation of the OpenAPI document.
var authzSpec = map[string]rule{
	"GET /admin/tenants":              {events.RoleViewer, anyTenant},
	"POST /admin/tenants":             {events.RoleOperator, everyTenant},
	"GET /admin/tenants/:id":          {events.RoleViewer, tenantParam},
	"PATCH /admin/tenants/:id":        {events.RoleOperator, tenantParam},
	"DELETE /admin/tenants/:id":       {events.RoleOperator, tenantParam},
	"POST /admin/tenants/:id/api-key": {events.RoleOperator, tenantParam},
	"GET /admin/tenants/:id/routes":   {events.RoleViewer, tenantParam},
	"GET /admin/tenants/:id/history":  {events.RoleViewer, tenantParam},
	"POST /admin/routes":              {events.RoleOperator, anyTenant},
	"GET /admin/routes/:id":           {events.RoleViewer, routeParam},
	"PATCH /admin/routes/:id":         {events.RoleOperator, routeParam},
	"DELETE /admin/routes/:id":        {events.RoleOperator, routeParam},
	"GET /admin/routes/:id/history":   {events.RoleViewer, routeParam},
	"GET /admin/routes/:id/upstreams": {events.RoleViewer, routeParam},
	"GET /admin/events":               {events.RoleViewer, anyTenant},
	"GET /admin/state":                {events.RoleViewer, anyTenant},
	"GET /admin/status":               {events.RoleViewer, anyTenant},
	"GET /admin/instances":            {events.RoleViewer, anyTenant},
	"GET /admin/diff":                 {events.RoleViewer, anyTenant},
	"POST /admin/apply":               {events.RoleViewer, anyTenant},
	opApplyWrite:                      {events.RoleOperator, anyTenant},
	"POST /admin/rollback":            {events.RoleOperator, anyTenant},
	"GET /admin/openapi.json":         {events.RoleViewer, anyTenant},
	"GET /admin/whoami":               {events.RoleViewer, anyTenant},
	"GET /admin/keys":                 {events.RoleAdmin, everyTenant},
	"POST /admin/keys":                {events.RoleAdmin, everyTenant},
	"GET /admin/keys/:id":             {events.RoleAdmin, everyTenant},
	"DELETE /admin/keys/:id":          {events.RoleAdmin, everyTenant},
	"GET /metrics":                    {events.RoleViewer, anyTenant},
	"ALL /admin":                      {events.RoleViewer, anyTenant},
	"ALL /admin/*":                    {events.RoleViewer, anyTenant},
}

// authzFixture: tenants A (in the scoped keys' scope) and B, a route each,
// and a key per role, unscoped and scoped to A.
type authzFixture struct {
	e             *env
	tenant, route map[string]string // "A", "B" -> id
	keys          map[string]string // "viewer", "operator/A", ... -> key
	n             int
}

func (f *authzFixture) unique() string { f.n++; return fmt.Sprint("n", f.n) }

func (f *authzFixture) createKey(t *testing.T, name, role, tenantIDs string) (id, key string) {
	t.Helper()
	body := fmt.Sprintf(`{"name":%q,"role":%q%s}`, name, role, tenantIDs)
	r := do(t, f.e.app, "POST", "/admin/keys", body)
	if r.status != 201 {
		t.Fatalf("create key: %d %s", r.status, r.raw)
	}
	var out struct{ ID, Key string }
	r.decode(t, &out)
	return out.ID, out.Key
}

func newAuthzFixture(t *testing.T) *authzFixture {
	f := &authzFixture{e: newSQLiteEnv(t), tenant: map[string]string{}, route: map[string]string{}, keys: map[string]string{}}
	for _, name := range []string{"A", "B"} {
		f.tenant[name] = f.e.createTenant(t, `{"name":"tenant-`+name+`"}`).ID
		f.route[name] = f.e.createRoute(t, `{"tenantId":"`+f.tenant[name]+`","path":"/`+name+`","upstreams":[{"url":"http://127.0.0.1:9"}]}`).ID
	}
	for _, role := range []string{"viewer", "operator", "admin"} {
		_, f.keys[role] = f.createKey(t, role, role, "")
		_, f.keys[role+"/A"] = f.createKey(t, role+"-A", role, `,"tenantIds":["`+f.tenant["A"]+`"]`)
	}
	return f
}

// request builds a request of op by key against target ("A" or "B"): the
// writes are made harmless where the operation allows (an If-Match that
// cannot match answers 412 once authorized; apply posts back the caller's
// own view of the state).
func (f *authzFixture) request(t *testing.T, op, key, target string) (method, path, body string, hs []header) {
	hs = []header{{"X-Admin-Key", key}}
	parts := strings.SplitN(op, " ", 2)
	method, path = parts[0], parts[1]
	path = strings.TrimSuffix(path, " (write)")
	id := f.tenant[target]
	if strings.HasPrefix(path, "/admin/routes/") {
		id = f.route[target]
	}
	switch op {
	case "POST /admin/tenants":
		body = `{"name":"` + f.unique() + `"}`
	case "POST /admin/routes":
		body = `{"tenantId":"` + f.tenant[target] + `","path":"/` + f.unique() + `","upstreams":[{"url":"http://127.0.0.1:9"}]}`
	case "PATCH /admin/tenants/:id", "PATCH /admin/routes/:id":
		body, hs = `{}`, append(hs, header{"If-Match", "999"})
	case "DELETE /admin/tenants/:id", "DELETE /admin/routes/:id", "POST /admin/tenants/:id/api-key":
		hs = append(hs, header{"If-Match", "999"})
	case "GET /admin/diff":
		path = "/admin/diff?from=0&to=1"
	case "POST /admin/apply", opApplyWrite:
		state := do(t, f.e.app, "GET", "/admin/state", "", header{"X-Admin-Key", key})
		if state.status != 200 {
			t.Fatalf("state for %s: %d", key[:8], state.status)
		}
		body = strings.TrimSuffix(string(state.raw), "}") + fmt.Sprintf(`,"dryRun":%v}`, op == "POST /admin/apply")
	case "POST /admin/rollback":
		head := len(f.e.allEvents(t))
		body = fmt.Sprintf(`{"toSeq":%d}`, head)
	case "POST /admin/keys":
		body = `{"name":"` + f.unique() + `","role":"viewer"}`
	case "GET /admin/keys/:id":
		id, _ = f.createKey(t, f.unique(), "viewer", "")
	case "DELETE /admin/keys/:id":
		id, _ = f.createKey(t, f.unique(), "viewer", "")
	case "ALL /admin", "ALL /admin/*":
		method, path = "GET", "/admin/no-such-thing"
	}
	path = strings.Replace(path, ":id", id, 1)
	return method, path, body, hs
}

// TestAuthorizerTable sends every admin operation with every role, unscoped
// and scoped, against an in-scope and an out-of-scope tenant, through the
// real router, and checks the answer against the specification.
func TestAuthorizerTable(t *testing.T) {
	t.Parallel()
	if len(authzSpec) != len(permissions) {
		t.Errorf("the spec has %d operations, the authorizer %d", len(authzSpec), len(permissions))
	}
	for op, want := range authzSpec {
		if got, ok := permissions[op]; !ok || got != want {
			t.Errorf("authorizer says %s: %+v (listed %v), the spec %+v", op, got, ok, want)
		}
	}
	for _, op := range loadOpenAPI(t).operations() {
		if _, ok := authzSpec[op]; !ok {
			t.Errorf("OpenAPI operation %s is not in the authorizer's specification", op)
		}
	}

	f := newAuthzFixture(t)
	ops := make([]string, 0, len(authzSpec))
	for op := range authzSpec {
		if op != "GET /metrics" { // served by cmd/gateway: TestMetricsTakesAnyRole
			ops = append(ops, op)
		}
	}
	sort.Strings(ops)
	principals := []string{"root", "viewer", "operator", "admin", "viewer/A", "operator/A", "admin/A"}
	n := 0
	for _, op := range ops {
		spec := authzSpec[op]
		for _, who := range principals {
			for _, target := range []string{"A", "B"} {
				key := testAdminKey
				role, scoped := events.RoleAdmin, false
				if who != "root" {
					key = f.keys[who]
					r, _, s := strings.Cut(who, "/")
					role, scoped = events.AdminRole(r), s
				}
				method, path, body, hs := f.request(t, op, key, target)
				r := do(t, f.e.app, method, path, body, hs...)
				n++
				name := fmt.Sprintf("%s as %s on %s (%s %s)", op, who, target, method, path)
				switch {
				case roleRank[role] < roleRank[spec.role] || (scoped && spec.resource == everyTenant):
					if r.status != 403 {
						t.Errorf("%s: %d %s, want 403 forbidden", name, r.status, r.raw)
					}
				case scoped && target == "B" && (spec.resource == tenantParam || spec.resource == routeParam):
					if r.status != 404 {
						t.Errorf("%s: %d %s, want 404 (another's tenant is absent)", name, r.status, r.raw)
					}
				case scoped && target == "B" && op == "POST /admin/routes":
					wantError(t, r, 400, "validation_failed", "tenantId")
				case strings.HasPrefix(op, "ALL "):
					if r.status != 404 {
						t.Errorf("%s: %d, want 404", name, r.status)
					}
				default:
					if r.status == 401 || r.status == 403 || r.status == 404 || r.status >= 500 {
						t.Errorf("%s: %d %s, want it allowed", name, r.status, r.raw)
					}
				}
			}
		}
	}
	t.Logf("%d requests checked", n)
}

// TestScopedKeySeesOnlyItsTenants: lists, events, state and diff hide the
// other tenants; apply of another's tenant is refused; the actor is the
// key's name with its id on the event, X-Actor ignored.
func TestScopedKeySeesOnlyItsTenants(t *testing.T) {
	t.Parallel()
	f := newAuthzFixture(t)
	op := header{"X-Admin-Key", f.keys["operator/A"]}
	for _, path := range []string{"/admin/tenants", "/admin/events?limit=1000", "/admin/state", "/admin/state?at=4", "/admin/diff?from=0&to=4"} {
		r := do(t, f.e.app, "GET", path, "", op)
		if r.status != 200 {
			t.Fatalf("%s: %d %s", path, r.status, r.raw)
		}
		if strings.Contains(string(r.raw), f.tenant["B"]) || strings.Contains(string(r.raw), f.route["B"]) {
			t.Errorf("%s shows tenant B to a key scoped to A: %s", path, r.raw)
		}
		if !strings.Contains(string(r.raw), f.tenant["A"]) {
			t.Errorf("%s does not show tenant A: %s", path, r.raw)
		}
	}
	r := do(t, f.e.app, "POST", "/admin/apply", `{"tenants":[{"id":"`+f.tenant["B"]+`","name":"x"}]}`, op)
	wantError(t, r, 403, "forbidden", "-")
	// A scoped apply of nothing deletes its own tenant only.
	r = do(t, f.e.app, "POST", "/admin/apply", `{"tenants":[],"routes":[],"dryRun":true}`, op)
	var res struct {
		Changes []struct{ AggregateID string }
	}
	r.decode(t, &res)
	if len(res.Changes) != 2 {
		t.Fatalf("scoped empty apply plans %d changes, want A and its route: %s", len(res.Changes), r.raw)
	}
	for _, c := range res.Changes {
		if c.AggregateID != f.tenant["A"] && c.AggregateID != f.route["A"] {
			t.Fatalf("scoped apply touches %s", c.AggregateID)
		}
	}
	r = do(t, f.e.app, "PATCH", "/admin/tenants/"+f.tenant["A"], `{"name":"renamed"}`, op, header{"X-Actor", "mallory"})
	if r.status != 200 {
		t.Fatalf("patch: %d %s", r.status, r.raw)
	}
	evs := f.e.allEvents(t)
	last := evs[len(evs)-1]
	who := do(t, f.e.app, "GET", "/admin/whoami", "", op)
	var me struct {
		Root      bool
		Name      string
		Role      string
		KeyID     string
		TenantIDs []string
	}
	who.decode(t, &me)
	if me.Root || me.Name != "operator-A" || me.Role != "operator" || len(me.TenantIDs) != 1 || me.TenantIDs[0] != f.tenant["A"] {
		t.Fatalf("whoami = %s", who.raw)
	}
	if last.Actor != "operator-A" || last.ActorKeyID != me.KeyID {
		t.Fatalf("event actor %q key %q, want operator-A %s", last.Actor, last.ActorKeyID, me.KeyID)
	}
	root := do(t, f.e.app, "GET", "/admin/whoami", "")
	if string(root.raw) != `{"name":"admin","role":"admin","root":true}` {
		t.Fatalf("root whoami = %s", root.raw)
	}
	if slices.Contains([]int{200}, do(t, f.e.app, "GET", "/admin/tenants", "", header{"X-Admin-Key", "gwa_wrong"}).status) {
		t.Fatal("a wrong key is accepted")
	}
}

// TestScopedRollbackTouchesOnlyItsTenants: a key scoped to A rolling back to
// before A and B were renamed undoes A's rename only and leaves keys alone.
func TestScopedRollbackTouchesOnlyItsTenants(t *testing.T) {
	t.Parallel()
	f := newAuthzFixture(t)
	before := len(f.e.allEvents(t))
	for _, name := range []string{"A", "B"} {
		if r := do(t, f.e.app, "PATCH", "/admin/tenants/"+f.tenant[name], `{"name":"renamed-`+name+`"}`); r.status != 200 {
			t.Fatalf("rename %s: %d %s", name, r.status, r.raw)
		}
	}
	r := do(t, f.e.app, "POST", "/admin/rollback", fmt.Sprintf(`{"toSeq":%d}`, before), header{"X-Admin-Key", f.keys["operator/A"]})
	if r.status != 200 {
		t.Fatalf("rollback: %d %s", r.status, r.raw)
	}
	var res struct {
		Changes []struct{ AggregateID string }
	}
	r.decode(t, &res)
	if len(res.Changes) != 1 || res.Changes[0].AggregateID != f.tenant["A"] {
		t.Fatalf("scoped rollback changes %s, want A's rename only", r.raw)
	}
	var a, b tenantJSON
	do(t, f.e.app, "GET", "/admin/tenants/"+f.tenant["A"], "").decode(t, &a)
	do(t, f.e.app, "GET", "/admin/tenants/"+f.tenant["B"], "").decode(t, &b)
	if a.Name != "tenant-A" || b.Name != "renamed-B" {
		t.Fatalf("after the scoped rollback: A %q, B %q", a.Name, b.Name)
	}
}
