package health_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/health"
	"github.com/vitals-dev/vitals/probes"
	"github.com/vitals-dev/vitals/probes/openai"
)

// series returns the value of every sample of family name in the
// engine's metrics, by the value of label (every sample when label is "").
func series(t *testing.T, e *health.Engine, name, label string) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e.Metrics())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			key := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == label {
					key = l.GetValue()
				}
			}
			out[key] += value(m)
		}
	}
	return out
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	return 0
}

// checks returns the plugin's checks in the engine's history, oldest
// first.
func checks(t *testing.T, e *health.Engine, id string) []health.CheckRecord {
	t.Helper()
	cs, _, err := e.History().Query(context.Background(), id, time.Time{}, time.Now().Add(48*time.Hour), 10000)
	if err != nil {
		t.Fatal(err)
	}
	for i, j := 0, len(cs)-1; i < j; i, j = i+1, j-1 {
		cs[i], cs[j] = cs[j], cs[i]
	}
	return cs
}

func synthetic(c health.CheckRecord) *health.ProbeOutcome {
	for i, p := range c.Probes {
		if p.Probe == probes.Synthetic {
			return &c.Probes[i]
		}
	}
	return nil
}

// stop stops the rig's engine, so what it counted stands still.
func (r *rig) stop() {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.e.Stop(ctx); err != nil {
		r.t.Fatal(err)
	}
}

// The tokens the agent spends are the usage the server returned, counted
// by type; on a vLLM with no other client they are what the server's own
// counter says it generated.
func TestProbeTokensCounted(t *testing.T) {
	cfg := fastConfig()
	s, srv := sim(t, probes.KindVLLM, 1)
	r := newRig(t, cfg)
	r.e.Upsert(target("llm", probes.KindVLLM, srv.URL))
	r.await("llm", "checked 5 times", func(vs []health.Status) bool { return len(vs) >= 5 })
	r.stop()
	ran := 0
	for _, c := range checks(t, r.e, "llm") {
		if o := synthetic(c); o != nil && o.OK {
			ran++
		}
	}
	got := series(t, r.e, "vitals_ai_probe_tokens_total", "type")
	// aisim counts a word a token: "Say ok." is 2 prompt tokens, and the
	// answer is cut at the budget of 2.
	if got["prompt"] != float64(2*ran) || got["completion"] != float64(2*ran) || ran < 5 {
		t.Errorf("tokens = %v after %d synthetic inferences, want 2 prompt and 2 completion each", got, ran)
	}
	c := &http.Client{}
	sig, err := probes.ReadMetrics(openai.VLLMSignals)(context.Background(), c, probes.Target{BaseURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if sig.GeneratedTokens != got["completion"] {
		t.Errorf("the server generated %g tokens, the agent counted %g", sig.GeneratedTokens, got["completion"])
	}
	_ = s
}

// offsetClock is the wall clock moved by an offset the test sets.
type offsetClock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *offsetClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *offsetClock) NewTimer(d time.Duration) health.Timer { return health.RealClock{}.NewTimer(d) }

func (c *offsetClock) add(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

// Once a plugin's daily token budget is spent its synthetic inference is
// skipped, with a reason naming the key, counted as skipped and never as
// a success, until the next UTC day.
func TestDailyTokenBudget(t *testing.T) {
	cfg := fastConfig()
	cfg.Plugins = map[string]health.PluginConfig{"llm": {DailyTokenBudget: 8}} // two inferences of 4 tokens
	_, srv := sim(t, probes.KindOpenAI, 1)
	noon := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clk := &offsetClock{off: time.Until(noon)}
	r := newRig(t, cfg, func(o *health.Options) { o.Clock = clk })
	r.e.Upsert(target("llm", probes.KindOpenAI, srv.URL))
	r.await("llm", "checked 6 times", func(vs []health.Status) bool { return len(vs) >= 6 })

	spent := func() float64 {
		got := series(t, r.e, "vitals_ai_probe_tokens_total", "type")
		return got["prompt"] + got["completion"]
	}
	if got := spent(); got != 8 {
		t.Errorf("spent %g tokens on the first day, want the budget, 8", got)
	}
	var skipped *health.ProbeOutcome
	for _, c := range checks(t, r.e, "llm") {
		if o := synthetic(c); o != nil && o.Skipped {
			skipped = o
			if c.State != health.StateHealthy || o.OK || !o.Informational {
				t.Errorf("check with the budget spent: state %s, synthetic %+v", c.State, o)
			}
		}
	}
	if skipped == nil || !strings.Contains(skipped.Reason, "plugins.llm.daily_token_budget") || !strings.Contains(skipped.Reason, "8 of 8") {
		t.Fatalf("no skipped synthetic inference with its reason: %+v", skipped)
	}
	if st, _ := r.e.Status("llm"); st.State != health.StateHealthy || !strings.Contains(st.Reason, "synthetic not sent: daily token budget spent") {
		t.Errorf("status with the budget spent: %s %q", st.State, st.Reason)
	}
	res := series(t, r.e, "vitals_ai_probe_total", "result")
	if res["skipped"] == 0 {
		t.Errorf("skipped inferences not counted: %v", res)
	}

	// The next UTC day the budget is there again.
	clk.add(24 * time.Hour)
	r.await("llm", "spent the next day's budget", func([]health.Status) bool { return spent() >= 16 })
	r.stop()
	if got := spent(); got != 16 {
		t.Errorf("spent %g tokens over two days, want 16", got)
	}
}

// A server that refuses the token budget as below the model's minimum is
// a config error that says which key to raise.
func TestBudgetBelowModelMinimum(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/models":
			_, _ = w.Write([]byte(`{"object":"list","data":[{"id":"gpt-5-mini","object":"model"}]}`))
		case "/v1/chat/completions":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":{"message":"Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, but got 2 instead.","type":"invalid_request_error","param":"max_output_tokens","code":"integer_below_min_value"}}`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	r := newRig(t, fastConfig())
	tg := target("gw", probes.KindOpenAI, srv.URL)
	tg.Models[0].ID = "gpt-5-mini"
	r.e.Upsert(tg)
	vs := r.awaitState("gw", health.StateUnhealthy)
	if last := vs[len(vs)-1]; last.Class != probes.ClassConfig || !strings.Contains(last.Reason, "raise max_tokens") {
		t.Errorf("class = %q, want config, with a reason naming the key to raise: %s", last.Class, last.Reason)
	}
	r.stop()
	cs := checks(t, r.e, "gw")
	o := synthetic(cs[len(cs)-1])
	if o == nil || o.Class != probes.ClassConfig || !strings.Contains(o.Error, "Expected a value >= 16") ||
		!strings.Contains(o.Error, "raise max_tokens (now 2, at most 32)") {
		t.Errorf("synthetic = %+v", o)
	}
}

// Tokens per second come from the server's own generated-tokens counter;
// a 2-token synthetic answer gives none.
func TestTokensPerSecond(t *testing.T) {
	cfg := fastConfig()
	t.Run("synthetic answer too short", func(t *testing.T) {
		s, srv := sim(t, probes.KindOpenAI, 1)
		s.SetMetricsOff(true)
		r := newRig(t, cfg)
		r.e.Upsert(target("llm", probes.KindOpenAI, srv.URL))
		r.await("llm", "checked 5 times", func(vs []health.Status) bool { return len(vs) >= 5 })
		r.stop()
		for _, c := range checks(t, r.e, "llm") {
			if c.TPS != 0 {
				t.Errorf("tokens/s %g from a 2-token answer", c.TPS)
			}
		}
		if got := series(t, r.e, "vitals_ai_output_tokens_per_second", ""); len(got) != 0 {
			t.Errorf("tokens/s series from 2-token answers: %v", got)
		}
	})
	t.Run("server counter", func(t *testing.T) {
		s, srv := sim(t, probes.KindVLLM, 1)
		s.SetLoad(2)
		r := newRig(t, cfg)
		r.e.Upsert(target("llm", probes.KindVLLM, srv.URL))
		r.await("llm", "a rate from the server", func([]health.Status) bool {
			return series(t, r.e, "vitals_ai_output_tokens_per_second", "")[""] > 0
		})
		r.stop()
		n := 0
		for _, c := range checks(t, r.e, "llm") {
			if c.TPS > 0 {
				n++
			}
		}
		if n == 0 {
			t.Error("no check recorded the server's tokens/s")
		}
	})
}

// outcomes counts the synthetic outcomes of the plugin's checks: run
// (sent), passive and skipped.
func outcomes(t *testing.T, e *health.Engine, id string) (sent, passive int, reason string) {
	t.Helper()
	for _, c := range checks(t, e, id) {
		o := synthetic(c)
		switch {
		case o == nil:
		case o.Passive:
			passive++
			reason = o.Reason
			if !o.OK || o.Attempts != 0 || c.State.Failing() {
				t.Errorf("passive outcome %+v in a %s check", o, c.State)
			}
		case !o.Skipped:
			sent++
		}
	}
	return sent, passive, reason
}

// On a busy server the engine's counters show requests completing, and no
// synthetic inference is sent after the first check; on an idle one, or
// with idle_aware off, every check sends one: the agent's own inference
// does not count as the server's work.
func TestIdleAware(t *testing.T) {
	const n = 12
	for _, tc := range []struct {
		name      string
		load      int
		idleAware bool
		passive   bool
	}{
		{"busy", 2, true, true},
		{"idle", 0, true, false},
		{"busy, idle_aware off", 2, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := fastConfig()
			cfg.IdleAware = tc.idleAware
			// Background requests make a token every 10ms each: a check
			// interval of several tokens, as 10s is of a busy server's.
			cfg.Interval = agent.Duration(50 * time.Millisecond)
			s, srv := sim(t, probes.KindVLLM, 1)
			s.SetLoad(tc.load)
			r := newRig(t, cfg)
			r.e.Upsert(target("llm", probes.KindVLLM, srv.URL))
			r.await("llm", "checked enough", func(vs []health.Status) bool { return len(vs) >= n })
			r.stop()
			sent, passive, reason := outcomes(t, r.e, "llm")
			spent := series(t, r.e, "vitals_ai_probe_tokens_total", "type")
			results := series(t, r.e, "vitals_ai_probe_total", "result")
			if !tc.passive {
				if passive != 0 || sent < n {
					t.Errorf("%d sent, %d passive in %d+ checks; want every check to send one", sent, passive, n)
				}
				return
			}
			// The first check has nothing to compare with, and the one its
			// transition to healthy triggers follows within a millisecond,
			// too soon for the counters to move; allow one more for a
			// loaded machine.
			if sent > 3 || passive < n-3 {
				t.Errorf("%d sent, %d passive in %d+ checks of a busy server; want all but the first passive", sent, passive, n)
			}
			if !strings.Contains(reason, "tokens generated") {
				t.Errorf("passive reason = %q", reason)
			}
			if spent["prompt"]+spent["completion"] != float64(4*sent) || results["passive"] != float64(passive) {
				t.Errorf("spent %v, results %v; want 4 tokens for each of %d sent, %d passive", spent, results, sent, passive)
			}
		})
	}
}
