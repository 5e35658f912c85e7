package openai

import "github.com/vitals-dev/vitals/probes"

// VLLMSignals maps vLLM's /metrics to probes.Signals. Every series has the
// labels model_name and, since the V1 engine, engine (the data-parallel
// engine's index); the values of all label sets add up, the KV cache gives
// the fullest engine's. Names are from vllm/v1/metrics/loggers.py
// (PrometheusStatLogger) and docs.vllm.ai/en/stable/usage/metrics/;
// docs/engines.md has the table.
var VLLMSignals = probes.SignalTable{
	Engine:   probes.EngineVLLM,
	Prefixes: []string{"vllm:"},
	Running:  []probes.Source{{Names: []string{"vllm:num_requests_running"}}},
	Waiting:  []probes.Source{{Names: []string{"vllm:num_requests_waiting"}}},
	// The old name was deprecated in 0.9 and served beside the new one
	// through 0.10; by vLLM's policy a deprecated metric is then hidden
	// (--show-hidden-metrics-for-version brings it back) and dropped.
	// Both are a ratio, 0 to 1, despite "perc".
	KVCacheUsage:    []probes.Source{{Names: []string{"vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"}}},
	GeneratedTokens: []probes.Source{{Names: []string{"vllm:generation_tokens_total"}}},
	// finished_reason is one of FINISH_REASON_STRINGS in
	// vllm/v1/engine/__init__.py: stop, length, abort, error, repetition.
	Requests: []probes.RequestSource{{
		Source:      probes.Source{Names: []string{"vllm:request_success_total"}},
		Result:      probes.RequestSuccess,
		ResultLabel: "finished_reason",
		Results:     map[string]probes.RequestResult{"abort": probes.RequestCanceled, "error": probes.RequestFailure},
	}},
	// Per engine, sleep_state="awake" is 1 when awake, and
	// "weights_offloaded" (sleep level 1) or "discard_all" (level 2) is 1
	// while asleep: their sum counts the engines asleep. Unlike
	// /is_sleeping, it needs no VLLM_SERVER_DEV_MODE.
	Asleep: []probes.Source{
		{Names: []string{"vllm:engine_sleep_state"}, Match: map[string]string{"sleep_state": "weights_offloaded"}},
		{Names: []string{"vllm:engine_sleep_state"}, Match: map[string]string{"sleep_state": "discard_all"}},
	},
}

// SGLangSignals maps SGLang's /metrics (with --enable-metrics) to
// probes.Signals. Scheduler series have the labels model_name,
// engine_type, tp_rank, pp_rank and, with data parallelism, dp_rank; only
// the first tensor-parallel rank of each scheduler reports unless
// --enable-metrics-for-all-schedulers is set, so the label sets add up.
// Names are from python/sglang/srt/metrics/collector.py
// (SchedulerMetricsCollector, TokenizerMetricsCollector) and
// docs/references/production_metrics.md.
var SGLangSignals = probes.SignalTable{
	Engine:   probes.EngineSGLang,
	Prefixes: []string{"sglang:"},
	Running:  []probes.Source{{Names: []string{"sglang:num_running_reqs"}}},
	Waiting:  []probes.Source{{Names: []string{"sglang:num_queue_reqs"}}},
	// The fraction of the KV pool's tokens in use.
	KVCacheUsage:    []probes.Source{{Names: []string{"sglang:token_usage"}}},
	GeneratedTokens: []probes.Source{{Names: []string{"sglang:generation_tokens_total"}}},
	// num_requests_total counts the requests SGLang finished, whatever
	// their finish reason, and num_aborted_requests_total the aborted
	// ones, which may be in both.
	Requests: []probes.RequestSource{
		{Source: probes.Source{Names: []string{"sglang:num_requests_total"}}, Result: probes.RequestSuccess},
		{Source: probes.Source{Names: []string{"sglang:num_aborted_requests_total"}}, Result: probes.RequestCanceled},
	},
}
