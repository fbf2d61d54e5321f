package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// setupTracing builds the tracer provider from the standard OpenTelemetry
// variables. Tracing is off unless OTEL_TRACES_EXPORTER names an exporter
// (and OTEL_SDK_DISABLED is not true): then the provider is a no-op, which
// proxy.Deps.Tracer and admin.Deps.Tracer take as "no tracing", so the
// request path does no tracing work at all.
//
// Exporters: "otlp" (OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL http/protobuf, the
// default, http/json or grpc; endpoint, headers, timeout, TLS and compression from the
// OTEL_EXPORTER_OTLP_* variables, read by the exporter itself), "console"
// (spans as JSON on stdout, for development) and "none"; a comma-separated
// list sends to each. The resource is service.name serviceName, overridden
// by OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; the sampler comes from
// OTEL_TRACES_SAMPLER[_ARG] (default parentbased_always_on) and batching
// from OTEL_BSP_*, both read by the SDK.
//
// The returned function flushes and stops the exporters; call it once the
// listeners have drained, with a deadline.
func setupTracing(ctx context.Context, serviceName string, log *slog.Logger) (trace.TracerProvider, func(context.Context) error, error) {
	off := func(context.Context) error { return nil }
	names := exporterNames(os.Getenv("OTEL_TRACES_EXPORTER"))
	if len(names) == 0 || strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_SDK_DISABLED")), "true") {
		return noop.NewTracerProvider(), off, nil
	}
	var exporters []sdktrace.SpanExporter
	closeAll := func() {
		for _, e := range exporters {
			_ = e.Shutdown(context.WithoutCancel(ctx))
		}
	}
	for _, name := range names {
		exp, err := newExporter(ctx, name)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		exporters = append(exporters, exp)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", serviceName)),
		resource.WithFromEnv(), // after the default: OTEL_SERVICE_NAME wins
		resource.WithTelemetrySDK(),
	)
	if err != nil {
		closeAll()
		return nil, nil, fmt.Errorf("tracing resource: %w", err)
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	for _, exp := range exporters {
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	// Global too, for libraries that trace through otel's globals.
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("tracing: exporter error", "err", err)
	}))
	svc, _ := res.Set().Value("service.name")
	log.Info("tracing on", "exporters", strings.Join(names, ","), "service", svc.String())
	return tp, tp.Shutdown, nil
}

// exporterNames parses OTEL_TRACES_EXPORTER: a comma-separated list where
// "none" (or nothing) means no exporter.
func exporterNames(v string) []string {
	var names []string
	for n := range strings.SplitSeq(v, ",") {
		n = strings.ToLower(strings.TrimSpace(n))
		if n == "" || n == "none" {
			continue
		}
		names = append(names, n)
	}
	return names
}

func newExporter(ctx context.Context, name string) (sdktrace.SpanExporter, error) {
	switch name {
	case "otlp":
		proto := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
		if proto == "" {
			proto = os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
		}
		switch strings.TrimSpace(proto) {
		case "", "http/protobuf", "http/json": // the exporter reads which
			return otlptracehttp.New(ctx)
		case "grpc":
			return otlptracegrpc.New(ctx)
		default:
			return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL %q: want http/protobuf, http/json or grpc", proto)
		}
	case "console":
		return stdouttrace.New()
	default:
		return nil, errors.New("OTEL_TRACES_EXPORTER " + name + ": want otlp, console or none")
	}
}
