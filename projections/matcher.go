package projections

import (
	"slices"
	"strings"

	"github.com/tenantgate/gateway/events"
)

// table is one tenant's routes and the matcher compiled from them. It is
// updated route by route, so a change costs the same whether the tenant has
// ten routes or ten thousand.
//
// Match rules (API.md "Match order"), in this order:
//
//  1. Exact routes: the route whose path equals the request path.
//  2. Prefix routes: the longest prefix that matches on a segment boundary.
//     A prefix's trailing slashes are dropped ("/api/" is "/api"); "/api"
//     matches "/api", "/api/" and "/api/x" but not "/apix"; "/" matches
//     every path.
//  3. Regex routes: the route whose pattern matches the path.
//
// Only routes whose method matches take part: a route's method matches when
// it equals the request method exactly (methods are upper case) or is "*"
// (an empty method counts as "*"). Within one candidate (the same path type
// and path; for regexes, all regex routes together) a route with the request
// method beats a "*" route, and among equals the oldest route (lowest id;
// ids are UUIDv7) wins. So a longer prefix with "*" beats a shorter prefix
// with GET, and for regexes the oldest matching GET route wins over every
// matching "*" route, else the oldest matching "*" route.
//
// A route whose path regex or rewrite pattern does not compile never matches.
type table struct {
	owner  *token
	routes *strMap[*Route]
	exact  *strMap[*routeList] // by path
	prefix *strMap[*routeList] // by normalized prefix
	regex  *strMap[*routeList] // by method, "*" for any
}

// routeList is the routes sharing one matcher key, ordered by id.
type routeList struct {
	owner *token
	rs    []*Route
}

func isAnyMethod(m string) bool { return m == events.AnyMethod || m == "" }

// normalizePrefix drops a prefix path's trailing slashes, so "/" becomes "".
func normalizePrefix(p string) string { return strings.TrimRight(p, "/") }

// matchable reports whether r can match requests: its patterns compiled and
// its path type is known.
func matchable(r *Route) bool {
	if rw := rewriteOf(r); rw != nil && r.Rewrite == nil {
		return false
	}
	switch r.PathType {
	case events.PathExact, events.PathPrefix:
		return true
	case events.PathRegex:
		return r.PathRegexp != nil
	}
	return false
}

func rewriteOf(r *Route) *events.PathRewrite {
	if r.Transform == nil || r.Transform.Request == nil {
		return nil
	}
	return r.Transform.Request.Path
}

func (tb *table) editable(tok *token) *table {
	if tb != nil && tb.owner == tok {
		return tb
	}
	n := &table{owner: tok}
	if tb != nil {
		n.routes, n.exact, n.prefix, n.regex = tb.routes, tb.exact, tb.prefix, tb.regex
	}
	return n
}

// index returns the matcher map and key that r is filed under.
func (tb *table) index(r *Route) (**strMap[*routeList], string) {
	switch r.PathType {
	case events.PathExact:
		return &tb.exact, r.Path
	case events.PathPrefix:
		return &tb.prefix, normalizePrefix(r.Path)
	default:
		if isAnyMethod(r.Method) {
			return &tb.regex, events.AnyMethod
		}
		return &tb.regex, r.Method
	}
}

// add files r; tb must be owned by tok.
func (tb *table) add(tok *token, r *Route) {
	tb.routes = tb.routes.set(tok, r.ID, r)
	if !matchable(r) {
		return
	}
	m, key := tb.index(r)
	l, _ := (*m).get(key)
	*m = (*m).set(tok, key, l.with(tok, r))
}

// remove unfiles r; tb must be owned by tok.
func (tb *table) remove(tok *token, r *Route) {
	tb.routes = tb.routes.delete(tok, r.ID)
	if !matchable(r) {
		return
	}
	m, key := tb.index(r)
	l, _ := (*m).get(key)
	if l = l.without(tok, r.ID); l == nil {
		*m = (*m).delete(tok, key)
	} else {
		*m = (*m).set(tok, key, l)
	}
}

func cmpRouteID(r *Route, id string) int { return strings.Compare(r.ID, id) }

func (l *routeList) with(tok *token, r *Route) *routeList {
	if l == nil {
		return &routeList{owner: tok, rs: []*Route{r}}
	}
	i, _ := slices.BinarySearchFunc(l.rs, r.ID, cmpRouteID)
	if l.owner == tok {
		l.rs = slices.Insert(l.rs, i, r)
		return l
	}
	rs := make([]*Route, 0, len(l.rs)+1)
	rs = append(append(append(rs, l.rs[:i]...), r), l.rs[i:]...)
	return &routeList{owner: tok, rs: rs}
}

func (l *routeList) without(tok *token, id string) *routeList {
	if l == nil {
		return nil
	}
	i, found := slices.BinarySearchFunc(l.rs, id, cmpRouteID)
	if !found {
		return l
	}
	if len(l.rs) == 1 {
		return nil
	}
	if l.owner == tok {
		l.rs = slices.Delete(l.rs, i, i+1)
		return l
	}
	rs := make([]*Route, 0, len(l.rs)-1)
	rs = append(append(rs, l.rs[:i]...), l.rs[i+1:]...)
	return &routeList{owner: tok, rs: rs}
}

// pick returns the oldest route of l with exactly this method, else the
// oldest "*" route.
func (l *routeList) pick(method string) *Route {
	var anyRoute *Route
	for _, r := range l.rs {
		if isAnyMethod(r.Method) {
			if anyRoute == nil {
				anyRoute = r
			}
		} else if r.Method == method {
			return r
		}
	}
	return anyRoute
}

func (tb *table) match(method, path string) *Route {
	if l, ok := tb.exact.get(path); ok {
		if r := l.pick(method); r != nil {
			return r
		}
	}
	if tb.prefix != nil {
		// Walk the path's segment boundaries from the longest candidate
		// prefix (the whole path) to the shortest (""), one lookup each.
		if l, ok := tb.prefix.get(path); ok {
			if r := l.pick(method); r != nil {
				return r
			}
		}
		for i := len(path) - 1; i >= 0; i-- {
			if path[i] != '/' {
				continue
			}
			if l, ok := tb.prefix.get(path[:i]); ok {
				if r := l.pick(method); r != nil {
					return r
				}
			}
		}
	}
	if tb.regex != nil {
		if !isAnyMethod(method) {
			if l, ok := tb.regex.get(method); ok {
				for _, r := range l.rs {
					if r.PathRegexp.MatchString(path) {
						return r
					}
				}
			}
		}
		if l, ok := tb.regex.get(events.AnyMethod); ok {
			for _, r := range l.rs {
				if r.PathRegexp.MatchString(path) {
					return r
				}
			}
		}
	}
	return nil
}
