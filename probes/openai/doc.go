// Package openai is the probe client for OpenAI-compatible AI servers and
// for the two servers that extend that API with endpoints of their own:
// llama.cpp's llama-server (/health, /props, owned_by "llamacpp" and a
// "meta" block in /v1/models) and vLLM (/version, owned_by "vllm" and
// max_model_len in /v1/models).
//
// Client wraps an *http.Client and a base URL. Its methods are the
// building blocks of capability detection (Detect), liveness (Health,
// Models), readiness and synthetic inference (Chat, ChatStream,
// Embeddings). Each Decode function turns one response body into a typed
// value and is fuzzed.
package openai
