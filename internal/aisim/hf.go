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
	m.HandleFunc("GET /metrics", s.promMetrics)
	if s.cfg.Kind == probes.KindTGI {
		s.inference("POST /generate", s.tgiGenerate)
		s.inference("POST /generate_stream", s.tgiGenerateStream)
		s.inference("POST /v1/chat/completions", s.chatCompletions)
		s.inference("POST /v1/completions", s.completions)
		m.HandleFunc("GET /v1/models", s.v1Models)
		return
	}
	s.inference("POST /embed", s.teiEmbed)
	s.inference("POST /v1/embeddings", s.embeddings)
	s.inference("POST /rerank", s.teiRerank)
	s.inference("POST /predict", s.teiPredict)
}

func (s *Server) teiModelID() string {
	switch s.cfg.ModelType {
	case "classifier":
		return s.renamed(teiClass)
	case "reranker":
		return s.renamed(teiRank)
	}
	return s.renamed(teiEmbed)
}

func (s *Server) hfInfo(w http.ResponseWriter, _ *http.Request) {
	if s.cfg.Kind == probes.KindTGI {
		writeJSON(w, http.StatusOK, map[string]any{
			"model_id": s.renamed(tgiModel), "model_sha": "0123456789abcdef0123456789abcdef01234567",
			"model_dtype": "torch.float16", "model_device_type": "cpu", "model_pipeline_tag": "text-generation",
			"max_concurrent_requests": 128, "max_best_of": 2, "max_stop_sequences": 4,
			"max_input_tokens": 1024, "max_total_tokens": maxTotalTokens, "validation_workers": 2, "max_client_batch_size": 4,
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
		s.record(s.mainModel(), outcomeValidation)
		return
	}
	j := s.begin(w, r, s.mainModel(), countTokens(req.Inputs))
	if j == nil {
		return
	}
	toks, finish := generate(req.Parameters.MaxNewTokens)
	if err := j.generate(toks, nil); err != nil {
		j.stop(w, err)
		return
	}
	j.end(finish)
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
		s.record(s.mainModel(), outcomeValidation)
		return
	}
	j := s.begin(w, r, s.mainModel(), countTokens(req.Inputs))
	if j == nil {
		return
	}
	toks, finish := generate(req.Parameters.MaxNewTokens)
	st := newStream(w, "text/event-stream")
	i := 0
	err := j.generate(toks, func(t string) bool {
		ev := map[string]any{"index": i + 1, "token": map[string]any{"id": 100 + i, "text": t, "logprob": -0.5, "special": false},
			"top_tokens": nil, "generated_text": nil, "details": nil}
		if i == len(toks)-1 {
			ev["generated_text"] = strings.Join(toks, "")
			ev["details"] = map[string]any{"finish_reason": finish, "generated_tokens": len(toks), "seed": nil}
		}
		i++
		return st.sse(ev)
	})
	if err != nil {
		j.stop(w, err)
		return
	}
	j.end(finish)
}

// teiJob runs a TEI request of prompt tokens: its slow first token, and
// stuck or asleep stalls; it reports whether to answer.
func (s *Server) teiJob(w http.ResponseWriter, r *http.Request, prompt int) bool {
	j := s.begin(w, r, s.mainModel(), prompt)
	if j == nil {
		return false
	}
	if err := j.prefill(); err != nil {
		j.stop(w, err)
		return false
	}
	j.end(outcomeStop)
	return true
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
		s.record(s.mainModel(), outcomeValidation)
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
	s.record(s.mainModel(), outcomeValidation)
	s.serverError(w, http.StatusBadRequest, "model is not a "+want+" model")
	return true
}

func (s *Server) teiEmbed(w http.ResponseWriter, r *http.Request) {
	if s.teiWrongModel(w, "embedding") {
		return
	}
	in, ok := s.teiInputs(w, r)
	if !ok || !s.teiJob(w, r, countTokens(in...)) {
		return
	}
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
	if !s.teiJob(w, r, countTokens(append([]string{req.Query}, req.Texts...)...)) {
		return
	}
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
	if !ok || !s.teiJob(w, r, countTokens(in...)) {
		return
	}
	p := 0.5 + score("good great fine ok", in[0])
	writeJSON(w, http.StatusOK, []map[string]any{{"score": p, "label": "POSITIVE"}, {"score": 1 - p, "label": "NEGATIVE"}})
}
