package aisim

import (
	"net/http"
	"strconv"
	"strings"
)

// vLLM's OpenAI server and its sleep mode (the development endpoints it
// serves with VLLM_SERVER_DEV_MODE=1): POST /sleep?level=1|2 puts the
// engine to sleep, POST /wake_up wakes it, GET /is_sleeping says which.
// While it sleeps the simulated engine runs nothing: running requests
// stall and new ones wait in the queue until it wakes (the metrics show
// them as running and waiting, the tokens counter stands still, /health
// answers 200). vllm:engine_sleep_state says which level it sleeps at.

func (s *Server) routesVLLM() {
	m := s.api
	m.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	m.HandleFunc("GET /version", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"version": s.Version()})
	})
	m.HandleFunc("GET /metrics", s.promMetrics)
	m.HandleFunc("POST /sleep", s.vllmSleep)
	m.HandleFunc("POST /wake_up", func(w http.ResponseWriter, _ *http.Request) {
		s.SetSleepLevel(0)
		w.WriteHeader(http.StatusOK)
	})
	m.HandleFunc("GET /is_sleeping", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]bool{"is_sleeping": s.Knobs().SleepLevel > 0})
	})
}

func (s *Server) vllmSleep(w http.ResponseWriter, r *http.Request) {
	level := 1
	if v := r.URL.Query().Get("level"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 2 {
			// vLLM fails the int() and answers 500.
			s.serverError(w, http.StatusInternalServerError, "invalid sleep level "+strconv.Quote(v))
			return
		}
		level = n
	}
	s.SetSleepLevel(level)
	w.WriteHeader(http.StatusOK)
}

// vllmVersion returns the major and minor version vLLM reports, 0.0 when
// it does not parse.
func (s *Server) vllmVersion() (major, minor int) {
	parts := strings.SplitN(strings.TrimPrefix(s.Version(), "v"), ".", 3)
	if len(parts) < 2 {
		return 0, 0
	}
	major, _ = strconv.Atoi(parts[0])
	minor, _ = strconv.Atoi(parts[1])
	return major, minor
}

// sglangModel is the model SGLang serves.
const sglangModel = "aisim/tiny-sglang"

// SGLang's server: the OpenAI API plus its native /health,
// /health_generate (which runs one token of generation), /get_model_info,
// /get_server_info and /metrics (as with --enable-metrics).
func (s *Server) routesSGLang() {
	m := s.api
	m.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	s.inference("GET /health_generate", s.sglangHealthGenerate)
	m.HandleFunc("GET /get_model_info", func(w http.ResponseWriter, _ *http.Request) {
		id := s.mainModel()
		writeJSON(w, http.StatusOK, map[string]any{"model_path": id, "tokenizer_path": id, "is_generation": true,
			"preferred_sampling_params": nil, "weight_version": "default", "has_image_understanding": false,
			"has_audio_understanding": false, "model_type": "llama", "architectures": []string{"LlamaForCausalLM"}})
	})
	m.HandleFunc("GET /get_server_info", func(w http.ResponseWriter, _ *http.Request) {
		id := s.mainModel()
		writeJSON(w, http.StatusOK, map[string]any{"model_path": id, "served_model_name": id, "version": s.Version(),
			"max_running_requests": s.Knobs().slots(), "context_length": 4096, "enable_metrics": !s.Knobs().MetricsOff})
	})
	m.HandleFunc("GET /version", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"version": s.Version()})
	})
	m.HandleFunc("GET /metrics", s.promMetrics)
}

// sglangHealthGenerate generates one token, as SGLang's does, and answers
// 200 with no body once it is out.
func (s *Server) sglangHealthGenerate(w http.ResponseWriter, r *http.Request) {
	j := s.begin(w, r, s.mainModel(), 1)
	if j == nil {
		return
	}
	if err := j.generate(reply[:1], nil); err != nil {
		j.stop(w, err)
		return
	}
	j.end(outcomeLength)
	w.WriteHeader(http.StatusOK)
}
