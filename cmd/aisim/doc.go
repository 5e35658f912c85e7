// Command aisim runs a simulated AI server of one kind (OpenAI-compatible,
// llama.cpp, vLLM, Ollama, TGI, TEI or KServe v2) for demos, tests and
// compose.yaml. Flags set its knobs at start; GET/POST/DELETE
// /aisim/knobs change them at run time. See internal/aisim.
package main
