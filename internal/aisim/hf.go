package aisim

import (
	"net/http"
	"strings"

	"github.com/vitals-dev/vitals/probes"
)

const (
	tgiModel = "aisim/tiny-tgi"
	teiEmbed = "aisim/tiny-embed"
	teiClass = "aisim/tiny-classifier"
	teiRank  = "aisim/tiny-reranker"
)

func (s *Server) routesHF() {
	m := s.api
	m.HandleFunc("GET /info", s.hfInfo)
	m.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	if s.cfg.Kind == probes.KindTGI {
		m.HandleFunc("POST /generate", s.tgiGenerate)
		m.HandleFunc("POST /generate_stream", s.tgiGenerateStream)
		m.HandleFunc("POST /v1/chat/completions", s.chatCompletions)
		m.HandleFunc("POST /v1/completions", s.completions)
		return
	}
	m.HandleFunc("POST /embed", s.teiEmbed)
	m.HandleFunc("POST /v1/embeddings", s.embeddings)
	m.HandleFunc("POST /rerank", s.teiRerank)
	m.HandleFunc("POST /predict", s.teiPredict)
}

func (s *Server) teiModelID() string {
	switch s.cfg.ModelType {
	case "classifier":
		return teiClass
	case "reranker":
		return teiRank
	}
	return teiEmbed
}

func (s *Server) hfInfo(w http.ResponseWriter, _ *http.Request) {
	if s.cfg.Kind == probes.KindTGI {
		writeJSON(w, http.StatusOK, map[string]any{
			"model_id": tgiModel, "model_sha": "0123456789abcdef0123456789abcdef01234567",
			"model_dtype": "torch.float16", "model_device_type": "cpu", "model_pipeline_tag": "text-generation",
			"max_concurrent_requests": 128, "max_best_of": 2, "max_stop_sequences": 4,
			"max_input_tokens": 1024, "max_total_tokens": 2048, "validation_workers": 2, "max_client_batch_size": 4,
			"router": "text-generation-router", "version": s.Version(), "sha": nil, "docker_label": nil,
		})
		return
	}
	var mt map[string]any
	switch s.cfg.ModelType {
	case "classifier":
		mt = map[string]any{"classifier": map[string]any{"id2label": map[string]string{"0": "NEGATIVE", "1": "POSITIVE"},
			"label2id": map[string]int{"NEGATIVE": 0, "POSITIVE": 1}}}
	case "reranker":
		mt = map[string]any{"reranker": map[string]any{"id2label": map[string]string{"0": "LABEL_0"}, "label2id": map[string]int{"LABEL_0": 0}}}
	default:
		mt = map[string]any{"embedding": map[string]any{"pooling": "cls"}}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"model_id": s.teiModelID(), "model_sha": nil, "model_dtype": "float32", "model_type": mt,
		"max_concurrent_requests": 512, "max_input_length": 512, "max_batch_tokens": 16384,
		"max_batch_requests": nil, "max_client_batch_size": 32, "auto_truncate": false,
		"tokenization_workers": 2, "version": s.Version(), "sha": nil, "docker_label": nil,
	})
}

type tgiRequest struct {
	Inputs     string `json:"inputs"`
	Parameters struct {
		MaxNewTokens int  `json:"max_new_tokens"`
		Details      bool `json:"details"`
	} `json:"parameters"`
}

func (s *Server) tgiGenerate(w http.ResponseWriter, r *http.Request) {
	var req tgiRequest
	if !s.readJSON(w, r, &req) {
		return
	}
	if !s.inference(w, r, false) {
		return
	}
	toks, finish := generate(req.Parameters.MaxNewTokens)
	s.usage(countTokens(req.Inputs), len(toks))
	out := map[string]any{"generated_text": strings.Join(toks, "")}
	if req.Parameters.Details {
		out["details"] = map[string]any{"finish_reason": finish, "generated_tokens": len(toks), "seed": nil}
	}
	writeJSON(w, http.StatusOK, out)
}

// tgiGenerateStream streams TGI's token events over SSE.
func (s *Server) tgiGenerateStream(w http.ResponseWriter, r *http.Request) {
	var req tgiRequest
	if !s.readJSON(w, r, &req) {
		return
	}
	if !s.inference(w, r, true) {
		return
	}
	toks, finish := generate(req.Parameters.MaxNewTokens)
	s.usage(countTokens(req.Inputs), len(toks))
	st := s.newStream(w, r, "text/event-stream")
	defer st.done()
	for i, t := range toks {
		ev := map[string]any{"index": i + 1, "token": map[string]any{"id": 100 + i, "text": t, "logprob": -0.5, "special": false},
			"top_tokens": nil, "generated_text": nil, "details": nil}
		if i == len(toks)-1 {
			ev["generated_text"] = strings.Join(toks, "")
			ev["details"] = map[string]any{"finish_reason": finish, "generated_tokens": len(toks), "seed": nil}
		}
		if !st.sse(ev) {
			return
		}
	}
}

// teiInputs reads TEI's "inputs", a string or a list of strings.
func (s *Server) teiInputs(w http.ResponseWriter, r *http.Request) ([]string, bool) {
	var req struct {
		Inputs any `json:"inputs"`
	}
	if !s.readJSON(w, r, &req) {
		return nil, false
	}
	var in []string
	switch v := req.Inputs.(type) {
	case string:
		in = []string{v}
	case []any:
		for _, x := range v {
			if s, ok := x.(string); ok {
				in = append(in, s)
			}
		}
	}
	if len(in) == 0 {
		s.serverError(w, http.StatusUnprocessableEntity, "`inputs` cannot be empty")
		return nil, false
	}
	return in, true
}

// teiWrongModel answers like TEI asked for an API its model lacks.
func (s *Server) teiWrongModel(w http.ResponseWriter, want string) bool {
	if s.cfg.ModelType == want {
		return false
	}
	s.serverError(w, http.StatusBadRequest, "model is not a "+want+" model")
	return true
}

func (s *Server) teiEmbed(w http.ResponseWriter, r *http.Request) {
	if s.teiWrongModel(w, "embedding") {
		return
	}
	in, ok := s.teiInputs(w, r)
	if !ok || !s.inference(w, r, false) {
		return
	}
	s.prompt.Add(int64(countTokens(in...)))
	vecs := make([][]float64, len(in))
	for i, t := range in {
		vecs[i] = embed(t)
	}
	writeJSON(w, http.StatusOK, vecs)
}

func (s *Server) teiRerank(w http.ResponseWriter, r *http.Request) {
	if s.teiWrongModel(w, "reranker") {
		return
	}
	var req struct {
		Query      string   `json:"query"`
		Texts      []string `json:"texts"`
		ReturnText bool     `json:"return_text"`
	}
	if !s.readJSON(w, r, &req) {
		return
	}
	if len(req.Texts) == 0 {
		s.serverError(w, http.StatusUnprocessableEntity, "`texts` cannot be empty")
		return
	}
	if !s.inference(w, r, false) {
		return
	}
	s.prompt.Add(int64(countTokens(append([]string{req.Query}, req.Texts...)...)))
	ranks := make([]map[string]any, len(req.Texts))
	for i, t := range req.Texts {
		ranks[i] = map[string]any{"index": i, "score": score(req.Query, t)}
		if req.ReturnText {
			ranks[i]["text"] = t
		}
	}
	writeJSON(w, http.StatusOK, ranks)
}

func (s *Server) teiPredict(w http.ResponseWriter, r *http.Request) {
	if s.teiWrongModel(w, "classifier") {
		return
	}
	in, ok := s.teiInputs(w, r)
	if !ok || !s.inference(w, r, false) {
		return
	}
	s.prompt.Add(int64(countTokens(in...)))
	p := 0.5 + score("good great fine ok", in[0])
	writeJSON(w, http.StatusOK, []map[string]any{{"score": p, "label": "POSITIVE"}, {"score": 1 - p, "label": "NEGATIVE"}})
}
