package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sethvargo/go-envconfig"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/agent/agenttest"
)

// pushed is one alert as a loopback Alertmanager's POST /api/v2/alerts took it.
type pushed struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    time.Time         `json:"startsAt"`
	EndsAt      time.Time         `json:"endsAt"`
}

// TestAlertmanagerPush runs an agent with core.alerting pointing at a
// loopback Alertmanager API and an AI plugin's health state on its
// registry: the alert fires with the agent's job and instance, resolves,
// and a reload that changes the labels restarts the push with them.
func TestAlertmanagerPush(t *testing.T) {
	got := make(chan pushed, 100)
	am := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/prefix/api/v2/alerts" {
			http.NotFound(w, r)
			return
		}
		if u, p, ok := r.BasicAuth(); !ok || u != "vitals" || p != "s3cret" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		var batch []pushed
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&batch); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, a := range batch {
			select {
			case got <- a:
			default: // the test stopped reading
			}
		}
	}))
	defer am.Close()
	dir := t.TempDir()
	path := filepath.Join(dir, "core.yaml")
	if err := os.WriteFile(filepath.Join(dir, "pw"), []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	write := func(instance string) {
		t.Helper()
		cfg := fmt.Sprintf(`core:
  lifecycle: {watch_config: false}
  alerting:
    alertmanagers: [%q]
    http_config:
      basic_auth: {username: vitals, password_file: %q}
    labels: {instance: %q}
    evaluation_interval: 100ms
    resend_interval: 1s
`, am.URL+"/prefix", filepath.Join(dir, "pw"), instance)
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("node-1:9464")
	reg := agenttest.NewFleet(nil).Registry()
	cfg, err := agent.LoadFile(t.Context(), path, reg, envconfig.MapLookuper(nil))
	if err != nil {
		t.Fatal(err)
	}
	metrics := prometheus.NewRegistry()
	state := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "vitals_ai_plugin_health_state", Help: "h"}, []string{"plugin", "state"})
	metrics.MustRegister(state)
	state.WithLabelValues("llm", "unhealthy").Set(0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Options{Registry: reg, Config: cfg, ConfigPath: path, Env: envconfig.MapLookuper(nil), Metrics: metrics, Listener: ln, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	wait := func(what string, ok func(pushed) bool) pushed {
		t.Helper()
		timeout := time.After(20 * time.Second)
		for {
			select {
			case p := <-got:
				if ok(p) {
					return p
				}
			case <-timeout:
				t.Fatalf("no %s at the Alertmanager", what)
			}
		}
	}
	state.WithLabelValues("llm", "unhealthy").Set(1)
	fired := wait("firing alert", func(p pushed) bool { return p.EndsAt.After(time.Now()) })
	want := map[string]string{"alertname": "VitalsAIPluginUnhealthy", "severity": "critical", "scope": "ai_plugin",
		"job": "vitals", "instance": "node-1:9464", "plugin": "llm", "state": "unhealthy"}
	if fmt.Sprint(fired.Labels) != fmt.Sprint(want) {
		t.Errorf("labels %v, want %v", fired.Labels, want)
	}
	if fired.Annotations["summary"] != "AI plugin llm is unhealthy" {
		t.Errorf("annotations %v", fired.Annotations)
	}
	if d := fired.EndsAt.Sub(fired.StartsAt); d < 3*time.Second || d > 5*time.Second {
		t.Errorf("endsAt %v after startsAt, want 4 resend intervals", d)
	}
	state.WithLabelValues("llm", "unhealthy").Set(0)
	wait("resolved alert", func(p pushed) bool { return !p.EndsAt.After(time.Now()) && p.Labels["instance"] == "node-1:9464" })

	write("node-2:9464")
	if err := a.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	state.WithLabelValues("llm", "unhealthy").Set(1)
	wait("alert with the reloaded labels", func(p pushed) bool { return p.Labels["instance"] == "node-2:9464" && p.EndsAt.After(time.Now()) })
}
