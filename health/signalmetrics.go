package health

import (
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vitals-dev/vitals/probes"
)

// signalMetrics export what each engine said about itself in its last
// check, under one set of names for every engine (docs/engines.md has the
// series each is read from). A series exists only for a field the engine
// reported in that check: a check that read no signals (the server is
// down, the read failed) leaves none, rather than the values of a server
// that may no longer be there. The model label takes the names the server
// and the catalog give, bounded by the models one server holds.
type signalMetrics struct {
	running, waiting, kv, tokens, requests, loaded *prometheus.Desc
	errors                                         *prometheus.CounterVec

	mu   sync.Mutex
	last map[string]signalSample
}

// signalSample is one check's signals and the models the catalog knows of
// the plugin (those not loaded are exported as 0).
type signalSample struct {
	sig    probes.Signals
	models []string
}

func newSignalMetrics() *signalMetrics {
	return &signalMetrics{
		running: prometheus.NewDesc("vitals_ai_requests_running",
			"Requests the AI server is processing now, as it reports them (vLLM num_requests_running, llama.cpp requests_processing, ...).",
			[]string{"plugin"}, nil),
		waiting: prometheus.NewDesc("vitals_ai_requests_waiting",
			"Requests queued in the AI server, not yet running, as it reports them.", []string{"plugin"}, nil),
		kv: prometheus.NewDesc("vitals_ai_kv_cache_usage_ratio",
			"Fraction of the AI server's KV cache in use, 0 to 1 (the fullest one's with several).", []string{"plugin"}, nil),
		tokens: prometheus.NewDesc("vitals_ai_server_generated_tokens_total",
			"Tokens the AI server generated since it started, from its own counter (all clients, not only the agent's probes).",
			[]string{"plugin"}, nil),
		requests: prometheus.NewDesc("vitals_ai_server_requests_total",
			"Requests the AI server ended since it started, from its own counters, by result (success, failure, canceled).",
			[]string{"plugin", "result"}, nil),
		loaded: prometheus.NewDesc("vitals_ai_model_loaded",
			"Whether the AI server holds the model in memory now (1) or not (0), where it lists its loaded models (Ollama /api/ps).",
			[]string{"plugin", "model"}, nil),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vitals_ai_signals_errors_total",
			Help: "Failed reads of an AI server's own signals (its /metrics, slots or loaded models), by error class.",
		}, []string{"plugin", "class"}),
		last: map[string]signalSample{},
	}
}

// exported are the fields that have series; signals with none of them
// are not kept, as a server without a signals endpoint gives every check.
const exported = probes.FieldRequestsRunning | probes.FieldRequestsWaiting | probes.FieldKVCacheUsage |
	probes.FieldGeneratedTokens | probes.FieldRequests | probes.FieldLoadedModels

// observe keeps a check's signals; sig nil, or with none of the exported
// fields, drops the plugin's series.
func (m *signalMetrics) observe(plugin string, sig *probes.Signals, models []probes.Model) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if sig == nil || sig.Reported&exported == 0 {
		delete(m.last, plugin)
		return
	}
	smp := signalSample{sig: *sig}
	for _, md := range models {
		smp.models = append(smp.models, md.ID)
	}
	m.last[plugin] = smp
}

func (m *signalMetrics) failed(plugin string, class probes.ErrorClass) {
	m.errors.WithLabelValues(plugin, string(class)).Inc()
}

func (m *signalMetrics) forget(plugin string) {
	m.mu.Lock()
	delete(m.last, plugin)
	m.mu.Unlock()
	m.errors.DeletePartialMatch(prometheus.Labels{"plugin": plugin})
}

func (m *signalMetrics) describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.running, m.waiting, m.kv, m.tokens, m.requests, m.loaded} {
		ch <- d
	}
	m.errors.Describe(ch)
}

func (m *signalMetrics) collect(ch chan<- prometheus.Metric) {
	m.errors.Collect(ch)
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, smp := range m.last {
		s := smp.sig
		gauge := func(d *prometheus.Desc, f probes.Field, v float64) {
			if s.Has(f) {
				ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, id)
			}
		}
		gauge(m.running, probes.FieldRequestsRunning, s.RequestsRunning)
		gauge(m.waiting, probes.FieldRequestsWaiting, s.RequestsWaiting)
		gauge(m.kv, probes.FieldKVCacheUsage, s.KVCacheUsage)
		if s.Has(probes.FieldGeneratedTokens) {
			ch <- prometheus.MustNewConstMetric(m.tokens, prometheus.CounterValue, s.GeneratedTokens, id)
		}
		if s.Has(probes.FieldRequests) {
			for _, r := range []probes.RequestResult{probes.RequestSuccess, probes.RequestFailure, probes.RequestCanceled} {
				ch <- prometheus.MustNewConstMetric(m.requests, prometheus.CounterValue, s.Requests[r], id, string(r))
			}
		}
		if s.Has(probes.FieldLoadedModels) {
			var names []string
			for _, lm := range s.LoadedModels {
				if lm.Name != "" && !slices.Contains(names, lm.Name) {
					names = append(names, lm.Name)
					ch <- prometheus.MustNewConstMetric(m.loaded, prometheus.GaugeValue, 1, id, lm.Name)
				}
			}
			for _, n := range smp.models {
				if !slices.ContainsFunc(names, func(l string) bool { return sameModel(l, n) }) {
					names = append(names, n)
					ch <- prometheus.MustNewConstMetric(m.loaded, prometheus.GaugeValue, 0, id, n)
				}
			}
		}
	}
}

// modelMemory is the memory of each loaded model that sig reports with a
// size, by name; nil when there is none.
func modelMemory(sig *probes.Signals) map[string]probes.ModelMemory {
	if sig == nil {
		return nil
	}
	var mm map[string]probes.ModelMemory
	for _, m := range sig.LoadedModels {
		if m.SizeBytes <= 0 && m.VRAMBytes <= 0 {
			continue
		}
		if mm == nil {
			mm = map[string]probes.ModelMemory{}
		}
		mm[m.Name] = probes.ModelMemory{TotalBytes: m.SizeBytes, VRAMBytes: m.VRAMBytes}
	}
	return mm
}
