// Package hf is the probe client for Hugging Face's inference servers:
// Text Generation Inference (TGI) and Text Embeddings Inference (TEI). Both
// answer GET /info; TGI names its "router" and token limits
// (max_input_tokens, max_total_tokens), TEI says its "model_type"
// (embedding, classifier or reranker). GET /health is their liveness and
// readiness; /generate, /embed and /rerank serve synthetic inference.
//
// Client wraps an *http.Client and a base URL; Detect turns /info into a
// probes.Detection. Each Decode function is fuzzed.
package hf
