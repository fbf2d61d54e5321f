package proxy

import (
	"strings"
	"testing"

	"github.com/tenantgate/gateway/events"
)

// TestRequestTargetForms: the route is matched on the request target's path
// whatever its form, the upstream gets its own host and never the target's
// userinfo, and the client's Host only travels in X-Forwarded-Host.
func TestRequestTargetForms(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	up := newUpstream(t, "u", nil)
	ten, key := w.tenant("acme")
	w.route(events.RouteSpec{TenantID: ten, Path: "/api", Upstreams: ups(up.URL + "/base")})
	gw, _ := gateway(t, Config{}, Deps{Snapshots: w})
	addr := strings.TrimPrefix(gw, "http://")
	upHost := strings.TrimPrefix(up.URL, "http://")

	for _, tc := range []struct {
		name, target, host  string
		wantPath, wantQuery string
	}{
		{name: "origin form", target: "/api/users?id=7&x=%2F", host: "gw.example", wantPath: "/base/api/users", wantQuery: "id=7&x=%2F"},
		{name: "absolute form", target: "http://elsewhere.example/api/users?id=7", host: "gw.example", wantPath: "/base/api/users", wantQuery: "id=7"},
		{name: "escaped path", target: "/api/a%20b%2Fc", host: "gw.example", wantPath: "/base/api/a%20b/c"},
		{name: "absolute form with userinfo", target: "http://user:secret@elsewhere.example/api/x", host: "gw.example", wantPath: "/base/api/x"},
		{name: "dot segments and double slashes", target: "//api/./x/../users", host: "gw.example", wantPath: "/base/api/users"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := "GET " + tc.target + " HTTP/1.1\r\nHost: " + tc.host + "\r\nX-API-Key: " + key + "\r\nConnection: close\r\n\r\n"
			if got := rawStatuses(t, addr, raw); len(got) != 1 || got[0] != 200 {
				t.Fatalf("statuses %v, want [200]", got)
			}
			s := up.last(t)
			if s.Path != tc.wantPath || s.RawQuery != tc.wantQuery {
				t.Errorf("upstream saw %s?%s, want %s?%s", s.Path, s.RawQuery, tc.wantPath, tc.wantQuery)
			}
			if a := s.Header.Get("Authorization"); a != "" {
				t.Errorf("upstream got Authorization %q made from the request target", a)
			}
			if s.Host != upHost || s.Header.Get("X-Forwarded-Host") != tc.host {
				t.Errorf("upstream saw Host %q, X-Forwarded-Host %q; want %q, %q", s.Host, s.Header.Get("X-Forwarded-Host"), upHost, tc.host)
			}
		})
	}
}
