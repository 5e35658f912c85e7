package aisim

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"

	"github.com/vitals-dev/vitals/probes"
)

// getKnobs serves GET /aisim/knobs.
func (s *Server) getKnobs(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Knobs())
}

// postKnobs merges the JSON object in the body into the knobs: fields not
// in the body keep their values; unknown fields are an error.
func (s *Server) postKnobs(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBody))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": err.Error()})
		return
	}
	var k Knobs
	var derr error
	err = s.Update(func(cur *Knobs) {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		next := *cur
		if derr = dec.Decode(&next); derr == nil {
			*cur = next
		}
		k = *cur
	})
	if err == nil {
		err = derr
	}
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "knobs: " + strings.TrimPrefix(err.Error(), "aisim: knobs: ")})
		return
	}
	writeJSON(w, http.StatusOK, k)
}

func (s *Server) deleteKnobs(w http.ResponseWriter, _ *http.Request) {
	_ = s.SetKnobs(s.cfg.Knobs)
	writeJSON(w, http.StatusOK, s.Knobs())
}

// postReload starts a loading phase (Reload).
func (s *Server) postReload(w http.ResponseWriter, _ *http.Request) {
	s.Reload()
	writeJSON(w, http.StatusOK, s.Stats())
}

// Stats are counters the server keeps about itself.
type Stats struct {
	Kind             probes.Kind `json:"kind"`
	Version          string      `json:"version"`
	Model            string      `json:"model"`
	Requests         int64       `json:"requests"`
	PromptTokens     int64       `json:"prompt_tokens"`
	CompletionTokens int64       `json:"completion_tokens"`
	// Running and Waiting are the requests in a slot and in the queue.
	Running int  `json:"running"`
	Waiting int  `json:"waiting"`
	Loading bool `json:"loading"`
	// RouterLoads and RouterWakes count the model loads and wakes that
	// clients of a llama.cpp router caused (llamarouter.go).
	RouterLoads int64 `json:"router_loads,omitempty"`
	RouterWakes int64 `json:"router_wakes,omitempty"`
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	st := Stats{Kind: s.cfg.Kind, Version: s.Version(), Model: s.mainModel(), Requests: s.reqs.Load(), Loading: s.Loading()}
	s.mu.Lock()
	defer s.mu.Unlock()
	st.PromptTokens, st.CompletionTokens = s.promptTokens, s.genTokens
	st.Running, st.Waiting = len(s.slotJobs), s.waiting
	if s.router != nil {
		st.RouterLoads, st.RouterWakes = s.router.loads, s.router.wakes
	}
	return st
}

func (s *Server) getStats(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Stats())
}
