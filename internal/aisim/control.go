package aisim

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"

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
	s.mu.Lock()
	k := s.knobs
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	err = dec.Decode(&k)
	if err == nil {
		err = k.Validate()
	}
	if err == nil {
		s.knobs = k
	}
	s.mu.Unlock()
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "knobs: " + err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, k)
}

func (s *Server) deleteKnobs(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	s.knobs = s.cfg.Knobs
	k := s.knobs
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, k)
}

// Stats are counters the server keeps about itself.
type Stats struct {
	Kind             probes.Kind `json:"kind"`
	Version          string      `json:"version"`
	Requests         int64       `json:"requests"`
	PromptTokens     int64       `json:"prompt_tokens"`
	CompletionTokens int64       `json:"completion_tokens"`
	Active           int64       `json:"active"`
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	return Stats{
		Kind: s.cfg.Kind, Version: s.Version(), Requests: s.reqs.Load(),
		PromptTokens: s.prompt.Load(), CompletionTokens: s.predict.Load(), Active: s.active.Load(),
	}
}

func (s *Server) getStats(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Stats())
}
