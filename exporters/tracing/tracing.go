package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"go.opentelemetry.io/contrib/zpages"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// Options configures Setup.
type Options struct {
	ServiceName    string
	ServiceVersion string
	// Getenv reads the OTEL_* variables; nil means os.Getenv.
	Getenv func(string) string
	// Extra span processors, for tests (a tracetest.SpanRecorder).
	Processors []sdktrace.SpanProcessor
}

// Provider is the agent's tracer provider with its zPages handler.
type Provider struct {
	*sdktrace.TracerProvider
	zpages *zpages.SpanProcessor
	// Exporter names where spans go besides zPages: "" (nowhere),
	// "otlp/http" or "otlp/grpc".
	Exporter string
}

// Setup builds the tracer provider, installs it and the W3C propagators as
// the OpenTelemetry globals, and returns it. Shutdown flushes and stops it.
func Setup(ctx context.Context, o Options) (*Provider, error) {
	getenv := o.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	res, err := resource.Merge(resource.Default(), resource.NewWithAttributes(semconv.SchemaURL,
		semconv.ServiceName(o.ServiceName),
		semconv.ServiceVersion(o.ServiceVersion),
	))
	if err != nil {
		return nil, fmt.Errorf("tracing resource: %w", err)
	}
	zp := zpages.NewSpanProcessor()
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithSpanProcessor(zp)}
	for _, sp := range o.Processors {
		opts = append(opts, sdktrace.WithSpanProcessor(sp))
	}

	p := &Provider{zpages: zp}
	if otlpWanted(getenv) {
		exp, name, err := newOTLP(ctx, getenv)
		if err != nil {
			return nil, err
		}
		p.Exporter = name
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	p.TracerProvider = sdktrace.NewTracerProvider(opts...)
	otel.SetTracerProvider(p.TracerProvider)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	return p, nil
}

// Tracez returns the zPages handler for /debug/tracez.
func (p *Provider) Tracez() http.Handler { return zpages.NewTracezHandler(p.zpages) }

// Shutdown flushes pending spans and stops the provider.
func (p *Provider) Shutdown(ctx context.Context) error {
	return errors.Join(p.TracerProvider.Shutdown(ctx), p.zpages.Shutdown(ctx))
}

func otlpWanted(getenv func(string) string) bool {
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return false
	}
	if getenv("OTEL_TRACES_EXPORTER") == "none" {
		return false
	}
	return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// newOTLP builds the OTLP exporter for the protocol the environment names
// (http/protobuf by default, as the specification says). The exporters read
// the endpoint, headers, TLS and timeout variables themselves.
func newOTLP(ctx context.Context, getenv func(string) string) (sdktrace.SpanExporter, string, error) {
	proto := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if proto == "" {
		proto = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	switch proto {
	case "", "http/protobuf":
		exp, err := otlptracehttp.New(ctx)
		if err != nil {
			return nil, "", fmt.Errorf("otlp/http exporter: %w", err)
		}
		return exp, "otlp/http", nil
	case "grpc":
		exp, err := otlptracegrpc.New(ctx)
		if err != nil {
			return nil, "", fmt.Errorf("otlp/grpc exporter: %w", err)
		}
		return exp, "otlp/grpc", nil
	}
	return nil, "", fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL %q: want http/protobuf or grpc", proto)
}
