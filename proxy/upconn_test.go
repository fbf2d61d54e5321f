package proxy

import (
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tenantgate/gateway/events"
)

// A socket deadline is never earlier than the one asked for, and later by at
// most about a 32nd of the time left; back-to-back deadlines keep it.
func TestLazyDeadline(t *testing.T) {
	t.Parallel()
	var d lazyDeadline
	if _, ok := d.next(time.Time{}); ok {
		t.Fatal("no deadline asked, none set: nothing to do")
	}
	now := time.Now()
	t1 := now.Add(time.Second)
	set, ok := d.next(t1)
	if !ok || set.Before(t1) || set.Sub(t1) > time.Second/32 {
		t.Fatalf("first deadline: %v, %v (asked %v)", set, ok, t1)
	}
	if _, ok := d.next(t1.Add(10 * time.Microsecond)); ok {
		t.Fatal("a deadline 10us later moved the socket's")
	}
	if set, ok := d.next(t1.Add(time.Second / 16)); !ok || set.Before(t1.Add(time.Second/16)) {
		t.Fatalf("a deadline past the socket's was not moved to: %v %v", set, ok)
	}
	if set, ok := d.next(now.Add(100 * time.Millisecond)); !ok || set.After(now.Add(110*time.Millisecond)) {
		t.Fatalf("a much earlier deadline kept a late socket deadline: %v %v", set, ok)
	}
	if _, ok := d.next(time.Time{}); !ok {
		t.Fatal("clearing the deadline did not reach the socket")
	}
	if _, ok := d.next(time.Time{}); ok {
		t.Fatal("clearing twice reached the socket twice")
	}

	// Random sequences: whatever is asked, the socket's deadline is never
	// earlier and never later than about a 32nd of the time left.
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		asked := time.Now().Add(time.Duration(r.Int64N(int64(5 * time.Second))))
		if r.IntN(50) == 0 {
			asked = time.Time{}
		}
		d.next(asked)
		if asked.IsZero() {
			if !d.set.IsZero() {
				t.Fatal("a cleared deadline is still on the socket")
			}
			continue
		}
		left := time.Until(asked)
		if d.set.Before(asked) || d.set.Sub(asked) > left/31+time.Millisecond {
			t.Fatalf("asked %v (%v left), socket %v", asked, left, d.set)
		}
	}
}

// Through the gateway: on a connection that has served fast requests (so
// its deadlines were kept, not moved), a slow answer still times out on
// time, and a method with a shorter timeout on the same connection is not
// held to the longer deadline already on the socket.
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
