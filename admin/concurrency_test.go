package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/gofiber/fiber/v2"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/events/testenv"
	"github.com/tenantgate/gateway/projections"
)

// TestConcurrentPatchesWithIfMatch: of 100 PATCHes racing with the same
// If-Match on two instances, exactly one wins and every other gets 412.
func TestConcurrentPatchesWithIfMatch(t *testing.T) {
	t.Parallel()
	e := newPostgresEnv(t)
	tn := e.createTenant(t, `{"name":"race"}`)
	apps := []*fiber.App{e.app, e.secondInstance(t)}
	const n = 100
	statuses := concurrently(n, func(i int) int {
		return do(t, apps[i%2], http.MethodPatch, "/admin/tenants/"+tn.ID, fmt.Sprintf(`{"name":"race-%d"}`, i), header{"If-Match", `"1"`}).status
	})
	count := map[int]int{}
	for _, s := range statuses {
		count[s]++
	}
	if count[200] != 1 || count[412] != n-1 {
		t.Fatalf("statuses = %v, want one 200 and %d 412", count, n-1)
	}
	if err := e.proj.CatchUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, _ := e.proj.Snapshot().Tenant(tn.ID)
	if got.Version != 2 || len(e.allEvents(t)) != 2 {
		t.Fatalf("version %d with %d events", got.Version, len(e.allEvents(t)))
	}
}

// TestConcurrentCreatesKeepNamesUnique: racing creates of one name give one
// 201 and 409s, never two live tenants with the same name.
func TestConcurrentCreatesKeepNamesUnique(t *testing.T) {
	t.Parallel()
	e := newPostgresEnv(t)
	apps := []*fiber.App{e.app, e.secondInstance(t)}
	const n = 20
	statuses := concurrently(n, func(i int) int {
		return do(t, apps[i%2], http.MethodPost, "/admin/tenants", `{"name":"same"}`).status
	})
	count := map[int]int{}
	for _, s := range statuses {
		count[s]++
	}
	if err := e.proj.CatchUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	if count[201] != 1 || count[409] != n-1 || len(e.proj.Snapshot().Tenants()) != 1 {
		t.Fatalf("statuses = %v", count)
	}
}

// TestReplayProperty drives random admin commands through the handlers and
// checks that the live snapshot, a fresh replay of the store and
// GET /admin/state agree, and that state?at=n is the replay up to n.
func TestReplayProperty(t *testing.T) {
	t.Parallel()
	e := newSQLiteEnv(t)
	rng := rand.New(rand.NewPCG(7, 11))
	const commands = 1000
	var tenants, routes []string
	pick := func(ids []string) string {
		if len(ids) == 0 || rng.IntN(20) == 0 {
			return "missing"
		}
		return ids[rng.IntN(len(ids))]
	}
	drop := func(ids []string, id string) []string {
		out := ids[:0]
		for _, x := range ids {
			if x != id {
				out = append(out, x)
			}
		}
		return out
	}
	methods := []string{"*", "GET", "POST"}
	for i := range commands {
		var r response
		switch op := rng.IntN(10); {
		case op < 2 || len(tenants) == 0:
			rl := "null"
			if rng.IntN(2) == 0 {
				rl = fmt.Sprintf(`{"limit":%d,"windowMs":%d}`, 1+rng.IntN(1000), 100+rng.IntN(10000))
			}
			r = do(t, e.app, http.MethodPost, "/admin/tenants", fmt.Sprintf(`{"name":"t%d","rateLimit":%s}`, rng.IntN(40), rl))
			if r.status == 201 {
				var tj tenantJSON
				r.decode(t, &tj)
				tenants = append(tenants, tj.ID)
			}
		case op == 2:
			r = do(t, e.app, http.MethodPatch, "/admin/tenants/"+pick(tenants), fmt.Sprintf(`{"name":"t%d","status":%q}`, rng.IntN(40), []string{"active", "suspended"}[rng.IntN(2)]))
		case op == 3:
			r = do(t, e.app, http.MethodPost, "/admin/tenants/"+pick(tenants)+"/api-key", "")
		case op == 4 && rng.IntN(3) == 0:
			id := pick(tenants)
			r = do(t, e.app, http.MethodDelete, "/admin/tenants/"+id, "")
			if r.status == 204 {
				tenants = drop(tenants, id)
			}
		case op <= 6:
			r = do(t, e.app, http.MethodPost, "/admin/routes", fmt.Sprintf(`{"tenantId":%q,"method":%q,"path":"/p%d","upstreams":[{"url":"http://u%d:80","weight":%d}]}`,
				pick(tenants), methods[rng.IntN(3)], rng.IntN(50), rng.IntN(3), 1+rng.IntN(5)))
			if r.status == 201 {
				var rj routeJSON
				r.decode(t, &rj)
				routes = append(routes, rj.ID)
			}
		case op <= 8:
			r = do(t, e.app, http.MethodPatch, "/admin/routes/"+pick(routes), fmt.Sprintf(`{"path":"/q%d","resilience":{"retry":{"maxRetries":%d}}}`, rng.IntN(50), rng.IntN(4)))
		default:
			id := pick(routes)
			r = do(t, e.app, http.MethodDelete, "/admin/routes/"+id, "")
			if r.status == 204 {
				routes = drop(routes, id)
			}
		}
		if r.status >= 500 {
			t.Fatalf("command %d: %d %s", i, r.status, r.raw)
		}
		// Routes of deleted tenants are gone too.
		live := routes[:0]
		for _, id := range routes {
			if _, ok := e.proj.Snapshot().Route(id); ok {
				live = append(live, id)
			}
		}
		routes = live
	}

	evs := e.allEvents(t)
	if len(evs) < 500 {
		t.Fatalf("only %d events from %d commands", len(evs), commands)
	}
	replayed, err := projections.Replay(evs)
	if err != nil {
		t.Fatal(err)
	}
	live := e.proj.Snapshot()
	if live.Seq() != int64(len(evs)) || live.StateHash() != replayed.StateHash() {
		t.Fatalf("live seq %d hash %s, replay of %d events hash %s", live.Seq(), live.StateHash(), len(evs), replayed.StateHash())
	}
	r := do(t, e.app, http.MethodGet, "/admin/state", "")
	if string(r.raw) != mustJSON(t, NewStateDocument(replayed)) {
		t.Fatal("GET /admin/state differs from the replay")
	}
	for _, n := range []int{1, len(evs) / 3, len(evs) / 2, len(evs) - 1, len(evs)} {
		want, err := projections.Replay(evs[:n])
		if err != nil {
			t.Fatal(err)
		}
		r := do(t, e.app, http.MethodGet, fmt.Sprintf("/admin/state?at=%d", n), "")
		if string(r.raw) != mustJSON(t, NewStateDocument(want)) {
			t.Fatalf("state?at=%d differs from the replay of %d events", n, n)
		}
	}
}

// TestNoPlaintextKey: no issued key appears in the events table, in Redis,
// in any event the API returns, or in the logs.
func TestNoPlaintextKey(t *testing.T) {
	t.Parallel()
	rdb, prefix := testenv.RedisClient(t)
	store, err := events.OpenPostgres(context.Background(), testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	bus, err := events.NewRedisBus(rdb, events.RedisBusConfig{Stream: prefix + "events"}, testLogger(logs))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, store, bus, logs)

	var keys []string
	for i := range 5 {
		tn := e.createTenant(t, fmt.Sprintf(`{"name":"k%d"}`, i))
		keys = append(keys, tn.APIKey)
		for range 2 {
			var rotated tenantJSON
			do(t, e.app, http.MethodPost, "/admin/tenants/"+tn.ID+"/api-key", "").decode(t, &rotated)
			keys = append(keys, rotated.APIKey)
		}
	}
	if len(keys) != 15 {
		t.Fatal("keys missing")
	}
	// Wait for the relay to publish every event to the stream.
	head := int64(len(e.allEvents(t)))
	pollUntil(t, func() bool { last, err := bus.LastSeq(context.Background()); return err == nil && last == head })

	var haystack []string
	rows, err := store.DB().QueryContext(context.Background(), "SELECT * FROM events")
	if err != nil {
		t.Fatal(err)
	}
	cols, _ := rows.Columns()
	nrows := 0
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		haystack = append(haystack, fmt.Sprint(vals...))
		for _, v := range vals {
			if b, ok := v.([]byte); ok {
				haystack = append(haystack, string(b))
			}
		}
		nrows++
	}
	if err := rows.Err(); err != nil || nrows != int(head) {
		t.Fatalf("scanned %d rows of %d: %v", nrows, head, err)
	}
	_ = rows.Close()

	ctx := context.Background()
	nkeys := 0
	iter := rdb.Scan(ctx, 0, prefix+"*", 100).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		nkeys++
		haystack = append(haystack, k)
		switch rdb.Type(ctx, k).Val() {
		case "stream":
			for _, m := range rdb.XRange(ctx, k, "-", "+").Val() {
				haystack = append(haystack, fmt.Sprint(m.ID, m.Values))
			}
		case "string":
			haystack = append(haystack, rdb.Get(ctx, k).Val())
		case "hash":
			haystack = append(haystack, fmt.Sprint(rdb.HGetAll(ctx, k).Val()))
		default:
			haystack = append(haystack, fmt.Sprint(rdb.Dump(ctx, k).Val()))
		}
	}
	if nkeys == 0 {
		t.Fatal("no Redis keys under the test prefix: the scan saw nothing")
	}
	var page json.RawMessage
	do(t, e.app, http.MethodGet, "/admin/events?limit=1000", "").decode(t, &page)
	haystack = append(haystack, string(page), e.logs.String())
	for _, id := range e.proj.Snapshot().Tenants() {
		haystack = append(haystack, string(do(t, e.app, http.MethodGet, "/admin/tenants/"+id.ID+"/history", "").raw))
	}
	all := strings.Join(haystack, "\n")
	for _, k := range keys {
		if strings.Contains(all, k) || strings.Contains(all, k[7:]) {
			t.Fatalf("an issued key appears in the store, Redis, events or logs")
		}
	}
}

// TestConcurrentPatchesWithoutIfMatch: unconditional PATCHes racing on one
// tenant from two instances are all applied, one after another, none lost.
func TestConcurrentPatchesWithoutIfMatch(t *testing.T) {
	t.Parallel()
	e := newPostgresEnv(t)
	tn := e.createTenant(t, `{"name":"busy"}`)
	apps := []*fiber.App{e.app, e.secondInstance(t)}
	const n = 100
	statuses := concurrently(n, func(i int) int {
		return do(t, apps[i%2], http.MethodPatch, "/admin/tenants/"+tn.ID, fmt.Sprintf(`{"rateLimit":{"limit":%d,"windowMs":1000}}`, i+1)).status
	})
	for i, s := range statuses {
		if s != 200 {
			t.Fatalf("PATCH %d answered %d", i, s)
		}
	}
	t.Logf("races lost and re-run: %d", strings.Count(e.logs.String(), "re-running the command"))
	// The other instance's writes reach this one's projection by catching up.
	if err := e.proj.CatchUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, _ := e.proj.Snapshot().Tenant(tn.ID)
	if got.Version != n+1 || len(e.allEvents(t)) != n+1 {
		t.Fatalf("version %d, want %d: a write was lost", got.Version, n+1)
	}
}

// concurrently runs request(0..n-1) at once and returns their statuses in order.
func concurrently(n int, request func(i int) int) []int {
	statuses := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { statuses[i] = request(i) })
	}
	wg.Wait()
	return statuses
}
