package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"go.opentelemetry.io/otel/trace/noop"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/projections"
	"github.com/tenantgate/gateway/proxy"
)

// otlpCollector is an OTLP/HTTP endpoint that keeps what it receives.
type otlpCollector struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []*collectortrace.ExportTraceServiceRequest
}

func newOTLPCollector(t *testing.T) *otlpCollector {
	c := &otlpCollector{}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req collectortrace.ExportTraceServiceRequest
		if r.URL.Path != "/v1/traces" || proto.Unmarshal(body, &req) != nil {
			http.Error(w, "bad export", http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		c.reqs = append(c.reqs, &req)
		c.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	t.Cleanup(c.Close)
	return c
}

// spans are the names of the exported spans by service.name.
func (c *otlpCollector) spans() map[string][]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string][]string)
	for _, req := range c.reqs {
		for _, rs := range req.ResourceSpans {
			svc := ""
			for _, kv := range rs.GetResource().GetAttributes() {
				if kv.Key == "service.name" {
					svc = kv.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					out[svc] = append(out[svc], s.Name)
				}
			}
		}
	}
	return out
}

// TestSetupTracing sets the process environment, so it is not parallel.
func TestSetupTracing(t *testing.T) {
	collector := newOTLPCollector(t)
	for _, tc := range []struct {
		name    string
		env     map[string]string
		off     bool
		err     bool
		service string // the service.name spans arrive under
	}{
		{name: "unset is off", env: map[string]string{"OTEL_TRACES_EXPORTER": ""}, off: true},
		{name: "none is off", env: map[string]string{"OTEL_TRACES_EXPORTER": "none"}, off: true},
		{name: "SDK disabled is off", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, off: true},
		{name: "otlp over http to the configured endpoint", service: "tenantgate",
			env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": collector.URL}},
		{name: "OTEL_SERVICE_NAME wins", service: "edge-eu",
			env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": collector.URL, "OTEL_SERVICE_NAME": "edge-eu"}},
		{name: "unknown exporter", env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, err: true},
		{name: "unknown protocol", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "thrift"}, err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED", "OTEL_EXPORTER_OTLP_ENDPOINT",
				"OTEL_SERVICE_NAME", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_RESOURCE_ATTRIBUTES"} {
				t.Setenv(k, tc.env[k])
			}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			tp, shutdown, err := setupTracing(ctx, "tenantgate", slog.New(slog.DiscardHandler))
			if tc.err {
				if err == nil {
					t.Fatal("no error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tracer := tp.Tracer("test")
			if _, isNoop := tracer.(noop.Tracer); isNoop != tc.off {
				t.Fatalf("no-op tracer = %v, want %v", isNoop, tc.off)
			}
			_, span := tracer.Start(ctx, tc.name)
			span.End()
			if err := shutdown(ctx); err != nil { // flushes the batch
				t.Fatal(err)
			}
			if tc.off {
				return
			}
			got := collector.spans()[tc.service]
			found := false
			for _, name := range got {
				found = found || name == tc.name
			}
			if !found {
				t.Fatalf("collector got spans %v, none named %q under service %q", collector.spans(), tc.name, tc.service)
			}
		})
	}
}

// span is the exported span named name, nil if none.
func (c *otlpCollector) span(name string) *tracepb.Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, req := range c.reqs {
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					if s.Name == name {
						return s
					}
				}
			}
		}
	}
	return nil
}

type staticSnapshot struct{ snap *projections.Snapshot }

func (s staticSnapshot) Snapshot() *projections.Snapshot { return s.snap }

// snapshotWith is one tenant holding key with one prefix route /api to upstream.
func snapshotWith(t *testing.T, key, upstream string) *projections.Snapshot {
	t.Helper()
	h := projections.KeyHash([]byte(key))
	tenant, _ := json.Marshal(events.TenantCreatedData{Name: "acme", Status: events.TenantActive,
		APIKeyHash: hex.EncodeToString(h[:]), APIKeyPrefix: key[:7]})
	route, _ := json.Marshal(events.RouteSpec{TenantID: "t1", Method: events.AnyMethod, Path: "/api",
		PathType: events.PathPrefix, LoadBalancing: events.BalanceRoundRobin,
		Upstreams: []events.Upstream{{URL: upstream, Weight: 1}}})
	now := time.Now()
	snap, err := projections.Replay([]events.Envelope{
		{Seq: 1, ID: "e1", Type: events.TenantCreated, AggregateType: events.AggregateTypeOf(events.TenantCreated),
			AggregateID: "t1", AggregateVersion: 1, TenantID: "t1", Actor: "test", OccurredAt: now, Data: tenant},
		{Seq: 2, ID: "e2", Type: events.RouteCreated, AggregateType: events.AggregateTypeOf(events.RouteCreated),
			AggregateID: "r1", AggregateVersion: 1, TenantID: "t1", Actor: "test", OccurredAt: now, Data: route},
	})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// TestTracingWiring is serve's wiring: setupTracing's provider handed to
// the proxy. On, the proxy's span reaches the OTLP endpoint and the upstream
// gets its traceparent; off (the default), the upstream gets none.
func TestTracingWiring(t *testing.T) {
	collector := newOTLPCollector(t)
	var mu sync.Mutex
	var traceparent string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		traceparent = r.Header.Get("Traceparent")
		mu.Unlock()
	}))
	t.Cleanup(up.Close)
	const key = "gw_wiring_key_0123456789"
	snap := snapshotWith(t, key, up.URL)

	for _, tc := range []struct {
		name     string
		exporter string
	}{
		{name: "off by default", exporter: ""},
		{name: "otlp", exporter: "otlp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("OTEL_TRACES_EXPORTER", tc.exporter)
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
			t.Setenv("OTEL_SERVICE_NAME", "")
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			tp, shutdown, err := setupTracing(ctx, "tenantgate", slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			px, err := proxy.New(proxy.Config{Log: slog.New(slog.DiscardHandler)},
				proxy.Deps{Snapshots: staticSnapshot{snap}, Tracer: tp.Tracer("github.com/tenantgate/gateway/proxy")})
			if err != nil {
				t.Fatal(err)
			}
			app := fiber.New(px.FiberConfig())
			app.Use(px.Handler)
			req := httptest.NewRequest(http.MethodGet, "/api/"+strings.ReplaceAll(tc.name, " ", "-"), nil)
			req.Header.Set(proxy.HeaderAPIKey, key)
			res, err := app.Test(req, -1)
			if err != nil {
				t.Fatal(err)
			}
			_ = res.Body.Close()
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status %d", res.StatusCode)
			}
			if err := shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			got := traceparent
			mu.Unlock()
			if tc.exporter == "" {
				if got != "" {
					t.Fatalf("tracing off, upstream got traceparent %q", got)
				}
				return
			}
			s := collector.span("GET /api")
			if s == nil {
				t.Fatalf("no span GET /api exported: %v", collector.spans())
			}
			if want := "00-" + hex.EncodeToString(s.TraceId) + "-" + hex.EncodeToString(s.SpanId) + "-01"; got != want {
				t.Fatalf("upstream traceparent %q, want the exported span's %q", got, want)
			}
			attrs := map[string]string{}
			for _, kv := range s.Attributes {
				attrs[kv.Key] = kv.GetValue().GetStringValue()
			}
			if attrs["gateway.tenant.id"] != "t1" || attrs["gateway.route.id"] != "r1" {
				t.Fatalf("span attributes %v, want tenant t1 and route r1", attrs)
			}
		})
	}
}
