package extmanager_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/agent/agenttest"
	"github.com/vitals-dev/vitals/catalog"
	"github.com/vitals-dev/vitals/health"
	"github.com/vitals-dev/vitals/internal/aisim"
	"github.com/vitals-dev/vitals/probes"
)

// freeAddr returns a loopback address nothing listens on (yet).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// listenSim serves a new aisim on addr until the test ends, and returns
// its URL.
func listenSim(t *testing.T, cfg aisim.Config, addr string) (*aisim.Server, string) {
	t.Helper()
	sim, err := aisim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ep, err := sim.Listen(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close(); ep.Close() })
	return sim, ep.URL()
}

// A server that starts after the agent is identified within seconds of
// answering, however many detections failed before: detection repeats
// with a capped backoff, it does not wait for redetect_interval.
func TestServerStartedAfterTheAgentIsDetected(t *testing.T) {
	addr := freeAddr(t)
	r := start(t, fmt.Sprintf(`
directory: ""
bus: {enabled: false}
detection: {attempts: 1, timeout: 1s, redetect_interval: 10m}
health: {interval: 50ms, unhealthy_interval: 50ms, start_spread: 0, jitter: 0}
targets: [{id: late, endpoint: "http://%s"}]
`, addr))

	// Three detections fail, so the backoff has grown to its cap.
	seen := map[time.Time]bool{}
	agenttest.Eventually(t, 20*time.Second, "three failed detections", func() bool {
		p, _ := r.e.Catalog().Get("late")
		if p.Detection.State == catalog.DetectFailed {
			seen[p.Detection.At] = true
		}
		if p.Health != nil && p.Health.State == health.StateHealthy {
			t.Fatalf("healthy before anything answered: %+v", p.Health)
		}
		return len(seen) >= 3
	})

	listenSim(t, aisim.Config{Kind: probes.KindLlamaCpp}, addr)
	began := time.Now()
	agenttest.Eventually(t, 10*time.Second, "late server detected", func() bool {
		p, _ := r.e.Catalog().Get("late")
		return p.Detection.State == catalog.DetectDone && p.Kind == probes.KindLlamaCpp
	})
	t.Logf("detected %v after the server started", time.Since(began).Round(time.Millisecond))
}

// A new redetect_interval applies on reload: a version change is seen
// within the new interval, not the old one.
func TestRedetectIntervalAppliesOnReload(t *testing.T) {
	sim, url := simServer(t, probes.KindOllama)
	section := "directory: \"\"\nbus: {enabled: false}\ndetection: {redetect_interval: %s}\ntargets: [{id: o, endpoint: %q}]\n"
	r := start(t, fmt.Sprintf(section, "10m", url))
	r.awaitDetected("o")
	s, err := agent.NewSection(fmt.Sprintf(section, "1s", url))
	if err != nil {
		t.Fatal(err)
	}
	reloaded := time.Now()
	if err := r.e.Reload(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	// The reload itself asks again; the version changes after that
	// detection, so only the new interval can see it.
	agenttest.Eventually(t, 5*time.Second, "detection after the reload", func() bool {
		p, _ := r.e.Catalog().Get("o")
		return p.Detection.At.After(reloaded)
	})
	sim.SetVersion("0.99.2")
	ev := r.awaitWhere(catalog.EventVersionChanged, "o", func(ev catalog.Event) bool { return ev.Version == "0.99.2" })
	if ev.Version != "0.99.2" {
		t.Errorf("version %q", ev.Version)
	}
}

// A model renamed on the server (the same count of models) reaches the
// health engine: the failing synthetic inference asks for a detection, the
// catalog sees the new name and the next probes use it.
func TestRenamedModelIsFollowedByProbes(t *testing.T) {
	sim, err := aisim.New(aisim.Config{Kind: probes.KindVLLM})
	if err != nil {
		t.Fatal(err)
	}
	// The model each chat the agent sends asks for, and what aisim said.
	var mu sync.Mutex
	asked := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/v1/chat/completions" {
			body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
			var chat struct{ Model string }
			_ = json.Unmarshal(body, &chat)
			req.Body = io.NopCloser(bytes.NewReader(body))
			rec := httptest.NewRecorder()
			sim.ServeHTTP(rec, req)
			mu.Lock()
			asked[fmt.Sprintf("%s %d", chat.Model, rec.Code)]++
			mu.Unlock()
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			w.Write(rec.Body.Bytes())
			return
		}
		sim.ServeHTTP(w, req)
	}))
	t.Cleanup(func() { sim.Close(); srv.Close() })
	answered := func(model string) bool {
		mu.Lock()
		defer mu.Unlock()
		return asked[model+" 200"] > 0
	}

	r := start(t, fmt.Sprintf(`
directory: ""
bus: {enabled: false}
detection: {max_backoff: 1s}
%stargets: [{id: v, endpoint: %q}]
`, fastHealth, srv.URL))
	p := r.awaitDetected("v")
	if len(p.Models) != 1 || p.Models[0].ID != "sim-chat" {
		t.Fatalf("models %+v", p.Models)
	}
	agenttest.Eventually(t, 10*time.Second, "a synthetic chat with sim-chat", func() bool { return answered("sim-chat") })

	sim.SetModelName("sim-chat-v2")
	agenttest.Eventually(t, 10*time.Second, "a synthetic chat with sim-chat-v2", func() bool { return answered("sim-chat-v2") })
	if p, _ := r.e.Catalog().Get("v"); len(p.Models) != 1 || p.Models[0].ID != "sim-chat-v2" {
		t.Errorf("catalog models after the rename: %+v", p.Models)
	}
	mu.Lock()
	t.Logf("chats: %v", asked)
	mu.Unlock()
}

// A server behind an API key the agent lacks is an auth failure, in
// detection and in health, and never healthy. (vLLM leaves its paths
// outside /v1 open: its liveness answers, and it stays unknown because
// its kind is not identified.)
func TestServerBehindAnAPIKeyIsAuthNeverHealthy(t *testing.T) {
	_, vllm := listenSim(t, aisim.Config{Kind: probes.KindVLLM, Knobs: aisim.Knobs{APIKey: "sk-vllm"}}, "127.0.0.1:0")
	_, gw := listenSim(t, aisim.Config{Kind: probes.KindOpenAI, Knobs: aisim.Knobs{APIKey: "sk-openai"}}, "127.0.0.1:0")
	r := start(t, fmt.Sprintf(`
directory: ""
bus: {enabled: false}
detection: {attempts: 1}
health: {interval: 20ms, unhealthy_interval: 20ms, start_spread: 0, jitter: 0, synthetic: true}
targets: [{id: gw, endpoint: %q}, {id: v, endpoint: %q}]
`, gw, vllm))
	for _, id := range []string{"gw", "v"} {
		p := r.awaitDetected(id)
		if p.Detection.State != catalog.DetectFailed || !strings.Contains(p.Detection.Reason, "401") {
			t.Errorf("%s detection = %s %q, want failed with the 401", id, p.Detection.State, p.Detection.Reason)
		}
	}
	var last *health.Status
	agenttest.Eventually(t, 20*time.Second, "gw unhealthy for auth", func() bool {
		for _, id := range []string{"gw", "v"} {
			p, _ := r.e.Catalog().Get(id)
			if p.Health != nil && p.Health.State == health.StateHealthy {
				t.Fatalf("%s is healthy behind a key the agent lacks: %+v", id, p.Health)
			}
		}
		p, _ := r.e.Catalog().Get("gw")
		last = p.Health
		return last != nil && last.State == health.StateUnhealthy && last.Last != nil && last.Last.Class == probes.ClassAuth
	})
	if !strings.Contains(last.Reason, "auth") {
		t.Errorf("reason %q does not name the class", last.Reason)
	}
	r.awaitHealth("v", func(h *health.Status) bool { return h != nil && h.Checks >= 5 })
	if p, _ := r.e.Catalog().Get("v"); p.Health.State != health.StateUnknown {
		t.Errorf("v (vLLM, /health open, /v1 behind the key) = %+v, want unknown: its kind is not identified", p.Health)
	}
}

// Detection runs in at most detection.concurrency goroutines, however
// many servers wait for it: every server is asked at start, and a
// goroutine each would cost a target its stack while it waits and a
// descriptor the runtime keeps for good.
func TestDetectionRunsInAtMostConcurrencyGoroutines(t *testing.T) {
	const servers, concurrency = 40, 2
	arrived, release := make(chan struct{}, servers), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		http.NotFound(w, r)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	var b strings.Builder
	fmt.Fprintf(&b, "directory: \"\"\nbus: {enabled: false}\nhealth: {enabled: false}\ndetection: {attempts: 1, timeout: 1m, concurrency: %d}\ntargets:\n", concurrency)
	for i := range servers {
		fmt.Fprintf(&b, "  - {id: s%02d, endpoint: %q}\n", i, srv.URL)
	}
	r := start(t, b.String())
	if n := len(r.e.Catalog().List(catalog.Filter{})); n != servers {
		t.Fatalf("%d servers in the catalog, want %d", n, servers)
	}
	for range concurrency {
		<-arrived
	}
	// Besides its loop, which asks for the detections.
	if n := goroutinesIn("extmanager.(*detector)", "extmanager.(*detector).loop"); n > concurrency {
		t.Errorf("%d goroutines of the detector with %d servers waiting, want at most %d", n, servers, concurrency)
	}
	select {
	case <-arrived:
		t.Errorf("a detection past the first %d ran at once with them", concurrency)
	default:
	}
}

// goroutinesIn counts the goroutines with a frame of fn in their stacks,
// but none of not.
func goroutinesIn(fn, not string) int {
	var buf bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&buf, 2)
	n := 0
	for _, g := range strings.Split(buf.String(), "\n\n") {
		if strings.Contains(g, fn) && !strings.Contains(g, not) {
			n++
		}
	}
	return n
}
