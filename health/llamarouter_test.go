package health_test

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/health"
	"github.com/vitals-dev/vitals/internal/aisim"
	"github.com/vitals-dev/vitals/probes"
)

// TestLlamaCppRouter: against a llama.cpp router (multi-model mode) with a
// model loaded, one unloaded, one sleeping and one loading, many checks of
// a target per model never make the router load or wake a model: the
// unloaded model's target is cold, naming the model; the loaded one's is
// healthy, its synthetic inference sent; the sleeping one's sleeping; the
// loading one's loading. With signals off the probes still load nothing:
// the synthetic inference finds the unloaded model cold and the sleeping
// one asleep, and sends neither anything.
func TestLlamaCppRouter(t *testing.T) {
	t.Run("signals", func(t *testing.T) { testLlamaCppRouter(t, true) })
	t.Run("no-signals", func(t *testing.T) { testLlamaCppRouter(t, false) })
}

func testLlamaCppRouter(t *testing.T, signals bool) {
	s, err := aisim.New(aisim.Config{Kind: probes.KindLlamaCpp,
		Knobs: aisim.Knobs{LoadTime: aisim.Duration(time.Hour)},
		Router: []aisim.RouterModel{{Name: "warm", Status: aisim.RouterLoaded}, {Name: "cold"},
			{Name: "dozing", Status: aisim.RouterSleeping}, {Name: "waking", Status: aisim.RouterLoading}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(func() { s.Close(); srv.Close() })
	chat := []probes.Capability{probes.CapChat, probes.CapCompletion}
	var models []probes.Model
	for _, id := range []string{"warm", "cold", "dozing", "waking"} {
		models = append(models, probes.Model{ID: id, Capabilities: chat})
	}
	cases := []struct {
		model  string
		want   health.State
		reason string
	}{
		{"warm", health.StateHealthy, ""},
		{"cold", health.StateCold, `model "cold" is not loaded`},
		{"dozing", health.StateSleeping, "the engine sleeps"},
		{"waking", health.StateLoading, `model "waking" is loading`},
	}
	cfg := fastConfig()
	cfg.Signals = signals
	// Every verdict is checked: a probe timing out on a loaded machine
	// would decide one by itself.
	cfg.Timeout = agent.Duration(10 * time.Second)
	r := newRig(t, cfg)
	for _, tc := range cases {
		tg := target("router-"+tc.model, probes.KindLlamaCpp, srv.URL)
		tg.Model, tg.Models, tg.Capabilities = tc.model, models, chat
		r.e.Upsert(tg)
	}
	const checks = 12
	for _, tc := range cases {
		id := "router-" + tc.model
		vs := r.await(id, "checked 12 times", func(vs []health.Status) bool { return len(vs) >= checks })
		for _, v := range vs {
			if v.State != tc.want || !strings.Contains(v.Reason, tc.reason) {
				t.Fatalf("%s: %s (%s), want %s (%s) throughout: %s", id, v.State, v.Reason, tc.want, tc.reason, summary(vs))
			}
		}
	}
	if n, w := s.RouterLoads(), s.RouterWakes(); n != 0 || w != 0 {
		t.Fatalf("the checks made the router load %d models and wake %d", n, w)
	}
	if st := s.Stats(); st.CompletionTokens == 0 {
		t.Fatalf("no synthetic inference reached the loaded model: %+v", st)
	}
	for _, m := range []string{"cold", "dozing", "waking"} {
		if st := s.RouterStatus(m); st == aisim.RouterLoaded {
			t.Fatalf("model %s is loaded after the checks", m)
		}
	}
}
