package engines_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/internal/aisim"
	"github.com/vitals-dev/vitals/probes"
)

// The synthetic chat turns reasoning off where the engine's API has a
// switch for it (chat_template_kwargs.enable_thinking on llama.cpp and
// vLLM, think on Ollama) and sends none to other OpenAI-compatible
// servers, where OpenAI answers 400 to reasoning_effort on a model that
// does not reason.
func TestSyntheticTurnsReasoningOff(t *testing.T) {
	for _, tc := range []struct {
		kind probes.Kind
		path string
		want func(body map[string]any) bool
	}{
		{probes.KindLlamaCpp, "/v1/chat/completions", func(b map[string]any) bool {
			k, _ := b["chat_template_kwargs"].(map[string]any)
			return k["enable_thinking"] == false && b["reasoning_effort"] == nil
		}},
		{probes.KindVLLM, "/v1/chat/completions", func(b map[string]any) bool {
			k, _ := b["chat_template_kwargs"].(map[string]any)
			return k["enable_thinking"] == false && b["reasoning_effort"] == nil
		}},
		{probes.KindOllama, "/api/chat", func(b map[string]any) bool { return b["think"] == false }},
		{probes.KindOpenAI, "/v1/chat/completions", func(b map[string]any) bool {
			return b["chat_template_kwargs"] == nil && b["reasoning_effort"] == nil
		}},
	} {
		t.Run(string(tc.kind), func(t *testing.T) {
			s, err := aisim.New(aisim.Config{Kind: tc.kind})
			if err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			var body []byte
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == tc.path {
					b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
					mu.Lock()
					body = b
					mu.Unlock()
					r.Body = io.NopCloser(bytes.NewReader(b))
				}
				s.ServeHTTP(w, r)
			}))
			t.Cleanup(func() { s.Close(); srv.Close() })
			c := &http.Client{Transport: &http.Transport{}}
			defer c.CloseIdleConnections()
			tg := detected(t, c, tc.kind, srv.URL)
			if tc.kind == probes.KindOllama {
				// A probe never loads a model, and infers only against one
				// kept for good: load one so, as a user would.
				resp, err := c.Post(srv.URL+"/api/generate", "application/json", bytes.NewReader([]byte(`{"model":"tiny:latest","prompt":"hi","stream":false,"keep_alive":-1}`)))
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			if _, err := probes.Run(context.Background(), set(tg.Kind).Synthetic, c, tg, probes.Config{Timeout: 5 * time.Second, MaxTokens: 2}, nil); err != nil {
				t.Fatalf("synthetic: %v", err)
			}
			mu.Lock()
			defer mu.Unlock()
			var got map[string]any
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("request body %q: %v", body, err)
			}
			if !tc.want(got) {
				t.Errorf("request body %s", body)
			}
		})
	}
}
