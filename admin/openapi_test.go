package admin

import (
	"bytes"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

const openAPIURL = "file:///admin/openapi.json"

// openAPISpec is the embedded document, parsed, and a compiler that resolves
// pointers into it.
type openAPISpec struct {
	doc      map[string]any
	compiler *jsonschema.Compiler
}

func loadOpenAPI(t *testing.T) *openAPISpec {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(OpenAPI()))
	if err != nil {
		t.Fatalf("openapi.json is not JSON: %v", err)
	}
	doc, isObj := v.(map[string]any)
	if !isObj || doc["openapi"] != "3.1.0" {
		t.Fatalf("openapi.json is not an OpenAPI 3.1.0 document")
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	if err := c.AddResource(openAPIURL, v); err != nil {
		t.Fatal(err)
	}
	return &openAPISpec{doc: doc, compiler: c}
}

// schemaAt compiles the schema at a JSON pointer given as path segments.
func (s *openAPISpec) schemaAt(t *testing.T, segments ...string) *jsonschema.Schema {
	t.Helper()
	var ptr strings.Builder
	for _, seg := range segments {
		seg = strings.NewReplacer("~", "~0", "/", "~1").Replace(seg)
		ptr.WriteString("/" + url.PathEscape(seg))
	}
	sch, err := s.compiler.Compile(openAPIURL + "#" + ptr.String())
	if err != nil {
		t.Fatalf("schema at %s: %v", ptr.String(), err)
	}
	return sch
}

// operations lists the documented "METHOD /path" with Fiber's :param syntax.
func (s *openAPISpec) operations() []string {
	var out []string
	for path, item := range s.doc["paths"].(map[string]any) {
		for method := range item.(map[string]any) {
			switch method {
			case "get", "put", "post", "patch", "delete":
				fiberPath := strings.NewReplacer("{", ":", "}", "").Replace(path)
				out = append(out, strings.ToUpper(method)+" "+fiberPath)
			}
		}
	}
	sort.Strings(out)
	return out
}

func TestOpenAPIDocumentsEveryAdminRoute(t *testing.T) {
	t.Parallel()
	spec := loadOpenAPI(t)
	e := newDeclEnvOver(t, declDownStore{})
	var live []string
	for _, r := range e.app.GetRoutes(true) {
		if !strings.HasPrefix(r.Path, "/admin") || r.Method == "HEAD" || r.Path == "/admin" || r.Path == "/admin/*" {
			continue // HEAD mirrors GET; the catch-alls answer 404
		}
		if r.Path == "/admin/ui" || strings.HasPrefix(r.Path, "/admin/ui/") {
			continue // the console's static files (package ui), not the API
		}
		live = append(live, r.Method+" "+r.Path)
	}
	sort.Strings(live)
	live = slices.Compact(live)
	documented := spec.operations()
	for _, op := range live {
		if !slices.Contains(documented, op) {
			t.Errorf("route %s is not documented in openapi.json", op)
		}
	}
	for _, op := range documented {
		if !slices.Contains(live, op) {
			t.Errorf("openapi.json documents %s, which the router does not serve", op)
		}
	}
	if len(live) < 20 {
		t.Errorf("only %d admin routes found: %v", len(live), live)
	}
}

func TestOpenAPIExamplesMatchTheirSchemas(t *testing.T) {
	t.Parallel()
	spec := loadOpenAPI(t)
	checked := 0
	// Every object with both a schema and an example: media types and
	// parameters; and every component schema with an example.
	var walk func(v any, at []string)
	walk = func(v any, at []string) {
		switch x := v.(type) {
		case map[string]any:
			if _, hasSchema := x["schema"]; hasSchema {
				if ex, hasEx := x["example"]; hasEx {
					if err := spec.schemaAt(t, append(slices.Clone(at), "schema")...).Validate(ex); err != nil {
						t.Errorf("example at /%s does not match its schema: %v", strings.Join(at, "/"), err)
					}
					checked++
				}
			}
			for k, child := range x {
				walk(child, append(slices.Clone(at), k))
			}
		case []any:
			for i, child := range x {
				walk(child, append(slices.Clone(at), fmt.Sprint(i)))
			}
		}
	}
	walk(spec.doc["paths"], []string{"paths"})
	walk(spec.doc["components"].(map[string]any)["responses"], []string{"components", "responses"})
	walk(spec.doc["components"].(map[string]any)["parameters"], []string{"components", "parameters"})
	for name, sch := range spec.doc["components"].(map[string]any)["schemas"].(map[string]any) {
		ex, hasEx := sch.(map[string]any)["example"]
		if !hasEx {
			continue
		}
		if err := spec.schemaAt(t, "components", "schemas", name).Validate(ex); err != nil {
			t.Errorf("example of schema %s does not match it: %v", name, err)
		}
		checked++
	}
	if checked < 40 {
		t.Errorf("only %d examples checked", checked)
	}
}

// TestOpenAPIDescribesLiveAnswers checks real answers of a running API
// against the documented response schemas, so the schemas stay true.
func TestOpenAPIDescribesLiveAnswers(t *testing.T) {
	t.Parallel()
	spec := loadOpenAPI(t)
	e := newDeclEnv(t, declSqliteStore)
	acme, beta, r1, r2 := declSeed(t, e)
	n := e.head(t)
	type call struct {
		method, template, path, body string
		status                       int
	}
	calls := []call{
		{"GET", "/admin/tenants", "/admin/tenants?limit=1", "", 200},
		{"POST", "/admin/tenants", "/admin/tenants", `{"name":"gamma"}`, 201},
		{"POST", "/admin/tenants", "/admin/tenants", `{"name":"gamma"}`, 409},
		{"POST", "/admin/tenants", "/admin/tenants", `{"name":"x","extra":1}`, 400},
		{"GET", "/admin/tenants/{id}", "/admin/tenants/" + acme, "", 200},
		{"GET", "/admin/tenants/{id}", "/admin/tenants/0190a0b0-0000-7000-8000-000000000000", "", 404},
		{"PATCH", "/admin/tenants/{id}", "/admin/tenants/" + acme, `{"rateLimit":null}`, 200},
		{"POST", "/admin/tenants/{id}/api-key", "/admin/tenants/" + acme + "/api-key", "", 200},
		{"GET", "/admin/tenants/{id}/routes", "/admin/tenants/" + acme + "/routes", "", 200},
		{"GET", "/admin/tenants/{id}/history", "/admin/tenants/" + acme + "/history", "", 200},
		{"GET", "/admin/routes/{id}", "/admin/routes/" + r1, "", 200},
		{"PATCH", "/admin/routes/{id}", "/admin/routes/" + r1, `{"path":"/api/people"}`, 200},
		{"PATCH", "/admin/routes/{id}", "/admin/routes/" + r2, `{"path":"/c"}`, 200},
		{"GET", "/admin/routes/{id}/history", "/admin/routes/" + r1 + "/history", "", 200},
		{"DELETE", "/admin/routes/{id}", "/admin/routes/" + r2, "", 204},
		{"DELETE", "/admin/tenants/{id}", "/admin/tenants/" + beta, "", 204},
		{"GET", "/admin/events", "/admin/events?limit=2", "", 200},
		{"GET", "/admin/state", "/admin/state", "", 200},
		{"GET", "/admin/state", fmt.Sprintf("/admin/state?at=%d", n), "", 200},
		{"GET", "/admin/status", "/admin/status", "", 200},
		{"GET", "/admin/instances", "/admin/instances", "", 200},
		{"GET", "/admin/diff", fmt.Sprintf("/admin/diff?from=0&to=%d", n), "", 200},
		{"POST", "/admin/rollback", "/admin/rollback", fmt.Sprintf(`{"toSeq":%d}`, n), 200},
		{"POST", "/admin/apply", "/admin/apply", `{"tenants":[],"routes":[],"dryRun":true}`, 200},
		{"GET", "/admin/openapi.json", "/admin/openapi.json", "", 200},
	}
	// The route create answer, with every block present.
	calls = append(calls, call{"POST", "/admin/routes", "/admin/routes",
		`{"tenantId":"` + acme + `","path":"/n","upstreams":[{"url":"http://127.0.0.1:9"}],"resilience":{"circuitBreaker":{},"retry":{},"timeout":{},"healthCheck":{},"fallback":{}},"transform":{"request":{"path":{"pattern":"^/n"}}}}`, 201})
	for _, c := range calls {
		r := e.call(t, c.method, c.path, c.body)
		if r.status != c.status {
			t.Errorf("%s %s: status %d, want %d; body %s", c.method, c.path, r.status, c.status, r.raw)
			continue
		}
		if c.status == 204 {
			continue
		}
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader(r.raw))
		if err != nil {
			t.Errorf("%s %s: body is not JSON: %s", c.method, c.path, r.raw)
			continue
		}
		item, _ := spec.doc["paths"].(map[string]any)[c.template].(map[string]any)
		op, isMap := item[strings.ToLower(c.method)].(map[string]any)
		if !isMap {
			t.Errorf("%s %s is not documented", c.method, c.template)
			continue
		}
		status := fmt.Sprint(c.status)
		if _, documented := op["responses"].(map[string]any)[status]; !documented {
			t.Errorf("%s %s: status %d is not documented", c.method, c.template, c.status)
			continue
		}
		var sch *jsonschema.Schema
		if resp := op["responses"].(map[string]any)[status].(map[string]any); resp["$ref"] != nil {
			name := strings.TrimPrefix(resp["$ref"].(string), "#/components/responses/")
			sch = spec.schemaAt(t, "components", "responses", name, "content", "application/json", "schema")
		} else {
			sch = spec.schemaAt(t, "paths", c.template, strings.ToLower(c.method), "responses", status, "content", "application/json", "schema")
		}
		if err := sch.Validate(v); err != nil {
			t.Errorf("%s %s -> %d does not match the documented schema: %v\nbody %s", c.method, c.path, c.status, err, r.raw)
		}
	}
}

// TestOpenAPIRequestSchemasAgreeWithTheAPI checks request bodies against the
// documented request schemas: what the API takes, the schema takes, and a
// body the schema refuses is one the API refuses.
func TestOpenAPIRequestSchemasAgreeWithTheAPI(t *testing.T) {
	t.Parallel()
	spec := loadOpenAPI(t)
	e := newDeclEnv(t, declSqliteStore)
	acme, _, _, _ := declSeed(t, e)
	state := e.call(t, "GET", "/admin/state", "")
	state.must(t, 200, nil)
	route := func(pathType, path string) string {
		return `{"tenantId":"` + acme + `","pathType":"` + pathType + `","path":"` + path + `","upstreams":[{"url":"http://127.0.0.1:9"}]}`
	}
	tests := []struct {
		name, schema, path, body string
		status                   int
	}{
		{name: "the state body applies verbatim", schema: "ApplyRequest", path: "/admin/apply", body: string(state.raw), status: 200},
		{name: "regex anchored at both ends", schema: "RouteCreate", path: "/admin/routes", body: route("regex", "^/m/.*$"), status: 201},
		{name: "regex anchored at the start", schema: "RouteCreate", path: "/admin/routes", body: route("regex", "^/v[0-9]+/x$"), status: 201},
		{name: "regex anchored at the end", schema: "RouteCreate", path: "/admin/routes", body: route("regex", "/items/[0-9]+$"), status: 201},
		{name: "prefix without a slash", schema: "RouteCreate", path: "/admin/routes", body: route("prefix", "api"), status: 400},
		{name: "exact without a slash", schema: "RouteCreate", path: "/admin/routes", body: route("exact", "^/api$"), status: 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := jsonschema.UnmarshalJSON(strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			verr := spec.schemaAt(t, "components", "schemas", tc.schema).Validate(v)
			if r := e.call(t, "POST", tc.path, tc.body); r.status != tc.status {
				t.Fatalf("POST %s: %d, want %d: %s", tc.path, r.status, tc.status, r.raw)
			}
			if accepted := tc.status < 300; accepted != (verr == nil) {
				t.Fatalf("the API answers %d but schema %s says: %v", tc.status, tc.schema, verr)
			}
		})
	}
}
