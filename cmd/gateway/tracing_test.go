package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace/noop"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
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
		{name: "unknown protocol", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, err: true},
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
