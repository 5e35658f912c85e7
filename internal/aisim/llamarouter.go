package aisim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// llama.cpp's router mode (tools/server/server-models.cpp): a llama-server
// started with --models-dir or --models-preset and no --model serves
// several models, each in a child process it starts on demand. Config.Router
// turns it on for kind llamacpp. What the router does, and aisim with it:
//
//   - GET /models and /v1/models list every model with a status object,
//     {"value": "unloaded" | "loading" | "loaded" | "sleeping", "args": the
//     child's command line}, plus "exit_code" and "failed" after a child
//     exited with an error; they load nothing. GET /health and GET /props
//     without ?model= are the router's own ({"role": "router", ...}).
//   - Every other endpoint is proxied to the model the request names: the
//     body's "model" of a POST, ?model= of a GET (/props?model=, /slots,
//     /metrics). No name is a 400 "model name is missing from the request",
//     an unknown one a 400 "model '<name>' not found".
//   - With autoload (the default; Config.NoModelsAutoload is
//     --no-models-autoload; a request's ?autoload=true|false overrides it),
//     a request naming an unloaded model loads it (Knobs.LoadTime) and waits
//     for the load; one naming a loading model waits for it. Without
//     autoload, a model that is not running is a 400 "model is not loaded".
//     A request reaching a loading child (autoload off) is its 503 "Loading
//     model"; one reaching a sleeping child wakes it.
//   - POST /models/load and /models/unload load and unload a model, as an
//     operator does.
//
// Every load and every wake is counted (RouterLoads, RouterWakes), so a
// test can see that the probes caused none. The engine behind the models
// (slots, queue, counters) is the one of the Server: every model's /metrics
// and /slots show it.

// RouterModel is one model of a llama.cpp router, with its status at start.
type RouterModel struct {
	Name string `json:"name"`
	// Status is "unloaded" (the default), "loading", "loaded" or
	// "sleeping".
	Status string `json:"status,omitempty"`
}

// ParseRouterModels reads a router's models from "name[=status],...", as
// cmd/aisim's --router-models gives them ("a=loaded,b,c=sleeping").
func ParseRouterModels(s string) ([]RouterModel, error) {
	var ms []RouterModel
	for _, f := range strings.Split(s, ",") {
		name, status, _ := strings.Cut(strings.TrimSpace(f), "=")
		if name == "" {
			return nil, fmt.Errorf("router models %q: a model without a name", s)
		}
		ms = append(ms, RouterModel{Name: name, Status: status})
	}
	return ms, nil
}

// The statuses a router model may be given.
const (
	RouterUnloaded = "unloaded"
	RouterLoading  = "loading"
	RouterLoaded   = "loaded"
	RouterSleeping = "sleeping"
)

// llamaRouter is the router's state, guarded by Server.mu.
type llamaRouter struct {
	models       []*routerModel
	loads, wakes int64
}

type routerModel struct {
	name     string
	status   string
	readyAt  time.Time // a load in progress ends then
	exitCode int
	port     int
}

// newLlamaRouter returns the router of ms; a model loading at start is
// loaded after load.
func newLlamaRouter(ms []RouterModel, load time.Duration) (*llamaRouter, error) {
	rt := &llamaRouter{}
	ready := time.Now().Add(load)
	for i, m := range ms {
		st := m.Status
		if st == "" {
			st = RouterUnloaded
		}
		switch {
		case m.Name == "":
			return nil, fmt.Errorf("router model %d has no name", i)
		case rt.find(m.Name) != nil:
			return nil, fmt.Errorf("router model %q given twice", m.Name)
		case !validRouterStatus(st):
			return nil, fmt.Errorf("router model %q: status %q: want unloaded, loading, loaded or sleeping", m.Name, m.Status)
		}
		rt.models = append(rt.models, &routerModel{name: m.Name, status: st, readyAt: ready, port: 39000 + i})
	}
	return rt, nil
}

func validRouterStatus(s string) bool {
	return slices.Contains([]string{RouterUnloaded, RouterLoading, RouterLoaded, RouterSleeping}, s)
}

func (rt *llamaRouter) find(name string) *routerModel {
	for _, m := range rt.models {
		if m.name == name {
			return m
		}
	}
	return nil
}

// stateLocked is m's status now: a load whose time is up has ended.
func (m *routerModel) stateLocked(now time.Time) string {
	if m.status == RouterLoading && !now.Before(m.readyAt) {
		m.status = RouterLoaded
	}
	return m.status
}

// RouterStatus returns the status of the router's model name, "" when the
// server is no router or has no such model.
func (s *Server) RouterStatus(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.router == nil {
		return ""
	}
	m := s.router.find(name)
	if m == nil {
		return ""
	}
	return m.stateLocked(time.Now())
}

// SetRouterStatus sets the status of the router's model name, as the
// router would on its own (a child going to sleep after
// --sleep-idle-seconds, a load by another client, an unload): "loading"
// starts a load of Knobs.LoadTime. It counts neither as a load nor a wake.
func (s *Server) SetRouterStatus(name, status string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.router == nil {
		return fmt.Errorf("aisim: not a llama.cpp router")
	}
	m := s.router.find(name)
	switch {
	case m == nil:
		return fmt.Errorf("aisim: router has no model %q", name)
	case !validRouterStatus(status):
		return fmt.Errorf("aisim: router status %q: want unloaded, loading, loaded or sleeping", status)
	}
	m.status, m.exitCode = status, 0
	if status == RouterLoading {
		m.readyAt = time.Now().Add(time.Duration(s.knobs.LoadTime))
	}
	s.notifyLocked()
	return nil
}

// RouterLoads returns how many model loads the router's clients caused:
// requests naming an unloaded model with autoload on, and POST
// /models/load.
func (s *Server) RouterLoads() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.router == nil {
		return 0
	}
	return s.router.loads
}

// RouterWakes returns how many times a request woke a sleeping model.
func (s *Server) RouterWakes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.router == nil {
		return 0
	}
	return s.router.wakes
}

// routerSimModels is the router's models as the OpenAI-family code sees
// them.
func (s *Server) routerSimModels() []simModel {
	s.mu.Lock()
	defer s.mu.Unlock()
	ms := make([]simModel, len(s.router.models))
	for i, m := range s.router.models {
		ms[i] = simModel{id: m.name, ctx: 2048, size: 538880}
	}
	return ms
}

func (s *Server) routesLlamaRouter() {
	m := s.api
	m.HandleFunc("GET /models", s.routerModels)
	m.HandleFunc("GET /v1/models", s.routerModels)
	m.HandleFunc("GET /health", s.llamaHealth)
	m.HandleFunc("GET /v1/health", s.llamaHealth)
	m.HandleFunc("GET /props", s.routerProps)
	m.HandleFunc("GET /slots", s.routerGet(s.llamaSlots))
	m.HandleFunc("GET /metrics", s.routerGet(s.llamaMetrics))
	for _, p := range []string{"/v1/chat/completions", "/chat/completions"} {
		s.inference("POST "+p, s.routerPost(s.chatCompletions))
	}
	for _, p := range []string{"/v1/completions", "/completions"} {
		s.inference("POST "+p, s.routerPost(s.completions))
	}
	for _, p := range []string{"/v1/embeddings", "/embeddings"} {
		s.inference("POST "+p, s.routerPost(s.embeddings))
	}
	for _, p := range []string{"/rerank", "/reranking", "/v1/rerank", "/v1/reranking"} {
		s.inference("POST "+p, s.routerPost(s.llamaRerank))
	}
	m.HandleFunc("POST /models/load", s.routerLoad)
	m.HandleFunc("POST /models/unload", s.routerUnload)
}

// routerModels answers GET /models in get_router_models' shape.
func (s *Server) routerModels(w http.ResponseWriter, _ *http.Request) {
	now := time.Now()
	s.mu.Lock()
	data := make([]map[string]any, 0, len(s.router.models))
	for _, m := range s.router.models {
		status := map[string]any{"value": m.stateLocked(now),
			"args": []string{"llama-server", "--host", "127.0.0.1", "--port", strconv.Itoa(m.port), "--alias", m.name,
				"--model", "/models/" + m.name + ".gguf"}}
		if m.status == RouterUnloaded && m.exitCode != 0 {
			status["exit_code"], status["failed"] = m.exitCode, true
		}
		data = append(data, map[string]any{"id": m.name, "aliases": []string{}, "tags": []string{}, "object": "model",
			"owned_by": "llamacpp", "created": s.created.Unix(), "status": status,
			"architecture": map[string]any{"input_modalities": []string{"text"}, "output_modalities": []string{"text"}},
			"source":       "models_dir", "can_remove": false})
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"data": data, "object": "list"})
}

// routerProps answers GET /props: the router's own without ?model=, the
// named model's with it.
func (s *Server) routerProps(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("model") == "" {
		writeJSON(w, http.StatusOK, map[string]any{"role": "router", "max_instances": 4, "models_autoload": !s.cfg.NoModelsAutoload,
			"model_alias": "llama-server", "model_path": "none",
			"default_generation_settings": map[string]any{"params": map[string]any{}, "n_ctx": 0},
			"ui_settings":                 map[string]any{}, "build_info": s.Version(), "cors_proxy_enabled": false})
		return
	}
	s.routerGet(s.llamaProps)(w, r)
}

// routerGet proxies a GET to the model ?model= names.
func (s *Server) routerGet(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.routerAdmit(w, r, r.URL.Query().Get("model")) {
			h(w, r)
		}
	}
}

// routerPost proxies a POST to the model its body names.
func (s *Server) routerPost(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBody))
		var req struct {
			Model string `json:"model"`
		}
		if err == nil {
			err = json.Unmarshal(bytes.TrimSpace(b), &req)
		}
		if err != nil {
			s.serverError(w, http.StatusInternalServerError, "bad request body: "+err.Error())
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(b))
		if s.routerAdmit(w, r, req.Model) {
			h(w, r)
		}
	}
}

// routerAdmit is router_validate_model and ensure_model_ready: it reports
// whether the request may reach the model name, loading or waking it as
// the router does, and answers it otherwise.
func (s *Server) routerAdmit(w http.ResponseWriter, r *http.Request, name string) bool {
	if name == "" {
		s.serverError(w, http.StatusBadRequest, "model name is missing from the request")
		return false
	}
	autoload := !s.cfg.NoModelsAutoload
	if v := r.URL.Query().Get("autoload"); v != "" {
		autoload = v == "true" || v == "1"
	}
	for {
		s.mu.Lock()
		m := s.router.find(name)
		if m == nil {
			s.mu.Unlock()
			s.serverError(w, http.StatusBadRequest, fmt.Sprintf("model '%s' not found", name))
			return false
		}
		var left time.Duration
		switch st := m.stateLocked(time.Now()); {
		case st == RouterLoaded:
			s.mu.Unlock()
			return true
		case st == RouterSleeping:
			// The child wakes for the request.
			m.status = RouterLoaded
			s.router.wakes++
			s.notifyLocked()
			s.mu.Unlock()
			return true
		case st == RouterUnloaded && !autoload:
			s.mu.Unlock()
			s.serverError(w, http.StatusBadRequest, "model is not loaded")
			return false
		case st == RouterLoading && !autoload:
			s.mu.Unlock()
			s.llamaLoading(w, r)
			return false
		case st == RouterUnloaded:
			s.startLoadLocked(m)
		}
		left = time.Until(m.readyAt)
		s.mu.Unlock()
		if err := s.wait(r.Context(), max(left, time.Millisecond)); err != nil {
			s.ended(w, err)
			return false
		}
	}
}

// startLoadLocked starts loading m, counted as a load.
func (s *Server) startLoadLocked(m *routerModel) {
	m.status, m.exitCode = RouterLoading, 0
	m.readyAt = time.Now().Add(time.Duration(s.knobs.LoadTime))
	s.router.loads++
	s.notifyLocked()
}

// routerLoad is POST /models/load {"model": name}.
func (s *Server) routerLoad(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Model string `json:"model"`
	}
	if !s.readJSON(w, r, &req) {
		return
	}
	s.mu.Lock()
	m := s.router.find(req.Model)
	switch {
	case m == nil:
		s.mu.Unlock()
		s.serverError(w, http.StatusNotFound, "model is not found")
		return
	case m.stateLocked(time.Now()) != RouterUnloaded:
		s.mu.Unlock()
		s.serverError(w, http.StatusBadRequest, "model is already running")
		return
	}
	s.startLoadLocked(m)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"success": true})
}

// routerUnload is POST /models/unload {"model": name}.
func (s *Server) routerUnload(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Model string `json:"model"`
	}
	if !s.readJSON(w, r, &req) {
		return
	}
	s.mu.Lock()
	m := s.router.find(req.Model)
	switch {
	case m == nil:
		s.mu.Unlock()
		s.serverError(w, http.StatusBadRequest, "model is not found")
		return
	case m.stateLocked(time.Now()) == RouterUnloaded:
		s.mu.Unlock()
		s.serverError(w, http.StatusBadRequest, "model is not running")
		return
	}
	m.status = RouterUnloaded
	s.notifyLocked()
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"success": true})
}
