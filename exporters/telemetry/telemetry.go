package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"

	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/contrib/zpages"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/log"
	"go.opentelemetry.io/otel/log/global"
	lognoop "go.opentelemetry.io/otel/log/noop"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Options configures Setup.
type Options struct {
	// ServiceName and ServiceVersion are the resource's defaults;
	// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override them.
	ServiceName    string
	ServiceVersion string
	// Extra span processors, for tests (a tracetest.SpanRecorder).
	Processors []sdktrace.SpanProcessor
}

// Providers are the agent's tracer, meter and logger providers.
type Providers struct {
	// Tracer always records to zPages; it exports where Traces says.
	// Plugins get TracerProvider().
	Tracer *sdktrace.TracerProvider
	// Meter is a no-op provider unless a metrics exporter is configured.
	Meter metric.MeterProvider
	// Logger is a no-op provider unless a logs exporter is configured.
	Logger log.LoggerProvider
	// Resource describes the agent in every signal.
	Resource *resource.Resource
	// Traces, Metrics and Logs name where each signal goes besides the
	// process: "" (nowhere), "otlp/http", "otlp/grpc" or "console".
	Traces, Metrics, Logs string

	zpages   *zpages.SpanProcessor
	shutdown []func(context.Context) error
}

// The variables that choose where each signal goes.
type signalEnv struct {
	name        string // traces, metrics, logs
	exporterVar string
	endpointVar string
	protocolVar string
}

var (
	tracesEnv  = signalEnv{"traces", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"}
	metricsEnv = signalEnv{"metrics", "OTEL_METRICS_EXPORTER", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"}
	logsEnv    = signalEnv{"logs", "OTEL_LOGS_EXPORTER", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL"}
)

// defaultEndpoint is the specification's OTLP endpoint by protocol, where
// an otlp exporter goes when no endpoint variable is set. The Go exporters'
// own defaults are https://localhost:4318 and TLS to localhost:4317, which
// a local Collector on its default (plaintext) receivers refuses.
var defaultEndpoint = map[string]string{
	"otlp/http": "http://localhost:4318",
	"otlp/grpc": "http://localhost:4317",
}

// endpointSet reports whether an endpoint variable applies to the signal.
func (s signalEnv) endpointSet() bool {
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv(s.endpointVar) != ""
}

// exporter returns the exporter the environment names for the signal and
// where it goes ("" for none). OTEL_SDK_DISABLED=true turns every signal
// off. An unset OTEL_<SIGNAL>_EXPORTER means otlp when an OTLP endpoint
// variable is set and none otherwise: the agent does not dial
// localhost:4318 unless asked to. An explicit "otlp" with no endpoint dials
// the specification's default (defaultEndpoint: plain http://localhost:4318,
// or http://localhost:4317 for grpc).
func (s signalEnv) exporter() (name, dest string, err error) {
	if sdkDisabled() {
		return "none", "", nil
	}
	name = strings.TrimSpace(os.Getenv(s.exporterVar))
	if name == "" {
		if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv(s.endpointVar) == "" {
			return "none", "", nil
		}
		name = "otlp"
	}
	switch name {
	case "none":
		return name, "", nil
	case "console":
		return name, "console", nil
	case "otlp":
		proto, from := os.Getenv(s.protocolVar), s.protocolVar
		if proto == "" {
			proto, from = os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL"), "OTEL_EXPORTER_OTLP_PROTOCOL"
		}
		switch proto {
		case "", "http/protobuf":
			return name, "otlp/http", nil
		case "grpc":
			return name, "otlp/grpc", nil
		case "http/json":
			return "", "", fmt.Errorf("%s=http/json: the OpenTelemetry Go SDK has no OTLP http/json exporter; use http/protobuf (the default) or grpc", from)
		}
		return "", "", fmt.Errorf("%s=%q: want http/protobuf or grpc", from, proto)
	case "prometheus":
		if s.name == "metrics" {
			return "", "", fmt.Errorf("%s=prometheus: the agent serves Prometheus metrics at /metrics already; want otlp, console or none", s.exporterVar)
		}
	}
	return "", "", fmt.Errorf("%s=%q: want otlp, console or none (one value)", s.exporterVar, name)
}

func sdkDisabled() bool {
	return strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_SDK_DISABLED")), "true")
}

// describe says where a signal goes besides the process, or which
// variable keeps it there.
func (s signalEnv) describe(dest string) string {
	switch {
	case dest != "":
		return dest
	case sdkDisabled():
		return "not exported (OTEL_SDK_DISABLED=true)"
	case strings.TrimSpace(os.Getenv(s.exporterVar)) == "none":
		return "not exported (" + s.exporterVar + "=none)"
	}
	return "not exported (set OTEL_EXPORTER_OTLP_ENDPOINT or " + s.exporterVar + ")"
}

// Describe says, for the start-up line, where traces, metrics and logs go
// besides the process: the exporter, or why there is none.
func (p *Providers) Describe() (traces, metrics, logs string) {
	return tracesEnv.describe(p.Traces), metricsEnv.describe(p.Metrics), logsEnv.describe(p.Logs)
}

// Setup builds the providers from the environment and installs them and
// the W3C trace-context and baggage propagators as the OpenTelemetry
// globals. A bad variable is an error naming it. Shutdown flushes and
// stops what Setup started.
func Setup(ctx context.Context, o Options) (_ *Providers, err error) {
	res, err := newResource(o)
	if err != nil {
		return nil, err
	}
	p := &Providers{Resource: res, Meter: metricnoop.NewMeterProvider(), Logger: lognoop.NewLoggerProvider()}
	defer func() {
		if err != nil {
			_ = p.Shutdown(ctx)
		}
	}()

	// Check every signal's variables before building anything.
	tname, tdest, terr := tracesEnv.exporter()
	mname, mdest, merr := metricsEnv.exporter()
	lname, ldest, lerr := logsEnv.exporter()
	// A variable every signal reads (OTEL_EXPORTER_OTLP_PROTOCOL) is named
	// once.
	var errs []error
	for _, e := range []error{terr, merr, lerr} {
		if e != nil && !slices.ContainsFunc(errs, func(o error) bool { return o.Error() == e.Error() }) {
			errs = append(errs, e)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	p.zpages = zpages.NewSpanProcessor()
	p.shutdown = append(p.shutdown, p.zpages.Shutdown)
	topts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithSpanProcessor(p.zpages)}
	for _, sp := range o.Processors {
		topts = append(topts, sdktrace.WithSpanProcessor(sp))
	}
	if tname != "none" {
		exp, err := newSpanExporter(ctx, tdest)
		if err != nil {
			return nil, fmt.Errorf("%s=%s: %w", tracesEnv.exporterVar, tname, err)
		}
		topts = append(topts, sdktrace.WithBatcher(exp))
		p.Traces = tdest
	}
	p.Tracer = sdktrace.NewTracerProvider(topts...)
	// The tracer provider stops first so that its last spans still reach
	// the zPages processor and the exporter.
	p.shutdown = append([]func(context.Context) error{p.Tracer.Shutdown}, p.shutdown...)

	if mname != "none" {
		r, err := newMetricReader(ctx, mdest)
		if err != nil {
			return nil, fmt.Errorf("%s=%s: %w", metricsEnv.exporterVar, mname, err)
		}
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(r))
		p.Meter, p.Metrics = mp, mdest
		p.shutdown = append(p.shutdown, mp.Shutdown)
	}
	if lname != "none" {
		exp, err := newLogExporter(ctx, ldest)
		if err != nil {
			return nil, fmt.Errorf("%s=%s: %w", logsEnv.exporterVar, lname, err)
		}
		lp := sdklog.NewLoggerProvider(sdklog.WithResource(res), sdklog.WithProcessor(sdklog.NewBatchProcessor(exp)))
		p.Logger, p.Logs = lp, ldest
		p.shutdown = append(p.shutdown, lp.Shutdown)
	}

	otel.SetTracerProvider(p.Tracer)
	otel.SetMeterProvider(p.Meter)
	global.SetLoggerProvider(p.Logger)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	return p, nil
}

// newSpanExporter is autoexport's span exporter, or with no endpoint
// variable set an OTLP one to the specification's default endpoint; the
// other OTEL_EXPORTER_OTLP_* variables apply either way.
func newSpanExporter(ctx context.Context, dest string) (sdktrace.SpanExporter, error) {
	switch {
	case tracesEnv.endpointSet():
	case dest == "otlp/http":
		return otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(defaultEndpoint[dest]+"/v1/traces"))
	case dest == "otlp/grpc":
		return otlptracegrpc.New(ctx, otlptracegrpc.WithEndpointURL(defaultEndpoint[dest]))
	}
	return autoexport.NewSpanExporter(ctx)
}

// newMetricReader is newSpanExporter's counterpart for metrics: a periodic
// reader, which follows OTEL_METRIC_EXPORT_INTERVAL and _TIMEOUT.
func newMetricReader(ctx context.Context, dest string) (sdkmetric.Reader, error) {
	var exp sdkmetric.Exporter
	var err error
	switch {
	case metricsEnv.endpointSet():
		return autoexport.NewMetricReader(ctx)
	case dest == "otlp/http":
		exp, err = otlpmetrichttp.New(ctx, otlpmetrichttp.WithEndpointURL(defaultEndpoint[dest]+"/v1/metrics"))
	case dest == "otlp/grpc":
		exp, err = otlpmetricgrpc.New(ctx, otlpmetricgrpc.WithEndpointURL(defaultEndpoint[dest]))
	default:
		return autoexport.NewMetricReader(ctx)
	}
	if err != nil {
		return nil, err
	}
	return sdkmetric.NewPeriodicReader(exp), nil
}

// newLogExporter is newSpanExporter's counterpart for logs.
func newLogExporter(ctx context.Context, dest string) (sdklog.Exporter, error) {
	switch {
	case logsEnv.endpointSet():
	case dest == "otlp/http":
		return otlploghttp.New(ctx, otlploghttp.WithEndpointURL(defaultEndpoint[dest]+"/v1/logs"))
	case dest == "otlp/grpc":
		return otlploggrpc.New(ctx, otlploggrpc.WithEndpointURL(defaultEndpoint[dest]))
	}
	return autoexport.NewLogExporter(ctx)
}

// newResource is the SDK's default resource, then the built-in service
// name and version, then what OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES say: later wins, so the environment does.
func newResource(o Options) (*resource.Resource, error) {
	builtin := resource.NewWithAttributes(semconv.SchemaURL,
		semconv.ServiceName(o.ServiceName),
		semconv.ServiceVersion(o.ServiceVersion),
	)
	res, err := resource.Merge(resource.Default(), builtin)
	if err != nil {
		return nil, fmt.Errorf("telemetry resource: %w", err)
	}
	env, err := resource.New(context.Background(), resource.WithFromEnv())
	if err != nil {
		return nil, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	if res, err = resource.Merge(res, env); err != nil {
		return nil, fmt.Errorf("telemetry resource: %w", err)
	}
	return res, nil
}

// TracerProvider is the provider the agent's plugins trace with: Tracer,
// and while no trace exporter is configured (spans reach only
// /debug/tracez) one that says so (probes.LocalTracerProvider), so that
// probe requests carry trace context without a CLIENT span each and a
// health check's probes are events on its span, not spans of their own.
func (p *Providers) TracerProvider() trace.TracerProvider {
	if p.Traces == "" {
		return localTracerProvider{p.Tracer}
	}
	return p.Tracer
}

// localTracerProvider is the SDK's provider while its spans stay in the
// process.
type localTracerProvider struct{ *sdktrace.TracerProvider }

// SpansStayLocal reports that no span leaves the process.
func (localTracerProvider) SpansStayLocal() bool { return true }

// Tracez returns the zPages handler for /debug/tracez.
func (p *Providers) Tracez() http.Handler { return zpages.NewTracezHandler(p.zpages) }

// Shutdown flushes pending spans, metrics and log records and stops the
// providers. It is safe twice.
func (p *Providers) Shutdown(ctx context.Context) error {
	var errs []error
	for _, f := range p.shutdown {
		if err := f(ctx); err != nil && !errors.Is(err, sdkmetric.ErrReaderShutdown) {
			errs = append(errs, err)
		}
	}
	p.shutdown = nil
	return errors.Join(errs...)
}

// SemconvOptIn reports whether OTEL_SEMCONV_STABILITY_OPT_IN (a
// comma-separated list) holds value, e.g. "gen_ai_latest_experimental".
func SemconvOptIn(value string) bool {
	for v := range strings.SplitSeq(os.Getenv("OTEL_SEMCONV_STABILITY_OPT_IN"), ",") {
		if strings.TrimSpace(v) == value {
			return true
		}
	}
	return false
}
