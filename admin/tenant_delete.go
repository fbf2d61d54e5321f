package admin

import (
	"github.com/gofiber/fiber/v2"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/projections"
)

// deleteTenant handles DELETE /admin/tenants/:id -> 204. The tenant's routes
// go with it, each as its own RouteDeleted, all in one append.
func (a *API) deleteTenant(c *fiber.Ctx) error {
	who, err := actor(c)
	if err != nil {
		return fail(c, err)
	}
	id := param(c, "id")
	if _, err := a.execute(c.UserContext(), a.deleteTenantCmd(who, id, parseIfMatch(c.Get(fiber.HeaderIfMatch)))); err != nil {
		return fail(c, err)
	}
	return c.SendStatus(fiber.StatusNoContent)
}

// deleteTenantCmd appends at the head it checked, so a route created
// meanwhile cannot outlive its tenant.
func (a *API) deleteTenantCmd(who, id string, match ifMatch) command {
	return func(snap *projections.Snapshot) (plan, *Error) {
		t, err := liveTenant(snap, id, match)
		if err != nil {
			return plan{}, err
		}
		f := a.events(who)
		var evs []events.Envelope
		for _, r := range snap.TenantRoutes(id) {
			ev, err := f.event(events.RouteDeleted, r.ID, r.Version+1, id, events.RouteDeletedData{})
			if err != nil {
				return plan{}, err
			}
			evs = append(evs, ev)
		}
		ev, err := f.event(events.TenantDeleted, id, t.Version+1, id, events.TenantDeletedData{})
		if err != nil {
			return plan{}, err
		}
		return plan{head: snap.Seq(), events: append(evs, ev)}, nil
	}
}
