package extmanager_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/agent/agenttest"
	"github.com/vitals-dev/vitals/e2e/e2etest"

	"github.com/prometheus/common/expfmt"

	"github.com/vitals-dev/vitals/bus"
	"github.com/vitals-dev/vitals/catalog"
	"github.com/vitals-dev/vitals/health"
	"github.com/vitals-dev/vitals/plugins/extmanager"
	"github.com/vitals-dev/vitals/probes"
	busv1 "github.com/vitals-dev/vitals/proto/vitals/bus/v1"
)

const fastHealth = `health:
  interval: 5ms
  unhealthy_interval: 5ms
  timeout: 500ms
  start_spread: 0
  jitter: 0
  synthetic: true
`

// awaitHealth polls the catalog until id's health satisfies ok.
func (r *rig) awaitHealth(id string, ok func(*health.Status) bool) {
	r.t.Helper()
	var p catalog.AIPlugin
	if !agenttest.Within(20*time.Second, func() bool { p, _ = r.e.Catalog().Get(id); return ok(p.Health) }) {
		r.t.Fatalf("%s: health never as wanted: %+v", id, p.Health)
	}
}

// nextMsg returns the next message on ch whose topic is topic, within a
// generous deadline.
func nextMsg(t *testing.T, ch <-chan bus.Message, topic string) bus.Message {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case m := <-ch:
			if m.Topic == topic {
				return m
			}
		case <-deadline:
			t.Fatalf("no message on %s", topic)
		}
	}
}

func TestHealthEngineWiring(t *testing.T) {
	sim, llama := simServer(t, probes.KindLlamaCpp)
	r := start(t, fmt.Sprintf("directory: \"\"\nbus: {enabled: true}\n%stargets: [{id: llm, endpoint: %q}]\n", fastHealth, llama))
	watch := r.bus.Client("watcher", bus.AllowAll)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	status, err := watch.Subscribe(ctx, extmanager.TopicHealthStatus)
	if err != nil {
		t.Fatal(err)
	}
	alerts, err := watch.Subscribe(ctx, extmanager.TopicAlerts)
	if err != nil {
		t.Fatal(err)
	}

	// Healthy: in the catalog, on the bus, in the roll-up.
	r.awaitHealth("llm", func(h *health.Status) bool { return h != nil && h.State == health.StateHealthy })
	var hs busv1.HealthStatus
	for hs.GetState() != busv1.HealthState_HEALTH_STATE_HEALTHY {
		m := nextMsg(t, status, "health.status.llm")
		if err := m.Decode(&hs); err != nil {
			t.Fatal(err)
		}
	}
	if h := r.e.HealthCheck(context.Background()); h.Details["ai_health"] != "ok" {
		t.Errorf("extmanager health = %+v", h)
	}

	// Down: unhealthy, an alert that starts, then recovery resolves it.
	sim.SetDown(true)
	r.awaitHealth("llm", func(h *health.Status) bool { return h != nil && h.State == health.StateUnhealthy })
	var a busv1.Alert
	if err := nextMsg(t, alerts, "alerts.critical").Decode(&a); err != nil {
		t.Fatal(err)
	}
	if a.GetName() != extmanager.AlertUnhealthy || a.GetLabels()["plugin"] != "llm" || a.GetStartsAt() == nil || a.GetEndsAt() != nil {
		t.Errorf("firing alert = %+v", &a)
	}
	sim.SetDown(false)
	r.awaitHealth("llm", func(h *health.Status) bool { return h != nil && h.State == health.StateHealthy })
	if err := nextMsg(t, alerts, "alerts.critical").Decode(&a); err != nil {
		t.Fatal(err)
	}
	if a.GetEndsAt() == nil || a.GetStartsAt() == nil {
		t.Errorf("resolved alert = %+v", &a)
	}

	// The admin API.
	mux := http.NewServeMux()
	for _, rt := range r.e.Routes() {
		mux.Handle(rt.Pattern, rt.Handler)
	}
	srv := httptest.NewServer(mux)
	defer srv.Close()
	get := func(path string, into any) int {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if into != nil {
			_ = json.NewDecoder(resp.Body).Decode(into)
		}
		return resp.StatusCode
	}
	var hist struct {
		Checks      []health.CheckRecord `json:"checks"`
		Transitions []health.Transition  `json:"transitions"`
	}
	if code := get("/api/v1/admin/ai-plugins/llm/history?since=1h", &hist); code != 200 || len(hist.Checks) == 0 {
		t.Fatalf("history: %d %+v", code, hist)
	}
	seen := map[health.State]bool{}
	for _, tr := range hist.Transitions {
		seen[tr.To] = true
	}
	if !seen[health.StateUnhealthy] || !seen[health.StateHealthy] {
		t.Errorf("transitions = %+v", hist.Transitions)
	}
	var up struct {
		Windows []health.Uptime `json:"windows"`
	}
	if code := get("/api/v1/admin/ai-plugins/llm/uptime", &up); code != 200 || len(up.Windows) != 3 ||
		up.Windows[0].Checks == 0 || up.Windows[0].UptimeRatio <= 0 || up.Windows[0].UptimeRatio >= 1 || up.Windows[0].Transitions < 3 {
		t.Errorf("uptime: %d %+v", code, up)
	}
	for path, want := range map[string]int{
		"/api/v1/admin/ai-plugins/nope/history":          404,
		"/api/v1/admin/ai-plugins/nope/uptime":           404,
		"/api/v1/admin/ai-plugins/llm/history?since=bad": 400,
		"/api/v1/admin/ai-plugins/llm/history?limit=0":   400,
		"/api/v1/admin/ai-health":                        200,
	} {
		if code := get(path, nil); code != want {
			t.Errorf("%s: %d, want %d", path, code, want)
		}
	}

	// Metrics: present, and clean under promtool.
	var buf bytes.Buffer
	mfs, err := r.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
		if _, err := expfmt.MetricFamilyToText(&buf, mf); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"vitals_ai_plugin_up", "vitals_ai_plugin_health_state", "vitals_ai_probe_duration_seconds",
		"vitals_ai_probe_total", "vitals_ai_probe_errors_total", "vitals_ai_time_to_first_token_seconds",
		"vitals_ai_output_tokens_per_second", "vitals_ai_health_transitions_total", "vitals_scheduler_lag_seconds"} {
		if !names[n] {
			t.Errorf("metric %s missing", n)
		}
	}
	// The simulated server runs inside this process: it has no process of
	// its own to report.
	for _, n := range []string{"vitals_ai_process_cpu_seconds_total", "vitals_ai_process_resident_memory_bytes"} {
		if names[n] {
			t.Errorf("metric %s exported for a server the agent itself runs", n)
		}
	}
	promtoolCheck(t, buf.Bytes())
}

// promtoolCheck runs promtool check metrics on exposition text. It skips
// when promtool is missing, except in CI (CI=true), where it fails.
func promtoolCheck(t *testing.T, text []byte) {
	t.Helper()
	cmd := exec.Command(e2etest.Tool(t, "promtool"), "check", "metrics")
	cmd.Stdin = bytes.NewReader(text)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestBusPluginHealth: a bus plugin without an endpoint is checked by a
// health request on health.request.<plugin> and its heartbeat.
func TestBusPluginHealth(t *testing.T) {
	r := start(t, "directory: \"\"\nbus: {enabled: true, default_heartbeat: 1s}\n"+fastHealth)
	ext := r.bus.Client("worker", bus.AllowAll)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reqs, err := ext.Subscribe(ctx, extmanager.TopicHealthRequest+"worker")
	if err != nil {
		t.Fatal(err)
	}
	state := make(chan busv1.HealthState, 1)
	state <- busv1.HealthState_HEALTH_STATE_HEALTHY
	go func() {
		cur := busv1.HealthState_HEALTH_STATE_HEALTHY
		for req := range reqs {
			select {
			case cur = <-state:
			default:
			}
			resp, _ := bus.NewProto(&busv1.HealthResponse{Plugin: "worker", State: cur, Message: "as told"})
			_ = bus.Reply(ctx, ext, req, resp)
		}
	}()
	announce(t, ext, &busv1.Announce{Name: "worker", Version: "1", HeartbeatIntervalMs: 1000})
	r.awaitHealth("worker", func(h *health.Status) bool { return h != nil && h.State == health.StateHealthy })
	state <- busv1.HealthState_HEALTH_STATE_UNHEALTHY
	r.awaitHealth("worker", func(h *health.Status) bool {
		return h != nil && h.State == health.StateUnhealthy && h.Class == probes.ClassReported
	})
}

func TestRollupGatesReadiness(t *testing.T) {
	sim, url := simServer(t, probes.KindOllama)
	rollup := fastHealth + "  rollup: {policy: all, readiness: true}\n"
	r := start(t, fmt.Sprintf("directory: \"\"\nbus: {enabled: false}\n%stargets: [{id: o, endpoint: %q}]\n", rollup, url))
	// Nothing loaded on the simulated Ollama: cold, which serves.
	r.awaitHealth("o", func(h *health.Status) bool { return h != nil && h.State == health.StateCold })
	if err := r.e.Ready(); err != nil {
		t.Fatalf("Ready with a cold plugin: %v", err)
	}
	sim.SetDown(true)
	r.awaitHealth("o", func(h *health.Status) bool { return h != nil && h.State == health.StateUnhealthy })
	if err := r.e.Ready(); err == nil || !regexp.MustCompile(`^AI health roll-up \(all\)`).MatchString(err.Error()) {
		t.Errorf("Ready with the only plugin down = %v", err)
	}
}

// fakeRouter answers every request as healthy and counts them.
type fakeRouter struct {
	mu    sync.Mutex
	dests []string
}

func (f *fakeRouter) Request(_ context.Context, dest string, _ bus.Message) (bus.Message, error) {
	f.mu.Lock()
	f.dests = append(f.dests, dest)
	f.mu.Unlock()
	m, err := bus.NewProto(&busv1.HealthResponse{Plugin: dest, State: busv1.HealthState_HEALTH_STATE_HEALTHY})
	m.Peer = bus.PeerAgent // the announcer's, as the broker stamps it
	return m, err
}

func (f *fakeRouter) Send(context.Context, string, bus.Message) error { return nil }

var _ bus.Requester = (*fakeRouter)(nil)

func (f *fakeRouter) requests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.dests)
}

// While the routing plugin runs, health requests to bus plugins go through
// its service.
func TestBusHealthGoesThroughRouting(t *testing.T) {
	router := &fakeRouter{}
	r := startWith(t, "directory: \"\"\nbus: {enabled: true, default_heartbeat: 1s}\n"+fastHealth, map[string]any{bus.RoutingService: router})
	ext := r.bus.Client("worker", bus.AllowAll)
	announce(t, ext, &busv1.Announce{Name: "worker", Version: "1", HeartbeatIntervalMs: 1000})
	r.awaitHealth("worker", func(h *health.Status) bool { return h != nil && h.State == health.StateHealthy })
	if router.requests() == 0 {
		t.Fatal("no health request went through the routing service")
	}
	router.mu.Lock()
	dest := router.dests[0]
	router.mu.Unlock()
	if dest != "worker" {
		t.Errorf("routed to %q, want worker", dest)
	}
}

// TestStuckOnTheBus: a stuck plugin's state goes on the bus by its own
// wire value and name, with the stuck alert, which resolves when it
// recovers; no unhealthy alert is raised for it.
func TestStuckOnTheBus(t *testing.T) {
	sim, llama := simServer(t, probes.KindLlamaCpp)
	r := start(t, fmt.Sprintf("directory: \"\"\nbus: {enabled: true}\n%s  stuck_after: 0s\ntargets: [{id: llm, endpoint: %q}]\n", fastHealth, llama))
	watch := r.bus.Client("watcher", bus.AllowAll)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	status, err := watch.Subscribe(ctx, extmanager.TopicHealthStatus)
	if err != nil {
		t.Fatal(err)
	}
	alerts, err := watch.Subscribe(ctx, extmanager.TopicAlerts)
	if err != nil {
		t.Fatal(err)
	}
	r.awaitHealth("llm", func(h *health.Status) bool { return h != nil && h.State == health.StateHealthy })
	sim.SetStuck(true)
	r.awaitHealth("llm", func(h *health.Status) bool { return h != nil && h.State == health.StateStuck })
	var hs busv1.HealthStatus
	for hs.GetState() != busv1.HealthState_HEALTH_STATE_STUCK {
		if err := nextMsg(t, status, "health.status.llm").Decode(&hs); err != nil {
			t.Fatal(err)
		}
	}
	if hs.GetDetails()["state"] != "stuck" || hs.GetMessage() == "" {
		t.Errorf("health status = %+v", &hs)
	}
	var a busv1.Alert
	if err := nextMsg(t, alerts, "alerts.critical").Decode(&a); err != nil {
		t.Fatal(err)
	}
	if a.GetName() != extmanager.AlertStuck || a.GetLabels()["alertname"] != extmanager.AlertStuck || a.GetStartsAt() == nil || a.GetEndsAt() != nil {
		t.Errorf("firing alert = %+v", &a)
	}
	sim.SetStuck(false)
	r.awaitHealth("llm", func(h *health.Status) bool { return h != nil && h.State == health.StateHealthy })
	if err := nextMsg(t, alerts, "alerts.critical").Decode(&a); err != nil {
		t.Fatal(err)
	}
	if a.GetName() != extmanager.AlertStuck || a.GetEndsAt() == nil || a.GetStartsAt() == nil {
		t.Errorf("resolved alert = %+v", &a)
	}
}
