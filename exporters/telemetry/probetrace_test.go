package telemetry

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/vitals-dev/vitals/internal/h1"
	"github.com/vitals-dev/vitals/probes"
)

// A probe request is a CLIENT span of its own only when traces leave the
// process; with zPages alone it carries the trace context of the span it
// is sent in (a check's, in the agent), and is no span of its own. Both
// through net/http's transport and through the agent's own, which writes
// the trace context itself.
func TestProbeRequestsAreSpansOnlyWhenExported(t *testing.T) {
	var mu sync.Mutex
	var traceparent string
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		mu.Lock()
		traceparent = r.Header.Get("traceparent")
		mu.Unlock()
	}))
	defer srv.Close()
	otlp := newReceiver(t)

	for _, tt := range []struct {
		name       string
		env        map[string]string
		clientSpan bool
		transport  func() http.RoundTripper
	}{
		{"zPages only", nil, false, func() http.RoundTripper { return &http.Transport{} }},
		{"exported", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": otlp.srv.URL + "/v1/traces"}, true, func() http.RoundTripper { return &http.Transport{} }},
		{"zPages only, h1", nil, false, newH1},
		{"exported, h1", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": otlp.srv.URL + "/v1/traces"}, true, newH1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			setEnv(t, tt.env)
			rec := tracetest.NewSpanRecorder()
			p := setup(t, Options{Processors: []sdktrace.SpanProcessor{rec}})
			tp := p.TracerProvider()
			if _, local := tp.(probes.LocalTracerProvider); local == tt.clientSpan {
				t.Errorf("provider %T: local %v, want %v", tp, local, !tt.clientSpan)
			}
			rt := tt.transport()
			client := probes.WithTraceContext(&http.Client{Transport: rt}, tp, nil)
			if _, own := rt.(probes.TraceContextWriter); own && !tt.clientSpan && client.Transport != rt {
				t.Errorf("a transport that writes the trace context itself was wrapped: %T", client.Transport)
			}
			defer client.CloseIdleConnections()
			ctx, probe := tp.Tracer("test").Start(context.Background(), "ai.probe.liveness")
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/v1/models", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Accept", "application/json")
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			probe.End()
			if len(req.Header) != 1 {
				t.Errorf("the caller's request headers were changed: %v", req.Header)
			}

			mu.Lock()
			parts := strings.Split(traceparent, "-")
			mu.Unlock()
			if len(parts) != 4 || parts[1] != probe.SpanContext().TraceID().String() || parts[3] != "01" {
				t.Fatalf("traceparent %q, want the probe's trace, sampled", traceparent)
			}
			var client0 trace.SpanContext
			for _, s := range rec.Ended() {
				if s.SpanKind() == trace.SpanKindClient {
					client0 = s.SpanContext()
				}
			}
			switch {
			case tt.clientSpan && (!client0.IsValid() || parts[2] != client0.SpanID().String()):
				t.Errorf("traceparent %q, want the request's CLIENT span %s", traceparent, client0.SpanID())
			case !tt.clientSpan && client0.IsValid():
				t.Errorf("a CLIENT span %s was recorded though no span leaves the process", client0.SpanID())
			case !tt.clientSpan && parts[2] != probe.SpanContext().SpanID().String():
				t.Errorf("traceparent %q, want the probe's span %s", traceparent, probe.SpanContext().SpanID())
			}
		})
	}
}

// newH1 is the agent's own transport, as the ExtManager builds it.
func newH1() http.RoundTripper {
	return &h1.Transport{Fallback: http.DefaultTransport, MaxIdleConnsPerHost: 4, Propagator: probes.Propagator}
}
