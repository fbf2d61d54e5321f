package admin

import (
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
