package admin

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"slices"
	"sort"
	"strconv"

	"github.com/gofiber/fiber/v2"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/projections"
)

// Reads answer from this instance's current snapshot; they do not touch the
// store, so they keep working while it is down (fail static).

const (
	defaultPageSize = 100
	maxPageSize     = 500
)

// listTenants handles GET /admin/tenants?limit=&cursor=. Tenants are ordered
// by id; the cursor is opaque (the last id of the page, base64url).
func (a *API) listTenants(c *fiber.Ctx) error {
	limit, err := intQuery(c, "limit", defaultPageSize, 1, maxPageSize)
	if err != nil {
		return fail(c, err)
	}
	after := ""
	if cur := c.Query("cursor"); cur != "" {
		b, derr := base64.RawURLEncoding.DecodeString(cur)
		if derr != nil || len(b) == 0 {
			return fail(c, errValidation(Detail{Field: "cursor", Message: "is not a cursor this API issued"}))
		}
		after = string(b)
	}
	all := a.proj.Snapshot().Tenants()
	if p := principalOf(c); p.scoped() {
		all = slices.DeleteFunc(all, func(t *projections.Tenant) bool { return !p.sees(t.ID) })
	}
	start := sort.Search(len(all), func(i int) bool { return after == "" || all[i].ID > after })
	end := min(start+int(limit), len(all))
	page := struct {
		Items      []*projections.Tenant `json:"items"`
		NextCursor *string               `json:"nextCursor"`
	}{Items: append([]*projections.Tenant{}, all[start:end]...)}
	if end < len(all) {
		next := base64.RawURLEncoding.EncodeToString([]byte(all[end-1].ID))
		page.NextCursor = &next
	}
	return c.JSON(page)
}

// getTenant handles GET /admin/tenants/:id.
func (a *API) getTenant(c *fiber.Ctx) error {
	t, found := a.proj.Snapshot().Tenant(c.Params("id"))
	if !found {
		return fail(c, errNotFound("tenant"))
	}
	return ok(c, fiber.StatusOK, t.Version, t)
}

// tenantRoutes handles GET /admin/tenants/:id/routes.
func (a *API) tenantRoutes(c *fiber.Ctx) error {
	snap := a.proj.Snapshot()
	id := c.Params("id")
	if _, found := snap.Tenant(id); !found {
		return fail(c, errNotFound("tenant"))
	}
	return c.JSON(fiber.Map{"items": nonNil(snap.TenantRoutes(id))})
}

// getRoute handles GET /admin/routes/:id.
func (a *API) getRoute(c *fiber.Ctx) error {
	r, found := a.proj.Snapshot().Route(c.Params("id"))
	if !found {
		return fail(c, errNotFound("route"))
	}
	return ok(c, fiber.StatusOK, r.Version, r)
}

// tenantHistory handles GET /admin/tenants/:id/history: every event of the
// tenant, oldest first, its routes' events included (selected by tenantId),
// because an audit of a tenant is expected to show what happened to its
// routes. A deleted tenant keeps its history; an id with no events is 404.
func (a *API) tenantHistory(c *fiber.Ctx) error {
	return a.history(c, events.Query{TenantID: c.Params("id")}, "tenant")
}

// routeHistory handles GET /admin/routes/:id/history.
func (a *API) routeHistory(c *fiber.Ctx) error {
	return a.history(c, events.Query{AggregateType: events.AggregateRoute, AggregateID: c.Params("id")}, "route")
}

func (a *API) history(c *fiber.Ctx, q events.Query, what string) error {
	q.TenantIDs = principalOf(c).tenantFilter()
	evs, err := a.read(c.UserContext(), q)
	if err != nil {
		return fail(c, a.storeError(err))
	}
	if len(evs) == 0 {
		return fail(c, errNotFound(what))
	}
	return c.JSON(fiber.Map{"items": publicEvents(evs)})
}

// listEvents handles GET /admin/events.
func (a *API) listEvents(c *fiber.Ctx) error {
	after, err := intQuery(c, "after", 0, 0, 1<<62)
	if err != nil {
		return fail(c, err)
	}
	limit, err := intQuery(c, "limit", 100, 1, 1000)
	if err != nil {
		return fail(c, err)
	}
	q := events.Query{After: after, Limit: int(limit), AggregateID: c.Query("aggregateId"), TenantID: c.Query("tenantId")}
	q.TenantIDs = principalOf(c).tenantFilter()
	switch t := events.AggregateType(c.Query("aggregateType")); t {
	case "", events.AggregateTenant, events.AggregateRoute, events.AggregateAdminKey:
		q.AggregateType = t
	default:
		return fail(c, errValidation(Detail{Field: "aggregateType", Message: "must be one of tenant, route, adminKey"}))
	}
	evs, rerr := a.read(c.UserContext(), q)
	if rerr != nil {
		return fail(c, a.storeError(rerr))
	}
	page := struct {
		Items     []json.RawMessage `json:"items"`
		NextAfter *int64            `json:"nextAfter"`
	}{Items: publicEvents(evs)}
	if len(evs) == q.Limit {
		page.NextAfter = &evs[len(evs)-1].Seq
	}
	return c.JSON(page)
}

func (a *API) read(ctx context.Context, q events.Query) ([]events.Envelope, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	return a.store.Read(ctx, q)
}

// publicEvents encodes events for the API: the stored key digests (of
// tenant and admin keys) are left out.
func publicEvents(evs []events.Envelope) []json.RawMessage {
	out := make([]json.RawMessage, 0, len(evs))
	for _, ev := range evs {
		digest := map[events.AggregateType]string{events.AggregateTenant: "apiKeyHash", events.AggregateAdminKey: "keyHash"}[ev.AggregateType]
		if digest != "" {
			var data map[string]json.RawMessage
			if json.Unmarshal(ev.Data, &data) == nil {
				if _, has := data[digest]; has {
					delete(data, digest)
					ev.Data, _ = json.Marshal(data)
				}
			}
		}
		b, err := json.Marshal(ev)
		if err != nil {
			continue
		}
		out = append(out, b)
	}
	return out
}

// intQuery reads an integer query parameter within [lo, hi].
func intQuery(c *fiber.Ctx, name string, def, lo, hi int64) (int64, *Error) {
	s := c.Query(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, errValidation(Detail{Field: name, Message: "must be an integer between " + strconv.FormatInt(lo, 10) + " and " + strconv.FormatInt(hi, 10)})
	}
	return n, nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
