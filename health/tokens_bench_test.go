//go:build tokensbench

package health_test

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/health"
	"github.com/vitals-dev/vitals/probes"
)

// TestTokensPerHour measures what the agent's synthetic inferences spend
// on one target, on a busy aisim (load 2: two requests of its own always
// in flight, a token every 10ms each, two of its four slots free) and on
// an idle one, with idle_aware on and off. It runs the real health engine
// against aisim for a bounded number of checks and extrapolates per hour
// from its counters and history: the tokens one synthetic inference spent
// (vitals_ai_probe_tokens_total over the inferences sent) times the
// inferences sent per check after the warm-up (the first check, which has
// no counters to compare with, and the one its transition triggers at
// once), times the 360 checks an hour holds at a 10s interval.
//
//	go test -tags tokensbench -run TestTokensPerHour -v ./health/
//
// By default each case runs 60 checks at a 250ms interval, which a busy
// aisim fills with tokens (about 50 a check) as a busy server fills 10s;
// VITALS_TOKENS_BENCH_INTERVAL=10s and VITALS_TOKENS_BENCH_CHECKS=60 run
// it at the real interval (10 minutes a case).
func TestTokensPerHour(t *testing.T) {
	interval := 250 * time.Millisecond
	if v := os.Getenv("VITALS_TOKENS_BENCH_INTERVAL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatal(err)
		}
		interval = d
	}
	checksPerCase := 60
	if v := os.Getenv("VITALS_TOKENS_BENCH_CHECKS"); v != "" {
		if _, err := fmt.Sscan(v, &checksPerCase); err != nil {
			t.Fatal(err)
		}
	}
	const (
		perHour = 3600 / 10 // checks an hour at a 10s interval
		warmup  = 2
	)
	t.Logf("%-6s %-10s %7s %5s %7s %6s %8s %12s", "server", "idle_aware", "checks", "sent", "passive", "tokens", "tok/chk", "tokens/hour")
	for _, tc := range []struct {
		server    string
		load      int
		idleAware bool
	}{
		{"busy", 2, true}, {"busy", 2, false}, {"idle", 0, true}, {"idle", 0, false},
	} {
		cfg := health.DefaultConfig()
		cfg.Interval = agent.Duration(interval)
		cfg.Timeout = agent.Duration(min(interval, 5*time.Second))
		cfg.StartSpread, cfg.Jitter = 0, 0
		cfg.Synthetic = true
		cfg.IdleAware = tc.idleAware
		s, srv := sim(t, probes.KindVLLM, 1)
		s.SetLoad(tc.load)
		r := newRig(t, cfg)
		r.e.Upsert(target("llm", probes.KindVLLM, srv.URL))
		waitChecks(t, r, "llm", checksPerCase, time.Duration(checksPerCase)*interval*2+30*time.Second)
		r.stop()
		cs := checks(t, r.e, "llm")
		sent, passive, _ := outcomes(t, r.e, "llm")
		spent := series(t, r.e, "vitals_ai_probe_tokens_total", "type")
		tokens := spent["prompt"] + spent["completion"]
		// The steady state leaves out the warm-up: the first check has no
		// counters to compare with, and its transition triggers one more
		// at once.
		steady := 0
		for _, c := range cs[warmup:] {
			if o := synthetic(c); o != nil && !o.Passive && !o.Skipped {
				steady++
			}
		}
		perSent := 0.0
		if sent > 0 {
			perSent = tokens / float64(sent)
		}
		perCheck := perSent * float64(steady) / float64(len(cs)-warmup)
		t.Logf("%-6s %-10v %7d %5d %7d %6.0f %8.2f %12.0f", tc.server, tc.idleAware, len(cs), sent, passive, tokens, perCheck, perCheck*perHour)
		if tc.server == "busy" && tc.idleAware && steady > 0 {
			t.Errorf("busy, idle-aware: %d synthetic inferences sent after the warm-up, want none", steady)
		}
	}
}

// waitChecks waits for n verdicts of id, at most for d.
func waitChecks(t *testing.T, r *rig, id string, n int, d time.Duration) {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		got := len(r.verdicts[id])
		r.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-r.changed:
		case <-deadline.C:
			t.Fatalf("%s: %d checks in %s, want %d", id, got, d, n)
		}
	}
}
