package aisim

import (
	"context"
	"crypto/subtle"
	"net/http"
	"strings"
	"time"

	"github.com/vitals-dev/vitals/probes"
)

// The loading phase and the API key, answered as each engine does.
//
// Loading: llama.cpp listens while it loads and answers 503 "Loading
// model" to everything but its model lists (tools/server's
// middleware_server_state). vLLM, TGI, TEI, SGLang and Triton open their
// port only once the model is loaded, so a client sees its connection
// refused: Server.Listen serves it that way, closing the port while it
// loads; cmd/aisim opens its port once the start-up load is over
// (WaitLoaded); a Server served on a listener of its own (httptest) resets
// the connections instead.
// Ollama has no loading phase of its own: its models load on demand, each
// taking Knobs.LoadTime.
//
// API key, with the endpoints each engine leaves open:
//   - llama.cpp --api-key: all but /health, /v1/health, /models,
//     /v1/models, /api/tags and /; the key may come as "Authorization:
//     Bearer <key>", a bare Authorization value or X-Api-Key; 401
//     {"error":{"code":401,"message":"Invalid API Key","type":"authentication_error"}}.
//     Loading is answered first, so a loading server says 503 to all.
//   - vLLM --api-key: only paths under /v1, bearer scheme in any case; 401
//     {"error":"Unauthorized"}.
//   - TGI --api-key: its generation routes (/, /generate, /generate_stream,
//     /v1/chat/completions, /v1/completions, /tokenize, ...) but not /info,
//     /health, /ping, /metrics, /v1/models or GET /; the header compared
//     case-insensitively; 401 with no body.
//   - TEI --api-key: all but /health, GET /, /ping and /metrics; 401 with
//     no body.
//   - SGLang --api-key: all but paths under /health and /metrics; 401
//     {"error":"Unauthorized"}.
//   - openai, ollama, kserve (no key of their own; a gateway in front):
//     every endpoint.

// loading reports whether the server is in its loading phase.
func (s *Server) loading(k Knobs) bool {
	if s.cfg.Kind == probes.KindOllama {
		return false
	}
	s.mu.Lock()
	until := s.loadUntil
	s.mu.Unlock()
	return k.Loading || time.Now().Before(until)
}

// Loading reports whether the server is loading its model now.
func (s *Server) Loading() bool { return s.loading(s.Knobs()) }

// Reload starts a loading phase of Knobs.LoadTime from now, as a server
// restarting or reloading its model; for Ollama it unloads every model.
func (s *Server) Reload() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.Kind == probes.KindOllama {
		clear(s.ollama)
	} else {
		s.loadUntil = time.Now().Add(time.Duration(s.knobs.LoadTime))
	}
	s.notifyLocked()
}

// WaitLoaded waits until the loading phase is over, ctx ends or the server
// closes.
func (s *Server) WaitLoaded(ctx context.Context) error {
	for {
		k := s.Knobs()
		if !s.loading(k) {
			return nil
		}
		s.mu.Lock()
		ch := s.changedLocked()
		left := time.Until(s.loadUntil)
		s.mu.Unlock()
		if left <= 0 {
			left = time.Hour // held by the knob: until the next change
		}
		t := time.NewTimer(left)
		select {
		case <-ch:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-s.done:
			t.Stop()
			return ErrClosed
		}
		t.Stop()
	}
}

// gate answers a request that the loading phase or a missing API key
// stops, as the kind does; it reports whether the request may go on.
func (s *Server) gate(w http.ResponseWriter, r *http.Request, k Knobs) bool {
	if s.loading(k) {
		if s.cfg.Kind != probes.KindLlamaCpp {
			abort(w)
			return false
		}
		if !s.llamaLoading(w, r) {
			return false
		}
	}
	if k.APIKey == "" || s.openPath(r) || s.authorized(r, k.APIKey) {
		return true
	}
	switch s.cfg.Kind {
	case probes.KindLlamaCpp:
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": map[string]any{"code": 401, "message": "Invalid API Key", "type": "authentication_error"}})
	case probes.KindVLLM, KindSGLang:
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "Unauthorized"})
	case probes.KindTGI, probes.KindTEI:
		w.WriteHeader(http.StatusUnauthorized)
	case probes.KindOpenAI:
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": map[string]any{"message": "Incorrect API key provided.",
			"type": "invalid_request_error", "param": nil, "code": "invalid_api_key"}})
	default:
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "unauthorized"})
	}
	return false
}

// openPath reports whether the kind answers r without its API key.
func (s *Server) openPath(r *http.Request) bool {
	p := r.URL.Path
	switch s.cfg.Kind {
	case probes.KindLlamaCpp:
		switch p {
		case "/health", "/v1/health", "/models", "/v1/models", "/api/tags", "/":
			return true
		}
	case probes.KindVLLM:
		return !strings.HasPrefix(p, "/v1")
	case probes.KindTGI:
		switch p {
		case "/chat_tokenize", "/info", "/health", "/ping", "/metrics", "/v1/models":
			return true
		case "/":
			return r.Method == http.MethodGet
		}
	case probes.KindTEI:
		switch p {
		case "/health", "/ping", "/metrics":
			return true
		case "/":
			return r.Method == http.MethodGet
		}
	case KindSGLang:
		return strings.HasPrefix(p, "/health") || strings.HasPrefix(p, "/metrics")
	}
	return false
}

// authorized reports whether r carries key the way the kind reads it.
func (s *Server) authorized(r *http.Request, key string) bool {
	h := r.Header.Get("Authorization")
	same := func(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }
	switch s.cfg.Kind {
	case probes.KindLlamaCpp:
		if h == "" {
			h = r.Header.Get("X-Api-Key")
		}
		return same(strings.TrimPrefix(h, "Bearer "), key)
	case probes.KindVLLM:
		scheme, param, _ := strings.Cut(h, " ")
		return strings.EqualFold(scheme, "bearer") && same(param, key)
	case probes.KindTGI:
		return same(strings.ToLower(h), strings.ToLower("Bearer "+key))
	}
	return same(h, "Bearer "+key)
}
