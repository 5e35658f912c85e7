package kserve

import "github.com/vitals-dev/vitals/probes"

// TritonSignals maps NVIDIA Triton Inference Server's /metrics to
// probes.Signals. Triton serves them on a port of their own (8002 unless
// --metrics-port says otherwise), not on the inference port. Its series
// are per model and version (labels model, version); they add up over
// all models, so an ensemble's requests count for the ensemble and for
// each model it calls.
//
// Triton's core says what waits (nv_inference_pending_request_count:
// requests not yet handed to a backend) and how requests ended, but not
// what runs or how full a KV cache is; a TensorRT-LLM backend adds its own
// gauges for those, and for the requests in its own queue. Names are from
// docs/user_guide/metrics.md of triton-inference-server/server and, for
// nv_trt_llm_*, the TensorRT-LLM backend's README and its
// ci/L0_backend_trtllm/test.sh (its first releases, with Triton 23.11,
// named them _statistics). A vLLM backend (Triton 24.08 and later, with
// REPORT_CUSTOM_METRICS) adds vLLM's own counters with Triton's labels;
// its README names vllm:generation_tokens_total among them.
var TritonSignals = probes.SignalTable{
	Engine: probes.EngineTriton,
	Running: []probes.Source{{
		Names: []string{"nv_trt_llm_request_metrics", "nv_trt_llm_request_statistics"},
		Match: map[string]string{"request_type": "active"},
	}},
	Waiting: []probes.Source{
		{Names: []string{"nv_inference_pending_request_count"}},
		{Names: []string{"nv_trt_llm_request_metrics"}, Match: map[string]string{"request_type": "waiting"}},
	},
	KVCacheUsage: []probes.Source{{
		Names: []string{"nv_trt_llm_kv_cache_block_metrics"},
		Match: map[string]string{"kv_cache_block_type": "fraction"},
	}},
	GeneratedTokens: []probes.Source{{Names: []string{"vllm:generation_tokens_total"}}},
	Requests: []probes.RequestSource{
		{Source: probes.Source{Names: []string{"nv_inference_request_success"}}, Result: probes.RequestSuccess},
		// reason is REJECTED (timed out in the scheduler's queue),
		// CANCELED, BACKEND or OTHER; older releases have no reason.
		{Source: probes.Source{Names: []string{"nv_inference_request_failure"}}, Result: probes.RequestFailure,
			ResultLabel: "reason", Results: map[string]probes.RequestResult{"CANCELED": probes.RequestCanceled}},
	},
}
