package admin

import (
	"github.com/gofiber/fiber/v2"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/projections"
)

// createRoute handles POST /admin/routes -> 201 with the normalized route.
func (a *API) createRoute(c *fiber.Ctx) error {
	who, spec, id, err := createInput(c, decodeRoute)
	if err != nil {
		return fail(c, err)
	}
	if !principalOf(c).sees(spec.TenantID) {
		// another's tenant is as absent as an unknown one
		return fail(c, errValidation(Detail{Field: "tenantId", Message: "must be the id of an existing tenant"}))
	}
	snap, err := a.execute(c.UserContext(), a.createRouteCmd(who, id, spec))
	if err != nil {
		return fail(c, err)
	}
	r, found := snap.Route(id)
	if !found {
		return fail(c, errInternal)
	}
	return ok(c, fiber.StatusCreated, r.Version, r)
}

// createRouteCmd appends RouteCreated at the head where its tenant was seen
// live. An unknown tenant is a 400 on tenantId (the body is what is wrong),
// not a 404.
func (a *API) createRouteCmd(who, id string, spec events.RouteSpec) command {
	return func(snap *projections.Snapshot) (plan, *Error) {
		if _, found := snap.Tenant(spec.TenantID); !found {
			return plan{}, errValidation(Detail{Field: "tenantId", Message: "must be the id of an existing tenant"})
		}
		ev, err := a.events(who).event(events.RouteCreated, id, 1, spec.TenantID, spec)
		if err != nil {
			return plan{}, err
		}
		return plan{head: snap.Seq(), events: []events.Envelope{ev}}, nil
	}
}
