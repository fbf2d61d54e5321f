package admin

import (
	"github.com/gofiber/fiber/v2"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/projections"
)

// updateTenant handles PATCH /admin/tenants/:id: a JSON merge patch (RFC 7396)
// of name, status and rateLimit. The merged tenant is validated like a create
// body; a removed (null) field takes its default: rateLimit null is
// unlimited, status null is active, name null is invalid. A patch that
// changes nothing answers 200 with the unchanged version and appends nothing.
func (a *API) updateTenant(c *fiber.Ctx) error {
	who, err := actor(c)
	if err != nil {
		return fail(c, err)
	}
	patch, err := parsePatch(c.Request().Body(), "name", "status", "rateLimit")
	if err != nil {
		return fail(c, err)
	}
	id := param(c, "id")
	snap, err := a.execute(c.UserContext(), a.updateTenantCmd(who, id, patch, parseIfMatch(c.Get(fiber.HeaderIfMatch))))
	if err != nil {
		return fail(c, err)
	}
	t, found := snap.Tenant(id)
	if !found {
		return fail(c, errNotFound("tenant"))
	}
	return ok(c, fiber.StatusOK, t.Version, t)
}

func (a *API) updateTenantCmd(who, id string, patch map[string]any, match ifMatch) command {
	return func(snap *projections.Snapshot) (plan, *Error) {
		t, err := liveTenant(snap, id, match)
		if err != nil {
			return plan{}, err
		}
		current := tenantFields{Name: t.Name, Status: t.Status, RateLimit: t.RateLimit}
		target, gerr := toGeneric(current)
		if gerr != nil {
			return plan{}, errInternal
		}
		next, err := decodeTenant(mergePatch(target, patch))
		if err != nil {
			return plan{}, err
		}
		var data events.TenantUpdatedData
		head := events.AnyHead
		if next.Name != current.Name {
			// A new name must be free, which only holds at the head checked.
			head = snap.Seq()
			if other, taken := snap.TenantByName(next.Name); taken && other.ID != id {
				return plan{}, errConflict("a tenant named " + next.Name + " already exists")
			}
			data.Name = events.NewPatch(next.Name)
		}
		if next.Status != current.Status {
			data.Status = events.NewPatch(next.Status)
		}
		if !sameJSON(next.RateLimit, current.RateLimit) {
			data.RateLimit = events.NewPatch(next.RateLimit)
		}
		if !data.Name.Set && !data.Status.Set && !data.RateLimit.Set {
			return plan{}, nil
		}
		ev, err := a.events(who).event(events.TenantUpdated, id, t.Version+1, id, data)
		if err != nil {
			return plan{}, err
		}
		return plan{head: head, events: []events.Envelope{ev}}, nil
	}
}
