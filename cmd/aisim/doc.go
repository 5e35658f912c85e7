// Command aisim runs a simulated AI server of one kind (OpenAI-compatible,
// llama.cpp, vLLM, Ollama, TGI, TEI, KServe v2 / Triton or SGLang) for
// demos, tests and compose.yaml. Flags set its knobs at start; GET/POST/
// DELETE /aisim/knobs change them at run time. Like the real engines, a
// server with --load-time opens its port only once loaded (llama.cpp
// listens and answers 503 meanwhile). See internal/aisim.
package main
