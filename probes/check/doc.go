// Package check holds the health probes of AI servers, one set per server
// kind, built on the family clients of probes/openai, probes/ollama,
// probes/hf and probes/kserve:
//
//   - Liveness: the cheapest request that proves the process answers
//     (llama.cpp and vLLM /health, Ollama /api/version, TGI/TEI /health,
//     KServe /v2/health/live, /v1/models for other OpenAI-compatible
//     servers, GET / for servers of unknown kind);
//   - Readiness: models loaded and servable (/v1/models non-empty and
//     holding the configured model, Ollama's model in /api/tags, TGI/TEI
//     /info naming a model, KServe /v2/health/ready and the model ready);
//   - Synthetic: one tiny inference with a hard token budget and reasoning
//     off where the API allows it, streamed where the API streams, for
//     latency, time to first token and output tokens per second; embedding
//     servers embed one short input, rerankers rank two short texts;
//   - Resources: CPU seconds and resident memory of a local process from
//     procfs, model memory and VRAM from Ollama /api/ps, and a few named
//     series of the server's own /metrics (llama.cpp, vLLM, TGI, TEI).
//
// Every probe has the probes.Probe shape: a context whose deadline bounds
// it, a client, the target and the probe config in, a probes.Result and an
// error out. Errors classify with probes.Classify; a server that answers but
// cannot serve is probes.ErrNotReady. The ExtManager's health engine
// (health) schedules them; this package holds no state
// and starts no goroutines.
package check
