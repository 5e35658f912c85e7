// Package aisim is a simulated AI server for tests, demos and compose.yaml.
// One Server speaks the HTTP shapes of one kind of real server (a generic
// OpenAI-compatible server, llama.cpp, vLLM, Ollama, TGI, TEI or KServe v2
// / Triton), modelled on responses recorded from the real ones, and answers
// with small deterministic bodies: fixed text, token usage counts,
// deterministic embeddings, SSE streaming for OpenAI-style chat and
// completions, NDJSON streaming for Ollama's /api/generate and /api/chat.
//
// Knobs make it misbehave on demand, set in Config, with the setters, or at
// run time over HTTP (GET, POST and DELETE /aisim/knobs): latency (fixed
// and jitter), an error rate (5xx), hard down (connections are reset),
// hang (requests are accepted and never answered), stuck (health and list
// endpoints answer, inference hangs), slow first token, a delay between
// streamed tokens, garbage bodies, and the version string the server
// reports. /aisim/ itself always answers, so a test or a demo can undo
// what it did.
//
// Every wait ends when the request's context ends or when Close is called,
// so tests that use a Server with httptest do not leak goroutines.
// cmd/aisim wraps it in a binary.
package aisim
