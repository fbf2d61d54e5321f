package main

// Contract points found by black-box testing (issue 13), through gateways
// started as main starts them (run(), in process) and the subcommands run
// the same way: regex route paths, GET /admin/state -> POST /admin/apply,
// and the first health probe of a new or changed route. Timing figures are
// logged with figure().

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tenantgate/gateway/admin/declarative"
)

// adminRaw sends an admin request with body as it is.
func (in *instance) adminRaw(method, path string, body []byte) (int, []byte) {
	in.t.Helper()
	var b any
	if body != nil {
		b = json.RawMessage(body)
	}
	status, _, out := in.do(method, path, b, map[string]string{"X-Admin-Key": testAdminKey})
	return status, out
}

// headSeq is the store's head as the instance reports it.
func (in *instance) headSeq() int64 {
	in.t.Helper()
	status, st := in.admin("GET", "/admin/status", nil)
	if status != http.StatusOK {
		in.t.Fatalf("/admin/status: %d %v", status, st)
	}
	return int64(st["storeHeadSeq"].(float64))
}

// runCommand runs a subcommand as main does and returns its stdout.
func runCommand(t *testing.T, env map[string]string, args ...string) []byte {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), args, envOf(env), &stdout, &stderr); code != 0 {
		t.Fatalf("gateway %s: exit %d: %s", strings.Join(args, " "), code, stderr.String())
	}
	return stdout.Bytes()
}

// applyFile runs `gateway apply -f` on content written to a file named name.
func applyFile(t *testing.T, env map[string]string, name string, content []byte) declarative.Result {
	t.Helper()
	file := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(file, content, 0o600); err != nil {
		t.Fatal(err)
	}
	var res declarative.Result
	out := runCommand(t, env, "apply", "-f", file)
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("apply printed %s: %v", out, err)
	}
	return res
}

// jsonToYAML writes a JSON document as YAML.
func jsonToYAML(t *testing.T, doc []byte) []byte {
	t.Helper()
	var v any
	if err := json.Unmarshal(doc, &v); err != nil {
		t.Fatal(err)
	}
	out, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRegexRoutePathsThroughTheBinary(t *testing.T) {
	t.Parallel()
	up := upstreamServer(t, 0)
	gw := startGateway(t, nil)
	patterns := []string{`^/m/.*$`, `^/v[0-9]+/x$`, `/items/[0-9]+$`}
	paths := []string{"/m/", "/m/a/b", "/m", "/x/m/a", "/v1/x", "/v42/x", "/v/x", "/v1/x/y", "/a/v1/x",
		"/items/7", "/shop/items/42", "/items/x", "/items/7/more", "/items/"}

	// One tenant per pattern, so each route is the only candidate.
	type regexRoute struct{ tenantID, pattern, routeID string }
	var routes []regexRoute
	keys := map[string]string{} // tenant id -> API key
	for i, p := range patterns {
		status, tenant := gw.admin("POST", "/admin/tenants", map[string]any{"name": "regex-" + strconv.Itoa(i)})
		if status != http.StatusCreated {
			t.Fatalf("create tenant: %d %v", status, tenant)
		}
		id := tenant["id"].(string)
		keys[id] = tenant["apiKey"].(string)
		status, route := gw.admin("POST", "/admin/routes", map[string]any{
			"tenantId": id, "pathType": "regex", "path": p, "upstreams": []map[string]any{{"url": up.URL}},
		})
		if status != http.StatusCreated || route["path"] != p || route["pathType"] != "regex" {
			t.Fatalf("create regex route %s: %d %v", p, status, route)
		}
		routes = append(routes, regexRoute{tenantID: id, pattern: p, routeID: route["id"].(string)})
	}

	// Each route routes exactly the paths regexp.MatchString matches.
	checkRouting := func(gw *instance, keys map[string]string) {
		t.Helper()
		for _, r := range routes {
			re := regexp.MustCompile(r.pattern)
			matched := 0
			for _, path := range paths {
				status, _, body := gw.do("GET", path, nil, map[string]string{"X-API-Key": keys[r.tenantID]})
				if re.MatchString(path) {
					matched++
					if status != http.StatusOK || string(body) != "upstream saw GET "+path {
						t.Errorf("%s: GET %s = %d %s, want it routed upstream (regexp.MatchString is true)", r.pattern, path, status, body)
					}
				} else if status != http.StatusNotFound || !bytes.Contains(body, []byte(`"route_not_found"`)) {
					t.Errorf("%s: GET %s = %d %s, want 404 route_not_found (regexp.MatchString is false)", r.pattern, path, status, body)
				}
			}
			if matched == 0 || matched == len(paths) {
				t.Fatalf("%s matches %d of the %d paths: the table tells nothing", r.pattern, matched, len(paths))
			}
		}
	}
	checkRouting(gw, keys)

	// Exact and prefix paths still start with "/", also when a PATCH turns
	// a regex route into a prefix one.
	tenantID := routes[0].tenantID
	for _, tc := range []struct{ pathType, path string }{{"exact", "m/x"}, {"prefix", "^/m"}, {"", "api"}} {
		body := map[string]any{"tenantId": tenantID, "path": tc.path, "upstreams": []map[string]any{{"url": up.URL}}}
		if tc.pathType != "" {
			body["pathType"] = tc.pathType
		}
		status, out := gw.admin("POST", "/admin/routes", body)
		wantValidationError(t, status, out, "path")
	}
	status, out := gw.admin("PATCH", "/admin/routes/"+routes[0].routeID, map[string]any{"pathType": "prefix"})
	wantValidationError(t, status, out, "path")

	// export -> a fresh store -> apply gives the same configuration.
	_, st := gw.admin("GET", "/admin/status", nil)
	configHash := st["configHash"].(string)
	if code := gw.stop(); code != 0 {
		t.Fatalf("gateway exit %d", code)
	}
	exported := runCommand(t, gw.env, "export", "-o", "json")
	for _, form := range []string{"yaml", "json"} {
		doc := runCommand(t, gw.env, "export", "-o", form)
		fresh := map[string]string{"DATA_DIR": t.TempDir(), "LOG_LEVEL": "warn"}
		res := applyFile(t, fresh, "config."+form, doc)
		if len(res.Changes) != 2*len(patterns) || len(res.APIKeys) != len(patterns) {
			t.Fatalf("%s: apply to a fresh store = %+v", form, res)
		}
		if again := runCommand(t, fresh, "export", "-o", "json"); !bytes.Equal(again, exported) {
			t.Fatalf("%s: the fresh store exports\n%s\nwant\n%s", form, again, exported)
		}
		if form != "yaml" {
			continue
		}
		copyGW := startGateway(t, fresh)
		_, st := copyGW.admin("GET", "/admin/status", nil)
		if st["configHash"] != configHash {
			t.Fatalf("configHash of the fresh store %v, want %s", st["configHash"], configHash)
		}
		newKeys := map[string]string{}
		for _, k := range res.APIKeys {
			newKeys[k.TenantID] = k.APIKey
		}
		checkRouting(copyGW, newKeys)
	}
}

func wantValidationError(t *testing.T, status int, body map[string]any, field string) {
	t.Helper()
	e, _ := body["error"].(map[string]any)
	details, _ := e["details"].([]any)
	for _, d := range details {
		if d.(map[string]any)["field"] == field {
			if status != http.StatusBadRequest || e["code"] != "validation_failed" {
				break
			}
			return
		}
	}
	t.Fatalf("got %d %v, want 400 validation_failed on %s", status, body, field)
}

// stateConfig is a GET /admin/state body without what the gateway
// maintains (at, versions, timestamps, key prefixes), canonically encoded.
func stateConfig(t *testing.T, state []byte) string {
	t.Helper()
	var st map[string]any
	if err := json.Unmarshal(state, &st); err != nil {
		t.Fatalf("state is not JSON: %s", state)
	}
	delete(st, "at")
	for _, list := range []string{"tenants", "routes"} {
		for _, item := range st[list].([]any) {
			for _, k := range []string{"apiKeyPrefix", "version", "createdAt", "updatedAt"} {
				delete(item.(map[string]any), k)
			}
		}
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// waitStateConfig polls every instance until its state's configuration is want.
func waitStateConfig(t *testing.T, want string, ins ...*instance) {
	t.Helper()
	for _, in := range ins {
		var got string
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, state := in.adminRaw("GET", "/admin/state", nil)
			if got = stateConfig(t, state); got == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: state is\n%s\nwant\n%s", in.base, got, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func TestStateRoundTripThroughTheBinary(t *testing.T) {
	t.Parallel()
	modes := []struct {
		name  string
		start func(t *testing.T) []*instance
	}{
		{name: "embedded", start: func(t *testing.T) []*instance { return []*instance{startGateway(t, nil)} }},
		{name: "distributed", start: func(t *testing.T) []*instance { return startInstances(t, 2, sharedEnv(t)) }},
	}
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			ins := mode.start(t)
			gw := ins[0]
			acme, _ := e2eTenant(t, gw, 100, 1000)
			beta, _ := e2eTenant(t, gw, 0, 0)
			apiRoute := e2eRoute(t, gw, acme, "/api", "http://127.0.0.1:9001", map[string]any{
				"retry": map[string]any{"maxRetries": 2}, "timeout": map[string]any{"byMethod": map[string]any{"GET": 5000}},
				"circuitBreaker": map[string]any{}, "fallback": map[string]any{"body": "down"},
			})
			if status, out := gw.admin("POST", "/admin/routes", map[string]any{
				"tenantId": beta, "pathType": "regex", "path": "/b/[0-9]+$", "upstreams": []map[string]any{{"url": "http://127.0.0.1:9002"}},
			}); status != http.StatusCreated {
				t.Fatalf("create regex route: %d %v", status, out)
			}
			if status, out := gw.admin("POST", "/admin/tenants/"+acme+"/api-key", nil); status != http.StatusOK {
				t.Fatalf("rotate: %d %v", status, out)
			}
			n := gw.headSeq()
			_, atN := gw.adminRaw("GET", fmt.Sprintf("/admin/state?at=%d", n), nil)

			// The current state, posted back verbatim over HTTP or applied from
			// a file, appends nothing.
			_, current := gw.adminRaw("GET", "/admin/state", nil)
			status, out := gw.adminRaw("POST", "/admin/apply", current)
			if status != http.StatusOK || !bytes.Contains(out, []byte(`"changes":[]`)) || !bytes.Contains(out, []byte(`"appliedSeq":null`)) {
				t.Fatalf("POST /admin/apply of the current state: %d %s", status, out)
			}
			for _, file := range []struct {
				name    string
				content []byte
			}{{"state.json", current}, {"state.yaml", jsonToYAML(t, current)}} {
				if res := applyFile(t, gw.env, file.name, file.content); len(res.Changes) != 0 || res.AppliedSeq != nil {
					t.Fatalf("gateway apply -f %s of the current state = %+v", file.name, res)
				}
			}
			if h := gw.headSeq(); h != n {
				t.Fatalf("applying the current state moved the head from %d to %d", n, h)
			}

			// History after n, then state?at=n posted back: a rollback to n.
			if status, out := gw.admin("PATCH", "/admin/routes/"+apiRoute, map[string]any{"path": "/api/v2", "resilience": nil}); status != http.StatusOK {
				t.Fatalf("patch: %d %v", status, out)
			}
			if status, _ := gw.admin("DELETE", "/admin/tenants/"+beta, nil); status != http.StatusNoContent {
				t.Fatalf("delete beta: %d", status)
			}
			gamma, _ := e2eTenant(t, gw, 0, 0)
			e2eRoute(t, gw, gamma, "/g", "http://127.0.0.1:9003", nil)
			status, out = gw.adminRaw("POST", "/admin/apply", atN)
			if status != http.StatusOK || bytes.Contains(out, []byte(`"appliedSeq":null`)) {
				t.Fatalf("POST /admin/apply of state?at=%d: %d %s", n, status, out)
			}
			want := stateConfig(t, atN)
			waitStateConfig(t, want, ins...)

			// The same from a YAML file, with the gateways running.
			if status, out := gw.admin("PATCH", "/admin/tenants/"+acme, map[string]any{"name": "acme-renamed", "rateLimit": nil}); status != http.StatusOK {
				t.Fatalf("patch tenant: %d %v", status, out)
			}
			if res := applyFile(t, gw.env, "state-at-n.yaml", jsonToYAML(t, atN)); len(res.Changes) != 1 || res.AppliedSeq == nil {
				t.Fatalf("gateway apply -f of state?at=%d = %+v, want the one tenant change undone", n, res)
			}
			waitStateConfig(t, want, ins...)
		})
	}
}

// probedUpstream answers /health with 500 and /ready with 200, and every
// other path with 200; it reports each probe (GET /health or /ready) with
// the time it arrived.
type probedUpstream struct {
	url    string
	probes chan probeArrival
}

type probeArrival struct {
	path string
	at   time.Time
}

func newProbedUpstream(t *testing.T) *probedUpstream {
	t.Helper()
	u := &probedUpstream{probes: make(chan probeArrival, 1<<14)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/health", "/ready":
			select {
			case u.probes <- probeArrival{path: r.URL.Path, at: time.Now()}:
			default: // the test stopped reading
			}
			if r.URL.Path == "/health" {
				w.WriteHeader(http.StatusInternalServerError)
			}
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	u.url = srv.URL
	return u
}

// firstProbe waits for the first probe of path that arrived at or after
// since (the others are skipped) and returns when it arrived.
func (u *probedUpstream) firstProbe(t *testing.T, path string, since time.Time) time.Time {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case p := <-u.probes:
			if p.path == path && !p.at.Before(since) {
				return p.at
			}
		case <-deadline:
			t.Fatalf("no probe of %s within 10s", path)
		}
	}
}

// rotationWatch sends proxied GETs to one instance in a loop and keeps the
// times its answer's status changed.
type rotationWatch struct {
	mu      sync.Mutex
	changes []statusChange
}

type statusChange struct {
	status int
	at     time.Time
}

func watchRotation(t *testing.T, in *instance, path, apiKey string) *rotationWatch {
	w := &rotationWatch{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		// A client of its own, whose connections are closed when the watch
		// ends: a connection the client dialled but never used would hold
		// the gateway's graceful stop for SHUTDOWN_TIMEOUT.
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
		defer client.CloseIdleConnections()
		last := -1
		for ctx.Err() == nil {
			req, _ := http.NewRequest("GET", in.base+path, nil)
			req.Header.Set("X-API-Key", apiKey)
			status := 0 // a transport error
			if resp, err := client.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				status = resp.StatusCode
			}
			if status != last {
				w.mu.Lock()
				w.changes = append(w.changes, statusChange{status: status, at: time.Now()})
				w.mu.Unlock()
				last = status
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return w
}

// first is when the answer first became status at or after since.
func (w *rotationWatch) first(status int, since time.Time) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.changes {
		if c.status == status && !c.at.Before(since) {
			return c.at, true
		}
	}
	return time.Time{}, false
}

// firstNot is when the answer first was other than status at or after since.
func (w *rotationWatch) firstNot(status int, since time.Time) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.changes {
		if c.status != status && !c.at.Before(since) {
			return c.at, true
		}
	}
	return time.Time{}, false
}

func (w *rotationWatch) wait(t *testing.T, what string, status int, since time.Time) time.Time {
	t.Helper()
	var at time.Time
	pollUntil(t, 10*time.Second, what, func() bool {
		var ok bool
		at, ok = w.first(status, since)
		return ok
	})
	return at
}

// TestHealthFirstProbeThroughTheBinary: a route created with a health check
// has its upstream probed at once (not at a later poll), and a dead upstream
// leaves the rotation of every instance within (unhealthyThreshold + 1)
// intervals plus the time the route took to get there. A changed endpoint
// or interval is probed at once too. Both forms: local (embedded) and
// Redis-shared (three instances, one prober).
func TestHealthFirstProbeThroughTheBinary(t *testing.T) {
	// Not parallel: its bounds are timing figures, measured with the machine
	// to itself rather than beside the other multi-instance tests.
	forms := []struct {
		name  string
		start func(t *testing.T) []*instance
	}{
		{name: "local", start: func(t *testing.T) []*instance { return []*instance{startGateway(t, nil)} }},
		{name: "shared", start: func(t *testing.T) []*instance { return startInstances(t, 3, sharedEnv(t)) }},
	}
	for _, form := range forms {
		t.Run(form.name, func(t *testing.T) {
			ins := form.start(t)
			up := newProbedUpstream(t)
			tenant, key := e2eTenant(t, ins[0], 0, 0)
			watches := make([]*rotationWatch, len(ins))
			for i, in := range ins {
				watches[i] = watchRotation(t, in, "/api/x", key)
			}

			// A new route whose upstream's /health answers 500.
			const interval, unhealthy = 200 * time.Millisecond, 2
			status, route := ins[0].admin("POST", "/admin/routes", map[string]any{
				"tenantId": tenant, "path": "/api", "upstreams": []map[string]any{{"url": up.url}},
				"resilience": map[string]any{"healthCheck": map[string]any{
					"endpoint": "/health", "intervalMs": interval.Milliseconds(), "timeoutMs": 100,
					"healthyThreshold": 2, "unhealthyThreshold": unhealthy,
				}},
			})
			if status != http.StatusCreated {
				t.Fatalf("create route: %d %v", status, route)
			}
			created := mustTime(t, route["createdAt"])
			firstProbe := up.firstProbe(t, "/health", created).Sub(created)
			figure(t, "health_first_probe_"+form.name, "instances", len(ins), "interval", interval, "created_to_first_probe", ms(firstProbe))
			if limit := interval * 3 / 2; firstProbe > limit {
				t.Errorf("first probe %v after the route's creation, over 1.5 x intervalMs = %v", firstProbe, limit)
			}
			for i, w := range watches {
				out := w.wait(t, "out of rotation on instance "+strconv.Itoa(i+1), http.StatusServiceUnavailable, created)
				routed, _ := w.firstNot(http.StatusNotFound, created) // the route reached this instance
				propagation := routed.Sub(created)
				took, bound := out.Sub(created), time.Duration(unhealthy+1)*interval+propagation
				figure(t, "health_out_of_rotation_"+form.name, "instance", i+1, "created_to_routed", ms(propagation),
					"created_to_out", ms(took), "bound", ms(bound))
				if took > bound {
					t.Errorf("instance %d: out of rotation %v after the route's creation, over (unhealthyThreshold+1) x intervalMs + propagation = %v", i+1, took, bound)
				}
			}
			if status, body := get(ins[len(ins)-1], "/api/x", key); status != http.StatusServiceUnavailable || !strings.Contains(body, "no_healthy_upstream") {
				t.Fatalf("with the only upstream unhealthy: %d %s, want 503 no_healthy_upstream", status, body)
			}

			// A long interval first, probed once more (at once, or at the next
			// tick of the old interval), so that a probe of the next change that
			// comes within the test's deadline can only come from the change.
			routeID := route["id"].(string)
			status, route = ins[0].admin("PATCH", "/admin/routes/"+routeID, map[string]any{
				"resilience": map[string]any{"healthCheck": map[string]any{"intervalMs": 60000}},
			})
			if status != http.StatusOK {
				t.Fatalf("patch route: %d %v", status, route)
			}
			waitApplied(t, ins...)
			up.firstProbe(t, "/health", mustTime(t, route["updatedAt"]))

			// The check moves to /ready (200) at another interval: probed at
			// once, and back in rotation everywhere within healthyThreshold + 1
			// intervals plus propagation.
			const interval2, healthy = 300 * time.Millisecond, 2
			status, route = ins[0].admin("PATCH", "/admin/routes/"+routeID, map[string]any{
				"resilience": map[string]any{"healthCheck": map[string]any{"endpoint": "/ready", "intervalMs": interval2.Milliseconds()}},
			})
			if status != http.StatusOK {
				t.Fatalf("patch route: %d %v", status, route)
			}
			updated := mustTime(t, route["updatedAt"])
			waitApplied(t, ins...)
			propagation := time.Since(updated)
			firstReady := up.firstProbe(t, "/ready", updated).Sub(updated)
			figure(t, "health_changed_first_probe_"+form.name, "interval", interval2, "updated_to_first_probe", ms(firstReady),
				"updated_to_applied_everywhere", ms(propagation))
			if limit := interval2 * 3 / 2; firstReady > limit {
				t.Errorf("first probe of the changed endpoint %v after the change, over 1.5 x intervalMs = %v", firstReady, limit)
			}
			for i, w := range watches {
				back := w.wait(t, "back in rotation on instance "+strconv.Itoa(i+1), http.StatusOK, updated)
				took, bound := back.Sub(updated), time.Duration(healthy+1)*interval2+propagation
				figure(t, "health_back_in_rotation_"+form.name, "instance", i+1, "updated_to_back", ms(took), "bound", ms(bound))
				if took > bound {
					t.Errorf("instance %d: back in rotation %v after the change, over (healthyThreshold+1) x intervalMs + propagation = %v", i+1, took, bound)
				}
			}
		})
	}
}

func mustTime(t *testing.T, v any) time.Time {
	t.Helper()
	s, _ := v.(string)
	at, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("not an RFC 3339 time: %v", v)
	}
	return at
}
