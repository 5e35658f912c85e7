package health

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/otel/trace"

	"github.com/vitals-dev/vitals/agent/agenttest"
	"github.com/vitals-dev/vitals/probes"
)

// TestProbeTotalHasBothResults checks that a successful probe also creates
// its failure series at 0, and a synthetic one the stuck error class: the
// first failure that follows is then an increase that Prometheus'
// increase() sees, which the stuck alert needs. The resource probe, which
// reads the agent's own procfs, is not counted.
func TestProbeTotalHasBothResults(t *testing.T) {
	m := NewMetrics(MetricsConfig{})
	m.observe("llm", Observation{Probes: []ProbeOutcome{{Probe: probes.Synthetic, OK: true, Attempts: 1},
		{Probe: probes.Resources, OK: true, Attempts: 1}}}, trace.SpanContext{})
	want := `
# HELP vitals_ai_probe_total AI plugin probes run, by probe (not resources, which reads the agent's own procfs) and result (success, failure; passive: a synthetic inference not sent because the server's counters showed work completing; skipped: not sent, its daily token budget spent).
# TYPE vitals_ai_probe_total counter
vitals_ai_probe_total{plugin="llm",probe="synthetic",result="failure"} 0
vitals_ai_probe_total{plugin="llm",probe="synthetic",result="success"} 1
`
	if err := testutil.CollectAndCompare(m, strings.NewReader(want), "vitals_ai_probe_total"); err != nil {
		t.Error(err)
	}
	want = `
# HELP vitals_ai_probe_errors_total Failed AI plugin probe requests, by error class (timeout, refused, reset, http_5xx, http_4xx, auth, bad_response, tls, dns, canceled, stuck, not_ready, stale, reported, other).
# TYPE vitals_ai_probe_errors_total counter
vitals_ai_probe_errors_total{class="stuck",plugin="llm"} 0
`
	if err := testutil.CollectAndCompare(m, strings.NewReader(want), "vitals_ai_probe_errors_total"); err != nil {
		t.Error(err)
	}
}

// TestLatencyHistograms: a probe duration is a native histogram (one
// series in the protobuf exposition) with no classic buckets unless
// metrics.classic_buckets asks for them, and the check's trace is its
// exemplar.
func TestLatencyHistograms(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     MetricsConfig
		classic int
	}{
		{"native only", MetricsConfig{}, 0},
		{"with classic buckets", MetricsConfig{ClassicBuckets: []float64{.01, .1, 1}}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMetrics(tc.cfg)
			sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled})
			m.observe("llm", Observation{Probes: []ProbeOutcome{{Probe: probes.Liveness, OK: true, Attempts: 1, Duration: 3 * time.Millisecond}}}, sc)
			reg := prometheus.NewPedanticRegistry()
			reg.MustRegister(m)
			mfs, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			var h *dto.Histogram
			for _, mf := range mfs {
				if mf.GetName() == "vitals_ai_probe_duration_seconds" {
					h = mf.GetMetric()[0].GetHistogram()
				}
			}
			if h == nil {
				t.Fatal("no vitals_ai_probe_duration_seconds")
			}
			// The +Inf bucket is there either way: it carries the exemplar
			// for scrapers that read only classic buckets.
			classic := 0
			for _, b := range h.GetBucket() {
				if !math.IsInf(b.GetUpperBound(), 1) {
					classic++
				}
			}
			switch {
			case classic != tc.classic:
				t.Errorf("%d classic buckets, want %d: %v", classic, tc.classic, h.GetBucket())
			case h.GetSchema() != 3 || len(h.GetPositiveSpan()) == 0:
				t.Errorf("schema %d, spans %v: not a native histogram with buckets at most 10 %% wide", h.GetSchema(), h.GetPositiveSpan())
			case len(h.GetExemplars()) != 1 || exemplarLabel(h.GetExemplars()[0], "trace_id") != sc.TraceID().String():
				t.Errorf("exemplars %v, want the check's trace", h.GetExemplars())
			}
		})
	}
}

func exemplarLabel(e *dto.Exemplar, name string) string {
	for _, l := range e.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// TestFirstDecisionIsNotATransition: a plugin's first state, decided from
// unknown, is not counted as a transition; every change after it is, also
// one back to unknown and out of it again.
func TestFirstDecisionIsNotATransition(t *testing.T) {
	m := NewMetrics(MetricsConfig{})
	m.transition("a", StateUnknown, StateHealthy)
	if n := testutil.CollectAndCount(m, "vitals_ai_health_transitions_total"); n != 0 {
		t.Fatalf("%d transition series after the first decision, want 0", n)
	}
	m.transition("a", StateHealthy, StateUnknown)
	m.transition("a", StateUnknown, StateHealthy)
	want := `
# HELP vitals_ai_health_transitions_total AI plugin health state changes, by from and to state; not a plugin's first decision, from unknown.
# TYPE vitals_ai_health_transitions_total counter
vitals_ai_health_transitions_total{from="healthy",plugin="a",to="unknown"} 1
vitals_ai_health_transitions_total{from="unknown",plugin="a",to="healthy"} 1
`
	if err := testutil.CollectAndCompare(m, strings.NewReader(want), "vitals_ai_health_transitions_total"); err != nil {
		t.Error(err)
	}
}

// TestForgetDeletesEverySeries: a plugin that leaves the catalog leaves
// no series behind, and the other plugins' stay.
func TestForgetDeletesEverySeries(t *testing.T) {
	m := NewMetrics(MetricsConfig{ClassicBuckets: []float64{.1}})
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled})
	for _, id := range []string{"a", "b"} {
		m.setState(id, StateUnknown)
		m.observe(id, Observation{Probes: []ProbeOutcome{
			{Probe: probes.Liveness, OK: true, Duration: time.Millisecond},
			{Probe: probes.Synthetic, OK: false, Failures: 1, Class: probes.ClassTimeout, Duration: time.Second},
		}}, sc)
		m.transition(id, StateUnknown, StateHealthy) // the first decision: not counted
		m.transition(id, StateHealthy, StateUnhealthy)
		m.setState(id, StateUnhealthy)
		m.setTPS(id, 12)
	}
	m.forget("a")
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	byPlugin := map[string]int{}
	for _, mf := range mfs {
		for _, s := range mf.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "plugin" {
					byPlugin[l.GetValue()]++
				}
			}
		}
	}
	// b: up, state, tps, a transition, 4 probe totals, 2 error classes,
	// 2 duration histograms.
	if byPlugin["a"] != 0 || byPlugin["b"] != 12 {
		t.Errorf("series by plugin after a left: %v, want none of a and 12 of b", byPlugin)
	}
}

// TestMetricsHeapPerPlugin: what the engine's series of a plugin hold,
// 1000 plugins checked a hundred times each with liveness and readiness,
// their latencies spread over many buckets, every check traced: at most
// 4 KiB a plugin. client_golang's vectors and native histograms (a
// sync.Map per histogram's buckets) held about 13 KiB.
func TestMetricsHeapPerPlugin(t *testing.T) {
	const plugins, checks = 1000, 100
	rng := rand.New(rand.NewPCG(3, 4))
	ids := make([]string, plugins)
	for i := range ids {
		ids[i] = fmt.Sprintf("t%05d", i)
	}
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	m := NewMetrics(MetricsConfig{})
	for _, id := range ids {
		m.setState(id, StateUnknown)
	}
	for c := range checks {
		for _, id := range ids {
			sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{byte(c), 1}, SpanID: trace.SpanID{byte(c)}, TraceFlags: trace.FlagsSampled})
			m.observe(id, Observation{Probes: []ProbeOutcome{
				{Probe: probes.Liveness, OK: true, Duration: time.Duration(float64(time.Millisecond) * math.Exp(3*rng.Float64()))},
				{Probe: probes.Readiness, OK: true, Duration: time.Duration(float64(2*time.Millisecond) * math.Exp(3*rng.Float64()))},
			}}, sc)
			if c == 0 {
				m.transition(id, StateUnknown, StateHealthy)
				m.setState(id, StateHealthy)
			}
		}
	}
	per := float64(heap()-before) / plugins
	runtime.KeepAlive(m)
	t.Logf("%.0f bytes of heap per plugin", per)
	if per > 4096 {
		t.Errorf("%.0f bytes of heap per plugin, want at most 4096", per)
	}
}

// TestProbeDurations: the readiness probe has no duration histogram by
// default, only its results; metrics.probe_durations gives it one, and an
// empty list none at all.
func TestProbeDurations(t *testing.T) {
	obs := Observation{Probes: []ProbeOutcome{
		{Probe: probes.Liveness, OK: true, Duration: time.Millisecond},
		{Probe: probes.Readiness, OK: true, Duration: 2 * time.Millisecond},
	}}
	for _, tc := range []struct {
		name   string
		probes []string
		want   []string
	}{
		{"default", nil, []string{probes.Liveness}},
		{"with readiness", []string{probes.Liveness, probes.Readiness}, []string{probes.Liveness, probes.Readiness}},
		{"none", []string{}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMetrics(MetricsConfig{ProbeDurations: tc.probes})
			m.observe("llm", obs, trace.SpanContext{})
			reg := prometheus.NewPedanticRegistry()
			reg.MustRegister(m)
			mfs, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			totals := 0
			for _, mf := range mfs {
				for _, s := range mf.GetMetric() {
					for _, l := range s.GetLabel() {
						switch {
						case l.GetName() != "probe":
						case mf.GetName() == "vitals_ai_probe_duration_seconds":
							got = append(got, l.GetValue())
						case mf.GetName() == "vitals_ai_probe_total":
							totals++
						}
					}
				}
			}
			if !slices.Equal(got, tc.want) || totals != 4 {
				t.Errorf("duration histograms of %v, %d probe totals; want %v and 4", got, totals, tc.want)
			}
		})
	}
}

// TestCollectInRegistryOrder: Collect sends each family's series in the
// order the registry sorts them into (by plugin, then the other labels),
// so that its sort is a pass; plugins that come and go are placed too.
func TestCollectInRegistryOrder(t *testing.T) {
	m := NewMetrics(MetricsConfig{})
	obs := Observation{Probes: []ProbeOutcome{
		{Probe: probes.Readiness, OK: false, Failures: 1, Class: probes.ClassTimeout},
		{Probe: probes.Liveness, OK: true, Duration: time.Millisecond},
	}}
	for _, id := range []string{"m", "c", "x", "a", "q"} {
		m.observe(id, obs, trace.SpanContext{})
	}
	m.forget("x")
	m.observe("b", obs, trace.SpanContext{})
	ch := make(chan prometheus.Metric, 1000)
	m.Collect(ch)
	close(ch)
	last := map[string]string{}
	n := 0
	for s := range ch {
		var d dto.Metric
		if err := s.Write(&d); err != nil {
			t.Fatal(err)
		}
		var key []string
		for _, l := range d.GetLabel() {
			key = append(key, l.GetValue())
		}
		if len(key) == 0 {
			continue
		}
		k, name := strings.Join(key, "\xff"), s.Desc().String()
		if prev, ok := last[name]; ok && prev >= k {
			t.Errorf("%s: %q after %q", name, k, prev)
		}
		last[name] = k
		n++
	}
	if n != 5*7 { // up, the liveness histogram, 4 probe totals, an error class
		t.Errorf("%d series, want 35", n)
	}
}

// populated is a Metrics with every kind of series for n plugins: states,
// transitions from several states (whose family sorts by from first),
// both results and error classes, native histograms with exemplars and
// classic buckets, time to first token, tokens per second, processes and
// signals, the scheduler's lag.
func populated(n int) *Metrics {
	return populatedWith(MetricsConfig{ClassicBuckets: []float64{.01, .1, 1}}, n)
}

// populatedWith is populated with the metrics settings cfg.
func populatedWith(cfg MetricsConfig, n int) *Metrics {
	m := NewMetrics(cfg)
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled})
	for i := range n {
		id := fmt.Sprintf("p%03d", (i*7919)%n)
		m.setState(id, StateUnknown)
		for j := range 5 {
			m.observe(id, Observation{Probes: []ProbeOutcome{
				{Probe: probes.Liveness, OK: j != 3, Failures: btoi(j == 3), Class: probes.ClassRefused, Duration: time.Duration(j+1) * time.Millisecond},
				{Probe: probes.Synthetic, OK: true, Duration: 300 * time.Millisecond, Result: probes.Result{TimeToFirstToken: 40 * time.Millisecond}},
				{Probe: probes.Readiness, OK: false, Failures: 1, Class: probes.ClassTimeout},
				{Probe: probes.Resources, OK: true, Result: probes.Result{Process: &probes.ProcessStats{PID: 1, CPUSeconds: 2.5, ResidentBytes: 1 << 20}}},
			}}, sc)
		}
		m.transition(id, StateUnknown, StateHealthy)
		m.transition(id, StateHealthy, StateDegraded)
		m.transition(id, StateDegraded, StateHealthy)
		m.setState(id, StateHealthy)
		m.setTPS(id, float64(i)+0.5)
		m.signals.observe(id, &probes.Signals{Reported: probes.FieldRequestsRunning | probes.FieldLoadedModels,
			RequestsRunning: 2, LoadedModels: []probes.LoadedModel{{Name: "llama3", SizeBytes: 4 << 30}}}, []probes.Model{{ID: "qwen"}})
		m.lag.Observe(0.002)
	}
	return m
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestGatherSelfMatchesRegistry: GatherSelf gives the families a pedantic
// registry holding the Metrics alone gathers, series for series.
func TestGatherSelfMatchesRegistry(t *testing.T) {
	m := populated(30)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m)
	if n := agenttest.GathersAsRegistry(t, reg, m); n < 13 {
		t.Errorf("only %d families", n)
	}
}

// TestExposedAsGathered: /metrics writes the plugins' series without
// gathering them, byte for byte as promhttp writes them gathered: with
// classic buckets and without, exemplars on the bucket each fell in.
func TestExposedAsGathered(t *testing.T) {
	agenttest.ExposesAsGathered(t, populated(30))
	agenttest.ExposesAsGathered(t, populatedWith(MetricsConfig{ProbeDurations: []string{"liveness", "readiness", "synthetic"}}, 30))
}

// TestGatherSelfInvalidLabel: a series with a label value that is not
// UTF-8 fails the gather, as it fails the registry's, and is left out.
func TestGatherSelfInvalidLabel(t *testing.T) {
	m := populated(2)
	m.setState("bad\xff", StateHealthy)
	agenttest.DropsInvalid(t, m)
}

// TestGatherSelfAllocations: GatherSelf allocates about one object a
// plugin series (its Write's; two more a histogram with classic buckets,
// one more one with an exemplar, its ids) besides the rest's registry,
// where a registry's gather makes three or four.
func TestGatherSelfAllocations(t *testing.T) {
	m := populated(100)
	count := func(mfs []*dto.MetricFamily, err error) (n int) {
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			n += len(mf.GetMetric())
		}
		return n
	}
	series := count(m.GatherSelf()) - count(m.rest.Gather())
	mfs, _ := m.GatherSelf()
	exemplars := 0
	for _, mf := range mfs {
		for _, s := range mf.GetMetric() {
			exemplars += len(s.GetHistogram().GetExemplars())
		}
	}
	allocs := testing.AllocsPerRun(10, func() { _, _ = m.GatherSelf() }) - testing.AllocsPerRun(10, func() { _, _ = m.rest.Gather() })
	if limit := 1.7*float64(series) + float64(exemplars); allocs > limit {
		t.Errorf("%.0f allocations for %d plugin series, want at most %.0f", allocs, series, limit)
	}
	t.Logf("%.0f allocations for %d plugin series, %d exemplars", allocs, series, exemplars)
}

// TestProcessSeries: a check that read the plugin's process sets its CPU
// and memory series, the CPU counter created at the process's start; a
// restarted process is a new counter; a check that read none deletes
// them, rather than keep the numbers of a process that may be gone.
func TestProcessSeries(t *testing.T) {
	m := NewMetrics(MetricsConfig{})
	check := func(proc *probes.ProcessStats) {
		m.observe("p", Observation{Probes: []ProbeOutcome{
			{Probe: probes.Liveness, OK: true, Duration: time.Millisecond},
			{Probe: probes.Resources, OK: proc != nil, Result: probes.Result{Process: proc}},
		}}, trace.SpanContext{})
	}
	series := func() (cpu, rss *dto.Metric) {
		t.Helper()
		mfs, err := m.GatherSelf()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, s := range mf.GetMetric() {
				switch mf.GetName() {
				case "vitals_ai_process_cpu_seconds_total":
					cpu = s
				case "vitals_ai_process_resident_memory_bytes":
					rss = s
				}
			}
		}
		return cpu, rss
	}
	check(&probes.ProcessStats{PID: 10, CPUSeconds: 1.5, ResidentBytes: 4096, StartTimeSeconds: 1_800_000_000.25})
	check(&probes.ProcessStats{PID: 10, CPUSeconds: 2.5, ResidentBytes: 8192, StartTimeSeconds: 1_800_000_000.25})
	cpu, rss := series()
	if cpu.GetCounter().GetValue() != 2.5 || rss.GetGauge().GetValue() != 8192 {
		t.Fatalf("cpu %v, rss %v; want 2.5 and 8192", cpu, rss)
	}
	if got := cpu.GetCounter().GetCreatedTimestamp().AsTime(); !got.Equal(time.Unix(1_800_000_000, 250_000_000)) {
		t.Errorf("cpu counter created %v, want the process's start", got)
	}
	check(&probes.ProcessStats{PID: 11, CPUSeconds: 0.1, ResidentBytes: 4096, StartTimeSeconds: 1_800_000_100})
	if cpu, _ := series(); cpu.GetCounter().GetValue() != 0.1 || cpu.GetCounter().GetCreatedTimestamp().AsTime().Unix() != 1_800_000_100 {
		t.Errorf("after a restart: %v", cpu)
	}
	check(&probes.ProcessStats{PID: 11, CPUSeconds: 0.2, ResidentBytes: 4096})
	if cpu, _ := series(); cpu.GetCounter().GetValue() != 0.2 || cpu.GetCounter().CreatedTimestamp != nil {
		t.Errorf("a start time not read: %v, want no created timestamp", cpu)
	}
	check(nil)
	if cpu, rss := series(); cpu != nil || rss != nil {
		t.Errorf("after a check that read no process: cpu %v, rss %v", cpu, rss)
	}
	agenttest.ExposesAsGathered(t, m)
}
