package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/e2e/e2etest"
)

// TestPrometheusDrivesProbe: Debian's Prometheus scrapes the agent's
// /probe for targets it reads from a file_sd file, with the relabeling of
// the README (target URL to ?target=, instance, the agent as address) and
// a viewer token, since /probe is guarded like the admin API. The two
// aisim servers probe as up, a port with nothing behind it as down, and
// the kind detection found is in vitals_probe_info, as Prometheus' query
// API sees them.
func TestPrometheusDrivesProbe(t *testing.T) {
	promBin := e2etest.Tool(t, "prometheus")
	ctx := t.Context()
	s := newStack(ctx, t)
	down := e2etest.Addr(t) // nothing listens there

	token := filepath.Join(s.dir, "probe-token")
	write(t, token, "probe-viewer-token\n")
	write(t, filepath.Join(s.dir, "core.yaml"), fmt.Sprintf(`core:
  log: {level: info, format: text}
  lifecycle: {watch_config: false}
  api_gateway:
    listen: %s
    plugins:
      security:
        required: true
        tokens: [{name: prometheus, role: viewer, file: %q}]
        audit: {path: ":memory:", publish: false}
      extmanager:
        directory: ""
        bus: {enabled: false}
        health: {enabled: false}
        probe: {enabled: true}
`, s.agent, token))
	llm, ollama := "http://"+s.sims["llm"].addr, "http://"+s.sims["ollama"].addr
	targets, err := json.Marshal([]map[string]any{{
		"targets": []string{llm, ollama, "http://" + down},
		"labels":  map[string]string{"team": "search"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(s.dir, "targets.json"), string(targets))
	write(t, filepath.Join(s.dir, "prometheus.yml"), fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: vitals-probe
    scrape_interval: 2s
    scrape_timeout: 2s
    metrics_path: /probe
    params: {module: [default]}
    authorization: {credentials_file: %q}
    file_sd_configs: [{files: [%q]}]
    relabel_configs:
      - source_labels: [__address__]
        target_label: __param_target
      - source_labels: [__param_target]
        target_label: instance
      - target_label: __address__
        replacement: %s
`, token, filepath.Join(s.dir, "targets.json"), s.agent))

	e2etest.Start(t, s.vitals, "--config", filepath.Join(s.dir, "core.yaml"))
	e2etest.Start(t, promBin, "--config.file="+filepath.Join(s.dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(s.dir, "prom"), "--web.listen-address="+s.prom)
	e2etest.WaitHTTP(ctx, t, "http://"+s.agent+"/readyz", 60*time.Second)
	e2etest.WaitHTTP(ctx, t, "http://"+s.prom+"/-/ready", 60*time.Second)

	for _, q := range []string{
		fmt.Sprintf(`vitals_probe_success{job="vitals-probe", instance=%q, team="search"} == 1`, llm),
		fmt.Sprintf(`vitals_probe_success{job="vitals-probe", instance=%q} == 1`, ollama),
		fmt.Sprintf(`vitals_probe_success{job="vitals-probe", instance="http://%s"} == 0`, down),
		fmt.Sprintf(`vitals_probe_info{job="vitals-probe", instance=%q, kind="llamacpp"} == 1`, llm),
		fmt.Sprintf(`vitals_probe_info{job="vitals-probe", instance=%q, kind="ollama"} == 1`, ollama),
		fmt.Sprintf(`vitals_probe_error{job="vitals-probe", instance="http://%s", step="detect", class="refused"} == 1`, down),
		// Every scrape itself worked: a down target is a 200 with success 0.
		`count(up{job="vitals-probe"} == 1) == 3`,
	} {
		waitQuery(ctx, t, s, q, 60*time.Second)
	}
	// The token is what let Prometheus in: the agent refuses /probe without one.
	if _, err := e2etest.Get(context.Background(), "http://"+s.agent+"/probe?target="+llm); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("/probe without a token: %v, want 401", err)
	}
}
