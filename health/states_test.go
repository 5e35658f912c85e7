package health_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/agent/agenttest"
	"github.com/vitals-dev/vitals/health"
	"github.com/vitals-dev/vitals/internal/aisim"
	"github.com/vitals-dev/vitals/probes"
)

// TestStates drives one aisim server into each state and checks that the
// engine reaches it within the checks its rule allows (failure_threshold
// checks after the fault, plus one that began before it; stuck_after's
// worth of checks for the progress rule), with a reason that says why.
func TestStates(t *testing.T) {
	base := fastConfig()
	F := base.FailureThreshold
	const stuckAfter = 60 * time.Millisecond
	cases := []struct {
		name string
		kind probes.Kind
		cfg  func(*health.Config)
		// setup runs before the target is added; with warm set the
		// plugin is first healthy and fault then runs.
		setup  func(t *testing.T, s *aisim.Server, tg *health.Target)
		warm   bool
		fault  func(s *aisim.Server)
		want   health.State
		reason string
		// within is how many checks after the fault the state may take.
		within int
		// holds, when set, tells when the fault has taken hold on the
		// server (a queue takes a while to build): checks are counted
		// from then.
		holds func(*aisim.Server) bool
	}{
		{name: "healthy", kind: probes.KindVLLM, want: health.StateHealthy, within: 1},
		{name: "degraded", kind: probes.KindOpenAI, warm: true,
			cfg:   func(c *health.Config) { c.LatencySLO = agent.Duration(20 * time.Millisecond) },
			fault: func(s *aisim.Server) { s.SetLatency(30*time.Millisecond, 0) },
			want:  health.StateDegraded, reason: "latency above its SLO", within: F + 1},
		{name: "overloaded", kind: probes.KindVLLM, warm: true,
			cfg: func(c *health.Config) { c.Synthetic = false },
			fault: func(s *aisim.Server) {
				_ = s.Update(func(k *aisim.Knobs) { k.Slots, k.Load, k.TokenInterval = 1, 12, aisim.Duration(time.Millisecond) })
			},
			// One check may begin before the queue, one is the baseline the
			// next show progress from, then failure_threshold.
			want: health.StateOverloaded, reason: "requests waiting (overloaded_queue 4) while work completes", within: F + 3,
			holds: func(s *aisim.Server) bool { return s.Stats().Waiting > 4 }},
		{name: "loading-llamacpp", kind: probes.KindLlamaCpp, warm: true,
			fault: func(s *aisim.Server) { s.SetLoading(true) },
			want:  health.StateLoading, reason: "Loading model", within: 2},
		{name: "cold-ollama", kind: probes.KindOllama,
			setup: func(t *testing.T, s *aisim.Server, _ *health.Target) {
				if err := s.Update(func(k *aisim.Knobs) { k.KeepAlive = 0 }); err != nil {
					t.Fatal(err)
				}
			},
			want: health.StateCold, reason: `model "tiny:latest" is not loaded`, within: 1},
		{name: "sleeping-vllm", kind: probes.KindVLLM, warm: true,
			setup: func(_ *testing.T, s *aisim.Server, _ *health.Target) { s.SetVersion("0.11.0") }, // it has vllm:engine_sleep_state
			fault: func(s *aisim.Server) { s.SetSleepLevel(1) },
			want:  health.StateSleeping, reason: "the engine sleeps", within: 2},
		{name: "stuck-no-progress", kind: probes.KindVLLM, warm: true,
			cfg: func(c *health.Config) { c.Synthetic, c.StuckAfter = false, agent.Duration(stuckAfter) },
			fault: func(s *aisim.Server) {
				_ = s.Update(func(k *aisim.Knobs) { k.Load, k.Stuck = 2, true })
			},
			want: health.StateStuck, reason: "generated-tokens counter has not moved for",
			within: int(stuckAfter/base.Interval.D()) + 3},
		{name: "stuck-synthetic", kind: probes.KindLlamaCpp, warm: true,
			fault: func(s *aisim.Server) { s.SetStuck(true) },
			want:  health.StateStuck, reason: "did not finish", within: F + 1},
		{name: "unhealthy", kind: probes.KindTGI, warm: true,
			fault: func(s *aisim.Server) { s.SetDown(true) },
			want:  health.StateUnhealthy, reason: "failed 3 checks in a row (reset)", within: F + 1},
		{name: "unknown-unidentified", kind: probes.KindOpenAI,
			setup: func(_ *testing.T, _ *aisim.Server, tg *health.Target) { tg.Kind = probes.KindAuto },
			want:  health.StateUnknown, reason: "kind not identified yet", within: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := base
			if tc.cfg != nil {
				tc.cfg(&c)
			}
			s, srv := sim(t, tc.kind, 1)
			if tc.kind == probes.KindOllama && !tc.warm {
				// sim warmed it: unload, as Ollama does when its keep-alive
				// runs out.
				unload(t, srv.URL, aisimModel(tc.kind))
			}
			r := newRig(t, c)
			id := "sim-" + tc.name
			tg := target(id, tc.kind, srv.URL)
			if tc.kind == probes.KindOllama {
				tg.Model = aisimModel(tc.kind)
			}
			if tc.setup != nil {
				tc.setup(t, s, &tg)
			}
			r.e.Upsert(tg)
			var before []health.Status
			if tc.warm {
				before = r.awaitState(id, health.StateHealthy)
				tc.fault(s)
				if tc.holds != nil {
					agenttest.Eventually(t, 10*time.Second, "the fault takes hold", func() bool { return tc.holds(s) })
					before = r.await(id, "checked", func([]health.Status) bool { return true })
				}
			}
			all := r.awaitState(id, tc.want)
			after := all[min(len(before), len(all)):]
			if len(after) > tc.within {
				t.Errorf("%s after %d checks, want at most %d: %s", tc.want, len(after), tc.within, summary(after))
			}
			last := all[len(all)-1]
			if !strings.Contains(last.Reason, tc.reason) {
				t.Errorf("reason %q, want it to say %q", last.Reason, tc.reason)
			}
			for _, v := range before {
				if v.State == health.StateHealthy && tc.want == health.StateUnknown {
					t.Errorf("healthy before it was identified")
				}
			}
			if tc.want == health.StateUnknown {
				// Never healthy before it is identified, however long.
				vs := r.await(id, "checked more", func(vs []health.Status) bool { return len(vs) >= 3*F })
				for _, v := range vs {
					if v.State != health.StateUnknown {
						t.Fatalf("unidentified server went %s (%s)", v.State, v.Reason)
					}
				}
			}
			if tc.want == health.StateSleeping {
				// A probe never wakes it: no inference is sent, or it would
				// wait in the sleeping engine's queue, time out and make
				// the plugin stuck within failure_threshold checks.
				n := len(all)
				vs := r.await(id, "checked more", func(vs []health.Status) bool { return len(vs) >= n+3*F })
				for _, v := range vs[n:] {
					if v.State != health.StateSleeping {
						t.Fatalf("sleeping server went %s (%s)", v.State, v.Reason)
					}
				}
				if st := s.Stats(); st.Running != 0 || st.Waiting != 0 {
					t.Errorf("sleeping server has %d running and %d waiting, want none of the agent's", st.Running, st.Waiting)
				}
			}
			// The state series says it (set once the transition is
			// announced, just after the verdict).
			agenttest.Eventually(t, 5*time.Second, "the state series at 1", func() bool {
				return testutil.ToFloat64(stateGauge(t, r.e, id, tc.want)) == 1
			})
		})
	}
}

// TestLoadingPortClosed: a vLLM whose process runs while its port is
// closed (it opens it once its model is loaded) is loading, not
// unhealthy; once loaded it is healthy.
func TestLoadingPortClosed(t *testing.T) {
	s, err := aisim.New(aisim.Config{Kind: probes.KindVLLM, Knobs: aisim.Knobs{Loading: true}})
	if err != nil {
		t.Fatal(err)
	}
	ep, err := s.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ep.Close(); s.Close() })
	// The engine's process: one that runs for the test.
	proc := exec.Command("sleep", "600")
	if err := proc.Start(); err != nil {
		t.Skip("no sleep(1) to stand for the engine's process:", err)
	}
	t.Cleanup(func() { _ = proc.Process.Kill(); _ = proc.Wait() })

	cfg := fastConfig()
	r := newRig(t, cfg)
	tg := target("vllm-loading", probes.KindVLLM, ep.URL())
	tg.PID = proc.Process.Pid
	r.e.Upsert(tg)
	vs := r.awaitState(tg.ID, health.StateLoading)
	if len(vs) > 1 {
		t.Errorf("loading after %d checks, want 1: %s", len(vs), summary(vs))
	}
	if last := vs[len(vs)-1]; !strings.Contains(last.Reason, "its port is not open yet") {
		t.Errorf("reason %q", last.Reason)
	}
	// Loading for longer than the failure threshold stays loading.
	r.await(tg.ID, "checked past the failure threshold", func(vs []health.Status) bool { return len(vs) > 2*cfg.FailureThreshold })
	if st, _ := r.e.Status(tg.ID); st.State != health.StateLoading {
		t.Fatalf("state %s (%s), want loading", st.State, st.Reason)
	}
	s.SetLoading(false)
	r.awaitState(tg.ID, health.StateHealthy)

	// The same refusal with no process of its own is an outage.
	_ = proc.Process.Kill()
	_ = proc.Wait()
	ep.Close()
	r.awaitState(tg.ID, health.StateUnhealthy)
}

// TestColdNeverLoads: probing a cold Ollama leaves its model unloaded.
func TestColdNeverLoads(t *testing.T) {
	_, srv := sim(t, probes.KindOllama, 1)
	unload(t, srv.URL, aisimModel(probes.KindOllama))
	r := newRig(t, fastConfig())
	tg := target("ollama-cold", probes.KindOllama, srv.URL)
	tg.Model = aisimModel(probes.KindOllama)
	r.e.Upsert(tg)
	vs := r.await(tg.ID, "checked 10 times", func(vs []health.Status) bool { return len(vs) >= 10 })
	for _, v := range vs {
		if v.State != health.StateCold {
			t.Fatalf("state %s (%s), want cold throughout", v.State, v.Reason)
		}
	}
	if n := loadedModels(t, srv.URL); n != 0 {
		t.Fatalf("%d models loaded after probing a cold server", n)
	}
	// A user's request loads it: healthy.
	warm(t, srv.URL, aisimModel(probes.KindOllama))
	r.awaitState(tg.ID, health.StateHealthy)
}

// TestSyntheticKeepsOllamaExpiry: against an Ollama model loaded with the
// server's default keep-alive, the checks send no inference, which would
// move its expires_at and shorten the keep-alive of the users' next
// requests. They record the synthetic inference as skipped with the
// reason, healthy by liveness, readiness and /api/ps alone; expires_at
// does not move, and a user's next request still gets the 5m default.
func TestSyntheticKeepsOllamaExpiry(t *testing.T) {
	_, srv := sim(t, probes.KindOllama, 1)
	model := aisimModel(probes.KindOllama)
	unload(t, srv.URL, model)
	load := func() {
		t.Helper()
		resp, err := http.Post(srv.URL+"/api/generate", "application/json", strings.NewReader(`{"model":"`+model+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	load() // no keep_alive: Ollama's default, five minutes
	before := psExpiry(t, srv.URL)
	r := newRig(t, fastConfig())
	tg := target("ollama-expiring", probes.KindOllama, srv.URL)
	r.e.Upsert(tg)
	vs := r.await(tg.ID, "checked 10 times", func(vs []health.Status) bool { return len(vs) >= 10 })
	for _, v := range vs[2:] { // the first may be passive: the load completed a request
		if v.State != health.StateHealthy || v.Class != "" || !strings.HasPrefix(v.Reason, "synthetic not sent: ") ||
			!strings.Contains(v.Reason, "expires_at") || !strings.Contains(v.Reason, before) {
			t.Fatalf("state %s (%s, class %q); want healthy, the synthetic inference not sent, saying until when the model stays",
				v.State, v.Reason, v.Class)
		}
	}
	if after := psExpiry(t, srv.URL); after != before {
		t.Fatalf("expires_at moved from %s to %s", before, after)
	}
	sent := time.Now()
	load()
	at, err := time.Parse(time.RFC3339Nano, psExpiry(t, srv.URL))
	if err != nil || at.Before(sent.Add(5*time.Minute)) || at.After(time.Now().Add(5*time.Minute)) {
		t.Fatalf("a user's request without keep_alive keeps the model until %s (%v), want 5m after it", at, err)
	}
}

// psExpiry is the expires_at of the one model /api/ps lists.
func psExpiry(t *testing.T, url string) string {
	t.Helper()
	b, err := probes.Fetch(context.Background(), http.DefaultClient, http.MethodGet, url+"/api/ps", nil)
	if err != nil {
		t.Fatal(err)
	}
	var ps struct {
		Models []struct {
			ExpiresAt string `json:"expires_at"`
		} `json:"models"`
	}
	if err := json.Unmarshal(b, &ps); err != nil || len(ps.Models) != 1 {
		t.Fatalf("/api/ps %s: %v", b, err)
	}
	return ps.Models[0].ExpiresAt
}

func unload(t *testing.T, url, model string) {
	t.Helper()
	resp, err := http.Post(url+"/api/generate", "application/json", strings.NewReader(`{"model":"`+model+`","keep_alive":0}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

func loadedModels(t *testing.T, url string) int {
	t.Helper()
	b, err := probes.Fetch(context.Background(), http.DefaultClient, http.MethodGet, url+"/api/ps", nil)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), `"name"`)
}

func stateGauge(t *testing.T, e *health.Engine, id string, s health.State) prometheus.Collector {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e.Metrics())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "vitals_ai_plugin_health_state" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var plugin, state string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "plugin":
					plugin = l.GetValue()
				case "state":
					state = l.GetValue()
				}
			}
			if plugin == id && state == string(s) {
				g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "x"})
				g.Set(m.GetGauge().GetValue())
				return g
			}
		}
	}
	// A state other than the current one has no series.
	return prometheus.NewGauge(prometheus.GaugeOpts{Name: "x"})
}

// TestSignalsExported: the engine reads a busy vLLM's own signals on
// every check, synthetic off, and exports them under the normalized
// names; when the server goes away the series go with it.
func TestSignalsExported(t *testing.T) {
	s, srv := sim(t, probes.KindVLLM, 1)
	_ = s.Update(func(k *aisim.Knobs) { k.Slots, k.Load = 1, 3 })
	cfg := fastConfig()
	cfg.Synthetic = false
	r := newRig(t, cfg)
	r.e.Upsert(target("busy", probes.KindVLLM, srv.URL))
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(r.e.Metrics())
	value := func(name string) (float64, bool) {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == name {
				m := mf.GetMetric()[0]
				if m.GetCounter() != nil {
					return m.GetCounter().GetValue(), true
				}
				return m.GetGauge().GetValue(), true
			}
		}
		return 0, false
	}
	agenttest.Eventually(t, 10*time.Second, "running 1, waiting 2 and tokens counted", func() bool {
		run, ok1 := value("vitals_ai_requests_running")
		wait, ok2 := value("vitals_ai_requests_waiting")
		tok, ok3 := value("vitals_ai_server_generated_tokens_total")
		_, ok4 := value("vitals_ai_kv_cache_usage_ratio")
		_, ok5 := value("vitals_ai_server_requests_total")
		return ok1 && ok2 && ok3 && ok4 && ok5 && run == 1 && wait == 2 && tok > 0
	})
	srv.Close()
	agenttest.Eventually(t, 10*time.Second, "the signal series gone with the server", func() bool {
		_, ok := value("vitals_ai_requests_running")
		return !ok
	})
}

// TestDecisionTimes: a check's record and its transition carry the time
// the verdict was decided, after the probes, and the check's start and
// duration beside it, in memory and in the SQLite store.
func TestDecisionTimes(t *testing.T) {
	_, srv := sim(t, probes.KindOpenAI, 1)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond) // the server's latency, so the check takes time
		resp, err := http.Get(srv.URL + r.URL.Path)
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
	t.Cleanup(slow.Close)
	cfg := fastConfig()
	cfg.Synthetic = false
	r := newRig(t, cfg)
	r.e.Upsert(target("timed", probes.KindOpenAI, slow.URL))
	r.awaitState("timed", health.StateHealthy)
	cs, ts, err := r.e.History().Query(context.Background(), "timed", time.Now().Add(-time.Hour), time.Now().Add(time.Hour), 10)
	if err != nil || len(cs) == 0 || len(ts) == 0 {
		t.Fatalf("history: %d checks, %d transitions, %v", len(cs), len(ts), err)
	}
	first := cs[len(cs)-1]
	if d := first.Time.Sub(first.Started.Add(first.Duration)).Abs(); first.Duration < 20*time.Millisecond || d > time.Millisecond {
		t.Errorf("check started %v, took %v, decided %v: want decided = started + duration, duration >= 20ms",
			first.Started, first.Duration, first.Time)
	}
	tr := ts[len(ts)-1]
	if !tr.Time.Equal(first.Time) || !tr.Started.Equal(first.Started) {
		t.Errorf("transition at %v (check started %v), want the check's decision %v (started %v)", tr.Time, tr.Started, first.Time, first.Started)
	}
}
