package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/e2e/e2etest"
)

// TestBreakADemoServerWithoutDocker follows the README's "break something"
// steps without Docker: the agent names each demo server's endpoint, or a
// demo server listens where its listen key says; its aisim knobs take it
// down and bring it back, and the agent sees both.
func TestBreakADemoServerWithoutDocker(t *testing.T) {
	fixed := e2etest.Addr(t)
	data, err := os.ReadFile(testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.NewReplacer(
		"demo_ollama: {}", "demo_ollama: {listen: "+fixed+"}",
		"interval: 10s", "interval: 100ms",
	).Replace(string(data))
	if !strings.Contains(cfg, fixed) || !strings.Contains(cfg, "interval: 100ms") {
		t.Fatal("demo config no longer has the demo_ollama and health interval lines this test replaces")
	}
	path := filepath.Join(t.TempDir(), "core.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startBinary(t, "--config", path)
	addr := p.address(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := waitReady(ctx, addr); err != nil {
		t.Fatal(err)
	}

	type aiPlugin struct {
		Endpoint string `json:"endpoint"`
		Health   struct {
			Status string `json:"status"`
		} `json:"health"`
	}
	get := func(ctx context.Context, id string) (aiPlugin, error) {
		var ai aiPlugin
		body, err := e2etest.Get(ctx, "http://"+addr+"/api/v1/admin/ai-plugins/"+id)
		if err != nil {
			return ai, err
		}
		return ai, json.Unmarshal(body, &ai)
	}
	health := func(id, want string) {
		t.Helper()
		err := e2etest.Poll(ctx, 30*time.Second, 50*time.Millisecond, id+" health "+want, func(ctx context.Context) error {
			ai, err := get(ctx, id)
			if err != nil {
				return err
			}
			if ai.Health.Status != want {
				return fmt.Errorf("health %q", ai.Health.Status)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	knobs := func(method, endpoint, body string) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, endpoint+"/aisim/knobs", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("%s %s/aisim/knobs: %s", method, endpoint, resp.Status)
		}
	}

	// A demo server on a free port: the agent says where.
	health("demo_llm", "ok")
	llm, err := get(ctx, "demo_llm")
	if err != nil || !strings.HasPrefix(llm.Endpoint, "http://127.0.0.1:") {
		t.Fatalf("demo_llm endpoint %q, %v", llm.Endpoint, err)
	}
	knobs(http.MethodPost, llm.Endpoint, `{"down": true}`)
	health("demo_llm", "failing")
	knobs(http.MethodDelete, llm.Endpoint, "")
	health("demo_llm", "ok")

	// A demo server on the port its listen key gives.
	health("demo_ollama", "ok")
	if ai, _ := get(ctx, "demo_ollama"); ai.Endpoint != "http://"+fixed {
		t.Errorf("demo_ollama endpoint %q, want http://%s", ai.Endpoint, fixed)
	}
	knobs(http.MethodPost, "http://"+fixed, `{"down": true}`)
	health("demo_ollama", "failing")
	knobs(http.MethodDelete, "http://"+fixed, "")
	health("demo_ollama", "ok")

	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	p.wait(t)
}
