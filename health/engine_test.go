package health_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/health"
	"github.com/vitals-dev/vitals/internal/aisim"
	"github.com/vitals-dev/vitals/probes"
	"github.com/vitals-dev/vitals/probes/ollama"
	"github.com/vitals-dev/vitals/probes/probestest"
)

func TestMain(m *testing.M) {
	if childMain() || probestest.FakeOllamaMain() {
		return
	}
	goleak.VerifyTestMain(m)
}

// fastConfig is the default config with small intervals, no start spread
// and no jitter, and the synthetic inference on.
func fastConfig() health.Config {
	c := health.DefaultConfig()
	c.Interval = agent.Duration(5 * time.Millisecond)
	c.UnhealthyInterval = agent.Duration(5 * time.Millisecond)
	c.Timeout = agent.Duration(300 * time.Millisecond)
	c.StartSpread, c.Jitter = 0, 0
	c.Synthetic = true
	return c
}

// rig runs an engine and records every verdict.
type rig struct {
	t      *testing.T
	e      *health.Engine
	client *http.Client

	mu       sync.Mutex
	verdicts map[string][]health.Status
	trans    []health.Transition
	changed  chan struct{}
}

func newRig(t *testing.T, cfg health.Config, opts ...func(*health.Options)) *rig {
	t.Helper()
	r := &rig{t: t, client: &http.Client{Transport: &http.Transport{}}, verdicts: map[string][]health.Status{},
		changed: make(chan struct{}, 1)}
	o := health.Options{
		Config: cfg, Client: r.client,
		OnVerdict: func(id string, s health.Status) {
			r.mu.Lock()
			r.verdicts[id] = append(r.verdicts[id], s)
			r.mu.Unlock()
			select {
			case r.changed <- struct{}{}:
			default:
			}
		},
		OnTransition: func(_ context.Context, tr health.Transition) {
			r.mu.Lock()
			r.trans = append(r.trans, tr)
			r.mu.Unlock()
		},
	}
	for _, f := range opts {
		f(&o)
	}
	r.e = health.New(o)
	r.e.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := r.e.Stop(ctx); err != nil {
			t.Error(err)
		}
		r.client.CloseIdleConnections()
	})
	return r
}

// await waits until ok holds for the verdicts of id, or fails after a
// generous deadline; it returns the verdicts.
func (r *rig) await(id string, what string, ok func([]health.Status) bool) []health.Status {
	r.t.Helper()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		vs := append([]health.Status(nil), r.verdicts[id]...)
		r.mu.Unlock()
		if ok(vs) {
			return vs
		}
		select {
		case <-r.changed:
		case <-deadline.C:
			r.t.Fatalf("%s: never %s; verdicts: %s", id, what, summary(vs))
		}
	}
}

// awaitState waits for state and returns the verdicts up to and including
// the first one in it.
func (r *rig) awaitState(id string, s health.State) []health.Status {
	r.t.Helper()
	vs := r.await(id, string(s), func(vs []health.Status) bool {
		for _, v := range vs {
			if v.State == s {
				return true
			}
		}
		return false
	})
	for i, v := range vs {
		if v.State == s {
			return vs[:i+1]
		}
	}
	return vs
}

func (r *rig) transitions(id string) []health.Transition {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []health.Transition
	for _, t := range r.trans {
		if t.Plugin == id {
			out = append(out, t)
		}
	}
	return out
}

func summary(vs []health.Status) string {
	s := ""
	if len(vs) > 30 {
		s = fmt.Sprintf("(%d more) ", len(vs)-30)
		vs = vs[len(vs)-30:]
	}
	for _, v := range vs {
		s += string(v.State)
		if v.Class != "" {
			s += "(" + string(v.Class) + ")"
		}
		s += " "
	}
	return s
}

// sim serves an aisim server of kind on loopback.
func sim(t *testing.T, kind probes.Kind, seed uint64) (*aisim.Server, *httptest.Server) {
	t.Helper()
	s, err := aisim.New(aisim.Config{Kind: kind, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(func() {
		s.Close()
		srv.Close()
	})
	if kind == probes.KindOllama {
		// A warm Ollama, its model loaded for good: a model not loaded is
		// cold, and the probes never load one (TestStates has that).
		warm(t, srv.URL, aisimModel(kind))
	}
	return s, srv
}

// warm loads model on the Ollama at url and keeps it loaded, as a user's
// request with keep_alive -1 does.
func warm(t *testing.T, url, model string) {
	t.Helper()
	resp, err := http.Post(url+"/api/generate", "application/json",
		strings.NewReader(`{"model":"`+model+`","keep_alive":-1}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("load %s: http %d", model, resp.StatusCode)
	}
}

// target is a server as the catalog describes it after detection.
func target(id string, kind probes.Kind, url string) health.Target {
	chat := []probes.Capability{probes.CapChat}
	return health.Target{ID: id, Mode: health.ModeHTTP, Kind: kind, Endpoint: url, Capabilities: chat,
		Models: []probes.Model{{ID: aisimModel(kind), Capabilities: chat}}}
}

func aisimModel(k probes.Kind) string {
	switch k {
	case probes.KindOllama:
		return "tiny:latest"
	case probes.KindKServe:
		return "sim-llm"
	case probes.KindLlamaCpp:
		return "tiny"
	}
	return "sim-chat"
}

// TestFaults runs one aisim server per fault and checks that the plugin
// ends in the right state, with the right error class, within
// failure_threshold checks of the fault (or the SLO's threshold).
func TestFaults(t *testing.T) {
	cfg := fastConfig()
	F := cfg.FailureThreshold
	cases := []struct {
		name  string
		kind  probes.Kind
		cfg   func(*health.Config)
		fault func(s *aisim.Server, srv *httptest.Server)
		want  health.State
		class probes.ErrorClass
		// warm loads the model first: a synthetic inference runs only
		// against a loaded Ollama model.
		warm bool
	}{
		{name: "down", kind: probes.KindOpenAI, fault: func(s *aisim.Server, _ *httptest.Server) { s.SetDown(true) },
			want: health.StateUnhealthy, class: probes.ClassReset},
		{name: "refused", kind: probes.KindOllama, fault: func(_ *aisim.Server, srv *httptest.Server) { srv.Close() },
			want: health.StateUnhealthy, class: probes.ClassRefused},
		{name: "hang", kind: probes.KindLlamaCpp, fault: func(s *aisim.Server, _ *httptest.Server) { s.SetHang(true) },
			want: health.StateUnhealthy, class: probes.ClassTimeout},
		{name: "stuck", kind: probes.KindOllama, fault: func(s *aisim.Server, _ *httptest.Server) { s.SetStuck(true) },
			want: health.StateStuck, class: probes.ClassStuck, warm: true},
		{name: "stuck-openai", kind: probes.KindVLLM, fault: func(s *aisim.Server, _ *httptest.Server) { s.SetStuck(true) },
			want: health.StateStuck, class: probes.ClassStuck},
		{name: "5xx", kind: probes.KindTGI, fault: func(s *aisim.Server, _ *httptest.Server) { s.SetErrorRate(1) },
			want: health.StateUnhealthy, class: probes.ClassHTTP5xx},
		{name: "garbage", kind: probes.KindKServe, fault: func(s *aisim.Server, _ *httptest.Server) { s.SetGarbage(true) },
			want: health.StateUnhealthy, class: probes.ClassBadResponse},
		{name: "slow", kind: probes.KindOpenAI,
			cfg:   func(c *health.Config) { c.LatencySLO = agent.Duration(20 * time.Millisecond) },
			fault: func(s *aisim.Server, _ *httptest.Server) { s.SetLatency(30*time.Millisecond, 0) },
			want:  health.StateDegraded},
		{name: "slow-first-token", kind: probes.KindLlamaCpp,
			cfg:   func(c *health.Config) { c.TTFTSLO = agent.Duration(20 * time.Millisecond) },
			fault: func(s *aisim.Server, _ *httptest.Server) { s.SetSlowFirstToken(40 * time.Millisecond) },
			want:  health.StateDegraded},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := cfg
			if tc.cfg != nil {
				tc.cfg(&c)
			}
			s, srv := sim(t, tc.kind, 1)
			if tc.warm {
				warmOllama(t, srv.URL)
			}
			r := newRig(t, c)
			id := "sim-" + tc.name
			r.e.Upsert(target(id, tc.kind, srv.URL))
			before := r.awaitState(id, health.StateHealthy)
			tc.fault(s, srv)
			all := r.awaitState(id, tc.want)
			after := all[len(before):]
			// Checks that began before the fault may still pass; allow one.
			limit := F + 1
			if len(after) > limit {
				t.Errorf("%s after %d checks, want at most %d: %s", tc.want, len(after), limit, summary(after))
			}
			last := all[len(all)-1]
			if tc.class != "" && last.Class != tc.class {
				t.Errorf("class = %q, want %q (%s)", last.Class, tc.class, last.Reason)
			}
			if tc.want == health.StateDegraded && last.Reason == "" {
				t.Error("degraded without a reason")
			}
			if tc.want == health.StateUnhealthy {
				// The JSON of the admin API: the host's vocabulary
				// beside the typed state.
				b, err := json.Marshal(last)
				var got struct {
					Status agent.HealthStatus `json:"status"`
					State  health.State       `json:"state"`
					Class  probes.ErrorClass  `json:"class"`
				}
				if err == nil {
					err = json.Unmarshal(b, &got)
				}
				if err != nil || got.Status != agent.HealthFailing || got.State != health.StateUnhealthy || got.Class != tc.class {
					t.Errorf("status JSON = %s (%v)", b, err)
				}
			}
		})
	}
}

// TestIntermittentErrorsDoNotFlap: at 20% errors on every request, the
// default thresholds settle on degraded and stay there.
func TestIntermittentErrorsDoNotFlap(t *testing.T) {
	const checks = 150
	s, srv := sim(t, probes.KindOpenAI, 7)
	s.SetErrorRate(0.2)
	r := newRig(t, fastConfig())
	r.e.Upsert(target("flaky", probes.KindOpenAI, srv.URL))
	vs := r.await("flaky", "checked enough", func(vs []health.Status) bool { return len(vs) >= checks })
	trans := r.transitions("flaky")
	for _, tr := range trans {
		if tr.To == health.StateUnhealthy {
			t.Errorf("went unhealthy: %+v", tr)
		}
	}
	if len(trans) > 2 {
		t.Errorf("%d transitions, want at most 2 (to healthy, to degraded): %+v", len(trans), trans)
	}
	if got := vs[len(vs)-1].State; got != health.StateDegraded {
		t.Errorf("state after %d checks = %s, want degraded", len(vs), got)
	}
}

// TestRecovery: a server that was down and comes back is healthy again
// after success_threshold good checks, and the dependency rule follows it.
func TestRecovery(t *testing.T) {
	cfg := fastConfig()
	s, srv := sim(t, probes.KindOpenAI, 1)
	_, srv2 := sim(t, probes.KindOpenAI, 2)
	r := newRig(t, cfg)
	r.e.Upsert(target("base", probes.KindOpenAI, srv.URL))
	dep := target("app", probes.KindOpenAI, srv2.URL)
	dep.Dependencies = []string{"base"}
	r.e.Upsert(dep)
	r.awaitState("base", health.StateHealthy)
	r.awaitState("app", health.StateHealthy)

	s.SetDown(true)
	r.awaitState("base", health.StateUnhealthy)
	r.await("app", "degraded by its dependency", func(vs []health.Status) bool {
		return len(vs) > 0 && vs[len(vs)-1].State == health.StateDegraded
	})
	if st, _ := r.e.Status("app"); st.Reason != "dependency unhealthy: base" {
		t.Errorf("app reason = %q", st.Reason)
	}
	n := len(r.awaitState("base", health.StateUnhealthy))
	_ = n
	s.SetDown(false)
	before, _ := r.e.Status("base")
	vs := r.await("base", "healthy again", func(vs []health.Status) bool {
		return len(vs) > 0 && vs[len(vs)-1].State == health.StateHealthy
	})
	after := int(vs[len(vs)-1].Checks - before.Checks)
	if after > cfg.SuccessThreshold+1 {
		t.Errorf("healthy after %d checks, want at most %d", after, cfg.SuccessThreshold+1)
	}
	r.await("app", "healthy again", func(vs []health.Status) bool {
		return len(vs) > 0 && vs[len(vs)-1].State == health.StateHealthy
	})
}

func simB(b *testing.B) (*aisim.Server, string) {
	b.Helper()
	s, err := aisim.New(aisim.Config{Kind: probes.KindOpenAI})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(s)
	b.Cleanup(func() { s.Close(); srv.Close() })
	return s, srv.URL
}

// warmOllama loads the Ollama model of target() for good, as a user's
// request with keep_alive -1 would: the only model a synthetic inference
// is sent to.
func warmOllama(t *testing.T, base string) {
	t.Helper()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	_, err := ollama.New(&http.Client{Transport: tr}, base).ChatStream(context.Background(), ollama.ChatRequest{
		Model: aisimModel(probes.KindOllama), Messages: []ollama.Message{{Role: "user", Content: "hi"}},
		Options: map[string]any{"num_predict": 1}, KeepAlive: -1})
	if err != nil {
		t.Fatal(err)
	}
}
