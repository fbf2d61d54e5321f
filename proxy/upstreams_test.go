package proxy

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tenantgate/gateway/events"
)

// A short timeout holds on a connection reused from a request with a long one.
func TestTimeoutOnAReusedConnection(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	up := newUpstream(t, "u", func(rw http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/slow") {
			time.Sleep(1500 * time.Millisecond)
		}
		rw.WriteHeader(200)
	})
	ten, key := w.tenant("acme")
	res := &events.Resilience{Timeout: &events.Timeout{Enabled: true, Default: 5000, ByMethod: map[string]int{"DELETE": 200}}}
	w.route(events.RouteSpec{TenantID: ten, Path: "/", Upstreams: ups(up.URL), Resilience: res})
	gw, _ := gateway(t, Config{}, Deps{Snapshots: w})

	for range 20 {
		if r := get(t, gw+"/fast", key); r.status != 200 {
			t.Fatalf("fast request: %d", r.status)
		}
	}
	start := time.Now()
	wantError(t, do(t, "DELETE", gw+"/slow", key, nil, nil), 504, "upstream_timeout")
	if d := time.Since(start); d < 200*time.Millisecond || d > time.Second {
		t.Fatalf("a 200 ms timeout answered after %v", d)
	}
	if r := get(t, gw+"/fast", key); r.status != 200 {
		t.Fatalf("fast request after the timeout: %d", r.status)
	}
}
