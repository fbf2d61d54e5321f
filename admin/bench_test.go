package admin

import (
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
