package admin

import (
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

func spanAttr(s sdktrace.ReadOnlySpan, key attribute.Key) string {
	for _, kv := range s.Attributes() {
		if kv.Key == key {
			return kv.Value.String()
		}
	}
	return ""
}

func TestTracingCommands(t *testing.T) {
	t.Parallel()
	e := newSQLiteEnv(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	api, err := New(Config{AdminKey: testAdminKey, InstanceID: "traced"}, Deps{
		Store: e.store, Projector: e.proj, BusKind: e.bus.Kind(),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Tracer: tp.Tracer("test"),
	})
	if err != nil {
		t.Fatal(err)
	}
	app := newAppFor(api)
	const (
		clientTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
		clientSpan  = "00f067aa0ba902b7"
	)

	// The steps build on each other: the tenant created first is the one
	// the later commands change.
	var tenantID string
	var secrets []string // nothing a span holds may contain these
	for _, tc := range []struct {
		name      string
		method    string
		path      func() string
		body      string
		headers   []header
		status    int
		command   string // "": no span
		actor     string
		errorCode string
	}{
		{name: "create, child of the caller's trace", method: "POST", path: func() string { return "/admin/tenants" },
			body: `{"name":"traced"}`, status: 201, command: "tenant.create", actor: "alice",
			headers: []header{{"X-Actor", "alice"}, {"traceparent", "00-" + clientTrace + "-" + clientSpan + "-01"}}},
		{name: "rotate key, default actor", method: "POST", path: func() string { return "/admin/tenants/" + tenantID + "/api-key" },
			status: 200, command: "tenant.rotate_key", actor: "admin"},
		{name: "update refused by If-Match", method: "PATCH", path: func() string { return "/admin/tenants/" + tenantID },
			body: `{"name":"renamed"}`, headers: []header{{"If-Match", `"99"`}, {"X-Actor", "bob"}},
			status: 412, command: "tenant.update", actor: "bob", errorCode: "version_mismatch"},
		{name: "reads are not traced", method: "GET", path: func() string { return "/admin/tenants/" + tenantID }, status: 200},
	} {
		before := len(rec.Ended())
		r := do(t, app, tc.method, tc.path(), tc.body, tc.headers...)
		if r.status != tc.status {
			t.Fatalf("%s: status %d %s, want %d", tc.name, r.status, r.raw, tc.status)
		}
		if tc.command == "" {
			if n := len(rec.Ended()) - before; n != 0 {
				t.Fatalf("%s: %d spans, want none", tc.name, n)
			}
			continue
		}
		var created tenantJSON
		if tc.status < 300 {
			r.decode(t, &created)
			secrets = append(secrets, created.APIKey)
			if tenantID == "" {
				tenantID = created.ID
			}
		}
		s := waitSpan(t, rec, before)
		if got := spanAttr(s, attrCommand); got != tc.command || s.Name() != "admin "+tc.command {
			t.Errorf("%s: span %q command %q, want %q", tc.name, s.Name(), got, tc.command)
		}
		if got := spanAttr(s, attrActor); got != tc.actor {
			t.Errorf("%s: actor %q, want %q", tc.name, got, tc.actor)
		}
		if got := spanAttr(s, attrAggregate); got != tenantID {
			t.Errorf("%s: aggregate id %q, want %q", tc.name, got, tenantID)
		}
		if got := spanAttr(s, attrStatus); got != strconv.Itoa(r.status) {
			t.Errorf("%s: status attribute %q, want %d", tc.name, got, r.status)
		}
		if got := spanAttr(s, attrErrorCode); got != tc.errorCode {
			t.Errorf("%s: error code %q, want %q", tc.name, got, tc.errorCode)
		}
		if s.Status().Code != codes.Unset {
			t.Errorf("%s: span status %v, want unset (no 5xx)", tc.name, s.Status())
		}
		if tc.status < 300 && spanAttr(s, attrEvents) != "1" {
			t.Errorf("%s: events attribute %q, want 1", tc.name, spanAttr(s, attrEvents))
		}
		wantParent := ""
		for _, h := range tc.headers {
			if h.k == "traceparent" {
				wantParent = clientSpan
				if s.SpanContext().TraceID().String() != clientTrace {
					t.Errorf("%s: trace id %s, want the caller's %s", tc.name, s.SpanContext().TraceID(), clientTrace)
				}
			}
		}
		if got := s.Parent().SpanID(); (wantParent == "" && got.IsValid()) || (wantParent != "" && got.String() != wantParent) {
			t.Errorf("%s: parent span %s, want %q", tc.name, got, wantParent)
		}
		for _, kv := range s.Attributes() {
			for _, secret := range append(secrets, testAdminKey) {
				if strings.Contains(kv.Value.String(), secret) {
					t.Errorf("%s: attribute %s holds a key", tc.name, kv.Key)
				}
			}
		}
	}
}

// waitSpan polls until the span after the first before ones has ended, and
// checks it is the only new one.
func waitSpan(t *testing.T, rec *tracetest.SpanRecorder, before int) sdktrace.ReadOnlySpan {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(rec.Ended()) <= before {
		if time.Now().After(deadline) {
			t.Fatal("no span ended within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	got := rec.Ended()[before:]
	if len(got) != 1 {
		t.Fatalf("%d new spans, want 1", len(got))
	}
	return got[0]
}

func TestTracingOffWithNoopTracer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		tracer trace.Tracer
	}{
		{name: "nil tracer"},
		{name: "no-op tracer", tracer: noop.NewTracerProvider().Tracer("")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			api, err := New(Config{AdminKey: testAdminKey}, Deps{Store: stubStore{}, Projector: stubProjector{}, Tracer: tc.tracer})
			if err != nil {
				t.Fatal(err)
			}
			if api.tracer != nil {
				t.Fatal("a no-op tracer must switch tracing off")
			}
		})
	}
}

func TestCommandOf(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, method, path, want string
	}{
		{name: "create tenant", method: "POST", path: "/admin/tenants", want: "tenant.create"},
		{name: "under a group prefix", method: "DELETE", path: "/v1/admin/routes/:id", want: "route.delete"},
		{name: "apply", method: "POST", path: "/admin/apply", want: "config.apply"},
		{name: "a read", method: "GET", path: "/admin/tenants/:id", want: ""},
		{name: "not admin", method: "POST", path: "/tenants", want: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, ok := commandOf(tc.method, tc.path)
			if got != tc.want || ok != (tc.want != "") {
				t.Fatalf("commandOf(%s %s) = %q %v, want %q", tc.method, tc.path, got, ok, tc.want)
			}
		})
	}
}
