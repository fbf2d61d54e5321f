package framing

import "testing"

// BenchmarkGuardHead is the guard's work on one keep-alive request as a
// load generator sends it, and on one with a browser's headers.
func BenchmarkGuardHead(b *testing.B) {
	for _, tc := range []struct{ name, req string }{
		{"wrk", "GET /api/users/7 HTTP/1.1\r\nHost: 127.0.0.1:18093\r\nX-API-Key: gw_benchmark_key_0123456789abcdef\r\n\r\n"},
		{"browser", "GET /api/users/7?expand=orders HTTP/1.1\r\nHost: api.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36\r\n" +
			"Accept: application/json, text/plain, */*\r\nAccept-Language: en-US,en;q=0.9\r\nAccept-Encoding: gzip, deflate, br\r\nX-API-Key: gw_benchmark_key_0123456789abcdef\r\n" +
			"Cookie: session=0123456789abcdef0123456789abcdef; theme=dark\r\nConnection: keep-alive\r\n\r\n"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			req := []byte(tc.req)
			p := newParser(DefaultMaxHeadBytes)
			b.SetBytes(int64(len(req)))
			b.ReportAllocs()
			for b.Loop() {
				if n, r := p.advance(req); n != len(req) || r != nil {
					b.Fatal(n, r)
				}
			}
		})
	}
}
