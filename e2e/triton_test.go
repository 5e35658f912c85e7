package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/e2e/e2etest"
)

// TestTritonMetricsPort: an aisim Triton serves inference on one port and
// its metrics on another (--metrics-listen, as tritonserver's
// --metrics-port), with one slot and three requests of its own in flight;
// the agent, given the target's metrics_url, exports Triton's queue and
// request counters under the normalized names.
func TestTritonMetricsPort(t *testing.T) {
	ctx := t.Context()
	dir, bin := t.TempDir(), t.TempDir()
	vitals := e2etest.Build(ctx, t, bin, "github.com/vitals-dev/vitals/cmd/vitals")
	aisim := e2etest.Build(ctx, t, bin, "github.com/vitals-dev/vitals/cmd/aisim")
	api, metrics, agent := e2etest.Addr(t), e2etest.Addr(t), e2etest.Addr(t)
	e2etest.Start(t, aisim, "--kind", "kserve", "--listen", api, "--metrics-listen", metrics, "--slots", "1", "--load", "3")
	e2etest.WaitHTTP(ctx, t, "http://"+metrics+"/metrics", 30*time.Second)
	// As on Triton, the inference port has no metrics.
	if _, err := e2etest.Get(ctx, "http://"+api+"/metrics"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("GET /metrics on the inference port: %v, want 404", err)
	}

	write(t, filepath.Join(dir, "core.yaml"), fmt.Sprintf(`core:
  log: {level: info, format: text}
  lifecycle: {watch_config: false}
  api_gateway:
    listen: %s
    plugins:
      extmanager:
        directory: ""
        bus: {enabled: false}
        targets:
          - {id: triton, endpoint: "http://%s", kind: kserve, metrics_url: "http://%s/metrics"}
        health: {interval: 1s, unhealthy_interval: 1s, timeout: 2s}
`, agent, api, metrics))
	e2etest.Start(t, vitals, "--config", filepath.Join(dir, "core.yaml"))
	e2etest.WaitHTTP(ctx, t, "http://"+agent+"/readyz", 60*time.Second)

	err := e2etest.Poll(ctx, 60*time.Second, 200*time.Millisecond, "Triton's signals in the agent's /metrics", func(ctx context.Context) error {
		b, err := e2etest.Get(ctx, "http://"+agent+"/metrics")
		if err != nil {
			return err
		}
		m := e2etest.ParseMetrics(t, b)
		waiting, ok1 := m.Value("vitals_ai_requests_waiting", "plugin", "triton")
		done, ok2 := m.Value("vitals_ai_server_requests_total", "plugin", "triton", "result", "success")
		if !ok1 || !ok2 || waiting != 2 || done == 0 {
			return fmt.Errorf("waiting %v (%t), successes %v (%t)", waiting, ok1, done, ok2)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
