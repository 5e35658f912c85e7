package health

import (
	"encoding/hex"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/internal/labelpair"
	"github.com/vitals-dev/vitals/probes"
)

// Metrics are the engine's collectors. Every per-plugin series carries the
// plugin label and is deleted when the plugin leaves the catalog; the other
// labels are bounded (probe names, results, error classes, states, model
// ids a server reports).
//
// A plugin's series are kept as it changes them, not built at every
// scrape: each is one small value with its label pairs made once (the
// plugin's pair shared by all of its series, the bounded labels' pairs by
// every plugin's), written by a Write that allocates once; the latency
// histograms are native ones in a fixed array of buckets
// (histogram.go). This is what a scrape costs per series, once per scrape
// interval for every series of every plugin.
type Metrics struct {
	up, state, duration, total, errors, ttft, tps, transitions, cpu, rss *prometheus.Desc
	// info are the names, helps and types of those, in that order.
	info [10]familyInfo
	// rest is a registry of restCollector: the series GatherSelf leaves
	// to one.
	rest *prometheus.Registry

	lag    prometheus.Histogram
	tokens *tokenMetrics
	// classic are the classic buckets of the latency histograms
	// (metrics.classic_buckets); nil for none. timed are the probes with
	// a duration histogram (metrics.probe_durations).
	classic []float64
	timed   []string
	now     func() time.Time

	modelMem, runCPU, runRSS *prometheus.Desc

	signals *signalMetrics

	pmu     sync.RWMutex
	plugins map[string]*pluginMetrics
	// sorted are the plugins in the order of their ids, nil when one came
	// or went since; a slice made anew, never changed in place. A scrape
	// sends the series in the order the registry sorts them into, which
	// makes its sort a pass over them.
	sorted []*pluginMetrics

	mu   sync.Mutex
	mems map[string]map[string]probes.ModelMemory
	// runs are each plugin's runner processes by model, summed where
	// several share one (the unattributed ones).
	runs map[string]map[string]probes.ProcessStats
}

// NewMetrics creates the collectors, unregistered. A nil
// cfg.ProbeDurations is the default's.
func NewMetrics(cfg MetricsConfig) *Metrics {
	timed := cfg.ProbeDurations
	if timed == nil {
		timed = DefaultConfig().Metrics.ProbeDurations
	}
	m := &Metrics{
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "vitals_scheduler_lag_seconds",
			Help:    "How late health checks started after they were due.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		classic: slices.Clone(cfg.ClassicBuckets),
		timed:   slices.Clone(timed),
		now:     time.Now,
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
		plugins: map[string]*pluginMetrics{},
		mems:    map[string]map[string]probes.ModelMemory{},
		runs:    map[string]map[string]probes.ProcessStats{},
	}
	m.up = m.define(0, dto.MetricType_GAUGE, "vitals_ai_plugin_up",
		"Whether the AI plugin answered its last liveness probe (1) or not (0).", []string{"plugin"})
	m.state = m.define(1, dto.MetricType_GAUGE, "vitals_ai_plugin_health_state",
		"The AI plugin's health state: one series at 1 whose state label is the current state (unknown, healthy, degraded, overloaded, loading, cold, sleeping, stuck, unhealthy).",
		[]string{"plugin", "state"})
	m.duration = m.define(2, dto.MetricType_HISTOGRAM, "vitals_ai_probe_duration_seconds",
		"Duration of AI plugin probes, by probe: those of health.metrics.probe_durations, by default liveness, synthetic, heartbeat, bus_health and self (readiness on request; never resources, which reads the agent's own procfs and the server's reports more than it times the server).",
		[]string{"plugin", "probe"})
	m.total = m.define(3, dto.MetricType_COUNTER, "vitals_ai_probe_total",
		"AI plugin probes run, by probe (not resources, which reads the agent's own procfs) and result (success, failure; passive: a synthetic inference not sent because the server's counters showed work completing; skipped: not sent, its daily token budget spent).",
		[]string{"plugin", "probe", "result"})
	m.errors = m.define(4, dto.MetricType_COUNTER, "vitals_ai_probe_errors_total",
		"Failed AI plugin probe requests, by error class (timeout, refused, reset, http_5xx, http_4xx, auth, bad_response, tls, dns, canceled, stuck, not_ready, stale, reported, other).",
		[]string{"plugin", "class"})
	m.ttft = m.define(5, dto.MetricType_HISTOGRAM, "vitals_ai_time_to_first_token_seconds",
		"Time to first token of synthetic inferences.", []string{"plugin"})
	m.tps = m.define(6, dto.MetricType_GAUGE, "vitals_ai_output_tokens_per_second",
		"Output tokens per second of the AI server between its last two checks, from its own generated-tokens counter; where it has none, of the last synthetic answer of at least 8 tokens.",
		[]string{"plugin"})
	m.transitions = m.define(7, dto.MetricType_COUNTER, "vitals_ai_health_transitions_total",
		"AI plugin health state changes, by from and to state; not a plugin's first decision, from unknown.", []string{"plugin", "from", "to"})
	m.cpu = m.define(8, dto.MetricType_COUNTER, "vitals_ai_process_cpu_seconds_total",
		"CPU time of the AI plugin's local process (user and system), from procfs.", []string{"plugin"})
	m.rss = m.define(9, dto.MetricType_GAUGE, "vitals_ai_process_resident_memory_bytes",
		"Resident memory of the AI plugin's local process, from procfs.", []string{"plugin"})
	m.rest = prometheus.NewRegistry()
	m.rest.MustRegister(restCollector{m})
	return m
}

// define is the desc of the per-plugin family i, which GatherSelf
// names and types.
func (m *Metrics) define(i int, typ dto.MetricType, name, help string, labels []string) *prometheus.Desc {
	m.info[i] = familyInfo{name: name, help: help, typ: typ, pluginFirst: slices.Min(labels) == pluginLabel}
	return prometheus.NewDesc(name, help, labels, nil)
}

// familyInfo is what a family's desc holds and GatherSelf writes.
type familyInfo struct {
	name, help string
	typ        dto.MetricType
	// pluginFirst is set when plugin is the first of the family's labels
	// in the order of their names (a series' order), so that its series
	// in the plugins' order are in the registry's.
	pluginFirst bool
}

// families are the descs of the per-plugin series, in the order a
// plugin's series are kept.
func (m *Metrics) families() []*prometheus.Desc {
	return []*prometheus.Desc{m.up, m.state, m.duration, m.total, m.errors, m.ttft, m.tps, m.transitions, m.cpu, m.rss}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range append(m.families(), m.modelMem, m.runCPU, m.runRSS) {
		ch <- d
	}
	m.lag.Describe(ch)
	m.tokens.total.Describe(ch)
	m.signals.describe(ch)
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for _, p := range m.inOrder() {
		p.mu.Lock()
		series := p.series
		p.mu.Unlock()
		for _, s := range series {
			ch <- s
		}
	}
	m.collectRest(ch)
}

// GatherSelf gathers the collector's families as a registry holding it
// alone does (TestGatherSelfMatchesRegistry compares the two), the
// plugins' series without the registry's checks at every scrape, which
// they pass by construction: one series a label set (found by their
// interned label pairs), label names and types fixed by their family,
// label values checked for UTF-8 once, when a series is made. The rest
// (the scheduler's lag, tokens, signals, model memory and runner
// processes) go through a registry of their own. Per series that is
// about a third of a scrape's CPU.
func (m *Metrics) GatherSelf() ([]*dto.MetricFamily, error) {
	return agent.GatherAll(m.GatherFamilies())
}

// GatherFamilies lists the families of GatherSelf: the rest gathered at
// once, each of the plugins' families when it is written.
func (m *Metrics) GatherFamilies() ([]agent.LazyFamily, error) {
	rest, err := m.rest.Gather()
	descs := m.families()
	fams := make([]agent.LazyFamily, 0, len(rest)+len(descs))
	for _, mf := range rest {
		fams = append(fams, agent.Gathered(mf))
	}
	plugins := m.inOrder()
	for f, desc := range descs {
		fams = append(fams, agent.LazyFamily{
			Name: m.info[f].name, Help: m.info[f].help, Type: m.info[f].typ,
			Gather: func() (*dto.MetricFamily, []string, error) { return m.gatherFamily(f, desc, plugins) },
			Text:   func(w *agent.SeriesWriter) []string { return m.writeFamily(w, f, desc, plugins) },
		})
	}
	return fams, err
}

// eachSeries calls yield with the series of desc of each of plugins, in
// the plugins' order, and returns the descs of those with a label value
// that is not UTF-8, which it leaves out.
func eachSeries(desc *prometheus.Desc, plugins []*pluginMetrics, yield func(prometheus.Metric)) (bad []string) {
	for _, p := range plugins {
		p.mu.Lock()
		series := p.series
		p.mu.Unlock()
		in := false
		for _, s := range series {
			if s.Desc() != desc {
				if in {
					break // a plugin's series are in the order of their families
				}
				continue
			}
			in = true
			if !valid(s) {
				bad = append(bad, s.Desc().String())
				continue
			}
			yield(s)
		}
	}
	return bad
}

// writeFamily writes the family f, of desc, of the plugins' series to w
// as gatherFamily gathers it, making no messages: a scrape at 1000
// targets made 3 MB of them.
func (m *Metrics) writeFamily(w *agent.SeriesWriter, f int, desc *prometheus.Desc, plugins []*pluginMetrics) []string {
	var t seriesText
	if !m.info[f].pluginFirst {
		// The plugins' order is not the family's: its series are sorted
		// as a registry sorts them.
		var all []prometheus.Metric
		bad := eachSeries(desc, plugins, func(s prometheus.Metric) { all = append(all, s) })
		slices.SortStableFunc(all, func(a, b prometheus.Metric) int { return labelpair.Compare(labelsOf(a), labelsOf(b)) })
		for _, s := range all {
			t.write(w, s)
		}
		return bad
	}
	return eachSeries(desc, plugins, func(s prometheus.Metric) { t.write(w, s) })
}

// seriesText writes series to a SeriesWriter, with room for what their
// lines need beyond the series' own values.
type seriesText struct {
	ex      exemplarOut
	buckets []uint64
}

func (t *seriesText) write(w *agent.SeriesWriter, s prometheus.Metric) {
	switch s := s.(type) {
	case *scalar:
		w.Value(s.labels, math.Float64frombits(s.bits.Load()), nil)
	case *latency:
		s.writeText(w, t)
	}
	w.Next()
}

// labelsOf is the label pairs of one of a plugin's series.
func labelsOf(m prometheus.Metric) []*dto.LabelPair {
	switch m := m.(type) {
	case *scalar:
		return m.labels
	case *latency:
		return m.labels
	}
	return nil
}

// gatherFamily is the family f, of desc, of the plugins' series.
func (m *Metrics) gatherFamily(f int, desc *prometheus.Desc, plugins []*pluginMetrics) (*dto.MetricFamily, []string, error) {
	mf := &dto.MetricFamily{Name: &m.info[f].name, Help: &m.info[f].help, Type: m.info[f].typ.Enum()}
	// Most families have a series a plugin or none: one slab for as many,
	// another when it is full.
	var slab []dto.Metric
	var err error
	bad := eachSeries(desc, plugins, func(s prometheus.Metric) {
		if err != nil {
			return
		}
		if len(slab) == cap(slab) {
			slab = make([]dto.Metric, 0, max(len(plugins), 8))
		}
		slab = slab[:len(slab)+1]
		out := &slab[len(slab)-1]
		if err = s.Write(out); err == nil {
			mf.Metric = append(mf.Metric, out)
		}
	})
	if err != nil {
		return nil, bad, err
	}
	// The plugins' series are in the order of their ids; a family whose
	// first label sorts before "plugin" is sorted again.
	labelpair.SortSeries(mf.Metric)
	return mf, bad, nil
}

// Metrics gathers its own series beside the agent's registry, a family
// at a time.
var _ agent.FamilyGatherer = (*Metrics)(nil)

// valid reports whether the series' label values are UTF-8, as it was
// found when it was made.
func valid(s prometheus.Metric) bool {
	switch s := s.(type) {
	case *scalar:
		return !s.invalid
	case *latency:
		return !s.invalid
	}
	return true
}

// restCollector collects the series of m that are not a plugin's own
// series: what GatherSelf gathers through a registry.
type restCollector struct{ m *Metrics }

func (r restCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{r.m.modelMem, r.m.runCPU, r.m.runRSS} {
		ch <- d
	}
	r.m.lag.Describe(ch)
	r.m.tokens.total.Describe(ch)
	r.m.signals.describe(ch)
}

func (r restCollector) Collect(ch chan<- prometheus.Metric) { r.m.collectRest(ch) }

// collectRest collects the series of m that are not a plugin's own.
func (m *Metrics) collectRest(ch chan<- prometheus.Metric) {
	m.lag.Collect(ch)
	m.tokens.total.Collect(ch)
	m.signals.collect(ch)
	m.mu.Lock()
	defer m.mu.Unlock()
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

// inOrder is m.sorted, sorted again when a plugin came or went.
func (m *Metrics) inOrder() []*pluginMetrics {
	m.pmu.RLock()
	ps, n := m.sorted, len(m.plugins)
	m.pmu.RUnlock()
	if ps != nil || n == 0 {
		return ps
	}
	m.pmu.Lock()
	defer m.pmu.Unlock()
	if m.sorted == nil {
		ps := make([]*pluginMetrics, 0, len(m.plugins))
		for _, p := range m.plugins {
			ps = append(ps, p)
		}
		slices.SortFunc(ps, func(a, b *pluginMetrics) int { return strings.Compare(a.label.GetValue(), b.label.GetValue()) })
		m.sorted = ps
	}
	return m.sorted
}

// plugin is the series of plugin, made at its first use.
func (m *Metrics) plugin(id string) *pluginMetrics {
	m.pmu.RLock()
	p := m.plugins[id]
	m.pmu.RUnlock()
	if p != nil {
		return p
	}
	m.pmu.Lock()
	defer m.pmu.Unlock()
	if p = m.plugins[id]; p == nil {
		value := id // its own variable: &id would move id to the heap at every call
		p = &pluginMetrics{m: m, label: &dto.LabelPair{Name: &pluginLabel, Value: &value}}
		m.plugins[id] = p
		m.sorted = nil
	}
	return p
}

// setState makes s the state series of plugin: one series, at 1, whose
// state label is the current state. The series of the state before is
// deleted rather than kept at 0, so that a plugin costs one series here,
// not one per state; a query for a state (state="unhealthy" == 1) reads
// the same.
func (m *Metrics) setState(plugin string, s State) {
	p := m.plugin(plugin)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != nil && p.state.labels[1] == labelpair.Shared("state", string(s)) {
		return
	}
	st := p.newScalar(m.state, gauge, labelpair.Shared("state", string(s)))
	st.set(1)
	p.replace(p.state, st)
	p.state = st
}

// setTPS sets the plugin's output tokens per second.
func (m *Metrics) setTPS(plugin string, tps float64) {
	p := m.plugin(plugin)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tps == nil {
		p.tps = p.add(p.newScalar(m.tps, gauge))
	}
	p.tps.set(tps)
}

// transition counts a change of plugin's state, but not its first
// decision (from unknown, with nothing counted yet): that is the agent
// learning the state, not the server changing it, and it would be a series
// a plugin that never changes keeps for good, born at 1, which increase()
// does not see anyway. The history, the bus and the log keep it.
func (m *Metrics) transition(plugin string, from, to State) {
	p := m.plugin(plugin)
	p.mu.Lock()
	defer p.mu.Unlock()
	if from == StateUnknown && len(p.transitions) == 0 {
		return
	}
	p.find(&p.transitions, m.transitions, counter, labelpair.Shared("from", string(from)), labelpair.Shared("to", string(to))).add(1)
}

// exemplar is what a latency series keeps of its latest observation's
// check for its exemplar: the check span's trace and span ids, so that a
// point on a latency panel opens the check's trace, the value and when it
// was observed. It is kept as these bytes and made a dto.Exemplar only
// when the series is written (exemplarOut): the message, its two label
// pairs and its hex ids took a series four times the room, made at every
// check.
type exemplar struct {
	trace trace.TraceID
	span  trace.SpanID
	v     float64
	at    int64 // unix nanoseconds
	ok    bool  // false for none
}

// exemplarOf is the exemplar of an observation of v at now in the check
// whose span is sc, the zero exemplar (none) when sc is not sampled.
func exemplarOf(v float64, sc trace.SpanContext, now time.Time) exemplar {
	if !sc.IsSampled() {
		return exemplar{}
	}
	return exemplar{trace: sc.TraceID(), span: sc.SpanID(), v: v, at: now.UnixNano(), ok: true}
}

// exemplarOut is the dto.Exemplar of an exemplar, in the piece a
// series' Write allocates; its ids' hex are one allocation more.
type exemplarOut struct {
	ex       dto.Exemplar
	labels   [2]*dto.LabelPair
	pairs    [2]dto.LabelPair
	v        float64
	ts       timestamppb.Timestamp
	tid, sid string
}

// write makes e the exemplar of o and returns it.
func (o *exemplarOut) write(e exemplar) *dto.Exemplar {
	o.v, o.ts = e.v, timestamppb.Timestamp{Seconds: e.at / 1e9, Nanos: int32(e.at % 1e9)}
	var ids [2 * (len(e.trace) + len(e.span))]byte
	hex.Encode(ids[:], e.trace[:])
	hex.Encode(ids[2*len(e.trace):], e.span[:])
	all := string(ids[:])
	o.tid, o.sid = all[:2*len(e.trace)], all[2*len(e.trace):]
	o.pairs[0] = dto.LabelPair{Name: &traceIDLabel, Value: &o.tid}
	o.pairs[1] = dto.LabelPair{Name: &spanIDLabel, Value: &o.sid}
	o.labels = [2]*dto.LabelPair{&o.pairs[0], &o.pairs[1]}
	o.ex = dto.Exemplar{Label: o.labels[:], Value: &o.v, Timestamp: &o.ts}
	return &o.ex
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
	now := m.now()
	pm := m.plugin(plugin)
	pm.mu.Lock()
	defer pm.mu.Unlock()
	for _, p := range o.Probes {
		probe := labelpair.Shared("probe", p.Probe)
		// Only the probes of metrics.probe_durations have a duration
		// series; never the resource probe, which is informational and
		// whose time is mostly the agent's own procfs reads.
		if p.sent() && p.Probe != probes.Resources && slices.Contains(m.timed, p.Probe) {
			v := p.Duration.Seconds()
			pm.latency(&pm.durations, m.duration, now, probe).observe(v, now, exemplarOf(v, sc, now))
		}
		// Both results exist from the first probe on, so the first failure
		// after successes is an increase that increase() can see (a series
		// born at 1 is not); the stuck alert relies on it. The resource
		// probe is not counted: it reads the agent's own procfs, and a
		// failure of it is in the errors by class.
		if p.Probe != probes.Resources {
			pm.find(&pm.totals, m.total, counter, probe, resultPairs[0])
			pm.find(&pm.totals, m.total, counter, probe, resultPairs[1])
			pm.find(&pm.totals, m.total, counter, probe, labelpair.Shared("result", p.result())).add(1)
		}
		if p.Probe == probes.Synthetic {
			// Likewise the stuck class exists at 0 before inference first
			// hangs: the stuck alert's increase() sees its first one, in the
			// evaluation that also sees the engine's unhealthy verdict.
			pm.find(&pm.errors, m.errors, counter, labelpair.Shared("class", string(probes.ClassStuck)))
		}
		if p.Failures > 0 && p.Class != "" {
			pm.find(&pm.errors, m.errors, counter, labelpair.Shared("class", string(p.Class))).add(float64(p.Failures))
		}
		r := p.Result
		switch p.Probe {
		case probes.Liveness:
			if pm.up == nil {
				pm.up = pm.add(pm.newScalar(m.up, gauge))
			}
			v := 0.0
			if p.OK {
				v = 1
			}
			pm.up.set(v)
		case probes.Synthetic:
			if p.OK && r.TimeToFirstToken > 0 {
				v := r.TimeToFirstToken.Seconds()
				if pm.ttft == nil {
					pm.ttft = newLatency(m.ttft, []*dto.LabelPair{pm.label}, m.classic, now)
					pm.add(pm.ttft)
				}
				pm.ttft.observe(v, now, exemplarOf(v, sc, now))
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
	pm.setProcess(proc)
}

// setProcess sets the plugin's process series to what this check read of
// its process, or deletes them when it read none. Call with p.mu held.
// The CPU counter's created timestamp is the process's start, so a new
// process (a restart, or another PID) is a new series object.
func (p *pluginMetrics) setProcess(proc *probes.ProcessStats) {
	if proc == nil {
		p.remove(p.cpu, p.rss)
		p.cpu, p.rss = nil, nil
		return
	}
	created := int64(math.Round(proc.StartTimeSeconds*1e6)) * 1e3 // to the microsecond: a float64 of Unix seconds holds no more
	if p.cpu == nil || p.cpu.created != created {
		cpu := p.newScalar(p.m.cpu, counter)
		cpu.created = created
		p.replace(p.cpu, cpu)
		p.cpu = cpu
	}
	if p.rss == nil {
		p.rss = p.add(p.newScalar(p.m.rss, gauge))
	}
	p.cpu.set(proc.CPUSeconds)
	p.rss.set(float64(proc.ResidentBytes))
}

// forget deletes every series of plugin.
func (m *Metrics) forget(plugin string) {
	m.pmu.Lock()
	if _, ok := m.plugins[plugin]; ok {
		delete(m.plugins, plugin)
		m.sorted = nil
	}
	m.pmu.Unlock()
	m.tokens.forget(plugin)
	m.mu.Lock()
	delete(m.mems, plugin)
	delete(m.runs, plugin)
	m.mu.Unlock()
	m.signals.forget(plugin)
}

// pluginMetrics are one plugin's series. mu guards the fields; series is
// replaced, never changed in place, so that a scrape may send the one it
// read without holding mu while the registry writes them.
type pluginMetrics struct {
	m     *Metrics
	label *dto.LabelPair // plugin="<id>", shared by every series of the plugin

	mu                          sync.Mutex
	up, state, tps, cpu, rss    *scalar
	totals, errors, transitions []*scalar
	durations                   []*latency
	ttft                        *latency
	series                      []prometheus.Metric
}

// add puts s among the plugin's series and returns it.
func (p *pluginMetrics) add(s prometheus.Metric) *scalar {
	p.series = append(slices.Clip(p.series), s)
	p.sort()
	sc, _ := s.(*scalar)
	return sc
}

// sort orders the plugin's series as the registry does those of one
// family: by their label values, in the order of the labels' names.
// Between families the order is the descs'.
func (p *pluginMetrics) sort() {
	family := func(m prometheus.Metric) int { return slices.Index(p.m.families(), m.Desc()) }
	slices.SortFunc(p.series, func(a, b prometheus.Metric) int {
		if c := family(a) - family(b); c != 0 {
			return c
		}
		return labelpair.Compare(labelsOf(a), labelsOf(b))
	})
}

// replace puts s in the place of old in the plugin's series (appends it
// when old is nil).
func (p *pluginMetrics) replace(old, s *scalar) {
	i := slices.IndexFunc(p.series, func(x prometheus.Metric) bool { return old != nil && x == prometheus.Metric(old) })
	if i < 0 {
		p.add(s)
		return
	}
	series := slices.Clone(p.series)
	series[i] = s
	p.series = series
	p.sort()
}

// remove takes the series given out of the plugin's series; nil ones
// are none.
func (p *pluginMetrics) remove(gone ...*scalar) {
	del := func(x prometheus.Metric) bool {
		s, ok := x.(*scalar)
		return ok && s != nil && slices.Contains(gone, s)
	}
	if !slices.ContainsFunc(p.series, del) {
		return
	}
	p.series = slices.DeleteFunc(slices.Clone(p.series), del)
}

// newScalar is a series of desc with the plugin's label and the pairs
// after it (in the order of their names, which sort after "plugin").
func (p *pluginMetrics) newScalar(desc *prometheus.Desc, k scalarKind, pairs ...*dto.LabelPair) *scalar {
	ls := p.labels(pairs...)
	return &scalar{desc: desc, kind: k, labels: ls, created: p.m.now().UnixNano(), invalid: !labelpair.Valid(ls)}
}

// labels are the label pairs of one series: the plugin's and pairs, in
// the order of their names, as a Metric's are.
func (p *pluginMetrics) labels(pairs ...*dto.LabelPair) []*dto.LabelPair {
	ls := make([]*dto.LabelPair, 0, len(pairs)+1)
	ls = append(ls, p.label)
	ls = append(ls, pairs...)
	slices.SortFunc(ls, func(a, b *dto.LabelPair) int { return strings.Compare(a.GetName(), b.GetName()) })
	return ls
}

// find is the series of desc in *list with the pairs (interned by
// labelpair.Shared, so compared by pointer), made at 0 when there is none.
func (p *pluginMetrics) find(list *[]*scalar, desc *prometheus.Desc, k scalarKind, pairs ...*dto.LabelPair) *scalar {
	for _, s := range *list {
		if s.has(pairs) {
			return s
		}
	}
	s := p.add(p.newScalar(desc, k, pairs...))
	*list = append(*list, s)
	return s
}

// latency is the histogram of desc in *list with the pair, made when
// there is none.
func (p *pluginMetrics) latency(list *[]*latency, desc *prometheus.Desc, now time.Time, pair *dto.LabelPair) *latency {
	for _, h := range *list {
		if slices.Contains(h.labels, pair) {
			return h
		}
	}
	h := newLatency(desc, p.labels(pair), p.m.classic, now)
	p.add(h)
	*list = append(*list, h)
	return h
}

type scalarKind uint8

const (
	gauge scalarKind = iota
	counter
)

// scalar is one gauge or counter series; its value is a float64's bits,
// set and read atomically.
type scalar struct {
	desc    *prometheus.Desc
	labels  []*dto.LabelPair
	bits    atomic.Uint64
	created int64 // unix nanoseconds, for a counter
	kind    scalarKind
	invalid bool // a label value is not UTF-8
}

func (s *scalar) set(v float64) { s.bits.Store(math.Float64bits(v)) }

func (s *scalar) add(v float64) {
	for {
		old := s.bits.Load()
		if s.bits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

// has reports whether the series' labels after the plugin's include
// every one of pairs.
func (s *scalar) has(pairs []*dto.LabelPair) bool {
	for _, p := range pairs {
		if !slices.Contains(s.labels, p) {
			return false
		}
	}
	return true
}

func (s *scalar) Desc() *prometheus.Desc { return s.desc }

// Write implements prometheus.Metric, with one allocation.
func (s *scalar) Write(out *dto.Metric) error {
	v := math.Float64frombits(s.bits.Load())
	out.Label = s.labels
	if s.kind == gauge {
		o := &struct {
			g dto.Gauge
			v float64
		}{v: v}
		o.g.Value = &o.v
		out.Gauge = &o.g
		return nil
	}
	o := &struct {
		c  dto.Counter
		v  float64
		ts timestamppb.Timestamp
	}{v: v, ts: timestamppb.Timestamp{Seconds: s.created / 1e9, Nanos: int32(s.created % 1e9)}}
	o.c.Value = &o.v
	if s.created != 0 { // 0: not known (a process whose start was not read)
		o.c.CreatedTimestamp = &o.ts
	}
	out.Counter = &o.c
	return nil
}

var (
	pluginLabel  = "plugin"
	traceIDLabel = "trace_id"
	spanIDLabel  = "span_id"
	resultPairs  = [2]*dto.LabelPair{labelpair.Shared("result", "success"), labelpair.Shared("result", "failure")}
)
