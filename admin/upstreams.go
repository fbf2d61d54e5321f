package admin

import (
	"github.com/gofiber/fiber/v2"
)

// UpstreamStates reads the live runtime state of one upstream of a route,
// from this instance's local copy of the shared state (no I/O). The wiring
// adapts the resilience registries, which admin does not import.
type UpstreamStates interface {
	UpstreamState(tenantID, routeID, upstreamURL string) UpstreamState
}

// UpstreamState is what GET /admin/routes/:id/upstreams reports of one
// upstream besides its configuration.
type UpstreamState struct {
	// Healthy is false once health checks marked it unhealthy; an upstream
	// counts as healthy until probed.
	Healthy bool `json:"healthy"`
	// Breaker is the circuit breaker's state: closed, open or half_open.
	Breaker string `json:"breaker"`
}

// upstreamStatus is one item of GET /admin/routes/:id/upstreams.
type upstreamStatus struct {
	URL    string `json:"url"`
	Weight int    `json:"weight"`
	UpstreamState
	// HealthChecked and BreakerEnabled tell whether the route runs the
	// mechanism at all, so that "healthy" and "closed" are read right.
	HealthChecked  bool `json:"healthChecked"`
	BreakerEnabled bool `json:"breakerEnabled"`
}

// routeUpstreams handles GET /admin/routes/:id/upstreams: each upstream of
// the route with its health and breaker state as this instance sees them.
func (a *API) routeUpstreams(c *fiber.Ctx) error {
	r, found := a.proj.Snapshot().Route(c.Params("id"))
	if !found {
		return fail(c, errNotFound("route"))
	}
	var checked, breaking bool
	if res := r.Resilience; res != nil {
		checked = res.HealthCheck != nil && res.HealthCheck.Enabled
		breaking = res.CircuitBreaker != nil && res.CircuitBreaker.Enabled
	}
	items := make([]upstreamStatus, 0, len(r.Upstreams))
	for _, up := range r.Upstreams {
		st := UpstreamState{Healthy: true, Breaker: "closed"}
		if a.live != nil {
			st = a.live.UpstreamState(r.TenantID, r.ID, up.URL)
		}
		items = append(items, upstreamStatus{URL: up.URL, Weight: up.Weight, UpstreamState: st, HealthChecked: checked, BreakerEnabled: breaking})
	}
	return c.JSON(fiber.Map{"items": items})
}
