// Package llamacpp is the engine family of llama.cpp's llama-server. It
// speaks the OpenAI-compatible API (through probes/openai's client) and
// owns what llama.cpp adds to it: /health (503 while the model loads),
// /props (build, context size, modalities, chat-template capabilities),
// owned_by "llamacpp" and the "meta" block of /v1/models, and the
// llamacpp:* series of /metrics.
//
// Family is its registration: detection (a /v1/models list that llama.cpp
// wrote, then /props and /health), and the probe set of kind llamacpp:
// liveness and readiness from /health, a streamed chat with reasoning off
// or one embedding, and the server's own series. Each Decode function
// turns one response body into a typed value and is fuzzed against the
// recorded responses of probes/testdata/peers/llamacpp.
//
// A llama-server in router mode (several models, --models-dir or
// --models-preset) is told by the status its model list gives each model;
// against it no probe names a model that is not loaded, since the router
// would load it, or wake it (router.go).
package llamacpp
