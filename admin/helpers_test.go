package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/projections"
)

const testAdminKey = "test-admin-key-0123456789"

// stubStore is a store that is down: tests that use it must never reach it.
type stubStore struct{}

func (stubStore) Append(context.Context, events.AppendRequest) ([]events.Envelope, error) {
	return nil, events.ErrUnavailable
}
func (stubStore) Read(context.Context, events.Query) ([]events.Envelope, error) {
	return nil, events.ErrUnavailable
}
func (stubStore) Head(context.Context) (int64, error) { return 0, events.ErrUnavailable }
func (stubStore) Kind() string                        { return "stub" }
func (stubStore) Close() error                        { return nil }

// stubProjector serves the empty snapshot, or panics when asked to.
type stubProjector struct{ panics bool }

func (p stubProjector) Snapshot() *projections.Snapshot {
	if p.panics {
		panic("stub projector asked to panic")
	}
	return projections.Empty()
}
func (stubProjector) Ready() bool                          { return true }
func (stubProjector) AppliedSeq() int64                    { return 0 }
func (stubProjector) CatchUp(context.Context) error        { return events.ErrUnavailable }
func (stubProjector) WaitFor(context.Context, int64) error { return events.ErrUnavailable }

// newStubApp mounts the API over stubs, with a catch-all after it standing in
// for the proxy.
func newStubApp(t *testing.T, proj Projector) *fiber.App {
	t.Helper()
	api, err := New(Config{AdminKey: testAdminKey, InstanceID: "test"}, Deps{
		Store: stubStore{}, Projector: proj, BusKind: "memory",
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	app := fiber.New(fiber.Config{DisableStartupMessage: true, BodyLimit: 4 << 20})
	api.Mount(app)
	app.Use(func(c *fiber.Ctx) error { return c.Status(299).SendString("proxy") })
	return app
}

// response is a decoded answer.
type response struct {
	status int
	header http.Header
	raw    []byte
}

func (r response) errorBody(t testing.TB) Error {
	t.Helper()
	var body struct {
		Error *Error `json:"error"`
	}
	if err := json.Unmarshal(r.raw, &body); err != nil || body.Error == nil {
		t.Fatalf("status %d: body is not an error JSON: %s", r.status, r.raw)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("error Content-Type = %q, want application/json", ct)
	}
	return *body.Error
}

func (r response) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.raw, v); err != nil {
		t.Fatalf("status %d: decode %s: %v", r.status, r.raw, err)
	}
}

type header struct{ k, v string }

func do(t testing.TB, app *fiber.App, method, path, body string, headers ...header) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = bytes.NewReader([]byte(body))
	}
	req := httptest.NewRequest(method, path, rd)
	req.Header.Set("X-Admin-Key", testAdminKey)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for _, h := range headers {
		if h.v == "" {
			req.Header.Del(h.k)
		} else {
			req.Header.Set(h.k, h.v)
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
	return response{status: res.StatusCode, header: res.Header, raw: raw}
}

// wantError asserts an error answer's status, code and, when field is not
// "-", that one of the details names field.
func wantError(t *testing.T, r response, status int, code, field string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d; body %s", r.status, status, r.raw)
	}
	e := r.errorBody(t)
	if e.Code != code {
		t.Fatalf("code = %q, want %q; body %s", e.Code, code, r.raw)
	}
	if field == "-" {
		return
	}
	for _, d := range e.Details {
		if d.Field == field {
			return
		}
	}
	t.Fatalf("no detail for field %q in %s", field, r.raw)
}

func newAppFor(api *API) *fiber.App {
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	api.Mount(app)
	return app
}

// pollUntil waits for cond with a deadline instead of sleeping a fixed time.
func pollUntil(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
