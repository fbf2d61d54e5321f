package admin

import (
	"slices"

	"github.com/tenantgate/gateway/admin/declarative"
	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/projections"
)

// scopeDocument turns what a scoped key asks apply or rollback for into a
// whole document: its tenants and their routes as desired, every other
// tenant and route as they are now, so the plan touches only its tenants.
// A desired item of another tenant is refused (403): such a key cannot
// create or change other tenants.
func scopeDocument(p principal, desired declarative.Document, current *projections.Snapshot) (declarative.Document, *Error) {
	if !p.scoped() {
		return desired, nil
	}
	out := declarative.Document{Tenants: []declarative.TenantConfig{}, Routes: []declarative.RouteConfig{}}
	for _, t := range desired.Tenants {
		if !p.sees(t.ID) {
			return declarative.Document{}, errForbidden
		}
		out.Tenants = append(out.Tenants, t)
	}
	for _, r := range desired.Routes {
		if !p.sees(r.TenantID) {
			return declarative.Document{}, errForbidden
		}
		out.Routes = append(out.Routes, r)
	}
	now := declarative.Export(current)
	for _, t := range now.Tenants {
		if !p.sees(t.ID) {
			out.Tenants = append(out.Tenants, t)
		}
	}
	for _, r := range now.Routes {
		if !p.sees(r.TenantID) {
			out.Routes = append(out.Routes, r)
		}
	}
	return out, nil
}

// scopeTarget keeps of a rollback's target state only what p may change.
func scopeTarget(p principal, target declarative.Document) declarative.Document {
	if !p.scoped() {
		return target
	}
	target.Tenants = slices.DeleteFunc(target.Tenants, func(t declarative.TenantConfig) bool { return !p.sees(t.ID) })
	target.Routes = slices.DeleteFunc(target.Routes, func(r declarative.RouteConfig) bool { return !p.sees(r.TenantID) })
	return target
}

// scopeChanges keeps the changes p may see: those of its tenants and their
// routes (a route's tenant looked up in either state); admin keys only for
// unscoped keys.
func scopeChanges(p principal, changes []declarative.Change, states ...*projections.Snapshot) []declarative.Change {
	if !p.scoped() {
		return changes
	}
	return slices.DeleteFunc(changes, func(c declarative.Change) bool {
		switch c.AggregateType {
		case events.AggregateTenant:
			return !p.sees(c.AggregateID)
		case events.AggregateRoute:
			for _, s := range states {
				if r, ok := s.Route(c.AggregateID); ok {
					return !p.sees(r.TenantID)
				}
			}
		}
		return true
	})
}

// keyChanges lists the admin keys created (live in to, not in from) and
// revoked (the reverse) between two states, in the change format.
func keyChanges(from, to *projections.Snapshot) []declarative.Change {
	var out []declarative.Change
	for _, k := range from.AdminKeys() {
		if _, live := to.AdminKey(k.ID); !live {
			out = append(out, declarative.Change{AggregateType: events.AggregateAdminKey, AggregateID: k.ID, Change: declarative.Deleted, Fields: keyFields(k, false)})
		}
	}
	for _, k := range to.AdminKeys() {
		if _, live := from.AdminKey(k.ID); !live {
			out = append(out, declarative.Change{AggregateType: events.AggregateAdminKey, AggregateID: k.ID, Change: declarative.Created, Fields: keyFields(k, true)})
		}
	}
	return out
}

func keyFields(k *projections.AdminKey, created bool) map[string]declarative.FieldChange {
	vals := map[string]any{"name": k.Name, "role": k.Role, "keyPrefix": k.KeyPrefix}
	if k.TenantIDs != nil {
		vals["tenantIds"] = k.TenantIDs
	}
	out := map[string]declarative.FieldChange{}
	for name, v := range vals {
		if created {
			out[name] = declarative.FieldChange{To: v}
		} else {
			out[name] = declarative.FieldChange{From: v}
		}
	}
	return out
}

// revocations are the rollback's AdminKeyRevoked events: the keys live now
// that were not live at the target (created after it). A key revoked since
// is never brought back.
func (a *API) revocations(who string, current, target *projections.Snapshot) ([]declarative.Change, []events.Envelope, *Error) {
	var changes []declarative.Change
	var evs []events.Envelope
	for _, c := range keyChanges(target, current) {
		if c.Change != declarative.Created {
			continue
		}
		k, _ := current.AdminKey(c.AggregateID)
		ev, err := a.events(who).event(events.AdminKeyRevoked, k.ID, k.Version+1, "", events.AdminKeyRevokedData{})
		if err != nil {
			return nil, nil, err
		}
		c.Change, c.Fields = declarative.Deleted, keyFields(k, false)
		changes, evs = append(changes, c), append(evs, ev)
	}
	return changes, evs, nil
}
