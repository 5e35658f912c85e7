package extmanager_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/vitals-dev/vitals/agent/agenttest"
	"github.com/vitals-dev/vitals/catalog"
	"github.com/vitals-dev/vitals/health"
	"github.com/vitals-dev/vitals/internal/aisim"
	"github.com/vitals-dev/vitals/probes"
)

// gateway passes every request to next but the questions detection asks
// an engine's API (/v2, /info, /api/version, /v1/models), which it
// answers 404: a proxy that routes only some paths (Triton's
// /v2/health/* and /v2/models/*, but not /v2 itself).
func gateway(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v2", "/info", "/api/version", "/v1/models":
			http.NotFound(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// A target of kind auto whose API answers no detection question is
// identified from the prefixes of its /metrics series: a Triton, whose
// probes the gateway passes, then has its queue exported from Triton's
// table; a TGI, whose /info (detection's question and its readiness
// probe) the gateway refuses, is a TGI whose readiness fails: unhealthy.
// One with no known series stays unknown with a reason that says what to
// set.
func TestKindFromMetrics(t *testing.T) {
	servers := map[string]string{}
	for id, kind := range map[string]probes.Kind{"tgi": probes.KindTGI, "triton": probes.KindKServe} {
		sim, err := aisim.New(aisim.Config{Kind: kind, Knobs: aisim.Knobs{Slots: 1, Load: 3}})
		if err != nil {
			t.Fatal(err)
		}
		// Triton's metrics are on a port of their own; this gateway
		// serves them on its /metrics, beside the API.
		var h http.Handler = sim
		if kind == probes.KindKServe {
			mux := http.NewServeMux()
			mux.Handle("/metrics", sim.MetricsHandler())
			mux.Handle("/", sim)
			h = mux
		}
		srv := httptest.NewServer(gateway(h))
		t.Cleanup(func() { sim.Close(); srv.Close() })
		servers[id] = srv.URL
	}
	other := httptest.NewServer(gateway(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" {
			_, _ = w.Write([]byte("# TYPE go_goroutines gauge\ngo_goroutines 7\n"))
			return
		}
		http.NotFound(w, r)
	})))
	t.Cleanup(other.Close)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	r := startWith(t, fmt.Sprintf(`directory: ""
bus: {enabled: false}
health: {interval: 50ms, unhealthy_interval: 50ms, start_spread: 0, jitter: 0}
targets: [{id: tgi, endpoint: %q}, {id: triton, endpoint: %q}, {id: other, endpoint: %q}]
`, servers["tgi"], servers["triton"], other.URL), map[string]any{tracerProvider: trace.TracerProvider(tp)})
	for id, want := range map[string]probes.Kind{"tgi": probes.KindTGI, "triton": probes.KindKServe} {
		p := r.awaitDetected(id)
		if p.Kind != want || p.Detection.State != catalog.DetectDone {
			t.Fatalf("%s: kind %s, detection %+v; want %s from its metrics", id, p.Kind, p.Detection, want)
		}
	}
	agenttest.Eventually(t, 15*time.Second, "triton's ai.detect span says its kind came from its metrics", func() bool {
		for _, sp := range rec.Ended() {
			var plugin string
			var fromMetrics bool
			for _, kv := range sp.Attributes() {
				switch kv.Key {
				case "vitals.ai.plugin":
					plugin = kv.Value.AsString()
				case "vitals.ai.detect.from_metrics":
					fromMetrics = kv.Value.AsBool()
				}
			}
			if sp.Name() == "ai.detect" && plugin == "triton" && fromMetrics {
				return true
			}
		}
		return false
	})
	agenttest.Eventually(t, 15*time.Second, "triton: two waiting, from Triton's series", func() bool {
		w, ok := gaugeIf(r.metrics, "vitals_ai_requests_waiting", map[string]string{"plugin": "triton"})
		return ok && w == 2
	})
	r.awaitHealth("tgi", func(s *health.Status) bool {
		return s != nil && s.State == health.StateUnhealthy && strings.Contains(s.Reason, "readiness")
	})
	p := r.awaitDetected("other")
	if p.Kind != probes.KindUnknown || !strings.Contains(p.Detection.Reason, "no known engine prefix") || !strings.Contains(p.Detection.Reason, "set kind:") {
		t.Fatalf("other: kind %s, detection %+v; want unknown, saying why and what to set", p.Kind, p.Detection)
	}
	if _, ok := gaugeIf(r.metrics, "vitals_ai_requests_waiting", map[string]string{"plugin": "other"}); ok {
		t.Fatal("other: requests waiting exported for a server of no known engine")
	}
}
