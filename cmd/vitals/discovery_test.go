package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/agent/agenttest"
	"github.com/vitals-dev/vitals/internal/aisim"
	"github.com/vitals-dev/vitals/probes"
)

// TestBinaryDiscoversFromFileSD: the shipped binary, given file_sd_configs
// with a path relative to core.yaml, registers, detects and health-checks
// what the file lists, follows the file as it changes, and applies new
// relabel_configs on SIGHUP.
func TestBinaryDiscoversFromFileSD(t *testing.T) {
	sim, err := aisim.New(aisim.Config{Kind: probes.KindVLLM})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim)
	t.Cleanup(func() { srv.Close(); sim.Close() })
	u, _ := url.Parse(srv.URL)

	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "targets"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeTargets := func(id string) {
		t.Helper()
		b, _ := json.Marshal([]map[string]any{{"targets": []string{u.Host}, "labels": map[string]string{"__vitals_id__": id, "__meta_team": "search"}}})
		tmp := filepath.Join(dir, "targets", ".llm.json.tmp")
		if err := os.WriteFile(tmp, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "targets", "llm.json")); err != nil {
			t.Fatal(err)
		}
	}
	writeTargets("llm-a")
	config := filepath.Join(dir, "core.yaml")
	section := `core:
  lifecycle: {watch_config: false}
  api_gateway:
    listen: 127.0.0.1:0
    plugins:
      extmanager:
        directory: ""
        bus: {enabled: false}
        health: {interval: 100ms, start_spread: 0, success_threshold: 1}
        file_sd_configs:
          - files: [targets/*.json]
        relabel_configs:
          - source_labels: [__meta_team]
            target_label: team
`
	if err := os.WriteFile(config, []byte(section), 0o600); err != nil {
		t.Fatal(err)
	}
	p := runConfig(t, config)
	addr := p.ready(t)

	type plugin struct {
		Source    string            `json:"source"`
		Kind      string            `json:"kind"`
		Labels    map[string]string `json:"labels"`
		Health    *struct{ Status string }
		Detection struct{ State string }
	}
	get := func(id string) (plugin, int) {
		resp, err := http.Get("http://" + addr + "/api/v1/admin/ai-plugins/" + id)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var pl plugin
		_ = json.NewDecoder(resp.Body).Decode(&pl)
		return pl, resp.StatusCode
	}
	agenttest.Eventually(t, 20*time.Second, "llm-a discovered, detected and healthy", func() bool {
		pl, code := get("llm-a")
		return code == http.StatusOK && pl.Detection.State == "detected" && pl.Health != nil && pl.Health.Status == "ok"
	})
	if pl, _ := get("llm-a"); pl.Source != "discovery" || pl.Kind != string(probes.KindVLLM) || pl.Labels["team"] != "search" {
		t.Errorf("llm-a = %+v", pl)
	}
	text := scrape(t, addr)
	for _, want := range []string{`vitals_discovery_targets{source="file_sd_configs[0]"} 1`, `vitals_ai_plugins{source="discovery"} 1`} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// The file changes; the agent follows without a restart.
	writeTargets("llm-b")
	agenttest.Eventually(t, 20*time.Second, "llm-b in, llm-a out", func() bool {
		_, a := get("llm-a")
		_, b := get("llm-b")
		return a == http.StatusNotFound && b == http.StatusOK
	})

	// A reload with a rule that drops it takes it out.
	if err := os.WriteFile(config, []byte(section+"          - source_labels: [__vitals_id__]\n            regex: llm-b\n            action: drop\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	agenttest.Eventually(t, 20*time.Second, "llm-b dropped by the reloaded rules", func() bool {
		_, b := get("llm-b")
		return b == http.StatusNotFound
	})
	if !strings.Contains(scrape(t, addr), fmt.Sprintf(`vitals_discovery_dropped_targets{reason="relabel",source="file_sd_configs[0]"} %d`, 1)) {
		t.Error("the relabel drop is not counted")
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Errorf("exit %d\n%s", code, p.logText())
	}
}
