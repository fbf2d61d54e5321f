package admin

import (
	"github.com/gofiber/fiber/v2"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/projections"
)

// rotateKey handles POST /admin/tenants/:id/api-key -> 200 with the new key,
// shown once; the old key stops working when the event is applied.
func (a *API) rotateKey(c *fiber.Ctx) error {
	who, err := actor(c)
	if err != nil {
		return fail(c, err)
	}
	id := param(c, "id")
	key := newAPIKey()
	snap, err := a.execute(c.UserContext(), a.rotateKeyCmd(who, id, key, parseIfMatch(c.Get(fiber.HeaderIfMatch))))
	if err != nil {
		return fail(c, err)
	}
	t, found := snap.Tenant(id)
	if !found {
		return fail(c, errNotFound("tenant"))
	}
	return ok(c, fiber.StatusOK, t.Version, tenantWithKey{Tenant: t, APIKey: key.plain})
}

func (a *API) rotateKeyCmd(who, id string, key apiKey, match ifMatch) command {
	return func(snap *projections.Snapshot) (plan, *Error) {
		t, err := liveTenant(snap, id, match)
		if err != nil {
			return plan{}, err
		}
		ev, err := a.events(who).event(events.TenantAPIKeyRotated, id, t.Version+1, id,
			events.TenantAPIKeyRotatedData{APIKeyHash: key.hash, APIKeyPrefix: key.prefix})
		if err != nil {
			return plan{}, err
		}
		return plan{head: events.AnyHead, events: []events.Envelope{ev}}, nil
	}
}
