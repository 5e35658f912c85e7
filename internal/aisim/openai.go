package aisim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/vitals-dev/vitals/probes"
)

// simModel is one model the simulator serves.
type simModel struct {
	id      string
	embed   bool
	rerank  bool
	ctx     int64
	size    int64
	ollama  []string // Ollama capabilities
	family  string
	memory  int64
	quant   string
	digest  string
	modTime string
}

// openAIModels returns the models of the OpenAI-family kinds, the first
// renamed by Knobs.ModelName.
func (s *Server) openAIModels() []simModel {
	var ms []simModel
	switch s.cfg.Kind {
	case probes.KindLlamaCpp:
		if s.router != nil {
			return s.routerSimModels()
		}
		switch s.cfg.ModelType {
		case "embedding":
			ms = []simModel{{id: "tiny-embed", embed: true, ctx: 2048, size: 538880}}
		case "reranker":
			ms = []simModel{{id: "tiny-rerank", embed: true, rerank: true, ctx: 2048, size: 538880}}
		default:
			ms = []simModel{{id: "tiny", ctx: 2048, size: 538880}}
		}
	case probes.KindVLLM:
		ms = []simModel{{id: "sim-chat", ctx: 4096}}
	case KindSGLang:
		ms = []simModel{{id: sglangModel, ctx: 4096}}
	case probes.KindOllama:
		ms = slices.Clone(ollamaModels)
	default:
		ms = []simModel{{id: "sim-chat", ctx: 4096}, {id: "sim-embed", embed: true, ctx: 512}}
	}
	if n := s.Knobs().ModelName; n != "" {
		ms[0].id = n
		if s.cfg.Kind == probes.KindOllama {
			ms[0].id = ollamaName(n)
		}
	}
	return ms
}

// renamed returns id, or Knobs.ModelName when that is set.
func (s *Server) renamed(id string) string {
	if n := s.Knobs().ModelName; n != "" {
		return n
	}
	return id
}

// mainModel is the model the server serves first: the one background
// load runs on and the metrics are labelled with.
func (s *Server) mainModel() string {
	switch s.cfg.Kind {
	case probes.KindTGI:
		return s.renamed(tgiModel)
	case probes.KindTEI:
		return s.teiModelID()
	case probes.KindKServe:
		return s.kserveModels()[0].name
	}
	return s.openAIModels()[0].id
}

func (s *Server) routesOpenAI() {
	if s.router != nil {
		s.routesLlamaRouter()
		return
	}
	m := s.api
	m.HandleFunc("GET /v1/models", s.v1Models)
	s.inference("POST /v1/chat/completions", s.chatCompletions)
	s.inference("POST /v1/completions", s.completions)
	s.inference("POST /v1/embeddings", s.embeddings)
	switch s.cfg.Kind {
	case probes.KindLlamaCpp:
		s.routesLlamaCpp()
	case probes.KindVLLM:
		s.routesVLLM()
	case KindSGLang:
		s.routesSGLang()
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
		case KindSGLang:
			e["owned_by"] = "sglang"
			e["root"] = m.id
			e["max_model_len"] = m.ctx
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
// when it serves one model, as the real one does (its router has admitted
// the request for the model named); the others answer 404 for a model they
// do not have. An empty name is the first model of the wanted sort.
func (s *Server) findModel(w http.ResponseWriter, name string, embed bool) (simModel, bool) {
	models := s.openAIModels()
	if s.cfg.Kind == probes.KindLlamaCpp && s.router == nil {
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
	if s.cfg.Kind == probes.KindLlamaCpp && embeddings && s.cfg.ModelType == "reranker" {
		// --reranking sets the rank pooling, which has no OpenAI embedding.
		s.serverError(w, http.StatusBadRequest, "Pooling type 'rank' is not OAI compatible. Please use a different pooling type")
		return
	}
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

func usage(prompt, completion int) map[string]any {
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
	var texts []string
	for _, msg := range req.Messages {
		texts = append(texts, string(msg.Content))
	}
	prompt := countTokens(texts...)
	j := s.begin(w, r, m.id, prompt)
	if j == nil {
		return
	}
	toks, finish := generate(req.limit())
	id, created := s.nextID("chatcmpl"), s.created.Unix()
	if !req.Stream {
		if err := j.generate(toks, nil); err != nil {
			j.stop(w, err)
			return
		}
		j.end(finish)
		writeJSON(w, http.StatusOK, map[string]any{
			"id": id, "object": "chat.completion", "created": created, "model": m.id,
			"system_fingerprint": s.fingerprint(),
			"choices": []map[string]any{{"index": 0, "finish_reason": finish,
				"message": map[string]any{"role": "assistant", "content": strings.Join(toks, "")}}},
			"usage": usage(prompt, len(toks)),
		})
		return
	}
	st := newStream(w, "text/event-stream")
	chunk := func(delta map[string]any, finish any) map[string]any {
		return map[string]any{"id": id, "object": "chat.completion.chunk", "created": created, "model": m.id,
			"system_fingerprint": s.fingerprint(),
			"choices":            []map[string]any{{"index": 0, "delta": delta, "finish_reason": finish}}}
	}
	emit := func(t string) bool {
		if !st.started && !st.sse(chunk(map[string]any{"role": "assistant", "content": nil}, nil)) {
			return false
		}
		return st.sse(chunk(map[string]any{"content": t}, nil))
	}
	if s.Knobs().Endless {
		j.stop(w, j.endless(emit))
		return
	}
	if err := j.generate(toks, emit); err != nil {
		j.stop(w, err)
		return
	}
	j.end(finish)
	if !st.sse(chunk(map[string]any{}, finish)) {
		return
	}
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		if !st.sse(map[string]any{"id": id, "object": "chat.completion.chunk", "created": created, "model": m.id,
			"system_fingerprint": s.fingerprint(), "choices": []any{}, "usage": usage(prompt, len(toks))}) {
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
	prompt := countTokens(prompts...)
	j := s.begin(w, r, m.id, prompt)
	if j == nil {
		return
	}
	toks, finish := generate(req.MaxTokens)
	id, created := s.nextID("cmpl"), s.created.Unix()
	if !req.Stream {
		if err := j.generate(toks, nil); err != nil {
			j.stop(w, err)
			return
		}
		j.end(finish)
		writeJSON(w, http.StatusOK, map[string]any{
			"id": id, "object": "text_completion", "created": created, "model": m.id,
			"system_fingerprint": s.fingerprint(),
			"choices":            []map[string]any{{"index": 0, "text": strings.Join(toks, ""), "logprobs": nil, "finish_reason": finish}},
			"usage":              usage(prompt, len(toks)),
		})
		return
	}
	st := newStream(w, "text/event-stream")
	event := func(t string, fin any) map[string]any {
		return map[string]any{"id": id, "object": "text_completion", "created": created, "model": m.id,
			"choices": []map[string]any{{"index": 0, "text": t, "logprobs": nil, "finish_reason": fin}}}
	}
	if s.Knobs().Endless {
		j.stop(w, j.endless(func(t string) bool { return st.sse(event(t, nil)) }))
		return
	}
	i := 0
	err = j.generate(toks, func(t string) bool {
		i++
		var fin any
		if i == len(toks) {
			fin = finish
		}
		return st.sse(event(t, fin))
	})
	if err != nil {
		j.stop(w, err)
		return
	}
	j.end(finish)
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		if !st.sse(map[string]any{"id": id, "object": "text_completion", "created": created, "model": m.id,
			"choices": []any{}, "usage": usage(prompt, len(toks))}) {
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
	if !m.embed || m.rerank {
		s.notSupported(w, true)
		return
	}
	n := countTokens(inputs...)
	j := s.begin(w, r, m.id, n)
	if j == nil {
		return
	}
	if err := j.prefill(); err != nil {
		j.stop(w, err)
		return
	}
	j.end(outcomeStop)
	data := make([]map[string]any, len(inputs))
	for i, in := range inputs {
		data[i] = map[string]any{"object": "embedding", "index": i, "embedding": embed(in)}
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "model": m.id, "data": data,
		"usage": map[string]any{"prompt_tokens": n, "total_tokens": n}})
}
