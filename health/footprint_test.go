package health

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/vitals-dev/vitals/internal/heaptest"
	"github.com/vitals-dev/vitals/probes"
)

// TestEnginePluginIsSmall: what the engine holds for a target before its
// first check, its metrics' series and its scheduler item with it, stays
// small: every byte of it is held a thousand times at 1000 targets. (It
// was 1797 bytes with the target kept twice, in the plugin and in its
// status, and the error-rate window a bool a request; 1453 with room for
// a server without signals in every plugin, and for all of a server's
// counters where two of them are what its synthetic inference added.)
// The figure is one of two, some 37 bytes apart, from run to run: a map's
// tables split by its hash seed, drawn anew in each process, and the
// bound holds the larger.
func TestEnginePluginIsSmall(t *testing.T) {
	e := New(Options{Config: DefaultConfig()})
	const n = 1000
	targets := make([]Target, n)
	for i := range targets {
		targets[i] = Target{ID: fmt.Sprintf("t%05d", i), Mode: ModeHTTP, Kind: probes.KindOpenAI, Endpoint: "http://127.0.0.1:8000",
			Models: []probes.Model{{ID: "m"}}, Capabilities: []probes.Capability{probes.CapChat}}
	}
	heaptest.PerItem(t, "a target", n, 1440, func() {
		for _, tg := range targets {
			e.Upsert(tg)
		}
	})
	runtime.KeepAlive(e)
	runtime.KeepAlive(targets)
}

// TestLatencyWithExemplarIsSmall: a latency histogram that has seen
// traced checks stays small, its exemplar kept as the ids and value it
// holds, not as the message a scrape writes: a target has one or two of
// these. (It was 707 bytes with the exemplar kept as a dto.Exemplar,
// made at every check.)
func TestLatencyWithExemplarIsSmall(t *testing.T) {
	const n = 1000
	desc := NewMetrics(MetricsConfig{}).duration
	now := time.Now()
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled})
	hs := make([]*latency, n)
	heaptest.PerItem(t, "a latency histogram with an exemplar", n, 500, func() {
		for i := range hs {
			hs[i] = newLatency(desc, nil, nil, now)
			for j := range 3 {
				v := float64(j+1) / 1000
				hs[i].observe(v, now, exemplarOf(v, sc, now))
			}
		}
	})
	var m dto.Metric
	if err := hs[0].Write(&m); err != nil || len(m.GetHistogram().GetExemplars()) != 1 {
		t.Fatalf("written: %v, %v; want one exemplar", &m, err)
	}
	runtime.KeepAlive(hs)
}

// TestCheckedPluginIsSmall: what the engine holds for a target once it
// has been checked, traced (its span's attributes kept for the next
// check), its series made, its verdict and first check kept, stays
// small. (It was 3192 bytes with each plugin's span verdict attributes
// its own and its kind and mode in a span option of its own.)
func TestCheckedPluginIsSmall(t *testing.T) {
	tp := sdktrace.NewTracerProvider()
	defer func() { _ = tp.Shutdown(context.Background()) }()
	e := New(Options{Config: DefaultConfig(), TracerProvider: tp, Probes: map[Mode][]Probe{ModeSelf: {{Name: probes.Liveness,
		Run: func(context.Context, Target) (probes.Result, error) { return probes.Result{}, nil }}}}})
	const n = 1000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("t%05d", i)
	}
	heaptest.PerItem(t, "a checked target", n, 3100, func() {
		for _, id := range ids {
			e.Upsert(Target{ID: id, Mode: ModeSelf, Capabilities: []probes.Capability{probes.CapChat}})
			e.check(context.Background(), id, time.Now())
		}
	})
	if s, ok := e.Status(ids[7]); !ok || s.Checks != 1 {
		t.Errorf("status %+v", s)
	}
	runtime.KeepAlive(e)
}

// TestSignalsOfNoneAreNotKept: the signals of a check that read none of
// the fields with series (a server without a signals endpoint, every
// check) take no room. (They took 138 bytes a target, kept to export
// nothing.)
func TestSignalsOfNoneAreNotKept(t *testing.T) {
	m := newSignalMetrics()
	const n = 1000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("t%05d", i)
	}
	models := []probes.Model{{ID: "m"}}
	heaptest.PerItem(t, "a target's signals of no series", n, 16, func() {
		for _, id := range ids {
			m.observe(id, &probes.Signals{Engine: probes.EngineVLLM, Reported: probes.FieldSlots}, models)
		}
	})
	m.observe(ids[0], &probes.Signals{Reported: probes.FieldRequestsRunning, RequestsRunning: 2}, models)
	ch := make(chan prometheus.Metric, 8)
	m.collect(ch)
	close(ch)
	if got := len(ch); got != 1 {
		t.Errorf("%d series of a plugin's requests running, want 1", got)
	}
	runtime.KeepAlive(m)
}
