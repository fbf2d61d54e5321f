package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/tenantgate/gateway/admin/declarative"
	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/projections"
)

// declSeed creates two tenants, one with two routes carrying every block, and
// returns their ids.
func declSeed(t *testing.T, e *declEnv) (acme, beta, r1, r2 string) {
	t.Helper()
	acme, _ = e.create(t, "/admin/tenants", `{"name":"acme","rateLimit":{"limit":100,"windowMs":1000}}`)
	beta, _ = e.create(t, "/admin/tenants", `{"name":"beta","status":"suspended"}`)
	r1, _ = e.create(t, "/admin/routes", `{"tenantId":"`+acme+`","method":"GET","path":"/api/users","upstreams":[{"url":"http://127.0.0.1:9001","weight":3},{"url":"http://127.0.0.1:9002"}],"loadBalancing":"weighted",
		"resilience":{"circuitBreaker":{},"retry":{"maxRetries":2},"timeout":{"byMethod":{"GET":5000}},"healthCheck":{"endpoint":"/hc"},"fallback":{"body":"down"}},
		"transform":{"request":{"headers":{"set":{"X-Env":"prod"},"remove":["Cookie"]},"path":{"pattern":"^/api(.*)$","replacement":"/v2$1"}},"response":{"headers":{"add":{"X-Gw":"1"}}}}}`)
	r2, _ = e.create(t, "/admin/routes", `{"tenantId":"`+beta+`","path":"/b","pathType":"exact","upstreams":[{"url":"https://example.com/base"}]}`)
	return acme, beta, r1, r2
}

// declConfig is GET /admin/state (or ?at=) without keys, versions, timestamps and seq.
func declConfig(t *testing.T, e *declEnv, query string) string {
	t.Helper()
	var st struct {
		Tenants []map[string]any `json:"tenants"`
		Routes  []map[string]any `json:"routes"`
	}
	e.call(t, "GET", "/admin/state"+query, "").must(t, 200, &st)
	for _, list := range [][]map[string]any{st.Tenants, st.Routes} {
		for _, obj := range list {
			for _, k := range []string{"apiKeyPrefix", "version", "createdAt", "updatedAt"} {
				delete(obj, k)
			}
		}
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

type declApplyAnswer struct {
	Changes    []declarative.Change    `json:"changes"`
	AppliedSeq *int64                  `json:"appliedSeq"`
	APIKeys    []declarative.IssuedKey `json:"apiKeys"`
}

func declExportOf(t *testing.T, e *declEnv) string {
	t.Helper()
	if err := e.proj.CatchUp(t.Context()); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(declarative.Export(e.proj.Snapshot()))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func declWithDryRun(doc string) string {
	return strings.TrimSuffix(doc, "}") + `,"dryRun":true}`
}

func TestApplyExportToFreshStore(t *testing.T) {
	t.Parallel()
	for _, kind := range []declStoreKind{declSqliteStore, declPostgresStore} {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			src := newDeclEnv(t, kind)
			declSeed(t, src)
			doc := declExportOf(t, src)

			dst := newDeclEnv(t, kind) // the wiped store
			var dry declApplyAnswer
			dst.call(t, "POST", "/admin/apply", declWithDryRun(doc)).must(t, 200, &dry)
			if len(dry.Changes) != 4 || dry.AppliedSeq != nil || len(dry.APIKeys) != 0 {
				t.Fatalf("dry run = %+v, want 4 changes, appliedSeq null, no declKeys", dry)
			}
			if h := dst.head(t); h != 0 {
				t.Fatalf("dry run appended %d events", h)
			}

			var res declApplyAnswer
			dst.call(t, "POST", "/admin/apply", doc, "X-Actor", "deployer").must(t, 200, &res)
			if len(res.Changes) != 4 || res.AppliedSeq == nil || *res.AppliedSeq != 4 || len(res.APIKeys) != 2 {
				t.Fatalf("apply = %+v, want 4 changes at seq 4 and 2 declKeys", res)
			}
			if got, want := declConfig(t, dst, ""), declConfig(t, src, ""); got != want {
				t.Fatalf("applied declConfig differs:\n got %s\nwant %s", got, want)
			}
			var srcStatus, dstStatus struct{ StateHash, ConfigHash string }
			src.call(t, "GET", "/admin/status", "").must(t, 200, &srcStatus)
			dst.call(t, "GET", "/admin/status", "").must(t, 200, &dstStatus)
			if srcStatus.ConfigHash == "" || srcStatus.ConfigHash != dstStatus.ConfigHash {
				t.Fatalf("configHash after export, wipe, apply: %q, want %q", dstStatus.ConfigHash, srcStatus.ConfigHash)
			}
			for _, ev := range dst.events(t, 0) {
				if ev.Actor != "deployer" || ev.AggregateVersion != 1 {
					t.Errorf("event %d: actor %q version %d", ev.Seq, ev.Actor, ev.AggregateVersion)
				}
				for _, k := range res.APIKeys {
					if strings.Contains(string(ev.Data), k.APIKey) {
						t.Errorf("event %d stores a plaintext key", ev.Seq)
					}
				}
			}
			for _, k := range res.APIKeys {
				if tn, ok := dst.proj.Snapshot().Authenticate(projections.KeyHash([]byte(k.APIKey))); !ok || tn.ID != k.TenantID {
					t.Errorf("issued key of %s does not authenticate it", k.TenantID)
				}
			}

			var again declApplyAnswer
			dst.call(t, "POST", "/admin/apply", doc).must(t, 200, &again)
			if len(again.Changes) != 0 || again.AppliedSeq != nil || dst.head(t) != 4 {
				t.Fatalf("second apply = %s, head %d; want no changes and no events", declMustJSON(t, again), dst.head(t))
			}
		})
	}
}

// GET /admin/state applies verbatim: the current state changes nothing, and
// the state at N is a rollback to N.
func TestApplyTakesTheStateBody(t *testing.T) {
	t.Parallel()
	for _, kind := range []declStoreKind{declSqliteStore, declPostgresStore} {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			e := newDeclEnv(t, kind)
			acme, beta, r1, _ := declSeed(t, e)
			e.call(t, "POST", "/admin/tenants/"+acme+"/api-key", "").must(t, 200, nil) // acme at version 2
			n := e.head(t)
			atN := e.call(t, "GET", fmt.Sprintf("/admin/state?at=%d", n), "")
			atN.must(t, 200, nil)

			current := e.call(t, "GET", "/admin/state", "")
			for _, body := range []string{string(current.raw), declWithDryRun(string(current.raw))} {
				var res declApplyAnswer
				e.call(t, "POST", "/admin/apply", body).must(t, 200, &res)
				if len(res.Changes) != 0 || res.AppliedSeq != nil || e.head(t) != n {
					t.Fatalf("the current state applied: %s, head %d; want nothing appended at %d", declMustJSON(t, res), e.head(t), n)
				}
			}

			e.call(t, "PATCH", "/admin/routes/"+r1, `{"path":"/api/v2"}`).must(t, 200, nil)
			e.call(t, "DELETE", "/admin/tenants/"+beta, "").must(t, 204, nil)
			e.create(t, "/admin/tenants", `{"name":"gamma"}`)
			var res declApplyAnswer
			e.call(t, "POST", "/admin/apply", string(atN.raw)).must(t, 200, &res)
			if res.AppliedSeq == nil || len(res.Changes) != 4 {
				t.Fatalf("the state at %d applied: %s; want 4 changes (route path, gamma deleted, beta and its route back)", n, declMustJSON(t, res))
			}
			if got, want := declConfig(t, e, ""), declConfig(t, e, fmt.Sprintf("?at=%d", n)); got != want {
				t.Fatalf("state after applying the state at %d:\n got %s\nwant %s", n, got, want)
			}
		})
	}
}

func TestApplyUpdatesOnlyChangedFields(t *testing.T) {
	t.Parallel()
	e := newDeclEnv(t, declSqliteStore)
	acme, beta, r1, r2 := declSeed(t, e)
	before := e.head(t)
	var doc declarative.Document
	if err := json.Unmarshal([]byte(declExportOf(t, e)), &doc); err != nil {
		t.Fatal(err)
	}
	doc.Tenants[0].Name = "acme-renamed"
	doc.Routes[0].Path = "/api/people"
	doc.Tenants = doc.Tenants[:1] // beta and its route go
	doc.Routes = doc.Routes[:1]
	var res declApplyAnswer
	e.call(t, "POST", "/admin/apply", declMustJSON(t, doc)).must(t, 200, &res)
	got := []string{}
	for _, c := range res.Changes {
		got = append(got, fmt.Sprintf("%s %s %s %v", c.Change, c.AggregateType, c.AggregateID, declKeys(c.Fields)))
	}
	want := []string{
		"deleted route " + r2 + " [loadBalancing method path pathType tenantId upstreams]",
		"deleted tenant " + beta + " [name status]",
		"updated tenant " + acme + " [name]",
		"updated route " + r1 + " [path]",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("changes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	evs := e.events(t, before)
	if len(evs) != 4 || *res.AppliedSeq != before+4 {
		t.Fatalf("%d events, appliedSeq %d; want 4 ending at %d", len(evs), *res.AppliedSeq, before+4)
	}
	wantTypes := []events.Type{events.RouteDeleted, events.TenantDeleted, events.TenantUpdated, events.RouteUpdated}
	for i, ev := range evs {
		if ev.Type != wantTypes[i] || ev.AggregateVersion != 2 {
			t.Errorf("event %d = %s v%d, want %s v2", i, ev.Type, ev.AggregateVersion, wantTypes[i])
		}
	}
	if string(evs[3].Data) != `{"path":"/api/people"}` {
		t.Errorf("RouteUpdated data = %s, want only the path", evs[3].Data)
	}
}

func declKeys(m map[string]declarative.FieldChange) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func declMustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRollback(t *testing.T) {
	t.Parallel()
	for _, kind := range []declStoreKind{declSqliteStore, declPostgresStore} {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			e := newDeclEnv(t, kind)
			acme, beta, r1, _ := declSeed(t, e)
			oldBeta, _ := e.proj.Snapshot().Tenant(beta)
			n := e.head(t)
			stateAtN := declConfig(t, e, fmt.Sprintf("?at=%d", n))

			// History after N: a patch, a rotation, a deletion with cascade, a new tenant and route.
			e.call(t, "PATCH", "/admin/routes/"+r1, `{"path":"/api/v2","resilience":null}`).must(t, 200, nil)
			e.call(t, "PATCH", "/admin/tenants/"+acme, `{"status":"suspended"}`).must(t, 200, nil)
			e.call(t, "POST", "/admin/tenants/"+acme+"/api-key", "").must(t, 200, nil)
			e.call(t, "DELETE", "/admin/tenants/"+beta, "").must(t, 204, nil)
			gamma, _ := e.create(t, "/admin/tenants", `{"name":"gamma"}`)
			e.create(t, "/admin/routes", `{"tenantId":"`+gamma+`","path":"/g","upstreams":[{"url":"http://127.0.0.1:9003"}]}`)
			head := e.head(t)

			var res declApplyAnswer
			e.call(t, "POST", "/admin/rollback", fmt.Sprintf(`{"toSeq":%d}`, n), "X-Actor", "rollback-bot").must(t, 200, &res)
			if res.AppliedSeq == nil || *res.AppliedSeq != head+int64(len(res.Changes)) {
				t.Fatalf("rollback answer %s, head before %d", declMustJSON(t, res), head)
			}
			if got := declConfig(t, e, ""); got != stateAtN {
				t.Fatalf("state after rollback differs from state at %d:\n got %s\nwant %s", n, got, stateAtN)
			}
			var status struct{ ConfigHash string }
			e.call(t, "GET", "/admin/status", "").must(t, 200, &status)
			if want := configHashAt(t, e, n); status.ConfigHash != want {
				t.Fatalf("configHash after rollback %s, want the configuration's at %d: %s", status.ConfigHash, n, want)
			}
			rolled := e.events(t, head)
			if len(rolled) != len(res.Changes) {
				t.Fatalf("%d events for %d changes", len(rolled), len(res.Changes))
			}
			for _, ev := range rolled {
				if ev.Actor != "rollback-bot" {
					t.Errorf("rollback event %d actor = %q", ev.Seq, ev.Actor)
				}
			}
			// beta is back with its old id, a version after its deletion and a new key.
			if len(res.APIKeys) != 1 || res.APIKeys[0].TenantID != beta {
				t.Fatalf("declKeys = %v, want one for re-created %s", res.APIKeys, beta)
			}
			tn, ok := e.proj.Snapshot().Authenticate(projections.KeyHash([]byte(res.APIKeys[0].APIKey)))
			if !ok || tn.ID != beta || tn.Version != 3 {
				t.Fatalf("re-created beta: found %v, tenant %+v; want id %s version 3", ok, tn, beta)
			}
			if tn.KeyHash == oldBeta.KeyHash {
				t.Error("re-created beta got its old key back")
			}
			if _, ok := e.proj.Snapshot().Authenticate(oldBeta.KeyHash); ok {
				t.Error("beta's old key works again")
			}
			// Key rotation is not rolled back: acme keeps the rotated key.
			a, _ := e.proj.Snapshot().Tenant(acme)
			if a.Status != events.TenantActive {
				t.Errorf("acme status = %s, want active again", a.Status)
			}

			var again declApplyAnswer
			e.call(t, "POST", "/admin/rollback", fmt.Sprintf(`{"toSeq":%d}`, n)).must(t, 200, &again)
			if len(again.Changes) != 0 || again.AppliedSeq != nil {
				t.Fatalf("second rollback = %s, want nothing", declMustJSON(t, again))
			}
		})
	}
}

func TestDiffBetweenSeqs(t *testing.T) {
	t.Parallel()
	e := newDeclEnv(t, declSqliteStore)
	acme, _, r1, r2 := declSeed(t, e)
	// Enough aggregates that the three events after a cost less than a
	// checkpoint's load: the state at b is built from the state at a.
	for i := range 4 {
		e.create(t, "/admin/tenants", fmt.Sprintf(`{"name":"bystander-%d"}`, i))
	}
	if !projections.ReplayIsCheaper(e.proj.Snapshot().Size(), 3) {
		t.Fatal("the seed is too small for the forward diff to build one state from the other")
	}
	a := e.head(t)
	e.call(t, "PATCH", "/admin/routes/"+r1, `{"path":"/api/v2","loadBalancing":"random"}`).must(t, 200, nil)
	e.call(t, "PATCH", "/admin/tenants/"+acme, `{"rateLimit":null}`).must(t, 200, nil)
	e.call(t, "DELETE", "/admin/routes/"+r2, "").must(t, 204, nil)
	b := e.head(t)

	var res struct {
		From, To int64
		Changes  []struct {
			AggregateType string                     `json:"aggregateType"`
			AggregateID   string                     `json:"aggregateId"`
			Change        string                     `json:"change"`
			Fields        map[string]json.RawMessage `json:"fields"`
		}
	}
	e.call(t, "GET", fmt.Sprintf("/admin/diff?from=%d&to=%d", a, b), "").must(t, 200, &res)
	if res.From != a || res.To != b || len(res.Changes) != 3 {
		t.Fatalf("diff = %+v", res)
	}
	byID := map[string]string{}
	for _, c := range res.Changes {
		byID[c.AggregateID] = c.Change + " " + strings.Join(declRawKeys(c.Fields), ",")
	}
	want := map[string]string{
		r2:   "deleted loadBalancing,method,path,pathType,tenantId,upstreams",
		acme: "updated rateLimit",
		r1:   "updated loadBalancing,path",
	}
	for id, w := range want {
		if byID[id] != w {
			t.Errorf("%s: %q, want %q", id, byID[id], w)
		}
	}
	for _, c := range res.Changes {
		if c.AggregateID == r1 && string(c.Fields["path"]) != `{"from":"/api/users","to":"/api/v2"}` {
			t.Errorf("path change = %s", c.Fields["path"])
		}
		if c.AggregateID == acme && string(c.Fields["rateLimit"]) != `{"from":{"limit":100,"windowMs":1000},"to":null}` {
			t.Errorf("rateLimit change = %s", c.Fields["rateLimit"])
		}
	}

	// from > to is the reverse diff: what would undo the events between,
	// which is what applying the state at a (a rollback to a) would change.
	var back struct {
		From, To int64
		Changes  []declarative.Change
	}
	e.call(t, "GET", fmt.Sprintf("/admin/diff?from=%d&to=%d", b, a), "").must(t, 200, &back)
	if back.From != b || back.To != a || len(back.Changes) != 3 {
		t.Fatalf("reverse diff = %s", declMustJSON(t, back))
	}
	for _, c := range back.Changes {
		got := declMustJSON(t, c.Fields)
		switch c.AggregateID {
		case r2:
			if c.Change != "created" || !strings.Contains(got, `"path":{"from":null,"to":"/b"}`) {
				t.Errorf("reverse diff of the deleted route: %s %s", c.Change, got)
			}
		case r1:
			if c.Change != "updated" || !strings.Contains(got, `"path":{"from":"/api/v2","to":"/api/users"}`) {
				t.Errorf("reverse diff of the patched route: %s %s", c.Change, got)
			}
		case acme:
			if c.Change != "updated" || got != `{"rateLimit":{"from":null,"to":{"limit":100,"windowMs":1000}}}` {
				t.Errorf("reverse diff of the patched tenant: %s %s", c.Change, got)
			}
		default:
			t.Errorf("reverse diff lists %s", declMustJSON(t, c))
		}
	}
	stateAtA := e.call(t, "GET", fmt.Sprintf("/admin/state?at=%d", a), "")
	var undo declApplyAnswer
	e.call(t, "POST", "/admin/apply", declWithDryRun(string(stateAtA.raw))).must(t, 200, &undo)
	sortChanges := func(cs []declarative.Change) string {
		out := make([]string, len(cs))
		for i, c := range cs {
			out[i] = declMustJSON(t, c)
		}
		slices.Sort(out)
		return strings.Join(out, "\n")
	}
	if got, want := sortChanges(back.Changes), sortChanges(undo.Changes); got != want {
		t.Errorf("reverse diff is not what a rollback to %d changes:\n got %s\nwant %s", a, got, want)
	}

	var empty struct {
		Changes []any `json:"changes"`
	}
	e.call(t, "GET", fmt.Sprintf("/admin/diff?from=%d&to=%d", b, b), "").must(t, 200, &empty)
	if empty.Changes == nil || len(empty.Changes) != 0 {
		t.Errorf("diff of a seq with itself = %v, want []", empty.Changes)
	}

	// Once the head moved on, the state at b is no longer the current one
	// and is built from the state at a: the same answer.
	first := e.call(t, "GET", fmt.Sprintf("/admin/diff?from=%d&to=%d", a, b), "")
	e.create(t, "/admin/tenants", `{"name":"later"}`)
	if again := e.call(t, "GET", fmt.Sprintf("/admin/diff?from=%d&to=%d", a, b), ""); string(again.raw) != string(first.raw) {
		t.Errorf("diff once the head moved on:\n%s\nwant\n%s", again.raw, first.raw)
	}
}

func declRawKeys(m map[string]json.RawMessage) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestDeclarativeErrors(t *testing.T) {
	t.Parallel()
	e := newDeclEnv(t, declSqliteStore)
	acme, _, _, _ := declSeed(t, e)
	const tid = "0190a0b0-0000-7000-8000-00000000000a"
	tests := []struct {
		name, method, path, body string
		headers                  []string
		status                   int
		code, field              string
	}{
		{name: "no admin key", method: "GET", path: "/admin/diff?from=0&to=1", headers: []string{"X-Admin-Key", ""}, status: 401, code: "unauthorized"},
		{name: "diff without to", method: "GET", path: "/admin/diff?from=0", status: 400, code: "validation_failed", field: "to"},
		{name: "diff beyond head", method: "GET", path: "/admin/diff?from=0&to=999", status: 400, code: "validation_failed", field: "to"},
		{name: "diff negative", method: "GET", path: "/admin/diff?from=-1&to=1", status: 400, code: "validation_failed", field: "from"},
		{name: "apply malformed", method: "POST", path: "/admin/apply", body: `{"tenants":[`, status: 400, code: "invalid_json"},
		{name: "apply unknown top field", method: "POST", path: "/admin/apply", body: `{"tenants":[],"routes":[],"extra":1}`, status: 400, code: "validation_failed", field: "extra"},
		{name: "apply unknown nested field", method: "POST", path: "/admin/apply", body: `{"tenants":[{"id":"` + tid + `","name":"x","rateLimit":{"limit":1,"windowMs":100,"burst":2}}]}`, status: 400, code: "validation_failed", field: "tenants[0].rateLimit.burst"},
		{name: "apply tenant without id", method: "POST", path: "/admin/apply", body: `{"tenants":[{"name":"x"}]}`, status: 400, code: "validation_failed", field: "tenants[0].id"},
		{name: "apply id not a uuid", method: "POST", path: "/admin/apply", body: `{"tenants":[{"id":"acme","name":"x"}]}`, status: 400, code: "validation_failed", field: "tenants[0].id"},
		{name: "apply keeps the admin rules", method: "POST", path: "/admin/apply", body: `{"tenants":[{"id":"` + tid + `","name":""}]}`, status: 400, code: "validation_failed", field: "tenants[0].name"},
		{name: "apply bad upstream", method: "POST", path: "/admin/apply", body: `{"tenants":[{"id":"` + acme + `","name":"acme"}],"routes":[{"id":"` + tid + `","tenantId":"` + acme + `","path":"/x","upstreams":[{"url":"ftp://x"}]}]}`, status: 400, code: "validation_failed", field: "routes[0].upstreams[0].url"},
		{name: "apply route of a missing tenant", method: "POST", path: "/admin/apply", body: `{"tenants":[],"routes":[{"id":"` + tid + `","tenantId":"` + acme + `","path":"/x","upstreams":[{"url":"http://x"}]}]}`, status: 400, code: "validation_failed", field: "routes[0].tenantId"},
		{name: "apply duplicate names", method: "POST", path: "/admin/apply", body: `{"tenants":[{"id":"` + acme + `","name":"a"},{"id":"` + tid + `","name":"a"}]}`, status: 400, code: "validation_failed", field: "tenants[1].name"},
		{name: "apply state field in a route", method: "POST", path: "/admin/apply", body: `{"routes":[{"id":"` + tid + `","tenantId":"` + acme + `","path":"/x","upstreams":[{"url":"http://x"}],"apiKeyPrefix":"gw_1234"}]}`, status: 400, code: "validation_failed", field: "routes[0].apiKeyPrefix"},
		{name: "apply state field nested", method: "POST", path: "/admin/apply", body: `{"tenants":[{"id":"` + tid + `","name":"x","rateLimit":{"limit":1,"windowMs":100,"version":1}}]}`, status: 400, code: "validation_failed", field: "tenants[0].rateLimit.version"},
		{name: "apply state field at the top", method: "POST", path: "/admin/apply", body: `{"tenants":[],"version":3}`, status: 400, code: "validation_failed", field: "version"},
		{name: "apply at in a tenant", method: "POST", path: "/admin/apply", body: `{"tenants":[{"id":"` + tid + `","name":"x","at":1}]}`, status: 400, code: "validation_failed", field: "tenants[0].at"},
		{name: "apply unknown field beside state fields", method: "POST", path: "/admin/apply", body: `{"at":1,"tenants":[{"id":"` + tid + `","name":"x","version":1,"createdAt":"2026-01-01T00:00:00Z","plan":"gold"}]}`, status: 400, code: "validation_failed", field: "tenants[0].plan"},
		{name: "apply dryRun not a boolean", method: "POST", path: "/admin/apply", body: `{"dryRun":"yes"}`, status: 400, code: "validation_failed", field: "dryRun"},
		{name: "rollback without toSeq", method: "POST", path: "/admin/rollback", body: `{}`, status: 400, code: "validation_failed", field: "toSeq"},
		{name: "rollback beyond head", method: "POST", path: "/admin/rollback", body: `{"toSeq":999}`, status: 400, code: "validation_failed", field: "toSeq"},
		{name: "rollback unknown field", method: "POST", path: "/admin/rollback", body: `{"toSeq":1,"force":true}`, status: 400, code: "validation_failed", field: "force"},
		{name: "rollback bad actor", method: "POST", path: "/admin/rollback", body: `{"toSeq":1}`, headers: []string{"X-Actor", strings.Repeat("a", 201)}, status: 400, code: "validation_failed", field: "X-Actor"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			head := e.head(t)
			e.call(t, tt.method, tt.path, tt.body, tt.headers...).mustError(t, tt.status, tt.code, tt.field)
			if e.head(t) != head {
				t.Fatal("a rejected request appended events")
			}
		})
	}
}

func TestDeclarativeStoreUnavailable(t *testing.T) {
	t.Parallel()
	e := newDeclEnvOver(t, declDownStore{})
	tests := []struct{ name, method, path, body string }{
		{name: "diff", method: "GET", path: "/admin/diff?from=0&to=0"},
		{name: "apply", method: "POST", path: "/admin/apply", body: `{"tenants":[],"routes":[]}`},
		{name: "rollback", method: "POST", path: "/admin/rollback", body: `{"toSeq":0}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e.call(t, tt.method, tt.path, tt.body).mustError(t, 503, "store_unavailable", "")
		})
	}
}

// declDownStore is a store that cannot be reached.
type declDownStore struct{}

func (declDownStore) Append(context.Context, events.AppendRequest) ([]events.Envelope, error) {
	return nil, events.ErrUnavailable
}
func (declDownStore) Read(context.Context, events.Query) ([]events.Envelope, error) {
	return nil, events.ErrUnavailable
}
func (declDownStore) Head(context.Context) (int64, error) { return 0, events.ErrUnavailable }
func (declDownStore) Kind() string                        { return "down" }
func (declDownStore) Close() error                        { return nil }

// configHashAt is the configHash of the state replayed up to seq n.
func configHashAt(t *testing.T, e *declEnv, n int64) string {
	t.Helper()
	snap, err := declarative.Replay(context.Background(), e.store, n)
	if err != nil {
		t.Fatal(err)
	}
	return snap.ConfigHash()
}
