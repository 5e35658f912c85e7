package aisim

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"time"

	"github.com/vitals-dev/vitals/probes"
)

// Ollama's model scheduler (server/sched.go), as far as a client can see
// it through /api/ps:
//
//   - A request for a model that is not loaded loads it, which takes
//     Knobs.LoadTime; with Knobs.MaxLoadedModels loaded already, the idle
//     one that expires first is unloaded to make room (the request waits
//     while none is idle).
//   - A request sets the model's keep-alive when it names one ("keep_alive":
//     seconds or a duration string; negative means forever, 0 means unload
//     when done) and keeps the one it had when it names none; a model
//     loaded by a request naming none gets OLLAMA_KEEP_ALIVE
//     (Knobs.KeepAlive, five minutes by default).
//   - While requests use it, a model stays loaded and its expires_at does
//     not move; when the last of them ends, expires_at becomes that moment
//     plus the keep-alive, and the model unloads then (keep-alive 0: at
//     once).
//   - /api/generate with an empty prompt (/api/chat with no messages) and
//     keep_alive 0 unloads the model at once ("done_reason": "unload");
//     with any other keep_alive it only loads it ("done_reason": "load").
//
// So no keep_alive value leaves expires_at where it was: every request
// that reaches a model, whatever its keep_alive, moves expires_at to its
// own end plus a keep-alive. The nearest is the time left (expires_at
// minus now), which still moves expires_at later by the request's length
// and, worse, becomes the keep-alive of every later request that names
// none. Only the endpoints that do not reach a model (/api/ps, /api/tags,
// /api/show, /api/version) leave it alone: a probe that must not change
// how long a model stays loaded can use those and nothing else.

// ollamaRunner is one loaded model (sched.go's runnerRef).
type ollamaRunner struct {
	model     string
	session   time.Duration // the keep-alive
	expiresAt time.Time     // zero while in use since its load
	loadedAt  time.Time     // its load ends then
	refs      int
}

// keepAlive is Ollama's api.Duration as keep_alive reads it.
type keepAlive struct{ d time.Duration }

func (k *keepAlive) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	switch t := v.(type) {
	case float64:
		k.d = time.Duration(t * float64(time.Second))
		if t < 0 {
			k.d = math.MaxInt64
		}
	case string:
		d, err := time.ParseDuration(t)
		if err != nil {
			return err
		}
		k.d = d
		if d < 0 {
			k.d = math.MaxInt64
		}
	default:
		return fmt.Errorf("Unsupported type: '%T'", v)
	}
	return nil
}

// defaultKeepAliveLocked is OLLAMA_KEEP_ALIVE as Ollama reads it.
func (s *Server) defaultKeepAliveLocked() time.Duration {
	switch d := time.Duration(s.knobs.KeepAlive); {
	case d == 0:
		return 5 * time.Minute
	case d < 0:
		return math.MaxInt64
	default:
		return d
	}
}

// expireLocked unloads the models whose keep-alive has run out.
func (s *Server) expireLocked(now time.Time) {
	for name, rn := range s.ollama {
		if rn.refs == 0 && !rn.expiresAt.IsZero() && !now.Before(rn.expiresAt) {
			delete(s.ollama, name)
		}
	}
}

// ollamaAcquire finds model loaded, or loads it, for one request with
// keep (nil: the request names no keep_alive), and holds it until
// ollamaRelease.
func (s *Server) ollamaAcquire(ctx context.Context, model string, keep *keepAlive) (*ollamaRunner, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		s.expireLocked(time.Now())
		if rn := s.ollama[model]; rn != nil {
			if keep != nil {
				rn.session = keep.d
			}
			rn.refs++
			rn.expiresAt = time.Time{}
			// Wait for a load in progress, as a second request does.
			for left := time.Until(rn.loadedAt); left > 0; left = time.Until(rn.loadedAt) {
				s.mu.Unlock()
				err := s.wait(ctx, left)
				s.mu.Lock()
				if err != nil {
					s.ollamaReleaseLocked(rn)
					return nil, err
				}
			}
			return rn, nil
		}
		if limit := s.knobs.MaxLoadedModels; limit > 0 && len(s.ollama) >= limit {
			var victim *ollamaRunner
			for _, rn := range s.ollama {
				if rn.refs == 0 && (victim == nil || rn.expiresAt.Before(victim.expiresAt)) {
					victim = rn
				}
			}
			if victim == nil {
				if err := s.await(ctx); err != nil {
					return nil, err
				}
				continue
			}
			delete(s.ollama, victim.model)
		}
		session := s.defaultKeepAliveLocked()
		if keep != nil {
			session = keep.d
		}
		s.ollama[model] = &ollamaRunner{model: model, session: session,
			loadedAt: time.Now().Add(time.Duration(s.knobs.LoadTime))}
	}
}

// ollamaRelease ends one request's hold on rn: the last one out sets
// expires_at, or unloads the model when its keep-alive is 0.
func (s *Server) ollamaRelease(rn *ollamaRunner) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ollamaReleaseLocked(rn)
}

func (s *Server) ollamaReleaseLocked(rn *ollamaRunner) {
	rn.refs--
	if rn.refs > 0 {
		return
	}
	if rn.session <= 0 {
		if s.ollama[rn.model] == rn {
			delete(s.ollama, rn.model)
		}
	} else {
		rn.expiresAt = time.Now().Add(rn.session)
	}
	s.notifyLocked()
}

// ollamaUnload unloads model at once (keep_alive 0 with no prompt).
func (s *Server) ollamaUnload(model string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rn := s.ollama[model]; rn != nil {
		rn.session = 0
		if rn.refs == 0 {
			delete(s.ollama, model)
		}
	}
	s.notifyLocked()
}

// beginOllama holds model for a request (loading it if need be) and
// admits the request as a job that lets go of the model when it ends.
func (s *Server) beginOllama(w http.ResponseWriter, r *http.Request, model string, prompt int, keep *keepAlive) *job {
	rn, err := s.ollamaAcquire(r.Context(), model, keep)
	if err != nil {
		s.ended(w, err)
		return nil
	}
	j, err := s.admit(r.Context(), model, prompt)
	if err != nil {
		s.ollamaRelease(rn)
		s.ended(w, err)
		return nil
	}
	j.runner = rn
	return j
}

// ollamaPS answers /api/ps: the loaded models, the one that expires last
// first, and nothing else: it changes no model's expiry.
func (s *Server) ollamaPS(w http.ResponseWriter, _ *http.Request) {
	byID := map[string]simModel{}
	for _, m := range s.openAIModels() {
		byID[m.id] = m
	}
	type entry struct {
		Name          string         `json:"name"`
		Model         string         `json:"model"`
		Size          int64          `json:"size"`
		Digest        string         `json:"digest"`
		Details       map[string]any `json:"details"`
		ExpiresAt     time.Time      `json:"expires_at"`
		SizeVRAM      int64          `json:"size_vram"`
		ContextLength int            `json:"context_length"`
	}
	now := time.Now()
	models := []entry{}
	s.mu.Lock()
	s.expireLocked(now)
	for name, rn := range s.ollama {
		m, ok := byID[name]
		if !ok {
			continue // renamed away
		}
		exp := rn.expiresAt
		if exp.IsZero() {
			// In use or loading: Ollama estimates from the keep-alive.
			exp = now.Add(rn.session)
		}
		models = append(models, entry{Name: m.id, Model: m.id, Size: m.memory, Digest: m.digest, Details: details(m),
			ExpiresAt: exp, SizeVRAM: m.memory, ContextLength: int(m.ctx)})
	}
	s.mu.Unlock()
	slices.SortStableFunc(models, func(a, b entry) int { return b.ExpiresAt.Compare(a.ExpiresAt) })
	writeJSON(w, http.StatusOK, map[string]any{"models": models})
}

// Preload loads model for good, as a user's request with keep_alive -1
// leaves it: a server that someone is using, not one that waits cold.
func (s *Server) Preload(ctx context.Context, model string) error {
	if s.cfg.Kind != probes.KindOllama {
		return fmt.Errorf("aisim: preload: %s loads its model at start", s.cfg.Kind)
	}
	rn, err := s.ollamaAcquire(ctx, model, &keepAlive{d: math.MaxInt64})
	if err != nil {
		return err
	}
	s.ollamaRelease(rn)
	return nil
}
