package aisim

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// kserveModel is one model of the KServe simulator.
type kserveModel struct {
	name            string
	inputs, outputs []map[string]any
}

var kserveModels = []kserveModel{
	{"sim-llm",
		[]map[string]any{{"name": "text_input", "datatype": "BYTES", "shape": []int{1}}},
		[]map[string]any{{"name": "text_output", "datatype": "BYTES", "shape": []int{1}}}},
	{"sim-embed",
		[]map[string]any{{"name": "text", "datatype": "BYTES", "shape": []int{-1}}},
		[]map[string]any{{"name": "embedding", "datatype": "FP32", "shape": []int{-1, embedDim}}}},
	{"sim-classifier",
		[]map[string]any{{"name": "text", "datatype": "BYTES", "shape": []int{-1}}},
		[]map[string]any{{"name": "logits", "datatype": "FP32", "shape": []int{-1, 2}}}},
}

// kserveModels returns the models, the first renamed by Knobs.ModelName.
func (s *Server) kserveModels() []kserveModel {
	ms := slices.Clone(kserveModels)
	ms[0].name = s.renamed(ms[0].name)
	return ms
}

func (s *Server) routesKServe() {
	m := s.api
	m.HandleFunc("GET /v2", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"name": "triton", "version": s.Version(),
			"extensions": []string{"classification", "sequence", "model_repository", "model_configuration",
				"system_shared_memory", "cuda_shared_memory", "binary_tensor_data", "parameters", "statistics", "trace", "logging"}})
	})
	ok := func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }
	m.HandleFunc("GET /v2/health/live", ok)
	m.HandleFunc("GET /v2/health/ready", ok)
	m.HandleFunc("POST /v2/repository/index", func(w http.ResponseWriter, _ *http.Request) {
		ms := s.kserveModels()
		idx := make([]map[string]string, len(ms))
		for i, km := range ms {
			idx[i] = map[string]string{"name": km.name, "version": "1", "state": "READY"}
		}
		writeJSON(w, http.StatusOK, idx)
	})
	m.HandleFunc("GET /v2/models/{model}", s.kserveMeta)
	m.HandleFunc("GET /v2/models/{model}/ready", s.kserveReady)
	s.inference("POST /v2/models/{model}/infer", s.kserveInfer)
}

func (s *Server) kserveModel(w http.ResponseWriter, r *http.Request) (kserveModel, bool) {
	name := r.PathValue("model")
	for _, km := range s.kserveModels() {
		if km.name == name {
			return km, true
		}
	}
	s.serverError(w, http.StatusNotFound, fmt.Sprintf("Request for unknown model: '%s' is not found", name))
	return kserveModel{}, false
}

func (s *Server) kserveMeta(w http.ResponseWriter, r *http.Request) {
	km, ok := s.kserveModel(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"name": km.name, "versions": []string{"1"}, "platform": "python",
		"inputs": km.inputs, "outputs": km.outputs})
}

func (s *Server) kserveReady(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.kserveModel(w, r); ok {
		w.WriteHeader(http.StatusOK)
	}
}

func (s *Server) kserveInfer(w http.ResponseWriter, r *http.Request) {
	km, ok := s.kserveModel(w, r)
	if !ok {
		return
	}
	var req struct {
		ID     string `json:"id"`
		Inputs []struct {
			Name string `json:"name"`
			Data []any  `json:"data"`
		} `json:"inputs"`
	}
	if !s.readJSON(w, r, &req) {
		return
	}
	if len(req.Inputs) == 0 || len(req.Inputs[0].Data) == 0 {
		s.record(km.name, outcomeValidation)
		s.serverError(w, http.StatusBadRequest, "inputs: at least one input with data is required")
		return
	}
	var texts []string
	for _, d := range req.Inputs[0].Data {
		texts = append(texts, fmt.Sprint(d))
	}
	n := len(texts)
	j := s.begin(w, r, km.name, countTokens(texts...))
	if j == nil {
		return
	}
	llm := km.inputs[0]["name"] == "text_input"
	toks, finish := generate(0)
	err := j.prefill()
	if err == nil && llm {
		err = j.generate(toks, nil)
	}
	if err != nil {
		j.stop(w, err)
		return
	}
	j.end(finish)
	var out map[string]any
	switch {
	case llm:
		out = map[string]any{"name": "text_output", "datatype": "BYTES", "shape": []int{1}, "data": []string{strings.Join(toks, "")}}
	case km.outputs[0]["name"] == "embedding":
		var data []float64
		for _, t := range texts {
			data = append(data, embed(t)...)
		}
		out = map[string]any{"name": "embedding", "datatype": "FP32", "shape": []int{n, embedDim}, "data": data}
	default:
		var data []float64
		for _, t := range texts {
			p := 0.5 + score("good great fine ok", t)
			data = append(data, 1-p, p)
		}
		out = map[string]any{"name": "logits", "datatype": "FP32", "shape": []int{n, 2}, "data": data}
	}
	writeJSON(w, http.StatusOK, map[string]any{"model_name": km.name, "model_version": "1", "id": req.ID,
		"outputs": []map[string]any{out}})
}
