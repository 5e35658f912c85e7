package extmanager_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/agent/agenttest"
	"github.com/vitals-dev/vitals/bus"
	"github.com/vitals-dev/vitals/internal/aisim"
	"github.com/vitals-dev/vitals/probes"
	busv1 "github.com/vitals-dev/vitals/proto/vitals/bus/v1"
)

// TestTritonMetricsPort runs a Triton that serves inference on one port
// and its metrics on another, as Triton does (--metrics-port), with one
// slot and three requests of its own in flight: the agent's signals for
// a config target with metrics_url and for a discovered one with
// __vitals_metrics_url__ are Triton's series, read on the metrics port
// with the target's http_config.
func TestTritonMetricsPort(t *testing.T) {
	sim, err := aisim.New(aisim.Config{Kind: probes.KindKServe, Knobs: aisim.Knobs{Slots: 1, Load: 3}})
	if err != nil {
		t.Fatal(err)
	}
	// The metrics port is behind a token (a proxy in front of it): the
	// target's http_config applies to it as to every other request.
	const token = "metrics-token-7"
	mh := sim.MetricsHandler()
	api, metrics := httptest.NewServer(sim), httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		mh.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { sim.Close(); api.Close(); metrics.Close() })
	u, _ := url.Parse(api.URL)
	sd := filepath.Join(t.TempDir(), "triton.json")
	writeSD(t, sd, []map[string]any{{"targets": []string{u.Host}, "labels": map[string]string{
		"__vitals_id__": "triton-sd", "__vitals_kind__": "kserve", "__vitals_metrics_url__": metrics.URL + "/metrics"}}})
	r := start(t, fmt.Sprintf(`directory: ""
bus: {enabled: false}
health: {interval: 50ms, unhealthy_interval: 50ms, start_spread: 0, jitter: 0}
targets: [{id: triton, kind: kserve, endpoint: %q, metrics_url: %q, http_config: {authorization: {credentials: %s}}}]
file_sd_configs: [{files: [%s]}]
http_config: {authorization: {credentials: %[3]s}}
`, api.URL, metrics.URL, token, sd))
	for _, id := range []string{"triton", "triton-sd"} {
		p := r.awaitDetected(id)
		if p.MetricsURL != metrics.URL+"/metrics" {
			t.Errorf("%s: metrics_url = %q, want %q", id, p.MetricsURL, metrics.URL+"/metrics")
		}
		agenttest.Eventually(t, 15*time.Second, id+": two waiting and successes counted, from Triton's series", func() bool {
			w, ok := gaugeIf(r.metrics, "vitals_ai_requests_waiting", map[string]string{"plugin": id})
			m := findSeries(t, r.metrics, "vitals_ai_server_requests_total", map[string]string{"plugin": id, "result": "success"})
			return ok && w == 2 && m != nil && m.GetCounter().GetValue() > 0
		})
	}
}

// TestBusAnnouncedMetricsURL: a bus plugin that announces where its
// metrics are (a Triton with its metrics on a port of their own) gets its
// signals from there, as a config target with metrics_url does. The URL
// is held to allowed_endpoints like the endpoint, and to the rules of a
// target's metrics_url.
func TestBusAnnouncedMetricsURL(t *testing.T) {
	sim, err := aisim.New(aisim.Config{Kind: probes.KindKServe, Knobs: aisim.Knobs{Slots: 1, Load: 3}})
	if err != nil {
		t.Fatal(err)
	}
	api, metrics := httptest.NewServer(sim), httptest.NewServer(sim.MetricsHandler())
	t.Cleanup(func() { sim.Close(); api.Close(); metrics.Close() })
	r := start(t, `directory: ""
health: {interval: 50ms, unhealthy_interval: 50ms, start_spread: 0, jitter: 0}
detection: {attempts: 1, timeout: 1s}
`)
	const from = "10.0.0.5:4000"
	ext := r.bus.External("conn:1@"+from, from, "triton", bus.AllowAll)
	announce(t, ext, &busv1.Announce{Name: "triton-bus", Endpoint: api.URL, MetricsUrl: metrics.URL,
		Labels: map[string]string{"kind": "kserve"}, HeartbeatIntervalMs: 60000})
	p := r.awaitDetected("triton-bus")
	if p.MetricsURL != metrics.URL+"/metrics" {
		t.Errorf("metrics_url = %q, want %q", p.MetricsURL, metrics.URL+"/metrics")
	}
	agenttest.Eventually(t, 15*time.Second, "two waiting, from Triton's series on its metrics port", func() bool {
		w, ok := gaugeIf(r.metrics, "vitals_ai_requests_waiting", map[string]string{"plugin": "triton-bus"})
		return ok && w == 2
	})

	for _, tc := range []struct {
		name, endpoint, metricsURL, reason string
	}{
		{"another host", api.URL, "http://10.0.0.6:8002/metrics", "endpoint"},
		{"cloud metadata", api.URL, "http://169.254.169.254/latest/meta-data", "endpoint"},
		{"a query", api.URL, "http://127.0.0.1:9464/api/v1/admin/reload?x=", "endpoint"},
		{"no endpoint", "", metrics.URL, "invalid"},
		{"not http", api.URL, "ftp://127.0.0.1/metrics", "invalid"},
		{"user info", api.URL, "http://user:pw@127.0.0.1:8002/metrics", "invalid"},
		{"too long", api.URL, "http://127.0.0.1/" + strings.Repeat("m", 2048), "invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := rejected(t, r.metrics, tc.reason)
			announce(t, ext, &busv1.Announce{Name: "other", Endpoint: tc.endpoint, MetricsUrl: tc.metricsURL, HeartbeatIntervalMs: 60000})
			r.awaitRejected(tc.reason, before+1)
			if _, ok := r.e.Catalog().Get("other"); ok {
				t.Fatalf("metrics_url %s was registered", tc.metricsURL)
			}
		})
	}
}
