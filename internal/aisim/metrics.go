package aisim

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/vitals-dev/vitals/probes"
)

// Each engine's own /metrics, with the series, label names and help texts
// of its source, in the Prometheus text format, built at scrape time from
// the simulated engine's state (sched.go): the gauges are its queue and
// slots now, the counters the work it did. llama.cpp writes its own by
// hand (llamacpp.go); Ollama and the generic OpenAI server have none.
//
//   - vLLM (vllm/v1/metrics/loggers.py), labels model_name and engine:
//     vllm:num_requests_running, vllm:num_requests_waiting,
//     vllm:kv_cache_usage_perc, vllm:engine_sleep_state{sleep_state},
//     vllm:prompt_tokens_total, vllm:generation_tokens_total,
//     vllm:request_success_total{finished_reason}. Before 0.10 (the
//     Version knob) the cache gauge is vllm:gpu_cache_usage_perc, there is
//     no engine label and no sleep state; 0.10 has both cache names.
//   - TGI (router/src/server.rs, backends/v3), no labels: tgi_queue_size,
//     tgi_batch_current_size, tgi_request_count, tgi_request_success,
//     tgi_request_failure{err}, and the tgi_request_generated_tokens
//     histogram with TGI's buckets (max_total_tokens/100 steps).
//   - TEI (router/src/http/server.rs, core/src/queue.rs): te_queue_size,
//     te_request_count{method}, te_request_success{method},
//     te_request_failure{err}; TEI describes none, so they have no help.
//   - Triton (core/src/metrics.cc), labels model and version, served on its
//     own port (MetricsHandler), not the HTTP one:
//     nv_inference_request_success, nv_inference_request_failure{reason},
//     nv_inference_count, nv_inference_exec_count,
//     nv_inference_request_duration_us, nv_inference_pending_request_count.
//   - SGLang (python/sglang/srt/metrics/collector.py), label model_name:
//     sglang:num_running_reqs, sglang:num_queue_reqs, sglang:token_usage,
//     sglang:gen_throughput, sglang:prompt_tokens_total,
//     sglang:generation_tokens_total, sglang:num_requests_total.

// maxTotalTokens is TGI's max_total_tokens as /info reports it.
const maxTotalTokens = 2048

// newGeneratedTokensHistogram returns TGI's tgi_request_generated_tokens.
func newGeneratedTokensHistogram() prometheus.Histogram {
	buckets := make([]float64, 100)
	for i := range buckets {
		buckets[i] = maxTotalTokens / 100.0 * float64(i+1)
	}
	return prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tgi_request_generated_tokens",
		Help: "Generated tokens per request", Buckets: buckets})
}

// MetricsHandler serves the kind's metrics on their own: Triton's
// metrics port (8002 by default) is not its HTTP one. It answers with the
// same body as the API's /metrics for the other kinds, and is not subject
// to the knobs.
func (s *Server) MetricsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.Kind == probes.KindLlamaCpp {
			s.llamaMetrics(w, r)
			return
		}
		s.promMetrics(w, r)
	})
}

// promMetrics writes the kind's metrics in the text format.
func (s *Server) promMetrics(w http.ResponseWriter, r *http.Request) {
	if s.Knobs().MetricsOff {
		// SGLang without --enable-metrics has no such route.
		http.NotFound(w, r)
		return
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{s})
	mfs, err := reg.Gather()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	format := expfmt.NewFormat(expfmt.TypeTextPlain)
	w.Header().Set("Content-Type", string(format))
	enc := expfmt.NewEncoder(w, format)
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return
		}
	}
}

// collector is an unchecked prometheus.Collector of the kind's metrics.
type collector struct{ s *Server }

func (collector) Describe(chan<- *prometheus.Desc) {}

// snapshot is the engine state a scrape reports.
type snapshot struct {
	model       string
	running     int
	waiting     int
	waitingBy   map[string]int
	kvUsage     float64
	prompt, gen int64
	genSeconds  float64
	outcomes    map[outcomeKey]int64
	durationUS  map[string]int64
	sleepLevel  int
	total, succ int64
	byOutcome   map[string]int64
}

func (s *Server) snapshot() snapshot {
	k := s.Knobs()
	model := s.mainModel()
	ctx := 4096
	if s.cfg.Kind == probes.KindLlamaCpp {
		ctx = 2048
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sn := snapshot{model: model, running: len(s.slotJobs), waiting: s.waiting, waitingBy: map[string]int{},
		prompt: s.promptTokens, gen: s.genTokens, genSeconds: s.genSeconds, sleepLevel: k.SleepLevel,
		outcomes: map[outcomeKey]int64{}, durationUS: map[string]int64{}, byOutcome: map[string]int64{}}
	for m, n := range s.waitingBy {
		sn.waitingBy[m] = n
	}
	for key, n := range s.outcomes {
		sn.outcomes[key] = n
		sn.byOutcome[key.outcome] += n
		sn.total += n
		if key.outcome == outcomeStop || key.outcome == outcomeLength {
			sn.succ += n
		}
	}
	for m, n := range s.durationUS {
		sn.durationUS[m] = n
	}
	sn.kvUsage = k.KVCacheUsage
	if sn.kvUsage == 0 {
		sn.kvUsage = min(float64(s.kvTokensLocked())/float64(k.slots()*ctx), 1)
	}
	return sn
}

// emit sends one constant metric.
func emit(ch chan<- prometheus.Metric, name, help string, typ prometheus.ValueType, v float64, labels ...string) {
	var names, values []string
	for i := 0; i+1 < len(labels); i += 2 {
		names = append(names, labels[i])
		values = append(values, labels[i+1])
	}
	ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(name, help, names, nil), typ, v, values...)
}

const (
	gauge   = prometheus.GaugeValue
	counter = prometheus.CounterValue
)

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	sn := s.snapshot()
	switch s.cfg.Kind {
	case probes.KindVLLM:
		s.collectVLLM(ch, sn)
	case probes.KindTGI:
		emit(ch, "tgi_queue_size", "Current queue size", gauge, float64(sn.waiting))
		emit(ch, "tgi_batch_current_size", "Current batch size", gauge, float64(sn.running))
		emit(ch, "tgi_request_count", "Total number of requests", counter, float64(sn.total))
		emit(ch, "tgi_request_success", "Number of successful requests", counter, float64(sn.succ))
		for outcome, err := range map[string]string{outcomeValidation: "validation", outcomeError: "generation", outcomeAbort: "incomplete"} {
			if n := sn.byOutcome[outcome]; n > 0 {
				emit(ch, "tgi_request_failure", "", counter, float64(n), "err", err)
			}
		}
		ch <- s.genHist
	case probes.KindTEI:
		emit(ch, "te_queue_size", "", gauge, float64(sn.waiting))
		emit(ch, "te_request_count", "", counter, float64(sn.total-sn.byOutcome[outcomeValidation]), "method", "single")
		emit(ch, "te_request_success", "", counter, float64(sn.succ), "method", "single")
		for outcome, err := range map[string]string{outcomeValidation: "validation", outcomeError: "backend"} {
			if n := sn.byOutcome[outcome]; n > 0 {
				emit(ch, "te_request_failure", "", counter, float64(n), "err", err)
			}
		}
	case probes.KindKServe:
		s.collectTriton(ch, sn)
	case KindSGLang:
		l := []string{"model_name", sn.model}
		emit(ch, "sglang:num_running_reqs", "The number of running requests.", gauge, float64(sn.running), l...)
		emit(ch, "sglang:num_queue_reqs", "The number of requests in the waiting queue.", gauge, float64(sn.waiting), l...)
		emit(ch, "sglang:token_usage", "The token usage.", gauge, sn.kvUsage, l...)
		tps := 0.0
		if sn.running > 0 && sn.genSeconds > 0 {
			tps = float64(sn.gen) / sn.genSeconds
		}
		emit(ch, "sglang:gen_throughput", "The generation throughput (token/s).", gauge, tps, l...)
		emit(ch, "sglang:prompt_tokens_total", "Number of prefill tokens processed.", counter, float64(sn.prompt), l...)
		emit(ch, "sglang:generation_tokens_total", "Number of generation tokens processed.", counter, float64(sn.gen), l...)
		emit(ch, "sglang:num_requests_total", "Number of requests processed.", counter, float64(sn.succ), l...)
	}
}

func (s *Server) collectVLLM(ch chan<- prometheus.Metric, sn snapshot) {
	major, minor := s.vllmVersion()
	old := major == 0 && minor < 10
	l := []string{"model_name", sn.model}
	if !old {
		l = append(l, "engine", "0")
	}
	emit(ch, "vllm:num_requests_running", "Number of requests in model execution batches.", gauge, float64(sn.running), l...)
	emit(ch, "vllm:num_requests_waiting", "Number of requests waiting to be processed.", gauge, float64(sn.waiting), l...)
	if old || (major == 0 && minor == 10) {
		emit(ch, "vllm:gpu_cache_usage_perc", "GPU KV-cache usage. 1 means 100 percent usage.", gauge, sn.kvUsage, l...)
	}
	if !old {
		emit(ch, "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", gauge, sn.kvUsage, l...)
		help := "Engine sleep state; awake = 0 means engine is sleeping; awake = 1 means engine is awake; " +
			"weights_offloaded = 1 means sleep level 1; discard_all = 1 means sleep level 2."
		for level, state := range []string{"awake", "weights_offloaded", "discard_all"} {
			v := 0.0
			if (level == 0 && sn.sleepLevel == 0) || (level > 0 && sn.sleepLevel == level) {
				v = 1
			}
			emit(ch, "vllm:engine_sleep_state", help, gauge, v, append(l, "sleep_state", state)...)
		}
	}
	emit(ch, "vllm:prompt_tokens_total", "Number of prefill tokens processed.", counter, float64(sn.prompt), l...)
	emit(ch, "vllm:generation_tokens_total", "Number of generation tokens processed.", counter, float64(sn.gen), l...)
	reasons := []string{outcomeStop, outcomeLength, outcomeAbort}
	if !old {
		reasons = append(reasons, outcomeError)
	}
	for _, reason := range reasons {
		emit(ch, "vllm:request_success_total", "Count of successfully processed requests.", counter,
			float64(sn.byOutcome[reason]), append(l, "finished_reason", reason)...)
	}
}

func (s *Server) collectTriton(ch chan<- prometheus.Metric, sn snapshot) {
	for _, km := range s.kserveModels() {
		l := []string{"model", km.name, "version", "1"}
		ok := sn.outcomes[outcomeKey{km.name, outcomeStop}] + sn.outcomes[outcomeKey{km.name, outcomeLength}]
		emit(ch, "nv_inference_request_success", "Number of successful inference requests, all batch sizes", counter, float64(ok), l...)
		for _, reason := range []struct{ label, outcome string }{{"REJECTED", ""}, {"CANCELED", outcomeAbort}, {"BACKEND", outcomeError}, {"OTHER", outcomeValidation}} {
			n := sn.outcomes[outcomeKey{km.name, reason.outcome}]
			if reason.outcome == "" {
				n = 0
			}
			emit(ch, "nv_inference_request_failure", "Number of failed inference requests, all batch sizes", counter, float64(n),
				"model", km.name, "reason", reason.label, "version", "1")
		}
		emit(ch, "nv_inference_count", "Number of inferences performed (does not include cached requests)", counter, float64(ok), l...)
		emit(ch, "nv_inference_exec_count", "Number of model executions performed (does not include cached requests)", counter, float64(ok), l...)
		emit(ch, "nv_inference_request_duration_us", "Cumulative inference request duration in microseconds (includes cached requests)",
			counter, float64(sn.durationUS[km.name]), l...)
		emit(ch, "nv_inference_pending_request_count", "Instantaneous number of pending requests awaiting execution per-model.",
			gauge, float64(sn.waitingBy[km.name]), l...)
	}
}
