package health_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/vitals-dev/vitals/agent/agenttest"
	"github.com/vitals-dev/vitals/exporters/telemetry"
	"github.com/vitals-dev/vitals/health"
	"github.com/vitals-dev/vitals/internal/aisim"
	"github.com/vitals-dev/vitals/probes"
)

// TestProbeRequestsCarryTraceContext checks that every request a check
// sends carries a W3C traceparent naming the check's trace and an HTTP
// client span under the probe's, so that a server which traces puts its
// spans there; that the transition's log line carries the trace id; and
// that the latency histograms carry it as exemplars.
func TestProbeRequestsCarryTraceContext(t *testing.T) {
	sm, err := aisim.New(aisim.Config{Kind: probes.KindOpenAI, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	type request struct{ path, traceparent string }
	var mu sync.Mutex
	var seen []request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, request{r.URL.Path, r.Header.Get("traceparent")})
		mu.Unlock()
		sm.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		sm.Close()
		srv.Close()
	})

	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	logs := &agenttest.LogBuffer{}
	r := newRig(t, fastConfig(), func(o *health.Options) {
		o.TracerProvider = tp
		o.Logger = slog.New(telemetry.WithTraceIDs(slog.NewJSONHandler(logs, nil)))
	})
	r.e.Upsert(target("llm", probes.KindOpenAI, srv.URL))
	r.awaitState("llm", health.StateHealthy)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.e.Stop(ctx); err != nil { // every span has ended
		t.Fatal(err)
	}

	spans := map[string]sdktrace.ReadOnlySpan{}
	checks := map[string]bool{}
	for _, s := range rec.Ended() {
		spans[s.SpanContext().SpanID().String()] = s
		if s.Name() == "ai.health.check" {
			checks[s.SpanContext().TraceID().String()] = true
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) == 0 {
		t.Fatal("the server saw no request")
	}
	paths := map[string]bool{}
	for _, req := range seen {
		parts := strings.Split(req.traceparent, "-")
		if len(parts) != 4 || parts[0] != "00" {
			t.Errorf("%s: traceparent %q, want 00-<trace>-<span>-<flags>", req.path, req.traceparent)
			continue
		}
		paths[req.path] = true
		if !checks[parts[1]] {
			t.Errorf("%s: trace %s is not a check's trace", req.path, parts[1])
		}
		client, ok := spans[parts[2]]
		if !ok {
			t.Errorf("%s: parent span %s was not recorded", req.path, parts[2])
			continue
		}
		if client.SpanKind() != trace.SpanKindClient || (client.Name() != "GET" && client.Name() != "POST") {
			t.Errorf("%s: parent span %q (%s), want a CLIENT span named by its method", req.path, client.Name(), client.SpanKind())
		}
		parent, ok := spans[client.Parent().SpanID().String()]
		if !ok || !(strings.HasPrefix(parent.Name(), "ai.probe.") || strings.HasPrefix(parent.Name(), "chat")) {
			t.Errorf("%s: client span %q is not under a probe span", req.path, client.Name())
		}
	}
	for _, want := range []string{"/v1/models", "/v1/chat/completions"} {
		if !paths[want] {
			t.Errorf("no traced request to %s; saw %v", want, paths)
		}
	}

	// The latency histograms carry the checks' trace ids as exemplars.
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(r.e.Metrics())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exemplars := map[string]int{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			// A native histogram keeps its exemplars beside its buckets,
			// a classic one on them.
			exs := m.GetHistogram().GetExemplars()
			for _, b := range m.GetHistogram().GetBucket() {
				exs = append(exs, b.GetExemplar())
			}
			for _, ex := range exs {
				if ex == nil {
					continue
				}
				labels := map[string]string{}
				for _, l := range ex.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				if !checks[labels["trace_id"]] || len(labels["span_id"]) != 16 {
					t.Errorf("%s exemplar %v is not a check's span", mf.GetName(), labels)
				}
				exemplars[mf.GetName()]++
			}
		}
	}
	for _, name := range []string{"vitals_ai_probe_duration_seconds", "vitals_ai_time_to_first_token_seconds"} {
		if exemplars[name] == 0 {
			t.Errorf("%s has no exemplar", name)
		}
	}

	var changed map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == "ai plugin health changed" {
			changed = rec
			break
		}
	}
	if id, _ := changed["trace_id"].(string); !checks[id] {
		t.Errorf("transition log line %v lacks the check's trace_id", changed)
	}
}
