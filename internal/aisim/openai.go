package aisim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/vitals-dev/vitals/probes"
)

// simModel is one model the simulator serves.
type simModel struct {
	id      string
	embed   bool
	ctx     int64
	size    int64
	ollama  []string // Ollama capabilities
	family  string
	memory  int64
	quant   string
	digest  string
	modTime string
}

// openAIModels returns the models of the OpenAI-family kinds.
func (s *Server) openAIModels() []simModel {
	switch s.cfg.Kind {
	case probes.KindLlamaCpp:
		if s.cfg.ModelType == "embedding" {
			return []simModel{{id: "tiny-embed", embed: true, ctx: 2048, size: 538880}}
		}
		return []simModel{{id: "tiny", ctx: 2048, size: 538880}}
	case probes.KindVLLM:
		return []simModel{{id: "sim-chat", ctx: 4096}}
	case probes.KindOllama:
		return ollamaModels
	}
	return []simModel{{id: "sim-chat", ctx: 4096}, {id: "sim-embed", embed: true, ctx: 512}}
}

func (s *Server) routesOpenAI() {
	m := s.api
	m.HandleFunc("GET /v1/models", s.v1Models)
	m.HandleFunc("POST /v1/chat/completions", s.chatCompletions)
	m.HandleFunc("POST /v1/completions", s.completions)
	m.HandleFunc("POST /v1/embeddings", s.embeddings)
	switch s.cfg.Kind {
	case probes.KindLlamaCpp:
		m.HandleFunc("GET /models", s.v1Models)
		m.HandleFunc("POST /chat/completions", s.chatCompletions)
		m.HandleFunc("POST /completions", s.completions)
		m.HandleFunc("POST /embeddings", s.embeddings)
		m.HandleFunc("GET /health", s.llamaHealth)
		m.HandleFunc("GET /props", s.llamaProps)
		m.HandleFunc("GET /slots", s.llamaSlots)
		m.HandleFunc("GET /metrics", s.llamaMetrics)
	case probes.KindVLLM:
		m.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
		m.HandleFunc("GET /version", func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, http.StatusOK, map[string]string{"version": s.Version()})
		})
		m.HandleFunc("GET /metrics", s.vllmMetrics)
	}
}

func (s *Server) v1Models(w http.ResponseWriter, _ *http.Request) {
	created := s.created.Unix()
	var data []map[string]any
	var llama []map[string]any
	for _, m := range s.openAIModels() {
		e := map[string]any{"id": m.id, "object": "model", "created": created, "owned_by": "aisim"}
		switch s.cfg.Kind {
		case probes.KindLlamaCpp:
			e["owned_by"] = "llamacpp"
			e["aliases"] = []string{m.id}
			e["tags"] = []string{}
			e["meta"] = map[string]any{"vocab_type": 1, "n_vocab": 410, "n_ctx": m.ctx, "n_ctx_train": m.ctx,
				"n_embd": 64, "n_params": 134720, "size": m.size, "ftype": "all F32"}
			llama = append(llama, map[string]any{"name": m.id, "model": m.id, "modified_at": "", "size": "", "digest": "",
				"type": "model", "description": "", "tags": []string{""}, "capabilities": []string{"completion"}, "parameters": "",
				"details": map[string]any{"parent_model": "", "format": "gguf", "family": "", "families": []string{""}, "parameter_size": "", "quantization_level": ""}})
		case probes.KindVLLM:
			e["owned_by"] = "vllm"
			e["root"] = m.id
			e["parent"] = nil
			e["max_model_len"] = m.ctx
			e["permission"] = []map[string]any{{"id": "modelperm-aisim", "object": "model_permission", "created": created,
				"allow_create_engine": false, "allow_sampling": true, "allow_logprobs": true, "allow_search_indices": false,
				"allow_view": true, "allow_fine_tuning": false, "organization": "*", "group": nil, "is_blocking": false}}
		case probes.KindOllama:
			e["owned_by"] = "library"
		}
		data = append(data, e)
	}
	body := map[string]any{"object": "list", "data": data}
	if llama != nil {
		body["models"] = llama
	}
	writeJSON(w, http.StatusOK, body)
}

// findModel returns the model a request names. llama.cpp ignores the name
// when it serves one model, as the real one does; the others answer 404
// for a model they do not have. An empty name is the first model of the
// wanted sort.
func (s *Server) findModel(w http.ResponseWriter, name string, embed bool) (simModel, bool) {
	models := s.openAIModels()
	if s.cfg.Kind == probes.KindLlamaCpp {
		return models[0], true
	}
	if s.cfg.Kind == probes.KindOllama {
		name = ollamaName(name)
	}
	for _, m := range models {
		if m.id == name || (name == "" && m.embed == embed) {
			return m, true
		}
	}
	msg := fmt.Sprintf("The model `%s` does not exist.", name)
	if s.cfg.Kind == probes.KindOllama {
		msg = fmt.Sprintf("model %q not found, try pulling it first", name)
	}
	s.serverError(w, http.StatusNotFound, msg)
	return simModel{}, false
}

// notSupported answers like llama.cpp started without (or with)
// --embeddings, and like vLLM asked for the wrong API.
func (s *Server) notSupported(w http.ResponseWriter, embeddings bool) {
	if s.cfg.Kind == probes.KindLlamaCpp {
		msg := "This server does not support embeddings. Start it with `--embeddings`"
		if !embeddings {
			msg = "This server does not support completions. Start it without `--embeddings`"
		}
		writeJSON(w, http.StatusNotImplemented, map[string]any{"error": map[string]any{"code": 501, "message": msg, "type": "not_supported_error"}})
		return
	}
	api := "Embeddings"
	if !embeddings {
		api = "Completions"
	}
	s.serverError(w, http.StatusBadRequest, "The model does not support "+api+" API")
}

// content is a message content: a string or a list of parts.
type content string

func (c *content) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*c = content(s)
		return nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(b, &parts); err != nil {
		return fmt.Errorf("content: want a string or a list of parts")
	}
	var sb strings.Builder
	for _, p := range parts {
		sb.WriteString(p.Text)
	}
	*c = content(sb.String())
	return nil
}

type chatRequest struct {
	Model    string `json:"model"`
	Messages []struct {
		Role    string  `json:"role"`
		Content content `json:"content"`
	} `json:"messages"`
	MaxTokens           int  `json:"max_tokens"`
	MaxCompletionTokens int  `json:"max_completion_tokens"`
	Stream              bool `json:"stream"`
	StreamOptions       *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
}

func (r chatRequest) limit() int {
	if r.MaxCompletionTokens > 0 {
		return r.MaxCompletionTokens
	}
	return r.MaxTokens
}

func (s *Server) fingerprint() string {
	switch s.cfg.Kind {
	case probes.KindLlamaCpp:
		return s.Version()
	case probes.KindOllama:
		return "fp_ollama"
	}
	return "fp_aisim"
}

func (s *Server) usage(prompt, completion int) map[string]any {
	s.prompt.Add(int64(prompt))
	s.predict.Add(int64(completion))
	return map[string]any{"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
}

func (s *Server) nextID(prefix string) string {
	return fmt.Sprintf("%s-aisim%d", prefix, s.seq.Add(1))
}

func (s *Server) chatCompletions(w http.ResponseWriter, r *http.Request) {
	var req chatRequest
	if !s.readJSON(w, r, &req) {
		return
	}
	if len(req.Messages) == 0 {
		s.serverError(w, http.StatusBadRequest, "messages: at least one message is required")
		return
	}
	m, ok := s.findModel(w, req.Model, false)
	if !ok {
		return
	}
	if m.embed {
		s.notSupported(w, false)
		return
	}
	if !s.inference(w, r, req.Stream) {
		return
	}
	var texts []string
	for _, msg := range req.Messages {
		texts = append(texts, string(msg.Content))
	}
	s.markLoaded(m.id)
	prompt := countTokens(texts...)
	toks, finish := generate(req.limit())
	id, created := s.nextID("chatcmpl"), s.created.Unix()
	if !req.Stream {
		writeJSON(w, http.StatusOK, map[string]any{
			"id": id, "object": "chat.completion", "created": created, "model": m.id,
			"system_fingerprint": s.fingerprint(),
			"choices": []map[string]any{{"index": 0, "finish_reason": finish,
				"message": map[string]any{"role": "assistant", "content": strings.Join(toks, "")}}},
			"usage": s.usage(prompt, len(toks)),
		})
		return
	}
	st := s.newStream(w, r, "text/event-stream")
	defer st.done()
	chunk := func(delta map[string]any, finish any) map[string]any {
		return map[string]any{"id": id, "object": "chat.completion.chunk", "created": created, "model": m.id,
			"system_fingerprint": s.fingerprint(),
			"choices":            []map[string]any{{"index": 0, "delta": delta, "finish_reason": finish}}}
	}
	if !st.sse(chunk(map[string]any{"role": "assistant", "content": nil}, nil)) {
		return
	}
	if s.Knobs().Endless {
		endless(func(t string) bool { return st.sse(chunk(map[string]any{"content": t}, nil)) })
		return
	}
	for _, t := range toks {
		if !st.sse(chunk(map[string]any{"content": t}, nil)) {
			return
		}
	}
	if !st.sse(chunk(map[string]any{}, finish)) {
		return
	}
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		if !st.sse(map[string]any{"id": id, "object": "chat.completion.chunk", "created": created, "model": m.id,
			"system_fingerprint": s.fingerprint(), "choices": []any{}, "usage": s.usage(prompt, len(toks))}) {
			return
		}
	}
	st.sse("[DONE]")
}

type completionRequest struct {
	Model         string          `json:"model"`
	Prompt        json.RawMessage `json:"prompt"`
	MaxTokens     int             `json:"max_tokens"`
	Stream        bool            `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
}

// strings returns a JSON string or list of strings as a list.
func stringList(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return []string{s}, nil
	}
	var ss []string
	if err := json.Unmarshal(raw, &ss); err != nil {
		return nil, fmt.Errorf("want a string or a list of strings")
	}
	return ss, nil
}

func (s *Server) completions(w http.ResponseWriter, r *http.Request) {
	var req completionRequest
	if !s.readJSON(w, r, &req) {
		return
	}
	prompts, err := stringList(req.Prompt)
	if err != nil || len(prompts) == 0 {
		s.serverError(w, http.StatusBadRequest, "prompt: a string or a list of strings is required")
		return
	}
	m, ok := s.findModel(w, req.Model, false)
	if !ok {
		return
	}
	if m.embed {
		s.notSupported(w, false)
		return
	}
	if !s.inference(w, r, req.Stream) {
		return
	}
	s.markLoaded(m.id)
	prompt := countTokens(prompts...)
	toks, finish := generate(req.MaxTokens)
	id, created := s.nextID("cmpl"), s.created.Unix()
	if !req.Stream {
		writeJSON(w, http.StatusOK, map[string]any{
			"id": id, "object": "text_completion", "created": created, "model": m.id,
			"system_fingerprint": s.fingerprint(),
			"choices":            []map[string]any{{"index": 0, "text": strings.Join(toks, ""), "logprobs": nil, "finish_reason": finish}},
			"usage":              s.usage(prompt, len(toks)),
		})
		return
	}
	st := s.newStream(w, r, "text/event-stream")
	defer st.done()
	if s.Knobs().Endless {
		endless(func(t string) bool {
			return st.sse(map[string]any{"id": id, "object": "text_completion", "created": created, "model": m.id,
				"choices": []map[string]any{{"index": 0, "text": t, "logprobs": nil, "finish_reason": nil}}})
		})
		return
	}
	for i, t := range toks {
		var fin any
		if i == len(toks)-1 {
			fin = finish
		}
		if !st.sse(map[string]any{"id": id, "object": "text_completion", "created": created, "model": m.id,
			"choices": []map[string]any{{"index": 0, "text": t, "logprobs": nil, "finish_reason": fin}}}) {
			return
		}
	}
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		if !st.sse(map[string]any{"id": id, "object": "text_completion", "created": created, "model": m.id,
			"choices": []any{}, "usage": s.usage(prompt, len(toks))}) {
			return
		}
	}
	st.sse("[DONE]")
}

func (s *Server) embeddings(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Model string          `json:"model"`
		Input json.RawMessage `json:"input"`
	}
	if !s.readJSON(w, r, &req) {
		return
	}
	inputs, err := stringList(req.Input)
	if err != nil || len(inputs) == 0 {
		s.serverError(w, http.StatusBadRequest, "input: a string or a list of strings is required")
		return
	}
	m, ok := s.findModel(w, req.Model, true)
	if !ok {
		return
	}
	if !m.embed {
		s.notSupported(w, true)
		return
	}
	if !s.inference(w, r, false) {
		return
	}
	s.markLoaded(m.id)
	data := make([]map[string]any, len(inputs))
	for i, in := range inputs {
		data[i] = map[string]any{"object": "embedding", "index": i, "embedding": embed(in)}
	}
	n := countTokens(inputs...)
	s.prompt.Add(int64(n))
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "model": m.id, "data": data,
		"usage": map[string]any{"prompt_tokens": n, "total_tokens": n}})
}

func (s *Server) llamaHealth(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) llamaProps(w http.ResponseWriter, _ *http.Request) {
	m := s.openAIModels()[0]
	writeJSON(w, http.StatusOK, map[string]any{
		"default_generation_settings": map[string]any{
			"params": map[string]any{"seed": 4294967295, "temperature": 0.8, "top_k": 40, "top_p": 0.95, "max_tokens": -1, "n_predict": -1, "stream": false},
			"n_ctx":  m.ctx,
		},
		"total_slots": 4,
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
		"endpoint_slots":     true,
		"endpoint_props":     false,
		"endpoint_metrics":   true,
		"is_sleeping":        false,
		"cors_proxy_enabled": false,
	})
}

func (s *Server) llamaSlots(w http.ResponseWriter, _ *http.Request) {
	m := s.openAIModels()[0]
	busy := s.active.Load()
	slots := make([]map[string]any, 4)
	for i := range slots {
		slots[i] = map[string]any{"id": i, "n_ctx": m.ctx, "speculative": false, "is_processing": int64(i) < busy}
	}
	writeJSON(w, http.StatusOK, slots)
}

func (s *Server) llamaMetrics(w http.ResponseWriter, _ *http.Request) {
	s.metrics(w, []metric{
		{"llamacpp:prompt_tokens_total", "counter", "Number of prompt tokens processed, excluding cached tokens", s.prompt.Load()},
		{"llamacpp:tokens_predicted_total", "counter", "Number of generation tokens processed", s.predict.Load()},
		{"llamacpp:requests_processing", "gauge", "Number of requests processing", s.active.Load()},
		{"llamacpp:requests_deferred", "gauge", "Number of requests deferred", 0},
	})
}

func (s *Server) vllmMetrics(w http.ResponseWriter, _ *http.Request) {
	label := fmt.Sprintf(`{model_name=%q}`, s.openAIModels()[0].id)
	s.metrics(w, []metric{
		{"vllm:prompt_tokens_total" + label, "counter", "Number of prefill tokens processed.", s.prompt.Load()},
		{"vllm:generation_tokens_total" + label, "counter", "Number of generation tokens processed.", s.predict.Load()},
		{"vllm:num_requests_running" + label, "gauge", "Number of requests currently running on GPU.", s.active.Load()},
		{"vllm:num_requests_waiting" + label, "gauge", "Number of requests waiting to be processed.", 0},
	})
}

type metric struct {
	name, typ, help string
	value           int64
}

func (s *Server) metrics(w http.ResponseWriter, ms []metric) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	var sb strings.Builder
	for _, m := range ms {
		base, _, _ := strings.Cut(m.name, "{")
		fmt.Fprintf(&sb, "# HELP %s %s\n# TYPE %s %s\n%s %d\n", base, m.help, base, m.typ, m.name, m.value)
	}
	_, _ = w.Write([]byte(sb.String()))
}

// markLoaded records that a model served a request (Ollama's /api/ps).
func (s *Server) markLoaded(id string) {
	if s.cfg.Kind != probes.KindOllama {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.loaded[id] = true
}

func (s *Server) isLoaded(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loaded[id]
}
