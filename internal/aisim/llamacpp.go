package aisim

import (
	"cmp"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// llama.cpp's server (tools/server): ModelType "embedding" starts it as
// with --embeddings, "reranker" as with --reranking (which implies
// embeddings with the rank pooling). Either way completions answer 501,
// as the real one does; its /props says nothing about it, so only those
// answers tell the modes apart.

func (s *Server) routesLlamaCpp() {
	m := s.api
	m.HandleFunc("GET /models", s.v1Models)
	s.inference("POST /chat/completions", s.chatCompletions)
	s.inference("POST /completions", s.completions)
	s.inference("POST /embeddings", s.embeddings)
	for _, p := range []string{"/rerank", "/reranking", "/v1/rerank", "/v1/reranking"} {
		s.inference("POST "+p, s.llamaRerank)
	}
	m.HandleFunc("GET /health", s.llamaHealth)
	m.HandleFunc("GET /v1/health", s.llamaHealth)
	m.HandleFunc("GET /props", s.llamaProps)
	m.HandleFunc("GET /slots", s.llamaSlots)
	m.HandleFunc("GET /metrics", s.llamaMetrics)
}

// llamaNotSupported answers 501 in llama.cpp's not_supported_error shape.
func llamaNotSupported(w http.ResponseWriter, msg string) {
	writeJSON(w, http.StatusNotImplemented, map[string]any{"error": map[string]any{"code": 501, "message": msg, "type": "not_supported_error"}})
}

func (s *Server) llamaHealth(w http.ResponseWriter, _ *http.Request) {
	// Loading and errors are answered before this, as llama.cpp's
	// middleware does (gate.go).
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) llamaProps(w http.ResponseWriter, r *http.Request) {
	m := s.llamaModel(r)
	k := s.Knobs()
	writeJSON(w, http.StatusOK, map[string]any{
		"default_generation_settings": map[string]any{
			"params": map[string]any{"seed": 4294967295, "temperature": 0.8, "top_k": 40, "top_p": 0.95, "max_tokens": -1, "n_predict": -1, "stream": false},
			"n_ctx":  m.ctx,
		},
		"total_slots": k.slots(),
		"model_alias": m.id,
		"model_ftype": "all F32",
		"model_path":  "/models/" + m.id + ".gguf",
		"modalities":  map[string]bool{"vision": false, "video": false, "audio": false},
		"chat_template": "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}" +
			"{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
		"chat_template_caps": map[string]bool{"supports_system_role": true, "supports_tool_calls": false, "supports_tools": false,
			"supports_parallel_tool_calls": false, "supports_string_content": true, "supports_typed_content": false},
		"bos_token":          "<s>",
		"eos_token":          "</s>",
		"build_info":         s.Version(),
		"endpoint_slots":     !k.SlotsOff,
		"endpoint_props":     false,
		"endpoint_metrics":   !k.MetricsOff,
		"is_sleeping":        k.SleepLevel > 0,
		"cors_proxy_enabled": false,
	})
}

// llamaModel is the model a GET asks about: the one ?model= names of a
// router (which admitted the request for it), else the one it serves.
func (s *Server) llamaModel(r *http.Request) simModel {
	ms := s.openAIModels()
	if name := r.URL.Query().Get("model"); s.router != nil {
		for _, m := range ms {
			if m.id == name {
				return m
			}
		}
	}
	return ms[0]
}

// llamaSlots answers /slots: one entry per slot, with the task it runs
// and how many tokens that task has decoded.
func (s *Server) llamaSlots(w http.ResponseWriter, r *http.Request) {
	k := s.Knobs()
	if k.SlotsOff {
		llamaNotSupported(w, "This server does not support slots endpoint. Start it with `--slots`")
		return
	}
	m := s.llamaModel(r)
	s.mu.Lock()
	n := max(k.slots(), len(s.slotJobs))
	slots := make([]map[string]any, n)
	for i := range slots {
		j := s.slotJobs[i]
		next := map[string]any{"has_next_token": j != nil, "has_new_line": false, "n_remain": -1, "n_decoded": 0}
		slot := map[string]any{"id": i, "id_task": -1, "n_ctx": m.ctx, "speculative": false, "is_processing": j != nil,
			"next_token": next}
		if j != nil {
			slot["id_task"] = j.id
			next["n_decoded"] = j.tokens
		}
		slots[i] = slot
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, slots)
}

// llamaMetrics writes llama.cpp's /metrics as its server does: by hand,
// names prefixed llamacpp:, counters then gauges, help texts as in its
// source.
func (s *Server) llamaMetrics(w http.ResponseWriter, _ *http.Request) {
	if s.Knobs().MetricsOff {
		llamaNotSupported(w, "This server does not support metrics endpoint. Start it with `--metrics`")
		return
	}
	s.mu.Lock()
	running, waiting := len(s.slotJobs), s.waiting
	prompt, gen, genSeconds := s.promptTokens, s.genTokens, s.genSeconds
	jobs := int64(0)
	for key, n := range s.outcomes {
		if key.outcome != outcomeValidation {
			jobs += n
		}
	}
	s.mu.Unlock()
	decodes := gen + jobs
	tps := 0.0
	if genSeconds > 0 {
		tps = float64(gen) / genSeconds
	}
	type metric struct {
		name, typ, help string
		value           float64
	}
	ms := []metric{
		{"prompt_tokens_total", "counter", "Number of prompt tokens processed.", float64(prompt)},
		{"prompt_seconds_total", "counter", "Prompt process time", 0},
		{"tokens_predicted_total", "counter", "Number of generation tokens processed.", float64(gen)},
		{"tokens_predicted_seconds_total", "counter", "Predict process time", genSeconds},
		{"n_decode_total", "counter", "Total number of llama_decode() calls", float64(decodes)},
		{"n_busy_slots_per_decode", "counter", "Average number of busy slots per llama_decode() call", min(float64(decodes), 1)},
		{"prompt_tokens_seconds", "gauge", "Average prompt throughput in tokens/s.", 0},
		{"predicted_tokens_seconds", "gauge", "Average generation throughput in tokens/s.", tps},
		{"requests_processing", "gauge", "Number of requests processing.", float64(running)},
		{"requests_deferred", "gauge", "Number of requests deferred.", float64(waiting)},
	}
	var sb strings.Builder
	for _, m := range ms {
		fmt.Fprintf(&sb, "# HELP llamacpp:%s %s\n# TYPE llamacpp:%s %s\nllamacpp:%s %v\n", m.name, m.help, m.name, m.typ, m.name, m.value)
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	w.Header().Set("Process-Start-Time-Unix", fmt.Sprint(s.started.Unix()))
	_, _ = w.Write([]byte(sb.String()))
}

// llamaRerank serves llama.cpp's rerank endpoints, in Jina's shape, or in
// TEI's when the request has "texts".
func (s *Server) llamaRerank(w http.ResponseWriter, r *http.Request) {
	m := s.openAIModels()[0]
	if !m.rerank {
		llamaNotSupported(w, "This server does not support reranking. Start it with `--reranking`")
		return
	}
	var req struct {
		Query     *string  `json:"query"`
		Documents []string `json:"documents"`
		Texts     []string `json:"texts"`
		TopN      int      `json:"top_n"`
	}
	if !s.readJSON(w, r, &req) {
		return
	}
	tei := req.Texts != nil
	docs := req.Documents
	if docs == nil {
		docs = req.Texts
	}
	if req.Query == nil {
		s.serverError(w, http.StatusBadRequest, `"query" must be provided`)
		return
	}
	if len(docs) == 0 {
		s.serverError(w, http.StatusBadRequest, `"documents" must be a non-empty string array`)
		return
	}
	n := countTokens(append([]string{*req.Query}, docs...)...)
	j := s.begin(w, r, m.id, n)
	if j == nil {
		return
	}
	if err := j.prefill(); err != nil {
		j.stop(w, err)
		return
	}
	j.end(outcomeStop)
	type result struct {
		Index int     `json:"index"`
		Score float64 `json:"relevance_score"`
	}
	results := make([]result, len(docs))
	for i, d := range docs {
		results[i] = result{i, score(*req.Query, d)}
	}
	slices.SortStableFunc(results, func(a, b result) int { return cmp.Compare(b.Score, a.Score) })
	if req.TopN > 0 && req.TopN < len(results) {
		results = results[:req.TopN]
	}
	if tei {
		out := make([]map[string]any, len(results))
		for i, r := range results {
			out[i] = map[string]any{"index": r.Index, "score": r.Score}
		}
		writeJSON(w, http.StatusOK, out)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"model": m.id, "object": "list",
		"usage": map[string]any{"prompt_tokens": n, "total_tokens": n}, "results": results})
}

// llamaLoading answers a request while llama.cpp loads its model: its
// middleware lets the model lists through and answers everything else,
// /health included, with 503.
func (s *Server) llamaLoading(w http.ResponseWriter, r *http.Request) bool {
	switch r.URL.Path {
	case "/models", "/v1/models", "/api/tags":
		return true
	case "/":
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("<html><body>Loading model</body></html>"))
		return false
	}
	writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": map[string]any{"code": 503, "message": "Loading model", "type": "unavailable_error"}})
	return false
}
