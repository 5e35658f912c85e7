// Package ollama is the probe client for Ollama's native API: /api/version
// (liveness and version), /api/tags (the models on disk), /api/ps (the
// models loaded, with their memory), POST /api/show (a model's
// capabilities and context length), and /api/generate, /api/chat and
// /api/embed for synthetic inference, including Ollama's NDJSON streaming.
//
// Client wraps an *http.Client and a base URL; Detect turns the answers
// into a probes.Detection. Each Decode function is fuzzed.
package ollama
