package admin

import (
	"github.com/gofiber/fiber/v2"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/projections"
)

// deleteRoute handles DELETE /admin/routes/:id -> 204.
func (a *API) deleteRoute(c *fiber.Ctx) error {
	who, err := actor(c)
	if err != nil {
		return fail(c, err)
	}
	id := param(c, "id")
	if _, err := a.execute(c.UserContext(), a.deleteRouteCmd(who, id, parseIfMatch(c.Get(fiber.HeaderIfMatch)))); err != nil {
		return fail(c, err)
	}
	return c.SendStatus(fiber.StatusNoContent)
}

func (a *API) deleteRouteCmd(who, id string, match ifMatch) command {
	return func(snap *projections.Snapshot) (plan, *Error) {
		r, err := liveRoute(snap, id, match)
		if err != nil {
			return plan{}, err
		}
		ev, err := a.events(who).event(events.RouteDeleted, id, r.Version+1, r.TenantID, events.RouteDeletedData{})
		if err != nil {
			return plan{}, err
		}
		return plan{head: events.AnyHead, events: []events.Envelope{ev}}, nil
	}
}
