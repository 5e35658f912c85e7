// Package aisim is a simulated AI server for tests, demos and compose.yaml.
// One Server speaks the HTTP shapes of one kind of real server (a generic
// OpenAI-compatible server, llama.cpp, vLLM, Ollama, TGI, TEI, KServe v2 /
// Triton or SGLang), modelled on responses recorded from the real ones and
// on their source, and answers with small deterministic bodies: fixed
// text, token usage counts, deterministic embeddings, SSE streaming for
// OpenAI-style chat and completions, NDJSON streaming for Ollama.
//
// Behind the HTTP shapes is a small engine (sched.go): every inference
// request waits in a queue for one of a few slots, then makes its tokens
// one at a time. Each engine's own metrics endpoint (metrics.go,
// llamacpp.go) reports that engine's series with its names and labels:
// the queue and the slots as they are, the tokens and requests as the
// server really served them. The states a health engine has to tell apart
// are all knobs: busy (more load than slots, work completing), hung
// (stuck: running, tokens frozen, health 200), loading (gate.go), asleep
// (vLLM), cold and keep-alive (Ollama, ollamasched.go), behind an API key
// (gate.go), embeddings- or rerank-only (llama.cpp), a model renamed, and
// llama.cpp's router over several models, each unloaded, loading, loaded
// or sleeping, loading one for a request that names it (llamarouter.go).
//
// Knobs are set in Config, with the setters, or at run time over HTTP
// (GET, POST and DELETE /aisim/knobs; POST /aisim/reload starts a loading
// phase; GET /aisim/stats). Faults of the transport are knobs too:
// latency and jitter, an error rate, down (connections reset), hang,
// garbage bodies, endless streams, drip, redirects. /aisim/ itself always
// answers, so a test or a demo can undo what it did.
//
// Every wait ends when the request's context ends or when Close is called,
// and Close ends the background load, so tests that use a Server with
// httptest do not leak goroutines. cmd/aisim wraps it in a binary.
package aisim
