package admin

// Helpers of the declarative tests, kept apart from the rest of the
// package's test helpers so that each set can change on its own.

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gofiber/fiber/v2"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/events/testenv"
	"github.com/tenantgate/gateway/migrations"
	"github.com/tenantgate/gateway/projections"
)

const declAdminKey = "decl-admin-key-0123456789"

// declProjector keeps a snapshot current by reading the store.
type declProjector struct {
	mu    sync.Mutex
	store events.Store
	snap  atomic.Pointer[projections.Snapshot]
}

func (p *declProjector) Snapshot() *projections.Snapshot { return p.snap.Load() }
func (p *declProjector) Ready() bool                     { return true }
func (p *declProjector) AppliedSeq() int64               { return p.snap.Load().Seq() }

func (p *declProjector) CatchUp(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	cur := p.snap.Load()
	evs, err := p.store.Read(ctx, events.Query{After: cur.Seq()})
	if err != nil || len(evs) == 0 {
		return err
	}
	next, err := projections.ApplyBatch(cur, evs, nil)
	if err != nil {
		return err
	}
	p.snap.Store(next)
	return nil
}

func (p *declProjector) WaitFor(ctx context.Context, seq int64) error {
	if p.AppliedSeq() >= seq {
		return nil
	}
	return p.CatchUp(ctx)
}

// declEnv is the admin API over a real store.
type declEnv struct {
	app   *fiber.App
	store events.Store
	proj  *declProjector
}

type declStoreKind string

const (
	declSqliteStore   declStoreKind = "sqlite"
	declPostgresStore declStoreKind = "postgres"
)

func newDeclEnv(t *testing.T, kind declStoreKind) *declEnv {
	t.Helper()
	ctx := context.Background()
	var (
		store *events.SQLStore
		err   error
	)
	if kind == declPostgresStore {
		store, err = events.OpenPostgres(ctx, testenv.Postgres(t))
	} else {
		store, err = events.OpenSQLite(ctx, filepath.Join(t.TempDir(), "events.db"))
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	if err := migrations.Migrate(ctx, store.DB()); err != nil {
		t.Fatal(err)
	}
	return newDeclEnvOver(t, store)
}

func newDeclEnvOver(t *testing.T, store events.Store) *declEnv {
	t.Helper()
	proj := &declProjector{store: store}
	proj.snap.Store(projections.Empty())
	api, err := New(Config{AdminKey: declAdminKey, InstanceID: "decl"}, Deps{
		Store: store, Projector: proj, BusKind: "memory", Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return &declEnv{app: declApp(api), store: store, proj: proj}
}

// declApp mounts the API as the gateway does.
func declApp(api *API) *fiber.App {
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	api.Mount(app)
	return app
}

type declResponse struct {
	status int
	raw    []byte
	ctype  string
}

// call sends a request with the admin key; extra headers are name, value pairs.
func (e *declEnv) call(t *testing.T, method, path, body string, headers ...string) declResponse {
	t.Helper()
	return declCall(t, e.app, method, path, body, headers...)
}

func declCall(t *testing.T, app *fiber.App, method, path, body string, headers ...string) declResponse {
	t.Helper()
	req := httptest.NewRequest(method, path, bytes.NewReader([]byte(body)))
	req.Header.Set("X-Admin-Key", declAdminKey)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	res, err := app.Test(req, -1)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return declResponse{status: res.StatusCode, raw: raw, ctype: res.Header.Get("Content-Type")}
}

// must asserts the status and decodes the body into v (when not nil).
func (r declResponse) must(t *testing.T, status int, v any) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d; body %s", r.status, status, r.raw)
	}
	if v != nil {
		if err := json.Unmarshal(r.raw, v); err != nil {
			t.Fatalf("decode %s: %v", r.raw, err)
		}
	}
}

// mustError asserts an error answer with code and, unless field is "", a
// detail on field.
func (r declResponse) mustError(t *testing.T, status int, code, field string) {
	t.Helper()
	var body struct {
		Error *Error `json:"error"`
	}
	r.must(t, status, &body)
	if body.Error == nil || body.Error.Code != code {
		t.Fatalf("error = %s, want code %s", r.raw, code)
	}
	if r.ctype != "application/json" && !bytes.HasPrefix([]byte(r.ctype), []byte("application/json")) {
		t.Errorf("Content-Type = %q", r.ctype)
	}
	if field == "" {
		return
	}
	for _, d := range body.Error.Details {
		if d.Field == field {
			return
		}
	}
	t.Fatalf("no detail on %q in %s", field, r.raw)
}

func (e *declEnv) head(t *testing.T) int64 {
	t.Helper()
	h, err := e.store.Head(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func (e *declEnv) events(t *testing.T, after int64) []events.Envelope {
	t.Helper()
	evs, err := e.store.Read(context.Background(), events.Query{After: after})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// create posts a body and returns the created object's id and apiKey.
func (e *declEnv) create(t *testing.T, path, body string) (id, key string) {
	t.Helper()
	var out struct {
		ID     string `json:"id"`
		APIKey string `json:"apiKey"`
	}
	e.call(t, "POST", path, body).must(t, 201, &out)
	return out.ID, out.APIKey
}
