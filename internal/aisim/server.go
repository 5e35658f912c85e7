package aisim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vitals-dev/vitals/probes"
)

// Config describes the simulated server.
type Config struct {
	// Kind is the server kind to simulate; it must be concrete (not auto
	// or unknown).
	Kind probes.Kind
	// Version is the reported version; empty means the kind's default.
	Version string
	// ModelType picks the model for kinds that serve one of several: for
	// tei "embedding" (default), "classifier" or "reranker"; for llamacpp
	// "embedding" starts it as an embedding server, like --embeddings.
	ModelType string
	// Seed seeds the random numbers behind jitter and the error rate.
	Seed uint64
	// Knobs are the knobs at start.
	Knobs Knobs
	// Created is the time the server reports for model creation and
	// responses; zero means a fixed time, so bodies are deterministic.
	Created time.Time
	// Router, for kind llamacpp, runs the server as llama.cpp's router
	// over these models, each with its own status (llamarouter.go).
	Router []RouterModel
	// NoModelsAutoload is the router's --no-models-autoload: a request
	// naming a model that is not loaded is refused, not loaded.
	NoModelsAutoload bool
}

// DefaultVersion returns the version a kind reports by default.
func DefaultVersion(k probes.Kind) string {
	switch k {
	case probes.KindLlamaCpp:
		return "b1-aisim"
	case probes.KindVLLM:
		return "0.6.3"
	case probes.KindOllama:
		return "0.24.0"
	case probes.KindTGI:
		return "3.0.1"
	case probes.KindTEI:
		return "1.5.0"
	case probes.KindKServe:
		return "2.50.0"
	case KindSGLang:
		return "0.5.5"
	}
	return "aisim-1.0.0"
}

// ErrClosed is returned by waits that end because the server closed.
var ErrClosed = errors.New("aisim: server closed")

// KindSGLang is SGLang, which the probes package does not know as a kind
// of its own (it speaks the OpenAI API); aisim simulates its native
// endpoints and metrics.
const KindSGLang probes.Kind = "sglang"

// Kinds returns every kind the simulator speaks.
func Kinds() []probes.Kind { return append(probes.Kinds(), KindSGLang) }

// Server is a simulated AI server; it is an http.Handler. Its methods are
// safe for concurrent use.
type Server struct {
	cfg     Config
	created time.Time
	started time.Time
	api     *http.ServeMux
	control *http.ServeMux
	infer   map[string]bool // patterns of inference endpoints
	genHist prometheus.Histogram
	bg      load

	mu        sync.Mutex
	knobs     Knobs
	changed   chan struct{} // closed and replaced on every state change
	rng       *rand.Rand
	loadUntil time.Time // the start-up or reload phase ends then
	done      chan struct{}
	closed    bool
	// The engine's state and counters (sched.go).
	slotJobs     map[int]*job
	waiting      int
	waitingBy    map[string]int
	promptTokens int64
	genTokens    int64
	genSeconds   float64
	outcomes     map[outcomeKey]int64
	durationUS   map[string]int64
	ollama       map[string]*ollamaRunner // ollama: loaded models by name
	router       *llamaRouter             // llama.cpp in router mode

	reqs atomic.Int64
	seq  atomic.Int64
}

// New returns a Server for cfg. A Config with Knobs.LoadTime starts in
// its loading phase, as a real server does while it loads its model.
func New(cfg Config) (*Server, error) {
	switch cfg.Kind {
	case probes.KindOpenAI, probes.KindLlamaCpp, probes.KindVLLM, probes.KindOllama,
		probes.KindTGI, probes.KindTEI, probes.KindKServe, KindSGLang:
	default:
		return nil, fmt.Errorf("aisim: kind %q: want one of openai, llamacpp, vllm, ollama, tgi, tei, kserve, sglang", cfg.Kind)
	}
	switch {
	case cfg.Kind == probes.KindTEI && cfg.ModelType == "":
		cfg.ModelType = "embedding"
	case cfg.Kind == probes.KindTEI && cfg.ModelType != "embedding" && cfg.ModelType != "classifier" && cfg.ModelType != "reranker":
		return nil, fmt.Errorf("aisim: tei model type %q: want embedding, classifier or reranker", cfg.ModelType)
	case cfg.Kind == probes.KindLlamaCpp && cfg.ModelType != "" && cfg.ModelType != "embedding" && cfg.ModelType != "reranker" && cfg.ModelType != "chat":
		return nil, fmt.Errorf("aisim: llamacpp model type %q: want chat, embedding (--embeddings) or reranker (--reranking)", cfg.ModelType)
	}
	if err := cfg.Knobs.Validate(); err != nil {
		return nil, fmt.Errorf("aisim: knobs: %w", err)
	}
	var router *llamaRouter
	if len(cfg.Router) > 0 {
		if cfg.Kind != probes.KindLlamaCpp || cfg.ModelType != "" {
			return nil, fmt.Errorf("aisim: router mode is llama.cpp's, without a model type (kind %s, model type %q)", cfg.Kind, cfg.ModelType)
		}
		var err error
		if router, err = newLlamaRouter(cfg.Router, time.Duration(cfg.Knobs.LoadTime)); err != nil {
			return nil, fmt.Errorf("aisim: %w", err)
		}
	}
	if cfg.Version == "" {
		cfg.Version = DefaultVersion(cfg.Kind)
	}
	s := &Server{
		cfg:        cfg,
		created:    cfg.Created,
		started:    time.Now(),
		api:        http.NewServeMux(),
		control:    http.NewServeMux(),
		infer:      map[string]bool{},
		knobs:      cfg.Knobs,
		changed:    make(chan struct{}),
		rng:        rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		done:       make(chan struct{}),
		slotJobs:   map[int]*job{},
		waitingBy:  map[string]int{},
		outcomes:   map[outcomeKey]int64{},
		durationUS: map[string]int64{},
		ollama:     map[string]*ollamaRunner{},
		router:     router,
	}
	if s.created.IsZero() {
		s.created = time.Unix(1795332313, 0).UTC()
	}
	if cfg.Knobs.LoadTime > 0 && cfg.Kind != probes.KindOllama && router == nil {
		s.loadUntil = time.Now().Add(time.Duration(cfg.Knobs.LoadTime))
	}
	s.control.HandleFunc("GET /aisim/knobs", s.getKnobs)
	s.control.HandleFunc("POST /aisim/knobs", s.postKnobs)
	s.control.HandleFunc("DELETE /aisim/knobs", s.deleteKnobs)
	s.control.HandleFunc("GET /aisim/stats", s.getStats)
	s.control.HandleFunc("POST /aisim/reload", s.postReload)
	switch cfg.Kind {
	case probes.KindOpenAI, probes.KindLlamaCpp, probes.KindVLLM, KindSGLang:
		s.routesOpenAI()
	case probes.KindOllama:
		s.routesOllama()
	case probes.KindTGI, probes.KindTEI:
		s.routesHF()
	case probes.KindKServe:
		s.routesKServe()
	}
	if cfg.Kind == probes.KindTGI {
		s.genHist = newGeneratedTokensHistogram()
	}
	s.reconcileLoad()
	return s, nil
}

// inference registers an inference endpoint: its requests are work, and
// injected errors on it count as failed requests in the metrics.
func (s *Server) inference(pattern string, h http.HandlerFunc) {
	s.infer[pattern] = true
	s.api.HandleFunc(pattern, h)
}

// Kind returns the simulated kind.
func (s *Server) Kind() probes.Kind { return s.cfg.Kind }

// Requests returns how many API requests (not /aisim/) the server has
// received.
func (s *Server) Requests() int64 { return s.reqs.Load() }

// Close ends every hang, wait and background job in progress (their
// connections are reset) and makes the server reset every later API
// request. It is safe to call more than once.
func (s *Server) Close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.done)
	}
	s.mu.Unlock()
	s.reconcileLoad()
	s.bg.wg.Wait()
}

// ServeHTTP serves /aisim/ control requests as they are and API requests
// through the knobs: down, latency, hang, the loading phase and the API
// key (gate.go), the error rate, redirects, drip and garbage.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/aisim/") {
		s.control.ServeHTTP(w, r)
		return
	}
	s.reqs.Add(1)
	select {
	case <-s.done:
		abort(w)
		return
	default:
	}
	k := s.Knobs()
	if k.Down {
		abort(w)
		return
	}
	if err := s.wait(r.Context(), s.latency(k)); err != nil {
		s.ended(w, err)
		return
	}
	if k.Hang {
		s.ended(w, s.hang(r.Context()))
		return
	}
	if !s.gate(w, r, k) {
		return
	}
	if k.ErrorRate > 0 && s.chance(k.ErrorRate) {
		if _, pattern := s.api.Handler(r); s.infer[pattern] {
			s.record(s.mainModel(), outcomeError)
		}
		s.serverError(w, http.StatusInternalServerError, "aisim: injected error")
		return
	}
	if k.RedirectTo != "" {
		http.Redirect(w, r, strings.TrimRight(k.RedirectTo, "/")+r.URL.RequestURI(), http.StatusTemporaryRedirect)
		return
	}
	if k.Drip > 0 {
		dw := &dripWriter{s: s, w: w, ctx: r.Context(), every: time.Duration(k.Drip)}
		defer dw.flush()
		w = dw
	}
	if k.Garbage {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(garbage)
		return
	}
	s.api.ServeHTTP(w, r)
}

// garbage is what a server with the garbage knob sends.
var garbage = []byte("\x00\x1b<html>{{garbage \xff\xfe not the protocol you are looking for]]")

func (s *Server) latency(k Knobs) time.Duration {
	d := time.Duration(k.Latency)
	if k.Jitter > 0 {
		s.mu.Lock()
		d += time.Duration(s.rng.Int64N(int64(k.Jitter)))
		s.mu.Unlock()
	}
	return d
}

func (s *Server) chance(p float64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rng.Float64() < p
}

// wait waits d, or until ctx ends or the server closes.
func (s *Server) wait(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.done:
		return ErrClosed
	}
}

// hang waits until ctx ends or the server closes.
func (s *Server) hang(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-s.done:
		return ErrClosed
	}
}

// ended finishes a request whose wait ended early: a closed server resets
// the connection; a gone client needs nothing.
func (s *Server) ended(w http.ResponseWriter, err error) {
	if errors.Is(err, ErrClosed) {
		abort(w)
	}
}

// begin admits an inference request for model as a job (sched.go). When
// it cannot, because the client went away or the server closed, it ends
// the answer and returns nil.
func (s *Server) begin(w http.ResponseWriter, r *http.Request, model string, prompt int) *job {
	if s.cfg.Kind == probes.KindOllama {
		return s.beginOllama(w, r, model, prompt, nil)
	}
	j, err := s.admit(r.Context(), model, prompt)
	if err != nil {
		s.ended(w, err)
		s.record(model, outcomeAbort)
		return nil
	}
	return j
}

// stop ends a job that could not finish because of err (its client went
// away, or the server closed, which resets the connection).
func (j *job) stop(w http.ResponseWriter, err error) {
	j.s.ended(w, err)
	j.end(outcomeAbort)
}

// abort drops the connection without an answer: with an RST where it can
// hijack a TCP connection, else by aborting the handler.
func abort(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			if tc, ok := conn.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			_ = conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

// serverError writes an error in the kind's shape.
func (s *Server) serverError(w http.ResponseWriter, status int, msg string) {
	switch s.cfg.Kind {
	case probes.KindOpenAI, probes.KindLlamaCpp:
		typ := "server_error"
		if status < 500 {
			typ = "invalid_request_error"
		}
		writeJSON(w, status, map[string]any{"error": map[string]any{"code": status, "message": msg, "type": typ}})
	case probes.KindVLLM:
		writeJSON(w, status, map[string]any{"object": "error", "message": msg, "type": http.StatusText(status), "param": nil, "code": status})
	case probes.KindTGI, probes.KindTEI:
		writeJSON(w, status, map[string]any{"error": msg, "error_type": http.StatusText(status)})
	default:
		writeJSON(w, status, map[string]any{"error": msg})
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// maxRequestBody bounds request bodies.
const maxRequestBody = 1 << 20

// readJSON decodes the request body into v; on failure it writes a 400
// (500 on llama.cpp, as the real one does) and returns false.
func (s *Server) readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBody))
	if err == nil {
		err = json.Unmarshal(bytes.TrimSpace(b), v)
	}
	if err != nil {
		status := http.StatusBadRequest
		if s.cfg.Kind == probes.KindLlamaCpp {
			status = http.StatusInternalServerError
		}
		s.serverError(w, status, "bad request body: "+err.Error())
		return false
	}
	return true
}
