package projections

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/tenantgate/gateway/events"
)

// logBuilder writes event logs for tests: it numbers events, keeps aggregate
// versions and hands out ids that sort in creation order, like UUIDv7.
type logBuilder struct {
	tb       testing.TB
	seq      int64
	ids      int
	versions map[string]int64
	tenantOf map[string]string // route id -> tenant id
	at       time.Time
	evs      []events.Envelope
}

func newLog(tb testing.TB) *logBuilder {
	return &logBuilder{
		tb: tb, versions: map[string]int64{}, tenantOf: map[string]string{},
		at: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}
}

func (l *logBuilder) newID(kind string) string {
	l.ids++
	return fmt.Sprintf("%s-%012d", kind, l.ids)
}

func testKey(name string) []byte { return []byte("gw_test_key_" + name) }

func keyHex(key []byte) string {
	h := KeyHash(key)
	return hex.EncodeToString(h[:])
}

func (l *logBuilder) add(typ events.Type, id, tenantID string, data any) events.Envelope {
	var raw json.RawMessage
	switch d := data.(type) {
	case nil:
		raw = json.RawMessage(`{}`)
	case json.RawMessage:
		raw = d
	default:
		b, err := json.Marshal(d)
		if err != nil {
			l.tb.Fatalf("marshal %s: %v", typ, err)
		}
		raw = b
	}
	l.seq++
	l.versions[id]++
	l.at = l.at.Add(1500 * time.Microsecond)
	ev := events.Envelope{
		Seq: l.seq, ID: fmt.Sprintf("ev-%d", l.seq), Type: typ,
		AggregateType: events.AggregateTypeOf(typ), AggregateID: id,
		AggregateVersion: l.versions[id], TenantID: tenantID, Actor: "test",
		OccurredAt: l.at, Data: raw,
	}
	l.evs = append(l.evs, ev)
	return ev
}

func (l *logBuilder) tenant(name string) (string, events.Envelope) {
	id := l.newID("t")
	ev := l.add(events.TenantCreated, id, id, events.TenantCreatedData{
		Name: name, Status: events.TenantActive, APIKeyHash: keyHex(testKey(id)), APIKeyPrefix: "gw_" + name[:min(4, len(name))],
	})
	return id, ev
}

func (l *logBuilder) route(tenantID, method, pathType, path string) (string, events.Envelope) {
	id := l.newID("r")
	l.tenantOf[id] = tenantID
	ev := l.add(events.RouteCreated, id, tenantID, events.RouteSpec{
		TenantID: tenantID, Method: method, Path: path, PathType: events.PathType(pathType),
		Upstreams:     []events.Upstream{{URL: "http://127.0.0.1:9001", Weight: 1}},
		LoadBalancing: events.BalanceRoundRobin,
	})
	return id, ev
}

func (l *logBuilder) updateRoute(id string, d events.RouteUpdatedData) events.Envelope {
	return l.add(events.RouteUpdated, id, l.tenantOf[id], d)
}

func (l *logBuilder) deleteRoute(id string) events.Envelope {
	return l.add(events.RouteDeleted, id, l.tenantOf[id], nil)
}

// replay applies the log one event at a time, failing the test on any error.
func (l *logBuilder) replay() *Snapshot {
	l.tb.Helper()
	s := Empty()
	for _, ev := range l.evs {
		next, err := Apply(s, ev)
		if err != nil {
			l.tb.Fatalf("apply seq %d %s: %v", ev.Seq, ev.Type, err)
		}
		s = next
	}
	return s
}

// randomLog writes n events drawn from r: mostly valid commands over a small
// vocabulary of names, paths and methods (so that routes collide), plus
// events that must be skipped (missing aggregates, garbage data, unknown
// types, bad patterns).
func randomLog(tb testing.TB, r *rand.Rand, n int) *logBuilder {
	l := newLog(tb)
	var tenants, routes []string
	names := []string{"acme", "beta", "gamma", "delta"}
	methods := []string{"GET", "POST", "*", "", "PUT"}
	pick := func(xs []string) string { return xs[r.IntN(len(xs))] }
	remove := func(xs []string, x string) []string {
		for i, y := range xs {
			if y == x {
				return append(xs[:i:i], xs[i+1:]...)
			}
		}
		return xs
	}
	for range n {
		switch op := r.IntN(40); {
		case op < 3 || len(tenants) == 0:
			id, _ := l.tenant(pick(names) + fmt.Sprint(r.IntN(3)))
			tenants = append(tenants, id)
		case op < 5:
			name := pick(names)
			l.add(events.TenantUpdated, pick(tenants), "", events.TenantUpdatedData{
				Name:      events.NewPatch(name),
				Status:    events.NewPatch(events.TenantSuspended),
				RateLimit: events.NewPatch(&events.RateLimit{Limit: r.IntN(100) + 1, WindowMs: 1000}),
			})
		case op < 7:
			l.add(events.TenantAPIKeyRotated, pick(tenants), "", events.TenantAPIKeyRotatedData{
				APIKeyHash: keyHex(fmt.Appendf(nil, "rot%d", r.Int())), APIKeyPrefix: "gw_r",
			})
		case op < 8:
			t := pick(tenants)
			// Usually delete the routes first, as the admin API does;
			// sometimes leave them for TenantDeleted to clean up.
			if r.IntN(2) == 0 {
				for _, rid := range routes {
					if l.tenantOf[rid] == t {
						l.deleteRoute(rid)
						routes = remove(routes, rid)
					}
				}
			}
			l.add(events.TenantDeleted, t, t, nil)
			tenants = remove(tenants, t)
			for _, rid := range routes {
				if l.tenantOf[rid] == t {
					routes = remove(routes, rid)
				}
			}
		case op < 24:
			typ, path := randomPath(r)
			id, _ := l.route(pick(tenants), pick(methods), typ, path)
			routes = append(routes, id)
		case op < 29 && len(routes) > 0:
			typ, path := randomPath(r)
			d := events.RouteUpdatedData{Method: events.NewPatch(pick(methods))}
			if r.IntN(2) == 0 {
				d.Path, d.PathType = events.NewPatch(path), events.NewPatch(events.PathType(typ))
			}
			if r.IntN(4) == 0 {
				d.Transform = events.NewPatch(&events.Transform{Request: &events.RequestTransform{
					Path: &events.PathRewrite{Pattern: pick([]string{"^/a(.*)$", "(", "^/api"}), Replacement: "/v2$1"},
				}})
			}
			l.updateRoute(pick(routes), d)
		case op < 32 && len(routes) > 0:
			id := pick(routes)
			l.deleteRoute(id)
			routes = remove(routes, id)
		case op < 34:
			// A route of a tenant that does not exist (deleted or never was).
			l.route(l.newID("t"), "GET", "exact", "/ghost")
		case op < 35:
			l.add(events.Type("Bogus"), l.newID("x"), "", nil)
		case op < 37:
			typ := []events.Type{events.TenantCreated, events.RouteCreated, events.TenantUpdated}[r.IntN(3)]
			l.add(typ, pick(tenants), "", json.RawMessage(`{"name": 7, "path": {}, "apiKeyHash": 1}`))
		default:
			// Updates and deletes of aggregates that are gone.
			typ := []events.Type{events.RouteUpdated, events.RouteDeleted, events.TenantUpdated, events.TenantDeleted}[r.IntN(4)]
			l.add(typ, l.newID("gone"), "", json.RawMessage(`{"method":"GET","name":"x"}`))
		}
	}
	return l
}

var (
	pathSegments = []string{"a", "api", "users", "7", "b", ""}
	regexes      = []string{`^/api/users/\d+$`, `^/a`, `users`, `^/b/?$`, `(`, `.*`, `^/api/(users|orders)/`}
)

func randomSegments(r *rand.Rand) string {
	p := ""
	for range r.IntN(4) {
		p += "/" + pathSegments[r.IntN(len(pathSegments))]
	}
	if p == "" || r.IntN(6) == 0 {
		p += "/"
	}
	return p
}

func randomPath(r *rand.Rand) (pathType, path string) {
	switch r.IntN(7) {
	case 0, 1:
		return "exact", randomSegments(r)
	case 2, 3, 4:
		return "prefix", randomSegments(r)
	case 5:
		return "regex", regexes[r.IntN(len(regexes))]
	default:
		return "bogus", randomSegments(r)
	}
}
