package aisim

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"net/http"
	"strings"
	"time"
)

// reply is the text every model answers with, one token per entry.
var reply = []string{"Hello", " from", " aisim", ",", " a", " simulated", " AI", " server", "."}

// generate returns the tokens of an answer with at most maxTokens tokens
// (0 or less means no limit) and the finish reason.
func generate(maxTokens int) ([]string, string) {
	if maxTokens > 0 && maxTokens < len(reply) {
		return reply[:maxTokens], "length"
	}
	return reply, "stop"
}

// endless calls next with the tokens of an answer that never ends, one
// after another, until next returns false.
func endless(next func(string) bool) {
	for i := 0; ; i++ {
		if !next(reply[i%len(reply)]) {
			return
		}
	}
}

// countTokens is the simulated tokenizer: one token per word, at least one.
func countTokens(texts ...string) int {
	n := 0
	for _, t := range texts {
		n += len(strings.Fields(t))
	}
	return max(n, 1)
}

// embedDim is the length of simulated embeddings.
const embedDim = 16

// embed returns a deterministic unit vector for text.
func embed(text string) []float64 {
	v := make([]float64, embedDim)
	var norm float64
	for i := range v {
		h := fnv.New64a()
		fmt.Fprintf(h, "%d:%s", i, text)
		x := float64(h.Sum64()%20001)/10000 - 1 // [-1, 1]
		v[i] = x
		norm += x * x
	}
	norm = math.Sqrt(norm)
	if norm == 0 {
		v[0], norm = 1, 1
	}
	for i := range v {
		v[i] = math.Round(v[i]/norm*1e6) / 1e6
	}
	return v
}

// score returns a deterministic relevance in [0, 1) of text to query:
// the share of the query's words found in text.
func score(query, text string) float64 {
	qs := strings.Fields(strings.ToLower(query))
	if len(qs) == 0 {
		return 0
	}
	t := strings.ToLower(text)
	hit := 0
	for _, q := range qs {
		if strings.Contains(t, q) {
			hit++
		}
	}
	return math.Round(float64(hit)/float64(len(qs)+1)*1e6) / 1e6
}

// stream writes one chunk at a time with the slow-first-token delay
// before the first and the token interval between the others, flushing
// after each. write writes one chunk. It returns false when the client
// went away or the server closed (the connection is then dropped).
type stream struct {
	s     *Server
	w     http.ResponseWriter
	rc    *http.ResponseController
	ctx   context.Context
	first bool
}

func (s *Server) newStream(w http.ResponseWriter, r *http.Request, contentType string) *stream {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	s.active.Add(1)
	return &stream{s: s, w: w, rc: rc, ctx: r.Context(), first: true}
}

func (st *stream) done() { st.s.active.Add(-1) }

// pause waits before the next chunk.
func (st *stream) pause() bool {
	k := st.s.Knobs()
	d := time.Duration(k.TokenInterval)
	if st.first {
		d = time.Duration(k.SlowFirstToken)
		st.first = false
	}
	if err := st.s.wait(st.ctx, d); err != nil {
		st.s.ended(st.w, err)
		return false
	}
	return true
}

// sse writes one server-sent event with a JSON payload (or the raw string
// [DONE]).
func (st *stream) sse(v any) bool {
	if !st.pause() {
		return false
	}
	var b []byte
	if s, ok := v.(string); ok {
		b = []byte(s)
	} else {
		var err error
		if b, err = json.Marshal(v); err != nil {
			return false
		}
	}
	if _, err := fmt.Fprintf(st.w, "data: %s\n\n", b); err != nil {
		return false
	}
	return st.rc.Flush() == nil
}

// ndjson writes one JSON line.
func (st *stream) ndjson(v any) bool {
	if !st.pause() {
		return false
	}
	b, err := json.Marshal(v)
	if err != nil {
		return false
	}
	b = append(b, '\n')
	if _, err := st.w.Write(b); err != nil {
		return false
	}
	return st.rc.Flush() == nil
}
