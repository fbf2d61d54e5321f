package admin

import (
	"github.com/gofiber/fiber/v2"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/projections"
)

// createTenant handles POST /admin/tenants -> 201 with the key, shown once.
func (a *API) createTenant(c *fiber.Ctx) error {
	who, f, id, err := createInput(c, decodeTenant)
	if err != nil {
		return fail(c, err)
	}
	key := newAPIKey()
	snap, err := a.execute(c.UserContext(), a.createTenantCmd(who, id, f, key))
	if err != nil {
		return fail(c, err)
	}
	t, found := snap.Tenant(id)
	if !found {
		return fail(c, errInternal)
	}
	return ok(c, fiber.StatusCreated, t.Version, tenantWithKey{Tenant: t, APIKey: key.plain})
}

// createTenantCmd appends TenantCreated; the name must be free among live
// tenants, so it is checked against the head it appends at.
func (a *API) createTenantCmd(who, id string, f tenantFields, key apiKey) command {
	return func(snap *projections.Snapshot) (plan, *Error) {
		if _, taken := snap.TenantByName(f.Name); taken {
			return plan{}, errConflict("a tenant named " + f.Name + " already exists")
		}
		ev, err := a.events(who).event(events.TenantCreated, id, 1, id, events.TenantCreatedData{
			Name: f.Name, Status: f.Status, RateLimit: f.RateLimit,
			APIKeyHash: key.hash, APIKeyPrefix: key.prefix,
		})
		if err != nil {
			return plan{}, err
		}
		return plan{head: snap.Seq(), events: []events.Envelope{ev}}, nil
	}
}
