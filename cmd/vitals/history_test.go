package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/exporters/store"
	"github.com/vitals-dev/vitals/internal/aisim"
	"github.com/vitals-dev/vitals/probes"
)

// The agent binary checks an AI server fast with the SQLite history on; the
// test reads history rows from the API (which serves only rows the store
// has committed: acknowledged), kills the agent with SIGKILL, and finds
// every one of them in the store.
func TestHistorySurvivesSIGKILL(t *testing.T) {
	sim, err := aisim.New(aisim.Config{Kind: probes.KindOllama, Seed: 1, Knobs: aisim.Knobs{ErrorRate: 0.3}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim)
	defer func() { sim.Close(); srv.Close() }()

	dir := t.TempDir()
	db := filepath.Join(dir, "ai-health.db")
	cfg := fmt.Sprintf(`core:
  lifecycle: {watch_config: false}
  api_gateway:
    plugins:
      message_bus:
        publish_address: ipc://%[1]s/pub.sock
        subscribe_address: ipc://%[1]s/sub.sock
      extmanager:
        directory: ""
        bus: {enabled: false}
        health:
          interval: 10ms
          unhealthy_interval: 10ms
          start_spread: 0
          jitter: 0
          history: {path: %[2]s}
        targets:
          - {id: flaky, endpoint: %[3]q}
`, dir, db, srv.URL)
	path := filepath.Join(dir, "core.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startBinary(t, "--config", path)
	addr := p.address(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := waitReady(ctx, addr); err != nil {
		t.Fatal(err)
	}

	// Read acknowledged rows until there are plenty, while checks go on.
	acked := map[int64]bool{}
	for len(acked) < 200 {
		if ctx.Err() != nil {
			t.Fatalf("only %d rows acknowledged\n%s", len(acked), p.logText())
		}
		resp, err := http.Get("http://" + addr + "/api/v1/admin/ai-plugins/flaky/history?limit=5000")
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Checks []struct{ Seq int64 } `json:"checks"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range body.Checks {
			acked[c.Seq] = true
		}
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.wait(t)

	st, err := store.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rows, err := st.QueryContext(context.Background(), `SELECT seq FROM ai_health_checks WHERE plugin = 'flaky'`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	stored := map[int64]bool{}
	for rows.Next() {
		var seq int64
		if err := rows.Scan(&seq); err != nil {
			t.Fatal(err)
		}
		stored[seq] = true
	}
	lost := 0
	for seq := range acked {
		if !stored[seq] {
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged rows lost after SIGKILL", lost, len(acked))
	}
	t.Logf("%d acknowledged rows, all in the store after SIGKILL (%d stored)", len(acked), len(stored))
}
