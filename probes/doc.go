// Package probes holds the vocabulary shared by every AI probe in Vitals:
// the kinds of AI server the agent knows (Kind), what a server or model can
// do (Capability), the description of a model (Model), the outcome of
// capability detection (Detection), a bounded classification of probe
// errors (ErrorClass, Classify) and the scheduler-free probe shape (Probe,
// ProbeFunc, Result) that the ExtManager's health engine runs.
//
// One sub-package per protocol family holds a small HTTP client and the
// response decoders for that family:
//
//   - probes/openai: OpenAI-compatible servers, with the llama.cpp and vLLM
//     extensions (/v1/models, /health, /props, /version);
//   - probes/ollama: Ollama (/api/version, /api/tags, /api/ps, /api/show);
//   - probes/hf: Hugging Face TGI and TEI (/info, /health);
//   - probes/kserve: KServe v2 / Triton (/v2, /v2/health/*, /v2/models/*).
//
// probes/detect asks an endpoint what it is, in a fixed order, with retries
// and backoff, and returns a Detection. Clients never hold globals: each is
// given an *http.Client and a base URL, and every call takes a context whose
// deadline bounds it, so the health engine can reuse the same clients for
// liveness, readiness and synthetic inference.
//
// probes depends on the standard library, OpenTelemetry (each probe request
// is an HTTP client span that carries the check's W3C trace context, and
// GenAI client metrics) and internal/ (the shared backoff); it never imports
// plugins, agent or exporters (docs/architecture.md has the import rule and
// docs/docs_test.go enforces it).
package probes
