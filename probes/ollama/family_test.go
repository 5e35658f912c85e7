package ollama_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/internal/aisim"
	"github.com/vitals-dev/vitals/probes"
	"github.com/vitals-dev/vitals/probes/ollama"
)

// inference records the requests that reach a model.
type inference struct {
	h    http.Handler
	mu   sync.Mutex
	seen []string
}

func (i *inference) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/api/chat", "/api/generate", "/api/embed", "/api/embeddings", "/v1/chat/completions", "/v1/completions", "/v1/embeddings":
		i.mu.Lock()
		i.seen = append(i.seen, r.URL.Path)
		i.mu.Unlock()
	}
	i.h.ServeHTTP(w, r)
}

func (i *inference) count() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return len(i.seen)
}

// simInference serves an aisim Ollama and counts the requests that reach a
// model; it returns a client and the target as detection describes it.
func simInference(t *testing.T) (*inference, *ollama.Client, probes.Target) {
	t.Helper()
	s, err := aisim.New(aisim.Config{Kind: probes.KindOllama})
	if err != nil {
		t.Fatal(err)
	}
	rec := &inference{h: s}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	t.Cleanup(s.Close)
	c := ollama.New(client(t), srv.URL)
	d, err := c.Detect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return rec, c, probes.Target{ID: "o", BaseURL: srv.URL, Kind: probes.KindOllama, Models: d.Models, Capabilities: d.Capabilities}
}

func synthetic(t *testing.T, c *ollama.Client, tg probes.Target) (probes.Result, error) {
	t.Helper()
	set := ollama.Family().Probes(probes.KindOllama)
	return probes.Run(context.Background(), set.Synthetic, c.HTTP, tg, probes.Config{Timeout: 5 * time.Second, MaxTokens: 2}, nil)
}

// A model that is not loaded is cold: the probe says so and loads
// nothing.
func TestSyntheticLeavesColdModelsAlone(t *testing.T) {
	rec, c, tg := simInference(t)
	for _, model := range []string{"", "tiny:latest"} {
		tg.Model = model
		res, err := synthetic(t, c, tg)
		if !errors.Is(err, probes.ErrCold) || res.Class != probes.ClassCold {
			t.Fatalf("model %q: class %q, %v; want cold", model, res.Class, err)
		}
	}
	ps, err := c.PS(context.Background())
	if err != nil || len(ps) != 0 || rec.count() != 0 {
		t.Fatalf("after the probes: loaded %v (%v), %d inference requests", ps, err, rec.count())
	}
}

// The probe uses a model that is loaded, not the first one on disk, and
// leaves it to unload when it would have: its expires_at moves by no more
// than the probes took, and no other model is loaded.
func TestSyntheticUsesALoadedModelAndKeepsItsExpiry(t *testing.T) {
	rec, c, tg := simInference(t)
	const loaded = "tiny-vision:latest" // not the first of /api/tags
	if _, err := c.ChatStream(context.Background(), ollama.ChatRequest{Model: loaded, Messages: []ollama.Message{{Role: "user", Content: "hi"}},
		Options: map[string]any{"num_predict": 1}, KeepAlive: "10m"}); err != nil {
		t.Fatal(err)
	}
	before := expiry(t, c, loaded)
	var took time.Duration
	for range 5 {
		res, err := synthetic(t, c, tg)
		if err != nil || res.Model != loaded || res.CompletionTokens < 1 {
			t.Fatalf("synthetic = %+v, %v; want a chat with %s", res, err, loaded)
		}
		took += res.Duration
	}
	after := expiry(t, c, loaded)
	if moved := after.Sub(before); moved < -time.Second || moved > took {
		t.Fatalf("expires_at moved by %v over probes that took %v", moved, took)
	}
	if ps, _ := c.PS(context.Background()); len(ps) != 1 {
		t.Fatalf("loaded after the probes: %+v", ps)
	}
	if rec.count() != 6 {
		t.Fatalf("%d inference requests, want the load and 5 probes", rec.count())
	}
}

func expiry(t *testing.T, c *ollama.Client, model string) time.Time {
	t.Helper()
	ps, err := c.PS(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ps {
		if m.Name == model {
			at, err := time.Parse(time.RFC3339Nano, m.ExpiresAt)
			if err != nil {
				t.Fatal(err)
			}
			return at
		}
	}
	t.Fatalf("%s not loaded: %+v", model, ps)
	return time.Time{}
}

func TestKeepAliveLeft(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		expires string
		want    any
		ok      bool
	}{
		{"2026-12-01T12:01:30.0004Z", "1m30s", true},
		{"2318-01-01T00:00:00Z", -1, true}, // keep_alive -1
		{"2026-12-01T12:00:00.5Z", nil, false},
		{"2026-12-01T11:59:00Z", nil, false},
		{"soon", nil, false},
	} {
		got, ok := ollama.KeepAliveLeft(tc.expires, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("KeepAliveLeft(%q) = %v, %v; want %v, %v", tc.expires, got, ok, tc.want, tc.ok)
		}
	}
}
