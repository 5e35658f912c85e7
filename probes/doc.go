// Package probes holds the vocabulary shared by every AI probe in Vitals
// and the mechanics every engine family uses:
//
//   - the kinds of AI server the agent knows (Kind), what a server or model
//     can do (Capability), a model (Model), what detection found
//     (Detection), a bounded classification of probe errors (ErrorClass,
//     Classify);
//   - the scheduler-free probe shape (Probe, ProbeFunc, Run, Result) and
//     the probe set of a kind (ProbeSet: liveness, readiness, synthetic,
//     signals, and the resource probe built from them);
//   - the engine family (Family: the kinds one package owns, how detection
//     asks an endpoint about them, their probe sets) and the Registry that
//     maps kinds to families and runs detection over them in order, with
//     retries and backoff (Registry.Detect);
//   - the engine signals (Signals, SignalTable, Fingerprint) that a probe
//     set's Signals hook reads, with ReadMetrics for a /metrics table;
//   - the one bounded HTTP reader (Fetch, PostStream, Do, ReadLines,
//     StreamBudget) and the process reader (ReadProcess, FindListener).
//
// One package per engine family owns its kinds' identification, probe set
// and decoders: probes/openai (OpenAI-compatible servers and vLLM),
// probes/llamacpp, probes/ollama, probes/hf (TGI, TEI) and probes/kserve
// (KServe v2, Triton). probes/engines lists them; nothing else names a
// kind's endpoints. Clients never hold globals: each is given an
// *http.Client and a base URL, and every call takes a context whose
// deadline bounds it.
//
// probes depends on the standard library, OpenTelemetry (each probe request
// is an HTTP client span that carries the check's W3C trace context),
// prometheus/common and procfs, and internal/ (the shared backoff); it
// never imports plugins, agent or exporters (docs/architecture.md has the
// import rule and docs/docs_test.go enforces it).
package probes
