package health_test

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/exporters/store"
	"github.com/vitals-dev/vitals/health"
	"github.com/vitals-dev/vitals/probes"
)

func ok(name string) health.ProbeOutcome {
	return health.ProbeOutcome{Probe: name, OK: true, Attempts: 1}
}

func fail(name string, c probes.ErrorClass) health.ProbeOutcome {
	return health.ProbeOutcome{Probe: name, Class: c, Attempts: 1, Failures: 1}
}

func obs(ps ...health.ProbeOutcome) health.Observation { return health.Observation{Probes: ps} }

func TestMachine(t *testing.T) {
	th := health.Thresholds{Failure: 3, Success: 2, LatencySLO: 100 * time.Millisecond, TTFTSLO: 50 * time.Millisecond,
		ErrorRate: health.ErrorRateConfig{Window: 10, MinSamples: 5, DegradeAbove: 0.3, RecoverBelow: 0.1}}
	good := obs(ok("liveness"))
	down := obs(fail("liveness", probes.ClassRefused))
	slow := health.Observation{Probes: []health.ProbeOutcome{ok("liveness")}, Latency: time.Second}
	slowTTFT := health.Observation{Probes: []health.ProbeOutcome{ok("liveness")}, TTFT: time.Second}
	dep := health.Observation{Probes: []health.ProbeOutcome{ok("liveness")}, UnhealthyDeps: []string{"db"}}
	resFail := obs(ok("liveness"), health.ProbeOutcome{Probe: "resources", Informational: true, Attempts: 1, Failures: 1, Class: probes.ClassOther})
	mixed := []health.Observation{obs(ok("liveness"), fail("synthetic", probes.ClassStuck)), obs(fail("liveness", probes.ClassTimeout))}
	cases := []struct {
		name string
		seq  []health.Observation
		want []health.State
	}{
		{"first success is healthy", []health.Observation{good}, []health.State{"healthy"}},
		{"unknown until the failure threshold", []health.Observation{down, down, down}, []health.State{"unknown", "unknown", "unhealthy"}},
		{"one failure moves nothing", []health.Observation{good, down, good, good}, []health.State{"healthy", "healthy", "healthy", "healthy"}},
		{"threshold failures make unhealthy", []health.Observation{good, down, down, down}, []health.State{"healthy", "healthy", "healthy", "unhealthy"}},
		{"success threshold to recover", []health.Observation{down, down, down, good, down, good, good},
			[]health.State{"unknown", "unknown", "unhealthy", "unhealthy", "unhealthy", "unhealthy", "healthy"}},
		{"latency SLO degrades after failure threshold", []health.Observation{slow, slow, slow, good, good},
			[]health.State{"healthy", "healthy", "degraded", "degraded", "healthy"}},
		{"ttft SLO degrades", []health.Observation{slowTTFT, slowTTFT, slowTTFT}, []health.State{"healthy", "healthy", "degraded"}},
		{"dependency caps at degraded", []health.Observation{dep, good}, []health.State{"degraded", "healthy"}},
		{"informational probes do not count", []health.Observation{resFail, resFail, resFail, resFail}, []health.State{"healthy", "healthy", "healthy", "healthy"}},
		{"failures count per probe", append(append(mixed, mixed...), mixed...),
			[]health.State{"unknown", "unknown", "unknown", "unknown", "stuck", "unhealthy"}},
		{"error rate degrades and recovers with hysteresis",
			[]health.Observation{good, down, good, down, good, good, good, good, good, good, good, good, good, good},
			[]health.State{"healthy", "healthy", "healthy", "healthy", "degraded", "degraded", "degraded", "degraded", "degraded",
				"degraded", "degraded", "degraded", "degraded", "healthy"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := health.NewMachine(th)
			for i, o := range tc.seq {
				v := m.Observe(o)
				if v.State != tc.want[i] {
					t.Fatalf("step %d: %s (%s), want %s", i, v.State, v.Reason, tc.want[i])
				}
				if v.State == health.StateDegraded && v.Reason == "" {
					t.Fatalf("step %d: degraded without reason", i)
				}
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		key string
		mod func(*health.Config)
	}{
		{"", func(*health.Config) {}},
		{"interval", func(c *health.Config) { c.Interval = 0 }},
		{"timeout", func(c *health.Config) { c.Timeout = 0 }},
		{"jitter", func(c *health.Config) { c.Jitter = 0.9 }},
		{"slack", func(c *health.Config) { c.Slack = agent.Duration(2 * time.Second) }},
		{"slack", func(c *health.Config) { c.Slack = agent.Duration(-time.Millisecond) }},
		{"concurrency", func(c *health.Config) { c.Concurrency = 0 }},
		{"failure_threshold", func(c *health.Config) { c.FailureThreshold = 0 }},
		{"success_threshold", func(c *health.Config) { c.SuccessThreshold = 0 }},
		{"retries", func(c *health.Config) { c.Retries = 9 }},
		{"max_tokens", func(c *health.Config) { c.MaxTokens = 33 }},
		{"daily_token_budget", func(c *health.Config) { c.DailyTokenBudget = -1 }},
		{"plugins.x.max_tokens", func(c *health.Config) { c.Plugins = map[string]health.PluginConfig{"x": {MaxTokens: 33}} }},
		{"plugins.x.daily_token_budget", func(c *health.Config) {
			c.Plugins = map[string]health.PluginConfig{"x": {DailyTokenBudget: -5}}
		}},
		{"error_rate.min_samples", func(c *health.Config) { c.ErrorRate.MinSamples = 500 }},
		{"error_rate.recover_below", func(c *health.Config) { c.ErrorRate.RecoverBelow = 0.5 }},
		{"rollup.policy", func(c *health.Config) { c.Rollup.Policy = "most" }},
		{"rollup.quorum", func(c *health.Config) { c.Rollup.Quorum = 0 }},
		{"history.ring", func(c *health.Config) { c.History.Ring = 0 }},
		{"overloaded_queue", func(c *health.Config) { c.OverloadedQueue = -1 }},
		{"stuck_after", func(c *health.Config) { c.StuckAfter = agent.Duration(-time.Second) }},
		{"metrics.classic_buckets[1]", func(c *health.Config) { c.Metrics.ClassicBuckets = []float64{0.1, 0.1} }},
		{"metrics.classic_buckets[0]", func(c *health.Config) { c.Metrics.ClassicBuckets = []float64{math.NaN()} }},
		{"metrics.classic_buckets", func(c *health.Config) { c.Metrics.ClassicBuckets = make([]float64, 31) }},
		{"metrics.probe_durations[1]", func(c *health.Config) { c.Metrics.ProbeDurations = []string{"liveness", "resources"} }},
		{"plugins.x.interval", func(c *health.Config) {
			c.Plugins = map[string]health.PluginConfig{"x": {Interval: agent.Duration(time.Microsecond)}}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.key, func(t *testing.T) {
			c := health.DefaultConfig()
			tc.mod(&c)
			err := c.Validate()
			var fe *agent.ConfigError
			switch {
			case tc.key == "" && err != nil:
				t.Fatalf("defaults invalid: %v", err)
			case tc.key != "" && (!errors.As(err, &fe) || fe.Key != tc.key):
				t.Fatalf("error = %v, want one for %s", err, tc.key)
			}
		})
	}
}

func TestRollup(t *testing.T) {
	cases := []struct {
		policy string
		states map[string]health.State
		ready  bool
		status agent.HealthStatus
	}{
		{health.PolicyAll, map[string]health.State{}, true, agent.HealthOK},
		{health.PolicyAll, map[string]health.State{"a": "healthy", "e": "healthy"}, true, agent.HealthOK},
		{health.PolicyAll, map[string]health.State{"a": "healthy", "e": "degraded"}, true, agent.HealthDegraded},
		{health.PolicyAll, map[string]health.State{"a": "healthy", "e": "unhealthy"}, false, agent.HealthFailing},
		{health.PolicyAny, map[string]health.State{"a": "unhealthy", "e": "healthy"}, true, agent.HealthDegraded},
		{health.PolicyAny, map[string]health.State{"a": "unhealthy", "e": "unknown"}, false, agent.HealthFailing},
		{health.PolicyQuorum, map[string]health.State{"a": "unhealthy", "e": "healthy"}, true, agent.HealthDegraded},
		{health.PolicyPerCapability, map[string]health.State{"a": "healthy", "e": "unhealthy"}, false, agent.HealthFailing},
		{health.PolicyPerCapability, map[string]health.State{"a": "healthy", "e": "healthy"}, true, agent.HealthOK},
	}
	caps := map[string][]probes.Capability{"a": {probes.CapChat}, "e": {probes.CapEmbeddings}}
	for _, tc := range cases {
		t.Run(tc.policy, func(t *testing.T) {
			cfg := health.DefaultConfig()
			cfg.Rollup.Policy = tc.policy
			e := health.New(health.Options{Config: cfg})
			for id, s := range tc.states {
				e.Upsert(health.Target{ID: id, Mode: health.ModeSelf, Capabilities: caps[id]})
				e.ForceState(id, s)
			}
			r := e.Rollup()
			if r.Ready != tc.ready || r.Status != tc.status {
				t.Errorf("%v: ready %v status %s (%s), want %v %s", tc.states, r.Ready, r.Status, r.Reason, tc.ready, tc.status)
			}
			if s, ok := tc.states["e"]; ok && r.Capabilities[probes.CapEmbeddings].Ready != s.Serving() {
				t.Errorf("embeddings ready = %v with e %s", r.Capabilities[probes.CapEmbeddings].Ready, s)
			}
		})
	}
}

func TestHistory(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "h.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cfg := health.DefaultConfig().History
	cfg.Ring = 4
	for _, withStore := range []bool{false, true} {
		var d *store.DB
		if withStore {
			d = db
		}
		h, err := health.OpenHistory(ctx, d, cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		acked := 0
		h.OnPersisted(func(any) { mu.Lock(); acked++; mu.Unlock() })
		hctx, cancel := context.WithCancel(ctx)
		h.Start(hctx)
		now := time.Now()
		for i := range 6 {
			at := now.Add(time.Duration(i-6) * time.Minute)
			rec := health.CheckRecord{Seq: int64(i), Plugin: "p", Time: at, State: "healthy", OK: i%2 == 0, Latency: time.Duration(i+1) * time.Millisecond}
			var tr *health.Transition
			if i == 3 {
				tr = &health.Transition{Plugin: "p", Time: at, From: "healthy", To: "degraded", Reason: "r"}
			}
			h.Record(rec, tr)
		}
		cancel()
		h.Wait()
		checks, trans, err := h.Query(ctx, "p", now.Add(-time.Hour), now, 100)
		if err != nil {
			t.Fatal(err)
		}
		want := 4 // the ring
		if withStore {
			want = 6
			if acked != 7 {
				t.Errorf("acknowledged %d records, want 7", acked)
			}
		}
		if len(checks) != want || len(trans) != 1 || checks[0].Seq != 5 {
			t.Errorf("store %v: %d checks (first %+v), %d transitions", withStore, len(checks), checks[0], len(trans))
		}
		u, err := h.Uptime(ctx, "p", now)
		if err != nil {
			t.Fatal(err)
		}
		if u[0].Window != "1h" || u[0].Checks != int64(want) || u[0].UptimeRatio != 0.5 || u[0].Transitions != 1 {
			t.Errorf("store %v: uptime %+v", withStore, u[0])
		}
	}
}

func openStore(t *testing.T) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "bench.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// A history write that fails is counted, by outcome, beside the stored.
func TestHistoryWriteFailuresCounted(t *testing.T) {
	ctx := context.Background()
	db := openStore(t)
	h, err := health.OpenHistory(ctx, db, health.DefaultConfig().History, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(h); err != nil {
		t.Fatal(err)
	}
	persisted := make(chan any, 1)
	h.OnPersisted(func(v any) { persisted <- v })
	hctx, cancel := context.WithCancel(ctx)
	h.Start(hctx)
	now := time.Now()
	h.Record(health.CheckRecord{Seq: 1, Plugin: "p", Time: now, State: "healthy", OK: true}, nil)
	select {
	case <-persisted:
	case <-time.After(10 * time.Second):
		t.Fatal("the first record was never stored")
	}
	// A store that lost its table: every later write fails.
	if _, err := db.Exec(`DROP TABLE ai_health_checks`); err != nil {
		t.Fatal(err)
	}
	h.Record(health.CheckRecord{Seq: 2, Plugin: "p", Time: now, State: "healthy", OK: true}, nil)
	h.Record(health.CheckRecord{Seq: 3, Plugin: "p", Time: now, State: "healthy", OK: true}, nil)
	cancel()
	h.Wait()
	want := `
# HELP vitals_ai_health_history_records_total Health checks and transitions sent to the history store, by outcome: stored, failed (the write failed), dropped (the write queue was full).
# TYPE vitals_ai_health_history_records_total counter
vitals_ai_health_history_records_total{outcome="dropped"} 0
vitals_ai_health_history_records_total{outcome="failed"} 2
vitals_ai_health_history_records_total{outcome="stored"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "vitals_ai_health_history_records_total"); err != nil {
		t.Fatal(err)
	}
}

// TestHistoryMigratesToDecisionTimes: a store written before the check's
// start and duration were kept migrates in place; its old rows read back
// with no start, and new rows keep start and duration beside the decision
// time, in the store as in the ring.
func TestHistoryMigratesToDecisionTimes(t *testing.T) {
	ctx := context.Background()
	db := openStore(t)
	if err := db.Migrate(ctx, "ai_health", health.HistoryMigrations[:1]); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Minute)
	if _, err := db.ExecContext(ctx, `INSERT INTO ai_health_checks (ts, plugin, seq, state, ok, probe, class, latency_ns, ttft_ns, tps, detail)
		VALUES (?, 'p', 1, 'healthy', 1, '', '', 1000, 0, 0, 'null')`, old.UnixNano()); err != nil {
		t.Fatal(err)
	}
	cfg := health.DefaultConfig().History
	for _, withStore := range []bool{true, false} {
		var d *store.DB
		if withStore {
			d = db
		}
		h, err := health.OpenHistory(ctx, d, cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		hctx, cancel := context.WithCancel(ctx)
		h.Start(hctx)
		// The ring keeps times to the microsecond and durations to 11
		// significant bits: these it keeps exactly.
		const took = 32768 * time.Microsecond
		started := time.Now().Truncate(time.Microsecond)
		decided := started.Add(took)
		h.Record(health.CheckRecord{Seq: 2, Plugin: "p", Time: decided, Started: started, Duration: took, State: "stuck"},
			&health.Transition{Plugin: "p", Time: decided, Started: started, Duration: took, From: "healthy", To: "stuck"})
		cancel()
		h.Wait()
		cs, ts, err := h.Query(ctx, "p", old.Add(-time.Second), decided.Add(time.Second), 10)
		if err != nil {
			t.Fatal(err)
		}
		if withStore && (len(cs) != 2 || !cs[1].Started.IsZero() || cs[1].Duration != 0) {
			t.Fatalf("store: %d checks; the old one %+v", len(cs), cs[len(cs)-1])
		}
		c := cs[0]
		if !c.Time.Equal(decided) || !c.Started.Equal(started) || c.Duration != took || c.State != health.StateStuck {
			t.Errorf("store %v: check decided %v started %v took %v, want %v %v %v", withStore, c.Time, c.Started, c.Duration, decided, started, took)
		}
		if len(ts) != 1 || !ts[0].Time.Equal(decided) || !ts[0].Started.Equal(started) || ts[0].Duration != took {
			t.Errorf("store %v: transitions %+v", withStore, ts)
		}
	}
}

func sig(running, waiting, tokens float64) *probes.Signals {
	return &probes.Signals{Reported: probes.FieldRequestsRunning | probes.FieldRequestsWaiting | probes.FieldGeneratedTokens,
		RequestsRunning: running, RequestsWaiting: waiting, GeneratedTokens: tokens}
}

// TestMachineStates: the rules of the states the engine's signals decide,
// on an injected clock.
// A healthy plugin's check costs its machine no allocation: it keeps
// counts only of the probes failing now (1000 plugins checked every second
// allocated a map entry and a sorted key list each).
func TestMachineHealthyCheckAllocatesNothing(t *testing.T) {
	m := health.NewMachine(health.Thresholds{Failure: 3, Success: 2, LatencySLO: time.Second, TTFTSLO: time.Second,
		ErrorRate: health.ErrorRateConfig{Window: 10, MinSamples: 5, DegradeAbove: 0.3, RecoverBelow: 0.1}})
	good := obs(ok("liveness"), ok("readiness"), health.ProbeOutcome{Probe: "resources", OK: true, Informational: true, Attempts: 1})
	m.Observe(obs(fail("liveness", probes.ClassRefused))) // a failure before, counted and then forgotten
	m.Observe(good)
	if n := testing.AllocsPerRun(100, func() { m.Observe(good) }); n != 0 {
		t.Errorf("a healthy check allocates %v times, want 0", n)
	}
}

func TestMachineStates(t *testing.T) {
	th := health.Thresholds{Failure: 3, Success: 2, LatencySLO: time.Second, TTFTSLO: time.Second,
		ErrorRate:       health.ErrorRateConfig{Window: 10, MinSamples: 5, DegradeAbove: 0.3, RecoverBelow: 0.1},
		OverloadedQueue: 4, StuckAfter: 30 * time.Second}
	t0 := time.Unix(1e9, 0)
	at := func(sec int, s *probes.Signals, ps ...health.ProbeOutcome) health.Observation {
		if len(ps) == 0 {
			ps = []health.ProbeOutcome{ok("liveness")}
		}
		return health.Observation{Time: t0.Add(time.Duration(sec) * time.Second), Probes: ps, Signals: s}
	}
	loading := health.ProbeOutcome{Probe: "readiness", Class: probes.ClassNotReady, Attempts: 1, Failures: 1, Loading: true, Error: "503 Loading model"}
	asleep := sig(1, 0, 5)
	asleep.Reported |= probes.FieldAsleep
	asleep.Asleep = 1
	cold := &probes.Signals{Reported: probes.FieldLoadedModels}
	warm := &probes.Signals{Reported: probes.FieldLoadedModels, LoadedModels: []probes.LoadedModel{{Name: "m:latest"}}}
	cases := []struct {
		name string
		seq  []health.Observation
		want []health.State
	}{
		{"stuck once the counter stands for stuck_after with requests in flight",
			[]health.Observation{at(0, sig(2, 0, 10)), at(10, sig(2, 0, 10)), at(20, sig(2, 1, 10)), at(30, sig(2, 1, 10)), at(40, sig(2, 1, 11)), at(50, sig(2, 1, 12)), at(60, sig(2, 1, 13))},
			[]health.State{"healthy", "healthy", "healthy", "stuck", "stuck", "healthy", "healthy"}},
		{"an idle server's still counter is not stuck",
			[]health.Observation{at(0, sig(0, 0, 10)), at(40, sig(0, 0, 10)), at(80, sig(0, 0, 10))},
			[]health.State{"healthy", "healthy", "healthy"}},
		{"a restart (counter down) is progress",
			[]health.Observation{at(0, sig(1, 0, 100)), at(20, sig(1, 0, 100)), at(40, sig(1, 0, 3)), at(60, sig(1, 0, 3))},
			[]health.State{"healthy", "healthy", "healthy", "healthy"}},
		{"a check without signals leaves the clock running",
			[]health.Observation{at(0, sig(1, 0, 5)), at(20, nil), at(31, sig(1, 0, 5))},
			[]health.State{"healthy", "healthy", "stuck"}},
		{"overloaded after failure_threshold queued checks with work completing, left after success_threshold",
			[]health.Observation{at(0, sig(4, 6, 10)), at(1, sig(4, 6, 20)), at(2, sig(4, 6, 30)), at(3, sig(4, 6, 40)),
				at(4, sig(4, 0, 50)), at(5, sig(4, 0, 60))},
			// The first sample is the baseline that the next shows progress from.
			[]health.State{"healthy", "healthy", "healthy", "overloaded", "overloaded", "healthy"}},
		{"a queue with no progress is stuck, not overloaded",
			[]health.Observation{at(0, sig(4, 6, 10)), at(10, sig(4, 6, 10)), at(20, sig(4, 6, 10)), at(30, sig(4, 6, 10))},
			[]health.State{"healthy", "healthy", "healthy", "stuck"}},
		{"loading counts towards no threshold, from unknown too",
			[]health.Observation{at(0, nil, ok("liveness"), loading), at(1, nil, ok("liveness"), loading), at(2, nil, ok("liveness"), loading),
				at(3, nil, ok("liveness"), loading), at(4, nil)},
			[]health.State{"loading", "loading", "loading", "loading", "healthy"}},
		{"asleep is sleeping, not stuck", []health.Observation{at(0, asleep), at(40, asleep), at(80, asleep)},
			[]health.State{"sleeping", "sleeping", "sleeping"}},
		{"no model loaded is cold until one is", []health.Observation{at(0, cold), at(1, cold), at(2, warm)},
			[]health.State{"cold", "cold", "healthy"}},
		{"unidentified is unknown, unhealthy only when it does not answer",
			[]health.Observation{{Unidentified: true, Probes: []health.ProbeOutcome{ok("liveness")}}, {Unidentified: true, Probes: []health.ProbeOutcome{ok("liveness")}},
				{Unidentified: true, Probes: []health.ProbeOutcome{fail("liveness", probes.ClassRefused)}}, {Unidentified: true, Probes: []health.ProbeOutcome{fail("liveness", probes.ClassRefused)}},
				{Unidentified: true, Probes: []health.ProbeOutcome{fail("liveness", probes.ClassRefused)}}},
			[]health.State{"unknown", "unknown", "unknown", "unknown", "unhealthy"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := health.NewMachine(th)
			for i, o := range tc.seq {
				v := m.Observe(o)
				if v.State != tc.want[i] {
					t.Fatalf("step %d: %s (%s), want %s", i, v.State, v.Reason, tc.want[i])
				}
				if v.State != health.StateHealthy && v.Reason == "" {
					t.Fatalf("step %d: %s without a reason", i, v.State)
				}
			}
		})
	}
}
