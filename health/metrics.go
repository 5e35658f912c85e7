package health

import (
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/vitals-dev/vitals/probes"
)

// Metrics are the engine's collectors. Every per-plugin series carries the
// plugin label and is deleted when the plugin leaves the catalog; the other
// labels are bounded (probe names, results, error classes, states, model
// ids a server reports).
type Metrics struct {
	up          *prometheus.GaugeVec
	state       *prometheus.GaugeVec
	duration    *prometheus.HistogramVec
	total       *prometheus.CounterVec
	errors      *prometheus.CounterVec
	ttft        *prometheus.HistogramVec
	tps         *prometheus.GaugeVec
	transitions *prometheus.CounterVec
	lag         prometheus.Histogram
	tokens      *tokenMetrics

	cpu, rss, modelMem, runCPU, runRSS *prometheus.Desc

	signals *signalMetrics

	mu    sync.Mutex
	procs map[string]probes.ProcessStats
	mems  map[string]map[string]probes.ModelMemory
	// runs are each plugin's runner processes by model, summed where
	// several share one (the unattributed ones).
	runs map[string]map[string]probes.ProcessStats
}

// Native histogram settings of the latency histograms: buckets at most
// 10 % wide, at most 20 of them per series (past that two merge into
// one, so a series of a server whose latency ranges widely stays small),
// and one exemplar, the latest check's trace.
const (
	nativeFactor     = 1.1
	nativeMaxBuckets = 20
	nativeResetAfter = time.Hour
)

// latencyOpts are the options of a per-plugin latency histogram: native,
// with the classic buckets of cfg when it has any.
func latencyOpts(name, help string, cfg MetricsConfig) prometheus.HistogramOpts {
	return prometheus.HistogramOpts{
		Name: name, Help: help, Buckets: slices.Clone(cfg.ClassicBuckets),
		NativeHistogramBucketFactor: nativeFactor, NativeHistogramMaxBucketNumber: nativeMaxBuckets,
		NativeHistogramMinResetDuration: nativeResetAfter, NativeHistogramMaxExemplars: 1,
	}
}

// NewMetrics creates the collectors, unregistered.
func NewMetrics(cfg MetricsConfig) *Metrics {
	return &Metrics{
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vitals_ai_plugin_up",
			Help: "Whether the AI plugin answered its last liveness probe (1) or not (0).",
		}, []string{"plugin"}),
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vitals_ai_plugin_health_state",
			Help: "The AI plugin's health state: one series at 1 whose state label is the current state (unknown, healthy, degraded, overloaded, loading, cold, sleeping, stuck, unhealthy).",
		}, []string{"plugin", "state"}),
		duration: prometheus.NewHistogramVec(latencyOpts("vitals_ai_probe_duration_seconds",
			"Duration of AI plugin probes, by probe (liveness, readiness, synthetic, heartbeat, bus_health, self; not resources, which reads the agent's own procfs and the server's reports more than it times the server).", cfg),
			[]string{"plugin", "probe"}),
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vitals_ai_probe_total",
			Help: "AI plugin probes run, by probe and result (success, failure; passive: a synthetic inference not sent because the server's counters showed work completing; skipped: not sent, its daily token budget spent).",
		}, []string{"plugin", "probe", "result"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vitals_ai_probe_errors_total",
			Help: "Failed AI plugin probe requests, by error class (timeout, refused, reset, http_5xx, http_4xx, auth, bad_response, tls, dns, canceled, stuck, not_ready, stale, reported, other).",
		}, []string{"plugin", "class"}),
		ttft: prometheus.NewHistogramVec(latencyOpts("vitals_ai_time_to_first_token_seconds",
			"Time to first token of synthetic inferences.", cfg), []string{"plugin"}),
		tps: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vitals_ai_output_tokens_per_second",
			Help: "Output tokens per second of the AI server between its last two checks, from its own generated-tokens counter; where it has none, of the last synthetic answer of at least 8 tokens.",
		}, []string{"plugin"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vitals_ai_health_transitions_total",
			Help: "AI plugin health state changes, by from and to state.",
		}, []string{"plugin", "from", "to"}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "vitals_scheduler_lag_seconds",
			Help:    "How late health checks started after they were due.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		cpu: prometheus.NewDesc("vitals_ai_process_cpu_seconds_total",
			"CPU time of the AI plugin's local process (user and system), from procfs.", []string{"plugin"}, nil),
		rss: prometheus.NewDesc("vitals_ai_process_resident_memory_bytes",
			"Resident memory of the AI plugin's local process, from procfs.", []string{"plugin"}, nil),
		modelMem: prometheus.NewDesc("vitals_ai_model_memory_bytes",
			"Memory of each loaded model as the server reports it (Ollama /api/ps): memory=total or vram.",
			[]string{"plugin", "model", "memory"}, nil),
		runCPU: prometheus.NewDesc("vitals_ai_model_process_cpu_seconds_total",
			"CPU time of the AI server's runner processes, by the model each runs (Ollama's `ollama runner`; model=\"\" for runners not attributed to a loaded model), from procfs.",
			[]string{"plugin", "model"}, nil),
		runRSS: prometheus.NewDesc("vitals_ai_model_process_resident_memory_bytes",
			"Resident memory of the AI server's runner processes, by the model each runs (model=\"\" for runners not attributed to a loaded model), from procfs.",
			[]string{"plugin", "model"}, nil),
		signals: newSignalMetrics(),
		tokens:  newTokenMetrics(),
		procs:   map[string]probes.ProcessStats{},
		mems:    map[string]map[string]probes.ModelMemory{},
		runs:    map[string]map[string]probes.ProcessStats{},
	}
}

func (m *Metrics) vecs() []prometheus.Collector {
	return []prometheus.Collector{m.up, m.state, m.duration, m.total, m.errors, m.ttft, m.tps, m.transitions, m.lag, m.tokens.total}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.vecs() {
		c.Describe(ch)
	}
	ch <- m.cpu
	ch <- m.rss
	ch <- m.modelMem
	ch <- m.runCPU
	ch <- m.runRSS
	m.signals.describe(ch)
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.vecs() {
		c.Collect(ch)
	}
	m.signals.collect(ch)
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, p := range m.procs {
		ch <- prometheus.MustNewConstMetric(m.cpu, prometheus.CounterValue, p.CPUSeconds, id)
		ch <- prometheus.MustNewConstMetric(m.rss, prometheus.GaugeValue, float64(p.ResidentBytes), id)
	}
	for id, rs := range m.runs {
		for model, p := range rs {
			ch <- prometheus.MustNewConstMetric(m.runCPU, prometheus.CounterValue, p.CPUSeconds, id, model)
			ch <- prometheus.MustNewConstMetric(m.runRSS, prometheus.GaugeValue, float64(p.ResidentBytes), id, model)
		}
	}
	for id, mm := range m.mems {
		names := make([]string, 0, len(mm))
		for n := range mm {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			ch <- prometheus.MustNewConstMetric(m.modelMem, prometheus.GaugeValue, float64(mm[n].TotalBytes), id, n, "total")
			ch <- prometheus.MustNewConstMetric(m.modelMem, prometheus.GaugeValue, float64(mm[n].VRAMBytes), id, n, "vram")
		}
	}
}

// setState makes s the state series of plugin: one series, at 1, whose
// state label is the current state. The others are deleted rather than
// kept at 0, so that a plugin costs one series here, not one per state;
// a query for a state (state="unhealthy" == 1) reads the same.
func (m *Metrics) setState(plugin string, s State) {
	for _, st := range States {
		if st != s {
			m.state.DeleteLabelValues(plugin, string(st))
		}
	}
	m.state.WithLabelValues(plugin, string(s)).Set(1)
}

// observeWith records v on h, with the trace and span id of sc as the
// exemplar when sc is sampled, so that a point on a latency panel opens the
// check's trace.
func observeWith(h prometheus.Observer, v float64, sc trace.SpanContext) {
	if eo, ok := h.(prometheus.ExemplarObserver); ok && sc.IsSampled() {
		eo.ObserveWithExemplar(v, prometheus.Labels{"trace_id": sc.TraceID().String(), "span_id": sc.SpanID().String()})
		return
	}
	h.Observe(v)
}

// observe records a check's probes; sc is the check's span.
func (m *Metrics) observe(plugin string, o Observation, sc trace.SpanContext) {
	// The process and model memory series show what this check measured:
	// a check that did not (the server is down, the process is gone, the
	// check stopped before the resource probe) leaves none, rather than
	// the last values of a process that may no longer exist.
	var proc *probes.ProcessStats
	var runs map[string]probes.ProcessStats
	mem := modelMemory(o.Signals)
	defer func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if proc != nil {
			m.procs[plugin] = *proc
		} else {
			delete(m.procs, plugin)
		}
		if runs != nil {
			m.runs[plugin] = runs
		} else {
			delete(m.runs, plugin)
		}
		if mem != nil {
			m.mems[plugin] = mem
		} else {
			delete(m.mems, plugin)
		}
	}()
	for _, p := range o.Probes {
		// The resource probe has no duration series: it is informational,
		// and its time is mostly the agent's own procfs reads.
		if p.sent() && p.Probe != probes.Resources {
			observeWith(m.duration.WithLabelValues(plugin, p.Probe), p.Duration.Seconds(), sc)
		}
		// Both results exist from the first probe on, so the first failure
		// after successes is an increase that increase() can see (a series
		// born at 1 is not); the stuck alert relies on it.
		m.total.WithLabelValues(plugin, p.Probe, "success")
		m.total.WithLabelValues(plugin, p.Probe, "failure")
		m.total.WithLabelValues(plugin, p.Probe, p.result()).Inc()
		if p.Probe == probes.Synthetic {
			// Likewise the stuck class exists at 0 before inference first
			// hangs: the stuck alert's increase() sees its first one, in the
			// evaluation that also sees the engine's unhealthy verdict.
			m.errors.WithLabelValues(plugin, string(probes.ClassStuck))
		}
		if p.Failures > 0 && p.Class != "" {
			m.errors.WithLabelValues(plugin, string(p.Class)).Add(float64(p.Failures))
		}
		r := p.Result
		switch p.Probe {
		case probes.Liveness:
			v := 0.0
			if p.OK {
				v = 1
			}
			m.up.WithLabelValues(plugin).Set(v)
		case probes.Synthetic:
			if p.OK && r.TimeToFirstToken > 0 {
				observeWith(m.ttft.WithLabelValues(plugin), r.TimeToFirstToken.Seconds(), sc)
			}
		case probes.Resources:
			proc = r.Process
			for _, mp := range r.ModelProcesses {
				if runs == nil {
					runs = map[string]probes.ProcessStats{}
				}
				sum := runs[mp.Model]
				sum.CPUSeconds += mp.CPUSeconds
				sum.ResidentBytes += mp.ResidentBytes
				runs[mp.Model] = sum
			}
		}
	}
}

// forget deletes every series of plugin.
func (m *Metrics) forget(plugin string) {
	l := prometheus.Labels{"plugin": plugin}
	for _, v := range []interface{ DeletePartialMatch(prometheus.Labels) int }{
		m.up, m.state, m.duration, m.total, m.errors, m.ttft, m.tps, m.transitions,
	} {
		v.DeletePartialMatch(l)
	}
	m.tokens.forget(plugin)
	m.mu.Lock()
	delete(m.procs, plugin)
	delete(m.mems, plugin)
	delete(m.runs, plugin)
	m.mu.Unlock()
	m.signals.forget(plugin)
}
