package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/agent/agenttest"
	"github.com/vitals-dev/vitals/internal/aisim"
	"github.com/vitals-dev/vitals/probes"
)

// TestAIPluginReadyIsOpen: with the security plugin requiring tokens and
// a rate limit of one request a second, an AI plugin's readiness endpoint
// answers a client without a token as often as it asks, as /readyz does,
// while the rest of the AI plugin API still needs a token.
func TestAIPluginReadyIsOpen(t *testing.T) {
	sim, err := aisim.New(aisim.Config{Kind: probes.KindLlamaCpp})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim)
	t.Cleanup(func() { srv.Close(); sim.Close() })
	t.Setenv("VITALS_TOKEN_READY_TEST", "s3cret-token")
	dir := t.TempDir()
	config := filepath.Join(dir, "core.yaml")
	if err := os.WriteFile(config, []byte(fmt.Sprintf(`core:
  api_gateway:
    listen: 127.0.0.1:0
    plugins:
      security:
        required: true
        tokens: [{name: ops, role: admin, env: VITALS_TOKEN_READY_TEST}]
        audit: {path: ":memory:", publish: false}
      rate_limiting:
        api: {rate: 1, burst: 1}
      extmanager:
        directory: ""
        bus: {enabled: false}
        targets: [{id: llm, endpoint: %q}]
        health: {interval: 100ms, start_spread: 0, success_threshold: 1}
`, srv.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := runConfig(t, config).ready(t)
	get := func(path, token string) int {
		req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	agenttest.Eventually(t, 20*time.Second, "llm ready without a token", func() bool {
		return get("/api/v1/ai-plugins/llm/ready", "") == http.StatusOK
	})
	for i := range 5 { // past the rate limit's burst
		if code := get("/api/v1/ai-plugins/llm/ready", ""); code != http.StatusOK {
			t.Fatalf("readiness request %d: %d", i, code)
		}
	}
	if code := get("/api/v1/ai-plugins/nope/ready", ""); code != http.StatusNotFound {
		t.Errorf("unknown plugin's readiness: %d, want 404", code)
	}
	if code := get("/api/v1/admin/ai-plugins/llm", ""); code != http.StatusUnauthorized {
		t.Errorf("admin API without a token: %d, want 401", code)
	}
	if code := get("/api/v1/admin/ai-plugins/llm", "s3cret-token"); code != http.StatusOK {
		t.Errorf("admin API with the token: %d, want 200", code)
	}
}
