package admin

import (
	"github.com/gofiber/fiber/v2"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/projections"
)

// routeFields are the top-level fields of a route body a merge patch may name.
var routeFields = []string{"tenantId", "method", "path", "pathType", "upstreams", "loadBalancing", "resilience", "transform"}

// updateRoute handles PATCH /admin/routes/:id: a JSON merge patch over the
// route's current JSON, validated as a whole create body (a removed field
// takes its default). tenantId cannot change. RouteUpdated carries only the
// top-level fields that changed; a patch that changes nothing answers 200
// with the unchanged version and appends nothing.
func (a *API) updateRoute(c *fiber.Ctx) error {
	who, err := actor(c)
	if err != nil {
		return fail(c, err)
	}
	patch, err := parsePatch(c.Request().Body(), routeFields...)
	if err != nil {
		return fail(c, err)
	}
	id := param(c, "id")
	snap, err := a.execute(c.UserContext(), a.updateRouteCmd(who, id, patch, parseIfMatch(c.Get(fiber.HeaderIfMatch))))
	if err != nil {
		return fail(c, err)
	}
	r, found := snap.Route(id)
	if !found {
		return fail(c, errNotFound("route"))
	}
	return ok(c, fiber.StatusOK, r.Version, r)
}

func (a *API) updateRouteCmd(who, id string, patch map[string]any, match ifMatch) command {
	return func(snap *projections.Snapshot) (plan, *Error) {
		r, err := liveRoute(snap, id, match)
		if err != nil {
			return plan{}, err
		}
		cur := r.RouteSpec
		target, gerr := toGeneric(cur)
		if gerr != nil {
			return plan{}, errInternal
		}
		next, err := decodeRoute(mergePatch(target, patch))
		if err != nil {
			return plan{}, err
		}
		if next.TenantID != cur.TenantID {
			return plan{}, errValidation(Detail{Field: "tenantId", Message: "cannot be changed"})
		}
		data, changed := routeChanges(cur, next)
		if !changed {
			return plan{}, nil
		}
		ev, err := a.events(who).event(events.RouteUpdated, id, r.Version+1, r.TenantID, data)
		if err != nil {
			return plan{}, err
		}
		return plan{head: events.AnyHead, events: []events.Envelope{ev}}, nil
	}
}

// routeChanges lists the top-level fields of next that differ from cur.
func routeChanges(cur, next events.RouteSpec) (events.RouteUpdatedData, bool) {
	var d events.RouteUpdatedData
	changed := false
	set := func(differs bool, apply func()) {
		if differs {
			apply()
			changed = true
		}
	}
	set(next.Method != cur.Method, func() { d.Method = events.NewPatch(next.Method) })
	set(next.Path != cur.Path, func() { d.Path = events.NewPatch(next.Path) })
	set(next.PathType != cur.PathType, func() { d.PathType = events.NewPatch(next.PathType) })
	set(!sameJSON(next.Upstreams, cur.Upstreams), func() { d.Upstreams = events.NewPatch(next.Upstreams) })
	set(next.LoadBalancing != cur.LoadBalancing, func() { d.LoadBalancing = events.NewPatch(next.LoadBalancing) })
	set(!sameJSON(next.Resilience, cur.Resilience), func() { d.Resilience = events.NewPatch(next.Resilience) })
	set(!sameJSON(next.Transform, cur.Transform), func() { d.Transform = events.NewPatch(next.Transform) })
	return d, changed
}
