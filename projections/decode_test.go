package projections

import (
	stdjson "encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"

	json "github.com/goccy/go-json"

	"github.com/tenantgate/gateway/events"
)

func payloadOf(typ events.Type) any {
	switch typ {
	case events.TenantCreated:
		return &events.TenantCreatedData{}
	case events.TenantUpdated:
		return &events.TenantUpdatedData{}
	case events.TenantAPIKeyRotated:
		return &events.TenantAPIKeyRotatedData{}
	case events.RouteCreated:
		return &events.RouteSpec{}
	case events.RouteUpdated:
		return &events.RouteUpdatedData{}
	}
	return &map[string]any{}
}

// TestDecodeMatchesEncodingJSON guards the choice of go-json: for every kind
// of event data it must decode exactly what encoding/json decodes, and the
// state it encodes for the hash must be the bytes encoding/json writes.
func TestDecodeMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	datas := map[events.Type][]string{
		events.TenantUpdated: {
			`{"rateLimit": null}`, `{"name": "a\u00e9\"<b>&"}`, `{"status": "suspended", "rateLimit": {"limit": 5, "windowMs": 1000}}`, `{}`,
		},
		events.RouteUpdated: {
			`{"resilience": null, "transform": null}`, `{"upstreams": []}`, `{"method": null}`,
			`{"transform": {"request": {"headers": {"set": {"B": "2", "A": "1"}, "remove": ["Cookie"]}, "path": {"pattern": "^/a(.*)$", "replacement": "/b$1"}}}}`,
			`{"resilience": {"timeout": {"enabled": true, "default": 10000, "byMethod": {"POST": 30000, "GET": 5000}}, "fallback": {"enabled": true, "statusCode": 503, "contentType": "application/json", "body": "{\"error\":\"x\"}"}}}`,
		},
		events.RouteCreated: {
			`{"tenantId": "t", "path": "/<a>&", "upstreams": [{"url": "http://u"}], "resilience": {"timeout": {"byMethod": {"POST": 1, "GET": 2, "DELETE": 3}}}, "transform": {"response": {"headers": {"set": {"Z": "1", "A": "\u2028"}, "add": {"b": "x", "a": "y"}}}}}`,
			`{"tenantId": "t", "method": "GET", "path": "/a", "pathType": "prefix", "upstreams": [{"url": "http://u:1/base", "weight": 1000}], "loadBalancing": "weighted", "Path": "/ignored-case-dup"}`,
		},
	}
	r := rand.New(rand.NewPCG(3, 4))
	for _, ev := range randomLog(t, r, 300).evs {
		datas[ev.Type] = append(datas[ev.Type], string(ev.Data))
	}
	for typ, ds := range datas {
		for _, d := range ds {
			a, b := payloadOf(typ), payloadOf(typ)
			errA := stdjson.Unmarshal([]byte(d), a)
			errB := json.Unmarshal([]byte(d), b)
			if (errA == nil) != (errB == nil) {
				t.Fatalf("%s %s: encoding/json err %v, go-json err %v", typ, d, errA, errB)
			}
			if errA == nil && !reflect.DeepEqual(a, b) {
				t.Fatalf("%s %s: encoding/json %+v, go-json %+v", typ, d, a, b)
			}
			if errA == nil && typ == events.RouteCreated {
				ea, _ := stdjson.Marshal(&Route{RouteSpec: *a.(*events.RouteSpec)})
				eb, _ := json.Marshal(&Route{RouteSpec: *a.(*events.RouteSpec)})
				if string(ea) != string(eb) {
					t.Fatalf("route encodings differ:\n%s\n%s", ea, eb)
				}
			}
		}
	}
	s, _ := Replay(randomLog(t, r, 300).evs)
	for _, v := range []any{s.Tenants(), s.Routes()} {
		a, errA := stdjson.Marshal(v)
		b, errB := json.Marshal(v)
		if errA != nil || errB != nil || string(a) != string(b) {
			t.Fatalf("encodings differ (%v, %v):\n%s\n%s", errA, errB, a, b)
		}
	}
}
