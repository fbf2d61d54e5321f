package projections

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tenantgate/gateway/events"
)

// referenceMatch implements the match rules literally with a linear scan over
// every route of the tenant: keep the routes that match the request, then
// take the best by (path type, longest prefix, specific method, oldest id).
func referenceMatch(routes []*Route, method, path string) *Route {
	rank := func(r *Route) (kind, length, anyMethod int) {
		if isAnyMethod(r.Method) {
			anyMethod = 1
		}
		switch r.PathType {
		case events.PathExact:
			return 0, 0, anyMethod
		case events.PathPrefix:
			return 1, -len(normalizePrefix(r.Path)), anyMethod
		}
		return 2, 0, anyMethod
	}
	less := func(a, b *Route) bool {
		ak, al, am := rank(a)
		bk, bl, bm := rank(b)
		if ak != bk {
			return ak < bk
		}
		if al != bl {
			return al < bl
		}
		if am != bm {
			return am < bm
		}
		return a.ID < b.ID
	}
	var best *Route
	for _, r := range routes {
		if !referenceMatches(r, method, path) {
			continue
		}
		if best == nil || less(r, best) {
			best = r
		}
	}
	return best
}

func referenceMatches(r *Route, method, path string) bool {
	if !isAnyMethod(r.Method) && r.Method != method {
		return false
	}
	if tr := r.Transform; tr != nil && tr.Request != nil && tr.Request.Path != nil && r.Rewrite == nil {
		return false // the rewrite did not compile
	}
	switch r.PathType {
	case events.PathExact:
		return path == r.Path
	case events.PathPrefix:
		p := strings.TrimRight(r.Path, "/")
		return path == p || strings.HasPrefix(path, p+"/")
	case events.PathRegex:
		return r.PathRegexp != nil && r.PathRegexp.MatchString(path)
	}
	return false
}

func matchID(s *Snapshot, t *Tenant, method, path string) string {
	r, ok := s.Match(t, method, path)
	if !ok {
		return ""
	}
	return r.ID
}

func TestMatchPrecedence(t *testing.T) {
	t.Parallel()
	type route struct{ name, method, pathType, path string }
	tests := []struct {
		name   string
		routes []route // created in this order (oldest first)
		method string
		path   string
		want   string // route name, "" for no match
	}{
		{"exact beats prefix", []route{{"p", "*", "prefix", "/api"}, {"e", "*", "exact", "/api/users"}}, "GET", "/api/users", "e"},
		{"exact beats regex", []route{{"x", "GET", "regex", "^/api"}, {"e", "*", "exact", "/api"}}, "GET", "/api", "e"},
		{"prefix beats regex", []route{{"x", "GET", "regex", "^/api"}, {"p", "*", "prefix", "/api"}}, "GET", "/api/x", "p"},
		{"exact needs equal path", []route{{"e", "*", "exact", "/api"}}, "GET", "/api/", ""},
		{"exact keeps its trailing slash", []route{{"e", "*", "exact", "/api/"}}, "GET", "/api/", "e"},
		{"exact wrong method falls to prefix", []route{{"e", "POST", "exact", "/a"}, {"p", "GET", "prefix", "/"}}, "GET", "/a", "p"},
		{"longest prefix wins", []route{{"short", "*", "prefix", "/api"}, {"long", "*", "prefix", "/api/users"}}, "GET", "/api/users/7", "long"},
		{"longest prefix wins over specific method", []route{{"short", "GET", "prefix", "/api"}, {"long", "*", "prefix", "/api/users"}}, "GET", "/api/users/7", "long"},
		{"longer prefix of other method is skipped", []route{{"short", "GET", "prefix", "/api"}, {"long", "POST", "prefix", "/api/users"}}, "GET", "/api/users/7", "short"},
		{"prefix equal path", []route{{"p", "*", "prefix", "/api/users"}}, "GET", "/api/users", "p"},
		{"prefix trailing slash of request", []route{{"p", "*", "prefix", "/api/users"}}, "GET", "/api/users/", "p"},
		{"prefix segment boundary", []route{{"p", "*", "prefix", "/api/users"}}, "GET", "/api/usersX", ""},
		{"prefix not a prefix", []route{{"p", "*", "prefix", "/api/users"}}, "GET", "/api", ""},
		{"prefix trailing slash normalized", []route{{"p", "*", "prefix", "/api/"}}, "GET", "/api", "p"},
		{"prefix trailing slash normalized deep", []route{{"p", "*", "prefix", "/api/"}}, "GET", "/api/x/y", "p"},
		{"prefix trailing slash still a boundary", []route{{"p", "*", "prefix", "/api/"}}, "GET", "/apix", ""},
		{"root prefix matches everything", []route{{"root", "*", "prefix", "/"}}, "GET", "/any/thing", "root"},
		{"root prefix matches root", []route{{"root", "*", "prefix", "/"}}, "GET", "/", "root"},
		{"root prefix loses to longer", []route{{"root", "*", "prefix", "/"}, {"a", "*", "prefix", "/a"}}, "GET", "/a/b", "a"},
		{"double slash segments", []route{{"p", "*", "prefix", "/a//b"}}, "GET", "/a//b/c", "p"},
		{"specific method beats any, exact", []route{{"any", "*", "exact", "/a"}, {"get", "GET", "exact", "/a"}}, "GET", "/a", "get"},
		{"specific method beats any, prefix", []route{{"any", "*", "prefix", "/a"}, {"get", "GET", "prefix", "/a/"}}, "GET", "/a/b", "get"},
		{"any used when method differs", []route{{"any", "*", "exact", "/a"}, {"post", "POST", "exact", "/a"}}, "GET", "/a", "any"},
		{"empty method is any", []route{{"any", "", "exact", "/a"}}, "DELETE", "/a", "any"},
		{"method compare is exact", []route{{"get", "GET", "exact", "/a"}}, "get", "/a", ""},
		{"oldest of duplicates wins", []route{{"first", "GET", "exact", "/a"}, {"second", "GET", "exact", "/a"}}, "GET", "/a", "first"},
		{"oldest regex wins", []route{{"old", "*", "regex", "^/a"}, {"new", "*", "regex", "^/a/b"}}, "GET", "/a/b", "old"},
		{"specific regex beats older any regex", []route{{"any", "*", "regex", "^/a"}, {"get", "GET", "regex", "b$"}}, "GET", "/a/b", "get"},
		{"any regex when specific does not match", []route{{"any", "*", "regex", "^/a"}, {"get", "GET", "regex", "^/z"}}, "GET", "/a/b", "any"},
		{"regex of other method skipped", []route{{"post", "POST", "regex", "^/a"}}, "GET", "/a", ""},
		{"regex unanchored", []route{{"x", "*", "regex", "users"}}, "GET", "/api/users/7", "x"},
		{"invalid regex never matches", []route{{"bad", "*", "regex", "("}, {"ok", "*", "regex", "^/"}}, "GET", "/a", "ok"},
		{"unknown path type never matches", []route{{"odd", "*", "glob", "/a"}}, "GET", "/a", ""},
		{"no routes", nil, "GET", "/", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := newLog(t)
			tid, _ := l.tenant("acme")
			names := map[string]string{}
			for _, r := range tc.routes {
				id, _ := l.route(tid, r.method, r.pathType, r.path)
				names[id] = r.name
			}
			s := l.replay()
			ten, _ := s.Tenant(tid)
			got := names[matchID(s, ten, tc.method, tc.path)]
			if got != tc.want {
				t.Errorf("Match(%s %s) = %q, want %q", tc.method, tc.path, got, tc.want)
			}
			if ref := referenceMatch(s.TenantRoutes(tid), tc.method, tc.path); names[idOf(ref)] != tc.want {
				t.Errorf("reference Match(%s %s) = %q, want %q", tc.method, tc.path, names[idOf(ref)], tc.want)
			}
		})
	}
}

func idOf(r *Route) string {
	if r == nil {
		return ""
	}
	return r.ID
}

func TestMatchOnlyOwnTenant(t *testing.T) {
	t.Parallel()
	l := newLog(t)
	a, _ := l.tenant("a")
	b, _ := l.tenant("b")
	l.route(a, "*", "prefix", "/")
	s := l.replay()
	ta, _ := s.Tenant(a)
	tb, _ := s.Tenant(b)
	if _, ok := s.Match(tb, "GET", "/x"); ok {
		t.Fatal("tenant b matched tenant a's route")
	}
	if _, ok := s.Match(ta, "GET", "/x"); !ok {
		t.Fatal("tenant a did not match its own route")
	}
	if _, ok := s.Match(nil, "GET", "/x"); ok {
		t.Fatal("nil tenant matched")
	}
}

func TestMatchRewriteCompiled(t *testing.T) {
	t.Parallel()
	l := newLog(t)
	tid, _ := l.tenant("acme")
	good, _ := l.route(tid, "*", "prefix", "/api")
	l.updateRoute(good, events.RouteUpdatedData{Transform: events.NewPatch(&events.Transform{
		Request: &events.RequestTransform{Path: &events.PathRewrite{Pattern: "^/api/users(.*)$", Replacement: "/v2/users$1"}},
	})})
	bad, _ := l.route(tid, "*", "prefix", "/bad")
	l.updateRoute(bad, events.RouteUpdatedData{Transform: events.NewPatch(&events.Transform{
		Request: &events.RequestTransform{Path: &events.PathRewrite{Pattern: "(", Replacement: "x"}},
	})})
	s := l.replay()
	ten, _ := s.Tenant(tid)
	r, ok := s.Match(ten, "GET", "/api/users/7")
	if !ok || r.Rewrite == nil {
		t.Fatalf("route with rewrite: matched %v, rewrite %v", ok, r)
	}
	if got := r.Rewrite.ReplaceAllString("/api/users/7", r.Transform.Request.Path.Replacement); got != "/v2/users/7" {
		t.Errorf("rewrite = %q, want /v2/users/7", got)
	}
	if _, ok := s.Match(ten, "GET", "/bad/x"); ok {
		t.Error("route with an invalid rewrite matched")
	}
	if _, ok := s.Route(bad); !ok {
		t.Error("route with an invalid rewrite is not kept")
	}
}

// probePaths are request paths over the same vocabulary as randomPath.
func probePaths(r *rand.Rand, n int) []string {
	ps := []string{"/", "", "/api", "/api/", "/api/users", "/api/users/7", "/a/b", "/apix", "/a//b"}
	for range n {
		ps = append(ps, randomSegments(r))
	}
	return ps
}

var probeMethods = []string{"GET", "POST", "PUT", "DELETE", "*", ""}

// checkMatcher compares Match with the reference for every tenant of s.
func checkMatcher(t *testing.T, s *Snapshot, r *rand.Rand) {
	t.Helper()
	paths := probePaths(r, 20)
	for _, ten := range s.Tenants() {
		routes := s.TenantRoutes(ten.ID)
		for _, m := range probeMethods {
			for _, p := range paths {
				got, want := matchID(s, ten, m, p), idOf(referenceMatch(routes, m, p))
				if got != want {
					t.Fatalf("seq %d tenant %s: Match(%q, %q) = %q, reference %q", s.Seq(), ten.ID, m, p, got, want)
				}
			}
		}
	}
}

// FuzzMatch builds a random state (routes added, changed and removed, so the
// incremental matcher is exercised) and checks that Match agrees with the
// reference for every tenant, at every step, for random request paths.
func FuzzMatch(f *testing.F) {
	for _, seed := range []uint64{1, 2, 3, 42, 1000} {
		f.Add(seed, uint8(40), "/api/users/7")
	}
	f.Fuzz(func(t *testing.T, seed uint64, n uint8, path string) {
		r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
		l := randomLog(t, r, int(n))
		s := Empty()
		for i, ev := range l.evs {
			s, _ = Apply(s, ev)
			if i%10 == 0 || i == len(l.evs)-1 {
				checkMatcher(t, s, r)
			}
		}
		for _, ten := range s.Tenants() {
			for _, m := range probeMethods {
				got, want := matchID(s, ten, m, path), idOf(referenceMatch(s.TenantRoutes(ten.ID), m, path))
				if got != want {
					t.Fatalf("Match(%q, %q) = %q, reference %q", m, path, got, want)
				}
			}
		}
	})
}

func TestMatchDoesNotAllocate(t *testing.T) {
	l := newLog(t)
	tid, _ := l.tenant("acme")
	for i := range 200 {
		l.route(tid, "GET", "exact", fmt.Sprintf("/svc%d/items", i))
		l.route(tid, "*", "prefix", fmt.Sprintf("/svc%d/v1", i))
	}
	s := l.replay()
	ten, _ := s.Tenant(tid)
	tests := []struct{ name, path string }{
		{"exact", "/svc17/items"},
		{"prefix", "/svc42/v1/a/b/c/d"},
		{"miss", "/none/of/these"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(100, func() { s.Match(ten, "GET", tc.path) }); n != 0 {
				t.Errorf("Match(%s) allocates %v times", tc.path, n)
			}
		})
	}
}

// TestSnapshotConcurrentReaders reads published snapshots from several
// goroutines while a writer applies events one by one and in batches; the
// race detector finds any write to a node a reader can see.
func TestSnapshotConcurrentReaders(t *testing.T) {
	t.Parallel()
	l := randomLog(t, rand.New(rand.NewPCG(8, 9)), 600)
	var cur atomic.Pointer[Snapshot]
	cur.Store(Empty())
	done := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(i), 0))
			for {
				select {
				case <-done:
					return
				default:
				}
				s := cur.Load()
				for _, ten := range s.Tenants() {
					s.Authenticate(ten.KeyHash)
					s.TenantByName(ten.Name)
					s.Match(ten, "GET", randomSegments(r))
					s.TenantRoutes(ten.ID)
				}
				s.Routes()
				s.StateHash()
			}
		}()
	}
	s := Empty()
	for i := 0; i < len(l.evs); {
		n := 1 + i%5 // batches of 1 to 5 events
		n = min(n, len(l.evs)-i)
		var err error
		if s, err = ApplyBatch(s, l.evs[i:i+n], nil); err != nil {
			t.Fatal(err)
		}
		cur.Store(s)
		i += n
	}
	close(done)
	wg.Wait()
	assertSameState(t, s, applyLive(t, l.evs))
}
