package declarative

import (
	"slices"
	"strings"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/projections"
)

// Diff lists, field by field, what changed between two states of the
// history, in the same order as Plan: route deletes, tenant deletes, tenant
// creates and updates, route creates and updates, each run ordered by id.
// Key rotations show as apiKeyPrefix.
//
// It walks the two states' id-ordered lists side by side and looks at the
// fields only of what the digests Apply keeps say changed: an unchanged
// aggregate of 100,000 costs the comparison of two digests, not an export.
func Diff(from, to *projections.Snapshot) []Change {
	var routeDeletes, tenantDeletes, tenantWrites, routeWrites []Change
	mergeByID(from.Tenants(), to.Tenants(), func(t *projections.Tenant) string { return t.ID }, func(old, cur *projections.Tenant) {
		switch {
		case cur == nil:
			c, _ := newChange(events.AggregateTenant, old.ID, historyTenantFields(old), nil)
			tenantDeletes = append(tenantDeletes, c)
		case old != nil && (old == cur || (old.KeyPrefix == cur.KeyPrefix && from.SameConfig(to, cur.ID))):
		default:
			var before []field
			if old != nil {
				before = historyTenantFields(old)
			}
			if c, changed := newChange(events.AggregateTenant, cur.ID, before, historyTenantFields(cur)); changed {
				want := tenantConfig(cur)
				c.tenant = &want
				tenantWrites = append(tenantWrites, c)
			}
		}
	})
	mergeByID(from.Routes(), to.Routes(), func(r *projections.Route) string { return r.ID }, func(old, cur *projections.Route) {
		switch {
		case cur == nil:
			c, _ := newChange(events.AggregateRoute, old.ID, routeFields(routeConfig(old)), nil)
			routeDeletes = append(routeDeletes, c)
		case old != nil && (old == cur || from.SameConfig(to, cur.ID)):
		default:
			var before []field
			if old != nil {
				before = routeFields(routeConfig(old))
			}
			want := routeConfig(cur)
			if c, changed := newChange(events.AggregateRoute, cur.ID, before, routeFields(want)); changed {
				c.route = &want
				routeWrites = append(routeWrites, c)
			}
		}
	})
	out := slices.Concat(routeDeletes, tenantDeletes, tenantWrites, routeWrites)
	if out == nil {
		out = []Change{}
	}
	return out
}

// historyTenantFields are a tenant's fields in a diff of the history: the
// document's, and the key's prefix (a rotation is a change there).
func historyTenantFields(t *projections.Tenant) []field {
	return append(tenantFields(tenantConfig(t), nil), field{"apiKeyPrefix", t.KeyPrefix})
}

// mergeByID calls visit for every id in from or to (both ordered by id), in
// order, with the item of each side or nil where that side lacks it.
func mergeByID[T any](from, to []*T, id func(*T) string, visit func(old, cur *T)) {
	i, j := 0, 0
	for i < len(from) || j < len(to) {
		switch {
		case j == len(to):
			visit(from[i], nil)
			i++
		case i == len(from):
			visit(nil, to[j])
			j++
		default:
			switch c := strings.Compare(id(from[i]), id(to[j])); {
			case c < 0:
				visit(from[i], nil)
				i++
			case c > 0:
				visit(nil, to[j])
				j++
			default:
				visit(from[i], to[j])
				i++
				j++
			}
		}
	}
}
