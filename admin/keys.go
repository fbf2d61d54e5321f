package admin

import (
	"slices"
	"strconv"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
	"github.com/invopop/validation"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/projections"
)

// Named admin keys (API.md, "Admin identities and roles"):
//
//	POST   /admin/keys      create -> 201 with "key", shown this once
//	GET    /admin/keys      list (no secrets)
//	GET    /admin/keys/:id  one key
//	DELETE /admin/keys/:id  revoke -> 204
//	GET    /admin/whoami    the caller's identity (any valid key)
//
// Names are unique among live keys (409). A key is stored only as its
// digest; revoking removes it from every instance's snapshot.

func (a *API) mountKeys(r fiber.Router, h func(fiber.Handler) []fiber.Handler) {
	r.Get("/admin/keys", h(a.listKeys)...)
	r.Post("/admin/keys", h(a.createKey)...)
	r.Get("/admin/keys/:id", h(a.getKey)...)
	r.Delete("/admin/keys/:id", h(a.revokeKey)...)
	r.Get("/admin/whoami", h(a.whoami)...)
}

type keyBody struct {
	Name      *string   `json:"name"`
	Role      *string   `json:"role"`
	TenantIDs *[]string `json:"tenantIds"`
}

// Key rules:
//
//	name       required, not blank, 1..100 characters, unique among live keys (409)
//	role       required: viewer | operator | admin
//	tenantIds  optional (absent: every tenant); 1..1000 ids of live tenants
func (b keyBody) Validate() error {
	return validateStruct(&b,
		fieldRule(&b.Name, required, notBlank, maxChars(100)),
		fieldRule(&b.Role, required, oneOf(string(events.RoleViewer), string(events.RoleOperator), string(events.RoleAdmin))),
		fieldRule(&b.TenantIDs, validation.When(b.TenantIDs != nil, validation.Length(1, 1000).Error("must hold 1 to 1000 tenant ids; leave it out for every tenant"))),
	)
}

// keyWithSecret is the answer of create, the only one that shows the key.
type keyWithSecret struct {
	*projections.AdminKey
	Key string `json:"key"`
}

func (a *API) createKey(c *fiber.Ctx) error {
	who, body, err := commandInput(c)
	if err != nil {
		return fail(c, err)
	}
	var b keyBody
	if err := bind(body, &b); err != nil {
		return fail(c, err)
	}
	if verr := b.Validate(); verr != nil {
		return fail(c, errValidation(validationDetails("", verr)...))
	}
	var tenants []string
	if b.TenantIDs != nil {
		for i, id := range *b.TenantIDs {
			u, perr := uuid.Parse(id)
			if perr != nil {
				return fail(c, errValidation(Detail{Field: "tenantIds[" + strconv.Itoa(i) + "]", Message: "must be a tenant id"}))
			}
			tenants = append(tenants, u.String())
		}
		slices.Sort(tenants)
		tenants = slices.Compact(tenants)
	}
	id, err := newID()
	if err != nil {
		return fail(c, err)
	}
	plain, hash, prefix := projections.NewAdminKey()
	snap, err := a.execute(c.UserContext(), func(snap *projections.Snapshot) (plan, *Error) {
		if _, taken := snap.AdminKeyByName(*b.Name); taken {
			return plan{}, errConflict("an admin key named " + *b.Name + " already exists")
		}
		for i, t := range tenants {
			if _, live := snap.Tenant(t); !live {
				return plan{}, errValidation(Detail{Field: "tenantIds[" + strconv.Itoa(i) + "]", Message: "must be the id of an existing tenant"})
			}
		}
		ev, err := a.events(who).event(events.AdminKeyCreated, id, 1, "", events.AdminKeyCreatedData{
			Name: *b.Name, Role: events.AdminRole(*b.Role), TenantIDs: tenants, KeyHash: hash, KeyPrefix: prefix,
		})
		if err != nil {
			return plan{}, err
		}
		return plan{head: snap.Seq(), events: []events.Envelope{ev}}, nil
	})
	if err != nil {
		return fail(c, err)
	}
	k, found := snap.AdminKey(id)
	if !found {
		return fail(c, errInternal)
	}
	return ok(c, fiber.StatusCreated, k.Version, keyWithSecret{AdminKey: k, Key: plain})
}

func (a *API) listKeys(c *fiber.Ctx) error {
	return c.JSON(fiber.Map{"items": a.proj.Snapshot().AdminKeys()})
}

func (a *API) getKey(c *fiber.Ctx) error {
	k, found := a.proj.Snapshot().AdminKey(c.Params("id"))
	if !found {
		return fail(c, errNotFound("admin key"))
	}
	return ok(c, fiber.StatusOK, k.Version, k)
}

// revokeKey appends AdminKeyRevoked; the key stops working on each instance
// as it applies the event.
func (a *API) revokeKey(c *fiber.Ctx) error {
	who, err := actor(c)
	if err != nil {
		return fail(c, err)
	}
	id := param(c, "id")
	_, err = a.execute(c.UserContext(), func(snap *projections.Snapshot) (plan, *Error) {
		k, found := snap.AdminKey(id)
		if !found {
			return plan{}, errNotFound("admin key")
		}
		ev, err := a.events(who).event(events.AdminKeyRevoked, id, k.Version+1, "", events.AdminKeyRevokedData{})
		if err != nil {
			return plan{}, err
		}
		return plan{head: events.AnyHead, events: []events.Envelope{ev}}, nil
	})
	if err != nil {
		return fail(c, err)
	}
	return c.SendStatus(fiber.StatusNoContent)
}

// whoami handles GET /admin/whoami: who the presented key is, for the
// console to offer only what the key may do.
func (a *API) whoami(c *fiber.Ctx) error {
	p := principalOf(c)
	if p.root {
		return c.JSON(fiber.Map{"root": true, "name": "admin", "role": events.RoleAdmin})
	}
	out := fiber.Map{"root": false, "name": p.key.Name, "role": p.key.Role, "keyId": p.key.ID}
	if p.key.TenantIDs != nil {
		out["tenantIds"] = p.key.TenantIDs
	}
	return c.JSON(out)
}
