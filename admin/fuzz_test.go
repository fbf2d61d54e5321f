package admin

import (
	"encoding/json"
	"testing"
)

// FuzzDecode: no input makes decoding, validation, normalization or a merge
// patch panic, and whatever is accepted decodes again to the same spec.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		fullRouteBody, route(""), resilience(`"retry":{}`), `{"name":"a","rateLimit":{"limit":1,"windowMs":100}}`,
		`{"upstreams":[{"url":"http://[::1]:80"}]}`, `{"a":[[[[[]]]]]}`, `null`, `"x"`, `1e999`, `{"name":"\u0000"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		v, err := parseJSON(body)
		if err != nil {
			return
		}
		_, _ = decodeTenant(v)
		spec, err := decodeRoute(v)
		_ = mergePatch(v, v)
		if err != nil {
			return
		}
		again, err := decodeRoute(mustParse(t, mustJSON(t, spec)))
		if err != nil || !sameJSON(spec, again) {
			t.Fatalf("accepted spec does not round-trip: %v", err)
		}
	})
}

// FuzzDecodeDocument: no input makes a document's decoding panic; an
// accepted document decodes again to itself, also carrying what GET
// /admin/state adds (at, versions, timestamps, key prefixes), and an
// unknown field beside those is still refused.
func FuzzDecodeDocument(f *testing.F) {
	const tid, rid = "0190a0b0-0000-7000-8000-00000000000a", "0190a0b0-0000-7000-8000-0000000000a1"
	for _, seed := range []string{
		`{"tenants":[],"routes":[]}`,
		`{"at":3,"tenants":[{"id":"` + tid + `","name":"a","status":"active","rateLimit":null,"apiKeyPrefix":"gw_abcd","version":2,"createdAt":"2026-01-01T00:00:00Z","updatedAt":"2026-01-01T00:00:00Z"}],` +
			`"routes":[{"id":"` + rid + `","tenantId":"` + tid + `","method":"GET","path":"^/v[0-9]+/x$","pathType":"regex","upstreams":[{"url":"http://u:1","weight":1}],"loadBalancing":"round-robin","version":1,"createdAt":"x","updatedAt":null}]}`,
		`{"tenants":[{"id":"` + tid + `","name":"a","plan":1}]}`,
		`{"routes":[{"id":"` + rid + `","tenantId":"t","path":"a","upstreams":[{"url":"http://u:1"}]}]}`,
		`{"tenants":{},"at":"x"}`, `[]`, `null`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		doc, err := DecodeDocument(body)
		if err != nil {
			return
		}
		// The document as a state would carry it.
		var state struct {
			At      int64            `json:"at"`
			Tenants []map[string]any `json:"tenants"`
			Routes  []map[string]any `json:"routes"`
		}
		if err := json.Unmarshal([]byte(mustJSON(t, doc)), &state); err != nil {
			t.Fatal(err)
		}
		state.At = 7
		for _, item := range state.Tenants {
			item["apiKeyPrefix"], item["version"], item["createdAt"], item["updatedAt"] = "gw_abcd", 3, "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"
		}
		for _, item := range state.Routes {
			item["version"], item["createdAt"], item["updatedAt"] = 2, "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"
		}
		again, err := DecodeDocument([]byte(mustJSON(t, state)))
		if err != nil || !sameJSON(doc, again) {
			t.Fatalf("an accepted document with the state's fields decodes to %+v, %v; want %+v", again, err, doc)
		}
		if len(state.Routes) > 0 {
			state.Routes[0]["apiKeyPrefix"] = "gw_abcd" // a tenant's field, unknown on a route
			if _, err := DecodeDocument([]byte(mustJSON(t, state))); err == nil {
				t.Fatal("a route with an apiKeyPrefix was accepted")
			}
		}
	})
}
