//go:build bench

package cost

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/e2e/e2etest"
)

// TestScale: 10 000 targets at 10 s, 1000 checks a second (the shipped
// probes), discovered from a file_sd_configs file, on one agent beside an
// agent with none (COST_SCALE_TARGETS, COST_SCALE_INTERVAL). After every target has
// been checked and one more interval, over COST_SCALE_DURATION (60 s) it
// reports the checks per second achieved against the configured rate, in
// all and second by second, the scheduler lag's quantiles, and resident
// memory per target. The test itself scrapes the agent at the start and the
// end of the window; within it, the seconds are counted by the simulated
// server (its GET /v1/models answers, two a check), so that no scrape of
// the agent falls inside the window. With COST_PROFILE, a CPU profile over
// the window and an execution trace of 5 s in its middle are saved there.
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
	// COST_SCALE_SETTLE: run that long more before the window, so that the
	// memory read at its end is at steady state (the rings of 256 checks
	// fill in 43 minutes at 10 s).
	if settle := envDuration(t, "COST_SCALE_SETTLE", 0); settle > 0 {
		t.Logf("settling for %s", settle)
		tick := time.NewTicker(10 * time.Second)
		for end := time.Now().Add(settle); time.Now().Before(end); <-tick.C {
			if a.Exited() {
				t.Fatalf("agent exited while settling:\n%s", a.Output())
			}
		}
		tick.Stop()
	}

	e0 := scrape(t, a)
	r0 := srv.reqs.Load()
	c0, w0 := a.cpu(t), time.Now()
	prof := profile(t, a, fmt.Sprintf("agent-%d-scale.pprof", targets), window-2*time.Second)
	traced := make(chan struct{})
	go func() {
		defer close(traced)
		time.Sleep(window/2 - 2500*time.Millisecond)
		saveTrace(t, a, fmt.Sprintf("agent-%d-scale.trace", targets), 5*time.Second)
	}()
	// After the trace's start: sampling takes the window, and the trace
	// started after it made the window half as long again.
	ticks := srv.perSecond(window)
	prof()
	<-traced
	e1 := scrape(t, a)
	cpu, wall := a.cpu(t)-c0, time.Since(w0)
	reqs := srv.reqs.Load() - r0

	checks := e1.sum("vitals_ai_probe_total", `probe="liveness"`) - e0.sum("vitals_ai_probe_total", `probe="liveness"`)
	failed := e1.sum("vitals_ai_probe_total", `result="failure"`) - e0.sum("vitals_ai_probe_total", `result="failure"`)
	lag0, lag1 := e0.buckets("vitals_scheduler_lag_seconds"), e1.buckets("vitals_scheduler_lag_seconds")
	want := float64(targets) / interval.Seconds()
	rate := checks / wall.Seconds()
	rss, brss := int64(a.status(t).VmRSS), int64(base.status(t).VmRSS)
	saveHeap(t, a, fmt.Sprintf("agent-%d-heap.pprof", targets))
	t.Logf("load: %d cores; loadavg %s", numCPU(), loadavg())
	t.Logf("%d targets at %s: %.0f checks/s achieved of %.0f configured (%.1f%%) over %s, %v failed probes", targets, interval, rate, want, 100*rate/want, wall.Round(100*time.Millisecond), failed)
	perCheck := float64(reqs) / checks // GET /v1/models a check: liveness and readiness
	secs := make([]float64, len(ticks))
	for i, n := range ticks {
		secs[i] = n / perCheck
	}
	slices.Sort(secs)
	under := 0
	for _, v := range secs {
		if v < 0.99*want {
			under++
		}
	}
	if len(secs) > 0 {
		t.Logf("checks/s second by second (%d samples, %.2f GET /v1/models a check): min %.0f, p10 %.0f, median %.0f, max %.0f; %d seconds under 99%% of configured",
			len(secs), perCheck, secs[0], secs[len(secs)/10], secs[len(secs)/2], secs[len(secs)-1], under)
	}
	var qs []string
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		est, bound := quantileLinear(lag0, lag1, q), quantileBound(lag0, lag1, q)
		if math.IsInf(bound, 1) {
			qs = append(qs, fmt.Sprintf("p%g over %s", 100*q, seconds(est))) // past the last finite bucket
			continue
		}
		qs = append(qs, fmt.Sprintf("p%g %s (≤ %gs)", 100*q, seconds(est), bound))
	}
	t.Logf("scheduler lag, %.0f checks: %v; over 50 ms: %.2f%% (linear within a bucket, and its bound)",
		lag1[math.Inf(1)]-lag0[math.Inf(1)], qs, 100*(1-fractionUnder(lag0, lag1, 0.05)))
	t.Logf("agent CPU %.2f cores, %.3f CPU-s per 1000 checks", cpu/wall.Seconds(), cpu/checks*1000)
	t.Logf("RSS %.1f MiB against %.1f MiB with no targets: %.1f KiB per target (rings hold %.0f of their checks)",
		mib(rss), mib(brss), float64(rss-brss)/float64(targets)/1024, math.Min(256, (time.Since(t0)).Seconds()/interval.Seconds()))
	t.Logf("/metrics: %d bytes of text", len(e1.body))
	p99 := quantileBound(lag0, lag1, 0.99)
	t.Logf("goal (every check on time: p99 ≤ 50 ms, checks/s = configured): %s", metOrMissed(p99 <= 0.05 && rate >= want*0.99))
}

// perSecond samples the server's GET /v1/models answers about once a
// second over d and returns their rate between samples, a second each:
// by the time between the samples, since a test process kept from its CPU
// takes two ticks close together.
func (x *sim) perSecond(d time.Duration) []float64 {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	end := time.Now().Add(d)
	var out []float64
	last, at := x.reqs.Load(), time.Now()
	for range tick.C {
		n, now := x.reqs.Load(), time.Now()
		if dt := now.Sub(at); dt >= 500*time.Millisecond {
			out = append(out, float64(n-last)/dt.Seconds())
			last, at = n, now
		}
		if now.After(end) {
			break
		}
	}
	return out
}

// quantileLinear estimates quantile q of the observations between two
// scrapes as histogram_quantile does: linearly within the bucket that
// holds it (from 0 in the first).
func quantileLinear(before, after map[float64]float64, q float64) float64 {
	total, bounds := between(before, after)
	if total <= 0 {
		return math.NaN()
	}
	lo, below := 0.0, 0.0
	for _, b := range bounds {
		n := after[b] - before[b]
		if n >= q*total {
			if math.IsInf(b, 1) {
				return lo
			}
			return lo + (b-lo)*(q*total-below)/(n-below)
		}
		lo, below = b, n
	}
	return math.Inf(1)
}

// fractionUnder is the fraction of the observations between two scrapes
// at or under bound, a bucket's bound.
func fractionUnder(before, after map[float64]float64, bound float64) float64 {
	total := after[math.Inf(1)] - before[math.Inf(1)]
	if total <= 0 {
		return math.NaN()
	}
	return (after[bound] - before[bound]) / total
}

func seconds(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Sprint(v)
	}
	return time.Duration(v * float64(time.Second)).Round(10 * time.Microsecond).String()
}

// saveTrace saves an execution trace of the agent over d to
// COST_PROFILE/name when COST_PROFILE names a directory.
func saveTrace(t *testing.T, a *proc, name string, d time.Duration) {
	dir := os.Getenv("COST_PROFILE")
	if dir == "" {
		return
	}
	resp, err := http.Get(fmt.Sprintf("%s/debug/pprof/trace?seconds=%d", a.base, int(d/time.Second)))
	if err != nil {
		t.Errorf("trace: %v", err)
		return
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 512<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("trace: %s %v", resp.Status, err)
		return
	}
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		t.Error(err)
	}
}
