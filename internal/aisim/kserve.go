package aisim

import (
	"fmt"
	"net/http"
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
		idx := make([]map[string]string, len(kserveModels))
		for i, km := range kserveModels {
			idx[i] = map[string]string{"name": km.name, "version": "1", "state": "READY"}
		}
		writeJSON(w, http.StatusOK, idx)
	})
	m.HandleFunc("GET /v2/models/{model}", s.kserveMeta)
	m.HandleFunc("GET /v2/models/{model}/ready", s.kserveReady)
	m.HandleFunc("POST /v2/models/{model}/infer", s.kserveInfer)
}

func (s *Server) kserveModel(w http.ResponseWriter, r *http.Request) (kserveModel, bool) {
	name := r.PathValue("model")
	for _, km := range kserveModels {
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
		s.serverError(w, http.StatusBadRequest, "inputs: at least one input with data is required")
		return
	}
	if !s.inference(w, r, false) {
		return
	}
	var texts []string
	for _, d := range req.Inputs[0].Data {
		texts = append(texts, fmt.Sprint(d))
	}
	n := len(texts)
	s.prompt.Add(int64(countTokens(texts...)))
	var out map[string]any
	switch km.name {
	case "sim-llm":
		toks, _ := generate(0)
		s.predict.Add(int64(len(toks)))
		out = map[string]any{"name": "text_output", "datatype": "BYTES", "shape": []int{1}, "data": []string{strings.Join(toks, "")}}
	case "sim-embed":
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
