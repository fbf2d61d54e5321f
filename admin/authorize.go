package admin

import (
	"context"
	"crypto/subtle"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/projections"
)

// principal is who sent an admin request: the root key (ADMIN_API_KEY) or a
// named key of the snapshot.
type principal struct {
	root bool
	key  *projections.AdminKey // nil for root
}

func (p principal) role() events.AdminRole {
	if p.root {
		return events.RoleAdmin
	}
	return p.key.Role
}

// scoped reports whether the key sees only some tenants.
func (p principal) scoped() bool { return !p.root && p.key.TenantIDs != nil }

// sees reports whether the principal may see tenant id.
func (p principal) sees(tenantID string) bool {
	return !p.scoped() || slices.Contains(p.key.TenantIDs, tenantID)
}

// tenantFilter is the Query.TenantIDs of the principal's reads (nil: all).
func (p principal) tenantFilter() []string {
	if !p.scoped() {
		return nil
	}
	return append([]string{}, p.key.TenantIDs...)
}

var roleRank = map[events.AdminRole]int{events.RoleViewer: 1, events.RoleOperator: 2, events.RoleAdmin: 3}

// resource says what a scoped key's access to an operation depends on.
type resource int

const (
	anyTenant   resource = iota // no tenant, or the handler filters by scope
	tenantParam                 // :id is a tenant: others' are 404
	routeParam                  // :id is a route: others' tenants' are 404
	everyTenant                 // only keys without tenantIds (403 otherwise)
)

// rule is what an operation needs: a role, and for scoped keys a resource.
type rule struct {
	role     events.AdminRole
	resource resource
}

// opApplyWrite is the operation of an apply that is not a dry run: the route
// POST /admin/apply is open to viewers for dry runs.
const opApplyWrite = "POST /admin/apply (write)"

// permissions is the authorizer's specification, keyed by operation
// ("METHOD route"): every admin route is in it (TestAuthorizerTable checks
// it against the OpenAPI document), and nothing outside it is allowed.
var permissions = map[string]rule{
	"GET /admin/tenants":              {events.RoleViewer, anyTenant},
	"POST /admin/tenants":             {events.RoleOperator, everyTenant},
	"GET /admin/tenants/:id":          {events.RoleViewer, tenantParam},
	"PATCH /admin/tenants/:id":        {events.RoleOperator, tenantParam},
	"DELETE /admin/tenants/:id":       {events.RoleOperator, tenantParam},
	"POST /admin/tenants/:id/api-key": {events.RoleOperator, tenantParam},
	"GET /admin/tenants/:id/routes":   {events.RoleViewer, tenantParam},
	"GET /admin/tenants/:id/history":  {events.RoleViewer, tenantParam},
	"POST /admin/routes":              {events.RoleOperator, anyTenant},
	"GET /admin/routes/:id":           {events.RoleViewer, routeParam},
	"PATCH /admin/routes/:id":         {events.RoleOperator, routeParam},
	"DELETE /admin/routes/:id":        {events.RoleOperator, routeParam},
	"GET /admin/routes/:id/history":   {events.RoleViewer, routeParam},
	"GET /admin/routes/:id/upstreams": {events.RoleViewer, routeParam},
	"GET /admin/events":               {events.RoleViewer, anyTenant},
	"GET /admin/state":                {events.RoleViewer, anyTenant},
	"GET /admin/status":               {events.RoleViewer, anyTenant},
	"GET /admin/instances":            {events.RoleViewer, anyTenant},
	"GET /admin/diff":                 {events.RoleViewer, anyTenant},
	"POST /admin/apply":               {events.RoleViewer, anyTenant},
	opApplyWrite:                      {events.RoleOperator, anyTenant},
	"POST /admin/rollback":            {events.RoleOperator, anyTenant},
	"GET /admin/openapi.json":         {events.RoleViewer, anyTenant},
	"GET /admin/whoami":               {events.RoleViewer, anyTenant},
	"GET /admin/keys":                 {events.RoleAdmin, everyTenant},
	"POST /admin/keys":                {events.RoleAdmin, everyTenant},
	"GET /admin/keys/:id":             {events.RoleAdmin, everyTenant},
	"DELETE /admin/keys/:id":          {events.RoleAdmin, everyTenant},
	"GET /metrics":                    {events.RoleViewer, anyTenant},
	"ALL /admin":                      {events.RoleViewer, anyTenant}, // the 404 of unknown paths
	"ALL /admin/*":                    {events.RoleViewer, anyTenant},
}

var errForbidden = &Error{Status: fiber.StatusForbidden, Code: "forbidden", Message: "this admin key's role or scope does not allow this operation"}

// allow decides op for p. It does not look at resources: see authorize.
func allow(p principal, op string) *Error {
	r, known := permissions[op]
	if !known || roleRank[p.role()] < roleRank[r.role] {
		return errForbidden
	}
	if r.resource == everyTenant && p.scoped() {
		return errForbidden
	}
	return nil
}

type principalKey struct{}

// principalOf is the principal authenticate stored for the request.
func principalOf(c *fiber.Ctx) principal {
	p, _ := c.Locals(principalKey{}).(principal)
	return p
}

func keyIDFrom(ctx context.Context) string {
	p, _ := ctx.Value(principalKey{}).(principal)
	if p.key == nil {
		return ""
	}
	return p.key.ID
}

// identify finds the principal of a presented key. The root key is always
// compared (in constant time, on digests) before the snapshot's keys are
// looked up by digest, so timing tells neither which kind matched nor
// anything of the key: a lookup by SHA-256 digest reveals only digest bits.
func (a *API) identify(key []byte) (principal, bool) {
	if len(key) == 0 {
		return principal{}, false
	}
	got := projections.KeyHash(key)
	root := subtle.ConstantTimeCompare(got[:], a.keyHash[:]) == 1
	k, named := a.proj.Snapshot().AdminKeyByHash(got)
	switch {
	case root:
		return principal{root: true}, true
	case named && subtle.ConstantTimeCompare(got[:], k.KeyHash[:]) == 1:
		return principal{key: k}, true
	}
	return principal{}, false
}

// authenticate requires a valid admin key in X-Admin-Key, then asks the
// authorizer about the route's operation and, for a scoped key, about the
// tenant or route the path names.
func (a *API) authenticate(c *fiber.Ctx) error {
	p, valid := a.identify(c.Request().Header.Peek("X-Admin-Key"))
	if !valid {
		a.authFailed(c)
		return writeError(c, errUnauthorized)
	}
	c.Locals(principalKey{}, p)
	c.SetUserContext(context.WithValue(c.UserContext(), principalKey{}, p))
	op := c.Route().Method + " " + c.Route().Path
	if c.Route().Path == "/admin" || c.Route().Path == "/admin/*" {
		op = "ALL " + c.Route().Path
	}
	if err := allow(p, op); err != nil {
		return writeError(c, err)
	}
	if p.scoped() {
		switch permissions[op].resource {
		case tenantParam:
			if !p.sees(c.Params("id")) {
				return writeError(c, errNotFound("tenant"))
			}
		case routeParam:
			if r, live := a.proj.Snapshot().Route(c.Params("id")); live && !p.sees(r.TenantID) {
				return writeError(c, errNotFound("route"))
			}
		}
	}
	return c.Next()
}

// IsAdminKey reports whether key is the root key or a live named key (any
// role): what /metrics on the main listener accepts.
func (a *API) IsAdminKey(key []byte) bool {
	_, ok := a.identify(key)
	return ok
}

// failures slows down addresses that keep presenting wrong admin keys: past
// freeFailures within a window, each further failure waits a little longer
// before its 401 (capped), so guessing from one address is slow while valid
// keys are never delayed.
type failures struct {
	mu     sync.Mutex
	window time.Time
	count  map[string]int
}

const (
	freeFailures  = 5
	failureWindow = time.Minute
	failureStep   = 200 * time.Millisecond
	maxFailDelay  = 2 * time.Second
	maxAddresses  = 10_000
)

// add counts a failure of addr and returns how long to wait before answering.
func (f *failures) add(addr string, now time.Time) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	if now.Sub(f.window) > failureWindow || f.count == nil || len(f.count) >= maxAddresses {
		f.window, f.count = now, map[string]int{}
	}
	f.count[addr]++
	n := f.count[addr] - freeFailures
	if n <= 0 {
		return 0
	}
	return min(time.Duration(n)*failureStep, maxFailDelay)
}

// authFailed counts, logs (never the key) and slows down a failed
// authentication.
func (a *API) authFailed(c *fiber.Ctx) {
	addr := c.IP()
	if ip := net.ParseIP(addr); ip != nil {
		addr = ip.String()
	}
	a.authFailures.Inc()
	delay := a.failed.add(addr, a.now())
	a.log.Warn("admin: authentication failed", "remote", addr, "method", c.Method(), "path", c.Path(),
		"keyPresented", len(c.Request().Header.Peek("X-Admin-Key")) > 0, "delay", delay)
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-c.UserContext().Done():
		}
	}
}

// Counter is what the admin API counts failed authentications with; a
// prometheus.Counter is one.
type Counter interface{ Inc() }

type noCounter struct{}

func (noCounter) Inc() {}
