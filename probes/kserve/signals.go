package kserve

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"

	"github.com/vitals-dev/vitals/probes"
)

// TritonSignals maps NVIDIA Triton Inference Server's /metrics to
// probes.Signals. Triton serves them on a port of their own (8002 unless
// --metrics-port says otherwise), not on the inference port: the family
// reads them where readSignals says. Its series
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
	// A vLLM or TensorRT-LLM backend's series sit beside Triton's own.
	Prefixes: []string{"nv_inference_", "nv_trt_llm_"},
	Hosts:    true,
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

// MetricsPort is the port Triton serves its metrics on unless
// --metrics-port says otherwise.
const MetricsPort = "8002"

// readSignals returns the family's SignalsFunc. It reads Triton's metrics
// at the target's MetricsURL when it has one. Without one it reads the
// base URL's /metrics (a gateway in front of Triton may serve both there)
// and, when that does not answer with Triton's series (a 4xx or 5xx, or a
// body of no nv_inference_ series), /metrics on port (MetricsPort) of the
// base URL's host, with the same client. A base URL that does not answer
// at all is an error at once: the server is not there. Each read is
// FetchMetrics', bounded as every signals read is.
func readSignals(port string) probes.SignalsFunc {
	read := probes.ReadMetrics(TritonSignals)
	return func(ctx context.Context, c *http.Client, t probes.Target) (probes.Signals, error) {
		if t.MetricsURL != "" {
			return read(ctx, c, t)
		}
		u := probes.JoinURL(t.BaseURL, "/metrics")
		b, err := probes.FetchMetrics(ctx, c, u)
		var he *probes.HTTPError
		switch {
		case err == nil && probes.Fingerprint(b, TritonSignals) == probes.EngineTriton:
			return TritonSignals.Decode(b)
		case err == nil:
			err = &probes.DecodeError{What: u, Err: errors.New("no nv_inference_ series")}
		case !errors.As(err, &he):
			return probes.Signals{}, err
		}
		alt, aerr := portURL(t.BaseURL, port)
		if aerr != nil {
			return probes.Signals{}, err
		}
		t.MetricsURL = alt
		sig, aerr := read(ctx, c, t)
		if aerr != nil {
			return probes.Signals{}, fmt.Errorf("%w; %w (a metrics_url names Triton's --metrics-port)", err, aerr)
		}
		return sig, nil
	}
}

// portURL is base's scheme and host with port, and the path /metrics.
func portURL(base, port string) (string, error) {
	u, err := url.Parse(base)
	if err != nil || u.Hostname() == "" {
		return "", fmt.Errorf("base URL %q: no host", base)
	}
	return (&url.URL{Scheme: u.Scheme, Host: net.JoinHostPort(u.Hostname(), port), Path: "/metrics"}).String(), nil
}
