package probes

import (
	"net/http"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// WithTraceContext returns a copy of client (nil: http.DefaultClient) whose
// requests carry the W3C trace context of their context (traceparent,
// tracestate) and baggage, and are recorded as HTTP CLIENT spans of tp
// ("GET", "POST": the URL goes in attributes). A server that traces
// (vLLM with --otlp-traces-endpoint, a proxy) then puts its spans under the
// probe's. mp receives otelhttp's http.client.* metrics; nil records none.
// The copy shares the client's transport and its idle connections.
func WithTraceContext(client *http.Client, tp trace.TracerProvider, mp metric.MeterProvider) *http.Client {
	if client == nil {
		client = http.DefaultClient
	}
	if mp == nil {
		mp = metricnoop.NewMeterProvider()
	}
	rt := client.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	c := *client
	c.Transport = otelhttp.NewTransport(rt,
		otelhttp.WithTracerProvider(tp),
		otelhttp.WithMeterProvider(mp),
		// The HTTP conventions name a client span by its method alone.
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method }),
		otelhttp.WithPropagators(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})),
	)
	return &c
}
