package proxy

import (
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tenantgate/gateway/events"
)

// TestConfigChangeUnderLoad swaps snapshots while requests flow: no request
// may fail, and connections to upstreams that stay configured are neither
// dropped nor re-dialed.
func TestConfigChangeUnderLoad(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	var dials atomic.Int64
	mk := func(name string) *upstream {
		return newUpstreamWith(t, name, nil, func(s *http.Server) {
			s.ConnState = func(_ net.Conn, s http.ConnState) {
				if s == http.StateNew {
					dials.Add(1)
				}
			}
		})
	}
	a, b := mk("a"), mk("b")
	ten, key := w.tenant("acme")
	rid := w.route(events.RouteSpec{TenantID: ten, Path: "/", Upstreams: ups(a.URL, b.URL)})
	gw, _ := gateway(t, Config{}, Deps{Snapshots: w})

	const workers = 4
	var ok, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("GET", gw+"/x", nil)
				req.Header.Set(HeaderAPIKey, key)
				resp, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = readAll(resp)
				if resp.StatusCode == 200 {
					ok.Add(1)
				} else {
					failed.Add(1)
				}
			}
		})
	}
	version := int64(1)
	orders := [][]events.Upstream{ups(b.URL, a.URL), ups(a.URL, b.URL), {{URL: a.URL, Weight: 3}, {URL: b.URL, Weight: 1}}}
	deadline := time.Now().Add(time.Second)
	changes := 0
	for time.Now().Before(deadline) {
		version++
		w.setUpstreams(rid, ten, version, orders[changes%len(orders)])
		w.route(events.RouteSpec{TenantID: ten, Path: "/other", Upstreams: ups(a.URL)}) // unrelated changes too
		changes++
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	t.Logf("%d snapshot swaps, %d requests ok, %d failed, %d upstream connections dialed", changes*2, ok.Load(), failed.Load(), dials.Load())
	if failed.Load() != 0 || ok.Load() == 0 {
		t.Fatalf("%d requests failed (%d ok) while the configuration changed", failed.Load(), ok.Load())
	}
	if d := dials.Load(); d > 2*workers+2 {
		t.Fatalf("%d upstream connections dialed for %d concurrent clients: config changes re-dial", d, workers)
	}
}

func readAll(resp *http.Response) ([]byte, error) {
	defer resp.Body.Close()
	var buf [512]byte
	var out []byte
	for {
		n, err := resp.Body.Read(buf[:])
		out = append(out, buf[:n]...)
		if err != nil {
			return out, nil
		}
	}
}

// TestStateOfDeletedRoutesIsDropped: balancer state, upstream clients and
// metric series of a deleted route go away once a request sees the new
// snapshot; those of live routes stay.
func TestStateOfDeletedRoutesIsDropped(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	a, b := newUpstream(t, "a", nil), newUpstream(t, "b", nil)
	ten, key := w.tenant("acme")
	w.route(events.RouteSpec{TenantID: ten, Path: "/keep", Upstreams: ups(a.URL)})
	gone := w.route(events.RouteSpec{TenantID: ten, Path: "/gone", Upstreams: ups(b.URL)})
	gw, p := gateway(t, Config{}, Deps{Snapshots: w})
	get(t, gw+"/keep", key)
	get(t, gw+"/gone", key)
	if n := p.balancers.Len(); n != 2 {
		t.Fatalf("%d balancer states, want 2", n)
	}
	w.mu.Lock()
	w.append(events.RouteDeleted, gone, ten, 2, struct{}{})
	w.mu.Unlock()

	deadline := time.Now().Add(5 * time.Second)
	for {
		get(t, gw+"/keep", key) // a request notices the new snapshot
		_, hasB := p.pool.clients.Load("http://" + strings.TrimPrefix(b.URL, "http://"))
		if p.balancers.Len() == 1 && !hasB {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("state of the deleted route kept: %d balancers, client for b %v", p.balancers.Len(), hasB)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, ok := p.pool.clients.Load("http://" + strings.TrimPrefix(a.URL, "http://")); !ok {
		t.Fatal("the live route's upstream client was dropped")
	}
}
