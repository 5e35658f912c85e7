package ollama_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
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
func simInference(t *testing.T) (*aisim.Server, *inference, *ollama.Client, probes.Target) {
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
	return s, rec, c, probes.Target{ID: "o", BaseURL: srv.URL, Kind: probes.KindOllama, Models: d.Models, Capabilities: d.Capabilities}
}

func synthetic(t *testing.T, c *ollama.Client, tg probes.Target) (probes.Result, error) {
	t.Helper()
	set := ollama.Family().Probes(probes.KindOllama)
	return probes.Run(context.Background(), set.Synthetic, c.HTTP, tg, probes.Config{Timeout: 5 * time.Second, MaxTokens: 2}, nil)
}

// A model that is not loaded is cold: the probe says so and loads
// nothing.
func TestSyntheticLeavesColdModelsAlone(t *testing.T) {
	_, rec, c, tg := simInference(t)
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

// A model loaded with Ollama's default keep-alive: any inference would
// move its expires_at and become the keep-alive of the users' next
// requests, so the probe sends none. It says so, naming the model it
// would have used; expires_at stays exactly where it was, and a user's
// next request without keep_alive still gets the server's five minutes.
func TestSyntheticLeavesAnExpiringModelAlone(t *testing.T) {
	_, rec, c, tg := simInference(t)
	const loaded = "tiny-vision:latest" // not the first of /api/tags
	hi := ollama.ChatRequest{Model: loaded, Messages: []ollama.Message{{Role: "user", Content: "hi"}}, Options: map[string]any{"num_predict": 1}}
	if _, err := c.ChatStream(context.Background(), hi); err != nil { // no keep_alive: the default 5m
		t.Fatal(err)
	}
	before := expiresAt(t, c, loaded)
	for range 5 {
		res, err := synthetic(t, c, tg)
		var ns *probes.NotSentError
		if !errors.As(err, &ns) || res.Class != probes.ClassNotSent || res.Model != loaded {
			t.Fatalf("synthetic = %+v, %v; want not sent, naming %s", res, err, loaded)
		}
		if !strings.Contains(ns.Reason, "expires_at") || !strings.Contains(ns.Reason, before) {
			t.Fatalf("reason %q does not say why, or until when %s stays", ns.Reason, loaded)
		}
	}
	if after := expiresAt(t, c, loaded); after != before {
		t.Fatalf("expires_at moved from %s to %s", before, after)
	}
	if rec.count() != 1 {
		t.Fatalf("%d inference requests, want the user's load alone", rec.count())
	}
	sent := time.Now()
	if _, err := c.ChatStream(context.Background(), hi); err != nil {
		t.Fatal(err)
	}
	done := time.Now()
	if at := expiry(t, c, loaded); at.Before(sent.Add(5*time.Minute)) || at.After(done.Add(5*time.Minute)) {
		t.Fatalf("a user's request without keep_alive, sent at %s and done at %s, keeps the model until %s, want 5m after it",
			sent.Format(time.RFC3339Nano), done.Format(time.RFC3339Nano), at.Format(time.RFC3339Nano))
	}
}

// A model kept loaded for good (keep_alive -1): the probe sends its
// inference with keep_alive -1, which leaves it so, and the users' next
// requests keep it for good too.
func TestSyntheticRunsAgainstAModelKeptForever(t *testing.T) {
	s, rec, c, tg := simInference(t)
	const loaded = "tiny-vision:latest"
	if err := s.Preload(context.Background(), loaded); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		res, err := synthetic(t, c, tg)
		if err != nil || res.Model != loaded || res.CompletionTokens < 1 {
			t.Fatalf("synthetic = %+v, %v; want a chat with %s", res, err, loaded)
		}
	}
	if rec.count() != 3 {
		t.Fatalf("%d inference requests, want the 3 probes", rec.count())
	}
	if _, err := c.ChatStream(context.Background(), ollama.ChatRequest{Model: loaded, Messages: []ollama.Message{{Role: "user", Content: "hi"}},
		Options: map[string]any{"num_predict": 1}}); err != nil {
		t.Fatal(err)
	}
	if left := time.Until(expiry(t, c, loaded)); left < 100*365*24*time.Hour {
		t.Fatalf("after the probes a user's request keeps the model %v, want for good", left)
	}
	if ps, _ := c.PS(context.Background()); len(ps) != 1 {
		t.Fatalf("loaded after the probes: %+v", ps)
	}
}

func expiry(t *testing.T, c *ollama.Client, model string) time.Time {
	t.Helper()
	at, err := time.Parse(time.RFC3339Nano, expiresAt(t, c, model))
	if err != nil {
		t.Fatal(err)
	}
	return at
}

// expiresAt is model's expires_at as /api/ps gives it.
func expiresAt(t *testing.T, c *ollama.Client, model string) string {
	ps, err := c.PS(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ps {
		if m.Name == model {
			return m.ExpiresAt
		}
	}
	t.Fatalf("%s not loaded: %+v", model, ps)
	return ""
}

func TestKeptForever(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		expires string
		ok      bool
	}{
		{"2318-01-01T00:00:00Z", true}, // keep_alive -1
		{"2026-12-01T12:05:00Z", false},
		{"2126-11-01T12:00:00Z", false},
		{"2026-12-01T11:59:00Z", false},
		{"soon", false},
	} {
		if _, ok := ollama.KeptForever(tc.expires, now); ok != tc.ok {
			t.Errorf("KeptForever(%q) = %v, want %v", tc.expires, ok, tc.ok)
		}
	}
}
