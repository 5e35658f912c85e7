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

// TestLocalSpansRecordProbesAsEvents checks the traces of checks while no
// span leaves the process (the agent's tracer provider with no trace
// exporter: spans reach only /debug/tracez): a check is one span, its
// probes and its signals read events on it in the order they ran, a
// failed probe's event carrying error.type; only the synthetic inference,
// a GenAI CLIENT span, is a span of its own. Every request carries the
// trace context of the span it was sent in, the check's or the
// inference's.
func TestLocalSpansRecordProbesAsEvents(t *testing.T) {
	t.Setenv("OTEL_TRACES_EXPORTER", "none")
	sm, err := aisim.New(aisim.Config{Kind: probes.KindVLLM, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	parents := map[string]string{} // request path -> span id of its traceparent
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		parts := strings.Split(r.Header.Get("traceparent"), "-")
		mu.Lock()
		if len(parts) == 4 {
			parents[r.URL.Path] = parts[2]
		} else {
			parents[r.URL.Path] = ""
		}
		mu.Unlock()
		sm.ServeHTTP(w, r)
	}))
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "overloaded", http.StatusServiceUnavailable)
	}))
	t.Cleanup(func() {
		sm.Close()
		srv.Close()
		failing.Close()
	})

	rec := tracetest.NewSpanRecorder()
	p, err := telemetry.Setup(context.Background(), telemetry.Options{ServiceName: "vitals", Processors: []sdktrace.SpanProcessor{rec}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	tp := p.TracerProvider()
	if l, ok := tp.(probes.LocalTracerProvider); !ok || !l.SpansStayLocal() {
		t.Fatalf("provider %T: spans do not stay local", tp)
	}
	cfg := fastConfig()
	cfg.Readiness = true
	r := newRig(t, cfg, func(o *health.Options) { o.TracerProvider = tp })
	r.e.Upsert(target("llm", probes.KindVLLM, srv.URL))
	r.e.Upsert(target("down", probes.KindOpenAI, failing.URL))
	r.awaitState("llm", health.StateHealthy)
	r.awaitState("down", health.StateUnhealthy)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.e.Stop(ctx); err != nil { // every span has ended
		t.Fatal(err)
	}

	checks := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	var others []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		switch {
		case s.Name() == "ai.health.check":
			checks[s.SpanContext().SpanID()] = s
		case strings.HasPrefix(s.Name(), "ai.probe."):
			t.Errorf("probe span %s recorded: with spans only in the process a probe is an event on the check's span", s.Name())
		default:
			others = append(others, s)
		}
	}
	for _, s := range others {
		if !strings.HasPrefix(s.Name(), "chat") || s.SpanKind() != trace.SpanKindClient {
			t.Errorf("span %q (%s) in a check's trace, want only the synthetic inference's CLIENT span", s.Name(), s.SpanKind())
		}
		if _, ok := checks[s.Parent().SpanID()]; !ok {
			t.Errorf("span %q is not under a check's span", s.Name())
		}
	}
	if len(others) == 0 {
		t.Error("no synthetic inference span")
	}

	// The events of each plugin's checks, in order, with their attributes.
	events := map[string]map[string]bool{} // plugin -> "event[,error.type=...]"
	for _, s := range checks {
		var plugin string
		for _, kv := range s.Attributes() {
			if kv.Key == "vitals.ai.plugin" {
				plugin = kv.Value.AsString()
			}
		}
		if events[plugin] == nil {
			events[plugin] = map[string]bool{}
		}
		var seq []string
		for _, ev := range s.Events() {
			if !strings.HasPrefix(ev.Name, "ai.probe.") {
				continue
			}
			e, timed := ev.Name, false
			for _, kv := range ev.Attributes {
				switch kv.Key {
				case "error.type", "vitals.ai.probe":
					e += "," + string(kv.Key) + "=" + kv.Value.AsString()
				case "vitals.ai.probe.duration_seconds":
					timed = kv.Value.AsFloat64() >= 0
				}
			}
			if !timed {
				t.Errorf("%s: event %s %v has no vitals.ai.probe.duration_seconds", plugin, ev.Name, ev.Attributes)
			}
			seq = append(seq, e)
		}
		events[plugin][strings.Join(seq, " ")] = true
	}
	want := map[string]string{
		"llm":  "ai.probe.liveness,vitals.ai.probe=liveness ai.probe.readiness,vitals.ai.probe=readiness ai.probe.signals",
		"down": "ai.probe.liveness,vitals.ai.probe=liveness,error.type=" + string(probes.ClassHTTP5xx),
	}
	for plugin, seq := range want {
		if !events[plugin][seq] {
			t.Errorf("%s: no check span with the probe events %q; saw %v", plugin, seq, events[plugin])
		}
	}

	mu.Lock()
	defer mu.Unlock()
	spans := map[string]string{}
	for id, s := range checks {
		spans[id.String()] = s.Name()
	}
	for _, s := range others {
		spans[s.SpanContext().SpanID().String()] = s.Name()
	}
	for _, path := range []string{"/health", "/v1/chat/completions", "/metrics"} {
		id, ok := parents[path]
		if !ok {
			t.Errorf("no request to %s; saw %v", path, parents)
			continue
		}
		if _, ok := spans[id]; !ok {
			t.Errorf("%s: traceparent's span %q is not a recorded check or inference span", path, id)
		}
	}
}
