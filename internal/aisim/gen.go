package aisim

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"net/http"
	"strings"
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

// errEmit is what generate returns when the client stopped reading.
var errEmit = errors.New("aisim: client stopped reading")

// generate makes the tokens of toks one at a time (job.next) and emits
// each; it returns nil when all were made and emitted.
func (j *job) generate(toks []string, emit func(string) bool) error {
	for _, t := range toks {
		if err := j.next(); err != nil {
			return err
		}
		if emit != nil && !emit(t) {
			return errEmit
		}
	}
	return nil
}

// endless makes tokens that never end, emitting each, until the client
// goes away or the server closes; it always returns an error.
func (j *job) endless(emit func(string) bool) error {
	for i := 0; ; i++ {
		if err := j.next(); err != nil {
			return err
		}
		if !emit(reply[i%len(reply)]) {
			return errEmit
		}
	}
}

// stream writes one chunk at a time, flushing after each. Its headers go
// out with the first chunk, as a real server sends them with its first
// token.
type stream struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	ctype   string
	started bool
}

func newStream(w http.ResponseWriter, contentType string) *stream {
	return &stream{w: w, rc: http.NewResponseController(w), ctype: contentType}
}

func (st *stream) head() {
	if st.started {
		return
	}
	st.started = true
	st.w.Header().Set("Content-Type", st.ctype)
	st.w.Header().Set("Cache-Control", "no-cache")
	st.w.WriteHeader(http.StatusOK)
}

// sse writes one server-sent event with a JSON payload (or the raw string
// [DONE]).
func (st *stream) sse(v any) bool {
	var b []byte
	if s, ok := v.(string); ok {
		b = []byte(s)
	} else {
		var err error
		if b, err = json.Marshal(v); err != nil {
			return false
		}
	}
	st.head()
	if _, err := fmt.Fprintf(st.w, "data: %s\n\n", b); err != nil {
		return false
	}
	return st.rc.Flush() == nil
}

// ndjson writes one JSON line.
func (st *stream) ndjson(v any) bool {
	b, err := json.Marshal(v)
	if err != nil {
		return false
	}
	st.head()
	b = append(b, '\n')
	if _, err := st.w.Write(b); err != nil {
		return false
	}
	return st.rc.Flush() == nil
}
