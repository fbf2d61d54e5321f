package admin

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/events/testenv"
	"github.com/tenantgate/gateway/migrations"
	"github.com/tenantgate/gateway/projections"
)

// env is the admin API over a real store, bus, relay and projector.
type env struct {
	app   *fiber.App
	store *events.SQLStore
	bus   events.Bus
	proj  *projections.Projector
	logs  *syncBuffer
}

type syncBuffer = testenv.SyncBuffer

func newSQLiteEnv(t testing.TB) *env {
	t.Helper()
	store, err := events.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	return newEnv(t, store, events.NewMemoryBus(), &syncBuffer{})
}

func newPostgresEnv(t testing.TB) *env {
	t.Helper()
	store, err := events.OpenPostgres(context.Background(), testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	return newEnv(t, store, events.NewMemoryBus(), &syncBuffer{})
}

func newEnv(t testing.TB, store *events.SQLStore, bus events.Bus, logs *syncBuffer) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := testLogger(logs)
	if err := migrations.Migrate(ctx, store.DB()); err != nil {
		t.Fatal(err)
	}
	proj, err := projections.NewProjector(projections.ProjectorConfig{}, store, bus, log)
	if err != nil {
		t.Fatal(err)
	}
	relay := events.NewRelay(store, bus, events.RelayConfig{}, log)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = proj.Run(ctx) }()
	go func() { defer wg.Done(); _ = relay.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		_ = bus.Close()
		_ = store.Close()
	})
	api, err := New(Config{AdminKey: testAdminKey, InstanceID: "it"}, Deps{
		Store: store, Projector: proj, BusKind: bus.Kind(), Notify: relay.Notify, Log: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	api.Mount(app)
	pollUntil(t, proj.Ready)
	return &env{app: app, store: store, bus: bus, proj: proj, logs: logs}
}

// allEvents reads the whole log.
func (e *env) allEvents(t testing.TB) []events.Envelope {
	t.Helper()
	evs, err := e.store.Read(context.Background(), events.Query{})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// tenantJSON is the tenant object as answered.
type tenantJSON struct {
	ID           string            `json:"id"`
	Name         string            `json:"name"`
	Status       string            `json:"status"`
	RateLimit    *events.RateLimit `json:"rateLimit"`
	APIKeyPrefix string            `json:"apiKeyPrefix"`
	APIKey       string            `json:"apiKey"`
	Version      int64             `json:"version"`
	CreatedAt    time.Time         `json:"createdAt"`
	UpdatedAt    time.Time         `json:"updatedAt"`
}

// routeJSON is the route object as answered.
type routeJSON struct {
	ID string `json:"id"`
	events.RouteSpec
	Version int64 `json:"version"`
}

func (e *env) createTenant(t testing.TB, body string) tenantJSON {
	t.Helper()
	r := do(t, e.app, "POST", "/admin/tenants", body)
	if r.status != 201 || r.header.Get("ETag") != `"1"` {
		t.Fatalf("create tenant: %d %s", r.status, r.raw)
	}
	var out tenantJSON
	r.decode(t, &out)
	return out
}

func (e *env) createRoute(t testing.TB, body string) routeJSON {
	t.Helper()
	r := do(t, e.app, "POST", "/admin/routes", body)
	if r.status != 201 || r.header.Get("ETag") != `"1"` {
		t.Fatalf("create route: %d %s", r.status, r.raw)
	}
	var out routeJSON
	r.decode(t, &out)
	return out
}

// eventJSON is an event as answered.
type eventJSON struct {
	Seq              int64          `json:"seq"`
	ID               string         `json:"id"`
	Type             string         `json:"type"`
	AggregateType    string         `json:"aggregateType"`
	AggregateID      string         `json:"aggregateId"`
	AggregateVersion int64          `json:"aggregateVersion"`
	TenantID         string         `json:"tenantId"`
	Actor            string         `json:"actor"`
	OccurredAt       time.Time      `json:"occurredAt"`
	Data             map[string]any `json:"data"`
}

type eventPage struct {
	Items     []eventJSON `json:"items"`
	NextAfter *int64      `json:"nextAfter"`
}

func testLogger(w *syncBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// secondInstance is another gateway instance's admin API over the same
// store and bus, with its own projector: its writes race with e's.
func (e *env) secondInstance(t testing.TB) *fiber.App {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := testLogger(e.logs)
	proj, err := projections.NewProjector(projections.ProjectorConfig{}, e.store, e.bus, log)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = proj.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	api, err := New(Config{AdminKey: testAdminKey, InstanceID: "it2"}, Deps{
		Store: e.store, Projector: proj, BusKind: e.bus.Kind(), Log: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	pollUntil(t, proj.Ready)
	return newAppFor(api)
}
