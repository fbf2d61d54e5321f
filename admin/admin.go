// Package admin is the gateway's admin REST API: thin Fiber handlers that
// decode and validate a request, run one command (one per file) that appends
// events to the store, wait until this instance's projection has applied them
// (read your writes) and answer from the new snapshot; plus the audit and
// state queries. Every error it answers is the contract's JSON, produced here
// rather than by the app's ErrorHandler, which belongs to whoever built the app.
//
// Where API.md is silent, the API does this:
//
//   - Unknown paths and methods under /admin (after auth) are 404 not_found.
//   - A PATCH that changes nothing answers 200 with the unchanged version and
//     ETag, and appends no event. A field removed by a merge patch (null)
//     takes its create default (status active, method *, ...); a required
//     one (name, path, upstreams, tenantId) is then a 400.
//   - POST /admin/routes with a tenantId that is not a live tenant is 400
//     validation_failed on field tenantId (the body is wrong, the URL is not).
//   - GET /admin/tenants/:id/history includes the events of the tenant's
//     routes (selected by tenantId): the full audit of the tenant. It works
//     for deleted tenants and routes too; an id without events is 404.
//   - GET /admin/state?at=n with n beyond the store's head is 400
//     validation_failed on field at.
//   - If-Match accepts 3, "3", W/"3", * and lists; a value that is not a
//     version never matches (412).
//   - A write whose append committed but which this instance could not apply
//     within 5 s answers 503 store_unavailable; the write stands.
//   - Writes lost to a concurrent writer are re-run against the new state
//     (up to 20 times); with If-Match the re-run then answers 412.
//   - GET /admin/whoami (any valid key) says who the key is, for the console.
//   - Managing keys needs role admin and no tenantIds (a scoped admin key
//     gets 403): a scoped key could otherwise mint an unscoped one. A scoped
//     key's /admin/state lists no adminKeys.
//   - Only a caller who may manage keys makes a rollback revoke the keys
//     created since; an operator's rollback leaves keys alone.
//   - GET /admin/routes/:id/upstreams lists a route's upstreams with their
//     live health and breaker state as this instance sees them (for the
//     console); /admin/ui/ serves the console's files without a key (ui).
package admin

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"
	"go.opentelemetry.io/otel/trace"

	"github.com/tenantgate/gateway/admin/ui"
	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/projections"
)

// DefaultBodyLimit is the largest admin request body accepted, except by
// POST /admin/apply and /admin/rollback, which take DefaultDocumentLimit (a
// whole exported state).
const (
	DefaultBodyLimit     = 1 << 20
	DefaultDocumentLimit = 64 << 20
)

// storeTimeout bounds each call to the store and each wait on the projector.
const storeTimeout = 5 * time.Second

// historyKeep is how long the checkpoint states history queries loaded are
// kept after the last load (see projections.History): long enough for the
// console's state, diff and rollback preview around one seq, short because
// at 100,000 routes the two cost more memory than the serving state.
const historyKeep = 15 * time.Second

// maxActorChars is the longest X-Actor accepted.
const maxActorChars = 200

// Config configures the admin API.
type Config struct {
	// AdminKey is the key callers send as X-Admin-Key. Required.
	AdminKey string
	// InstanceID names this instance in /admin/status.
	InstanceID string
	// BodyLimit is the largest request body in bytes; default 1 MiB. Larger
	// bodies get 413 payload_too_large.
	BodyLimit int
	// DocumentLimit is BodyLimit for POST /admin/apply and /admin/rollback;
	// default 64 MiB.
	DocumentLimit int
}

// Projector is what the admin API needs of the projection that keeps this
// instance's snapshot current; *projections.Projector satisfies it.
type Projector interface {
	Snapshot() *projections.Snapshot
	Ready() bool
	AppliedSeq() int64
	// CatchUp applies every event committed so far.
	CatchUp(ctx context.Context) error
	// WaitFor returns once the snapshot includes event seq.
	WaitFor(ctx context.Context, seq int64) error
}

var _ Projector = (*projections.Projector)(nil)

// Deps are the admin API's collaborators.
type Deps struct {
	Store     events.Store
	Projector Projector
	// BusKind is "redis" or "memory", reported by /admin/status.
	BusKind string
	// Notify is called after every successful append (it wakes the outbox
	// relay). Optional.
	Notify func()
	// Log defaults to slog.Default().
	Log *slog.Logger
	// Now defaults to time.Now.
	Now func() time.Time
	// Tracer, when set (and not a no-op), gives every command a span.
	Tracer trace.Tracer
	// Instances answers GET /admin/instances. Default: this instance alone.
	Instances Instances
	// AuthFailures counts failed admin authentications. Optional.
	AuthFailures Counter
	// Upstreams answers the live part of GET /admin/routes/:id/upstreams.
	// Default: every upstream healthy with a closed breaker.
	Upstreams UpstreamStates
}

// API serves /admin/...
type API struct {
	cfg      Config
	keyHash  [32]byte
	store    events.Store
	proj     Projector
	busKind  string
	notify   func()
	log      *slog.Logger
	now      func() time.Time
	tracer   trace.Tracer         // nil: no spans
	lastHead atomic.Int64         // last store head seen, reported while the store is down
	past     *projections.History // states of the past, for history queries
	pastDone quietRelease         // gives their memory back once queries stop
	writes   chan struct{}        // a one-slot semaphore: this instance's commands run one at a time
	cluster  Instances            // GET /admin/instances
	live     UpstreamStates       // GET /admin/routes/:id/upstreams; nil: nothing known
	// failed authentications: counted, and slowed down per address
	authFailures Counter
	failed       failures
}

// New builds the admin API.
func New(cfg Config, deps Deps) (*API, error) {
	if cfg.BodyLimit == 0 {
		cfg.BodyLimit = DefaultBodyLimit
	}
	if cfg.DocumentLimit == 0 {
		cfg.DocumentLimit = DefaultDocumentLimit
	}
	if deps.Log == nil {
		deps.Log = slog.Default()
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.AuthFailures == nil {
		deps.AuthFailures = noCounter{}
	}
	if deps.Notify == nil {
		deps.Notify = func() {}
	}
	var errs []error
	if cfg.AdminKey == "" {
		errs = append(errs, errors.New("admin: Config.AdminKey is required"))
	}
	if cfg.BodyLimit < 0 {
		errs = append(errs, fmt.Errorf("admin: Config.BodyLimit must be positive, got %d", cfg.BodyLimit))
	}
	if deps.Store == nil {
		errs = append(errs, errors.New("admin: Deps.Store is required"))
	}
	if deps.Projector == nil {
		errs = append(errs, errors.New("admin: Deps.Projector is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if deps.Instances == nil {
		solo, err := soloInstances(cfg.InstanceID, deps.Projector, deps.Store, deps.Log)
		if err != nil {
			return nil, err
		}
		deps.Instances = solo
	}
	return &API{
		cfg:     cfg,
		keyHash: sha256.Sum256([]byte(cfg.AdminKey)),
		store:   deps.Store,
		past:    projections.NewHistory(deps.Store, historyKeep, deps.Log),
		proj:    deps.Projector,
		busKind: deps.BusKind,
		notify:  deps.Notify,
		log:     deps.Log,
		now:     deps.Now,
		tracer:  activeTracer(deps.Tracer),
		writes:  make(chan struct{}, 1),
		cluster: deps.Instances,
		live:    deps.Upstreams,

		authFailures: deps.AuthFailures,
	}, nil
}

// Mount registers /admin/... on an app or a group. The middleware (panic
// recovery, auth, body limit) is attached to each admin route rather than
// as prefix middleware, because Fiber's prefix match would also catch
// proxy paths such as /administrator.
func (a *API) Mount(r fiber.Router) {
	h := func(handler fiber.Handler) []fiber.Handler {
		return []fiber.Handler{a.recover, a.authenticate, a.limitBody, a.traceCommand, handler}
	}
	r.Get("/admin/tenants", h(a.listTenants)...)
	r.Post("/admin/tenants", h(a.createTenant)...)
	r.Get("/admin/tenants/:id", h(a.getTenant)...)
	r.Patch("/admin/tenants/:id", h(a.updateTenant)...)
	r.Delete("/admin/tenants/:id", h(a.deleteTenant)...)
	r.Post("/admin/tenants/:id/api-key", h(a.rotateKey)...)
	r.Get("/admin/tenants/:id/routes", h(a.tenantRoutes)...)
	r.Get("/admin/tenants/:id/history", h(a.tenantHistory)...)

	r.Post("/admin/routes", h(a.createRoute)...)
	r.Get("/admin/routes/:id", h(a.getRoute)...)
	r.Patch("/admin/routes/:id", h(a.updateRoute)...)
	r.Delete("/admin/routes/:id", h(a.deleteRoute)...)
	r.Get("/admin/routes/:id/history", h(a.routeHistory)...)
	r.Get("/admin/routes/:id/upstreams", h(a.routeUpstreams)...)

	r.Get("/admin/events", h(a.listEvents)...)
	r.Get("/admin/state", h(a.state)...)
	r.Get("/admin/status", h(a.status)...)
	r.Get("/admin/instances", h(a.listInstances)...)

	a.mountDeclarative(r, h)
	a.mountKeys(r, h)

	// The console's files hold no data: served without a key (see ui).
	ui.Mount(r)

	// Everything else under /admin, other methods included, is a 404 here
	// rather than proxy traffic.
	r.All("/admin", h(a.notFound)...)
	r.All("/admin/*", h(a.notFound)...)
}

func (a *API) notFound(c *fiber.Ctx) error {
	return writeError(c, &Error{Status: fiber.StatusNotFound, Code: "not_found", Message: "no admin endpoint " + c.Method() + " " + c.Path()})
}

// recover turns a panic in a handler into a 500 JSON answer.
func (a *API) recover(c *fiber.Ctx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			a.log.Error("admin: panic in handler", "method", c.Method(), "path", c.Path(), "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			err = writeError(c, errInternal)
		}
	}()
	return c.Next()
}

// limitBody refuses bodies over the limit. A streamed body (the main
// listener streams them) is read up to one byte past the limit, never
// whole: a chunked body has no length to check first. What is left unread
// of a refused body closes the connection after the answer (see
// proxy.SettleBodies).
func (a *API) limitBody(c *fiber.Ctx) error {
	limit := a.cfg.BodyLimit
	if c.Method() == fiber.MethodPost && (c.Path() == "/admin/apply" || c.Path() == "/admin/rollback") {
		limit = a.cfg.DocumentLimit
	}
	req := c.Request()
	if n := req.Header.ContentLength(); n > limit {
		return writeError(c, errTooLarge(limit))
	}
	if s := req.BodyStream(); s != nil {
		b, err := io.ReadAll(io.LimitReader(s, int64(limit)+1))
		switch {
		case len(b) > limit:
			return writeError(c, errTooLarge(limit))
		case err != nil:
			return writeError(c, &Error{Status: fiber.StatusBadRequest, Code: "invalid_request", Message: "could not read the request body"})
		}
		req.SetBodyRaw(b) // the stream is read to its end: Body() serves b
	}
	return c.Next()
}

// commandInput is what every write handler starts from: the acting admin
// and the parsed JSON body.
func commandInput(c *fiber.Ctx) (who string, body any, err *Error) {
	if who, err = actor(c); err != nil {
		return who, nil, err
	}
	body, err = parseJSON(c.Request().Body())
	return who, body, err
}

// createInput is what every create handler starts from: commandInput with
// the body as decode reads it, and a fresh id for the new aggregate.
func createInput[T any](c *fiber.Ctx, decode func(any) (T, *Error)) (who string, v T, id string, err *Error) {
	who, body, err := commandInput(c)
	if err != nil {
		return who, v, id, err
	}
	if v, err = decode(body); err != nil {
		return who, v, id, err
	}
	id, err = newID()
	return who, v, id, err
}

// actor is who the events of the request are recorded as: a named key's
// name (X-Actor ignored), or for the root key the X-Actor header, default
// "admin". The key's id goes on the events too (see appendEvents).
func actor(c *fiber.Ctx) (string, *Error) {
	if p := principalOf(c); p.key != nil {
		return p.key.Name, nil
	}
	v := c.Get("X-Actor")
	if v == "" {
		return "admin", nil
	}
	if utf8.RuneCountInString(v) > maxActorChars {
		return "", errValidation(Detail{Field: "X-Actor", Message: "must be at most " + strconv.Itoa(maxActorChars) + " characters"})
	}
	if !utf8.ValidString(v) || strings.ContainsFunc(v, unicode.IsControl) {
		return "", errValidation(Detail{Field: "X-Actor", Message: "must be UTF-8 text without control characters"})
	}
	return string([]byte(v)), nil // copied: Fiber reuses its buffers
}

// storeError maps an error of the store or the projector to an answer: a
// store that answers but ran past the deadline is 504 store_timeout, one
// that cannot be reached 503 store_unavailable.
func (a *API) storeError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if errors.Is(err, events.ErrTimeout) {
		a.log.Warn("admin: store call timed out on a reachable store", "err", err)
		return errStoreTimeout()
	}
	a.log.Warn("admin: store unavailable", "err", err)
	return errUnavailable()
}

func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, storeTimeout)
}

// withTimeoutFor bounds a store call or a wait that concerns n events: an
// append of a large document takes longer than one event's.
func withTimeoutFor(ctx context.Context, n int) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, max(storeTimeout, events.AppendTimeout(n)))
}
