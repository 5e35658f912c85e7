package probes

import (
	"net/http"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/vitals-dev/vitals/internal/h1"
)

// LocalTracerProvider is implemented by a TracerProvider whose spans never
// leave the process (the agent's with no trace exporter: they reach only
// /debug/tracez). WithTraceContext gives its clients trace context without
// a CLIENT span per request, and the health engine records a check's
// probes as events on the check's span rather than as spans of their own:
// the span a request was sent in says what it did, and a span per request
// or probe that nothing exports is only cost.
type LocalTracerProvider interface {
	trace.TracerProvider
	SpansStayLocal() bool
}

// WithTraceContext returns a copy of client (nil: http.DefaultClient) whose
// requests carry the W3C trace context of their context (traceparent,
// tracestate) and baggage, and are recorded as HTTP CLIENT spans of tp
// ("GET", "POST": the URL goes in attributes). A server that traces
// (vLLM with --otlp-traces-endpoint, a proxy) then puts its spans under the
// probe's. mp receives otelhttp's http.client.* metrics; nil records none.
// When tp is a LocalTracerProvider whose spans stay local, the requests
// carry the trace context of the span they were sent in and are no span
// of their own (and mp records nothing): the client's transport sends it
// when it writes the trace context itself (a TraceContextWriter that
// says so), else a transport around it adds it to a copy of each
// request. The copy shares the client's transport and its idle
// connections.
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
	if l, ok := tp.(LocalTracerProvider); ok && l.SpansStayLocal() {
		if w, ok := rt.(TraceContextWriter); !ok || !w.WritesTraceContext() {
			c.Transport = propagating{rt}
		}
		return &c
	}
	c.Transport = otelhttp.NewTransport(rt,
		otelhttp.WithTracerProvider(tp),
		otelhttp.WithMeterProvider(mp),
		// The HTTP conventions name a client span by its method alone.
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method }),
		otelhttp.WithPropagators(Propagator),
	)
	return &c
}

// Propagator is the trace context and baggage of every probe request.
var Propagator propagation.TextMapPropagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// TraceContextWriter is a transport that can send the trace context of a
// request's context itself, as Propagator injects it, without a copy of
// the request (internal/h1's, with its Propagator set).
type TraceContextWriter interface {
	WritesTraceContext() bool
}

// propagating is a transport that adds the trace context of a request's
// context to its headers, and records nothing.
type propagating struct{ rt http.RoundTripper }

func (p propagating) RoundTrip(r *http.Request) (*http.Response, error) {
	if !trace.SpanContextFromContext(r.Context()).IsValid() {
		return p.rt.RoundTrip(r)
	}
	return p.rt.RoundTrip(h1.CarryTraceContext(r, Propagator))
}
