// Package detect is capability detection: given a base URL, it asks the
// endpoint what it is, one protocol family at a time, and returns a
// probes.Detection with the server kind, version, models and capabilities.
//
// The order goes from the most specific question to the most generic:
// KServe v2 (GET /v2), Hugging Face TGI/TEI (GET /info), Ollama (GET
// /api/version), then OpenAI-compatible servers (GET /v1/models), which
// also tells llama.cpp and vLLM apart. A family that answers "not me"
// (4xx, a body of another shape) hands over to the next one; an endpoint
// that no family recognises is KindUnknown with a reason, not an error.
//
// An endpoint that times out, refuses, drops the connection or answers 5xx
// is retried with exponential backoff, a bounded number of times; the wait
// honours the context and is injectable (Options.Sleep) for tests. The
// ExtManager runs Detect for kind "auto" targets and again whenever a
// plugin reports a new version.
package detect
