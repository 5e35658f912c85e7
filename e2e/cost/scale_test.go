//go:build bench

package cost

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/e2e/e2etest"
)

// TestScale: 10 000 targets at 10 s, 1000 checks a second (the shipped
// probes), discovered from a file_sd_configs file, on one agent beside an
// agent with none (COST_SCALE_TARGETS, COST_SCALE_INTERVAL). After every target has
// been checked, over COST_SCALE_DURATION (60 s) it reports the checks per
// second achieved against the configured rate, the scheduler lag's p99
// (the bound of the vitals_scheduler_lag_seconds bucket that holds it),
// and resident memory per target. The test itself scrapes the agent at the
// start and the end of the window.
func TestScale(t *testing.T) {
	targets := envInt(t, "COST_SCALE_TARGETS", 10000, 100, 10000)
	interval := envDuration(t, "COST_SCALE_INTERVAL", 10*time.Second)
	window := envDuration(t, "COST_SCALE_DURATION", 60*time.Second)
	srv := startSim(t, true)
	health := fmt.Sprintf("{interval: %s, unhealthy_interval: %s}", interval, interval)
	base := startAgent(t, agentSpec{targets: 0, health: health})
	a := startAgent(t, agentSpec{targets: targets, endpoint: srv.url, health: health, discovered: true})

	t0 := time.Now()
	err := e2etest.Poll(context.Background(), 5*time.Minute, time.Second, "every target checked", func(context.Context) error {
		if n := scrape(t, a).series(`probe="liveness",result="success"`); n < targets {
			return fmt.Errorf("%d of %d targets checked", n, targets)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("every target checked %s after start", time.Since(t0).Round(time.Second))
	time.Sleep(interval) // one more round at the steady pace

	e0 := scrape(t, a)
	c0, w0 := a.cpu(t), time.Now()
	time.Sleep(window)
	e1 := scrape(t, a)
	cpu, wall := a.cpu(t)-c0, time.Since(w0)

	checks := e1.sum("vitals_ai_probe_total", `probe="liveness"`) - e0.sum("vitals_ai_probe_total", `probe="liveness"`)
	failed := e1.sum("vitals_ai_probe_total", `result="failure"`) - e0.sum("vitals_ai_probe_total", `result="failure"`)
	lag0, lag1 := e0.buckets("vitals_scheduler_lag_seconds"), e1.buckets("vitals_scheduler_lag_seconds")
	p99, p90, p50 := quantileBound(lag0, lag1, 0.99), quantileBound(lag0, lag1, 0.9), quantileBound(lag0, lag1, 0.5)
	want := float64(targets) / interval.Seconds()
	rate := checks / wall.Seconds()
	rss, brss := int64(a.status(t).VmRSS), int64(base.status(t).VmRSS)
	saveHeap(t, a, fmt.Sprintf("agent-%d-heap.pprof", targets))
	t.Logf("load: %d cores; loadavg %s", numCPU(), loadavg())
	t.Logf("%d targets at %s: %.0f checks/s achieved of %.0f configured (%.1f%%), %v failed probes", targets, interval, rate, want, 100*rate/want, failed)
	t.Logf("scheduler lag: p50 ≤ %gs, p90 ≤ %gs, p99 ≤ %gs (bucket bounds)", p50, p90, p99)
	t.Logf("agent CPU %.2f cores, %.3f CPU-s per 1000 checks", cpu/wall.Seconds(), cpu/checks*1000)
	t.Logf("RSS %.1f MiB against %.1f MiB with no targets: %.1f KiB per target (rings hold %.0f of their checks)",
		mib(rss), mib(brss), float64(rss-brss)/float64(targets)/1024, math.Min(256, (time.Since(t0)).Seconds()/interval.Seconds()))
	t.Logf("/metrics: %d bytes of text", len(e1.body))
	t.Logf("goal (every check on time: p99 ≤ 50 ms, checks/s = configured): %s", metOrMissed(p99 <= 0.05 && rate >= want*0.99))
}
