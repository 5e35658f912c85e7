// Package kserve is the probe client for servers that speak the KServe v2
// (Open Inference) protocol, NVIDIA Triton among them: GET /v2 (server
// name, version and extensions), /v2/health/live and /v2/health/ready
// (liveness and readiness), GET /v2/models/{m} and /v2/models/{m}/ready
// (model metadata and readiness), Triton's POST /v2/repository/index (the
// model list) and POST /v2/models/{m}/infer (synthetic inference).
//
// The protocol moves tensors, not text, so Detect infers a model's
// capabilities from the names of its inputs and outputs (text_input,
// embedding, logits), never from the model's name. Triton serves its
// metrics on a port of their own (8002); the family reads its signals
// there (see readSignals). Each Decode function is fuzzed.
package kserve
