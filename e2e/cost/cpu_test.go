//go:build bench

package cost

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/e2e/e2etest"
)

// livenessOnly checks liveness only, every second, as blackbox_exporter's
// http prober does one GET per probe.
const livenessOnly = "{interval: 1s, unhealthy_interval: 1s, readiness: false, resources: false}"

// cpuRun is one side-by-side run.
type cpuRun struct {
	mode                     string
	agentProbes, bbProbes    int64
	agentCPU, bbCPU          float64 // CPU-seconds over the window
	agentPromCPU, bbPromCPU  float64
	agentRSS, bbRSS          int64
	scrapeSamples, scrapeSec float64
	// The agent of COST_BASELINE, beside the others; 0 probes without it.
	baseProbes int64
	baseCPU    float64
}

func (r cpuRun) per1000(cpu float64, n int64) float64 { return cpu / float64(n) * 1000 }

// TestCPU: CPU-seconds per 1000 liveness probes of the shipped agent
// against blackbox_exporter's, both at once, each scraped by its own
// Prometheus at 1 s. keep-alive: the server keeps connections open (the
// agent reuses them; blackbox_exporter never does, it disables keep-alive
// for every probe). new-connection: the server closes every connection
// after one answer, so both open one per probe. COST_BASELINE=<binary>
// runs that agent too, in the same window with its own server and
// Prometheus, to compare a change with the build before it.
func TestCPU(t *testing.T) {
	const targets = 100
	window := envDuration(t, "COST_DURATION", 60*time.Second)
	rounds := envInt(t, "COST_ROUNDS", 1, 1, 10)
	var runs []cpuRun
	for round := range rounds {
		for _, keepAlive := range []bool{true, false} {
			mode := "keep-alive"
			if !keepAlive {
				mode = "new-connection"
			}
			t.Run(fmt.Sprintf("%s/%d", mode, round+1), func(t *testing.T) {
				runs = append(runs, cpuOnce(t, mode, keepAlive, targets, window))
			})
		}
	}
	t.Logf("load: %d cores; loadavg before %s", numCPU(), loadavg())
	t.Logf("| mode | agent probes | agent CPU-s/1000 | blackbox probes | blackbox CPU-s/1000 | ratio | with each side's Prometheus | agent scrape (samples, s) | RSS agent / blackbox (MiB) |")
	t.Logf("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range runs {
		a, b := r.per1000(r.agentCPU, r.agentProbes), r.per1000(r.bbCPU, r.bbProbes)
		ap, bp := r.per1000(r.agentCPU+r.agentPromCPU, r.agentProbes), r.per1000(r.bbCPU+r.bbPromCPU, r.bbProbes)
		t.Logf("| %s | %d | %.3f | %d | %.3f | %.1fx | %.3f vs %.3f: %.1fx | %.0f, %.4f | %.1f / %.1f |",
			r.mode, r.agentProbes, a, r.bbProbes, b, b/a, ap, bp, bp/ap, r.scrapeSamples, r.scrapeSec, mib(r.agentRSS), mib(r.bbRSS))
	}
	if os.Getenv("COST_BASELINE") == "" {
		return
	}
	t.Logf("| mode | agent CPU-s/1000 | baseline agent CPU-s/1000 | agent vs baseline | blackbox vs baseline |")
	t.Logf("| --- | --- | --- | --- | --- |")
	for _, r := range runs {
		a, b, base := r.per1000(r.agentCPU, r.agentProbes), r.per1000(r.bbCPU, r.bbProbes), r.per1000(r.baseCPU, r.baseProbes)
		t.Logf("| %s | %.3f | %.3f | %.2fx | %.1fx |", r.mode, a, base, a/base, b/base)
	}
}

func cpuOnce(t *testing.T, mode string, keepAlive bool, targets int, window time.Duration) cpuRun {
	agentSim, bbSim := startSim(t, keepAlive), startSim(t, keepAlive)
	a := startAgent(t, agentSpec{targets: targets, endpoint: agentSim.url, health: livenessOnly})
	bb := startBlackbox(t)
	promA := startPrometheus(t, scrapeJob{name: "vitals", interval: time.Second, targets: []string{strings.TrimPrefix(a.base, "http://")}})
	promB := startPrometheus(t, scrapeJob{name: "blackbox", interval: time.Second,
		targets: blackboxTargets(bbSim.url, targets), blackbox: strings.TrimPrefix(bb.base, "http://")})
	var base *proc
	var baseSim *sim
	if bin := os.Getenv("COST_BASELINE"); bin != "" {
		baseSim = startSim(t, keepAlive)
		base = startAgent(t, agentSpec{targets: targets, endpoint: baseSim.url, health: livenessOnly, bin: bin})
		startPrometheus(t, scrapeJob{name: "vitals", interval: time.Second, targets: []string{strings.TrimPrefix(base.base, "http://")}})
	}

	// Warm: every target checked a few times on both sides, both
	// Prometheus servers scraping, then a few seconds more.
	ctx := context.Background()
	err := e2etest.Poll(ctx, 60*time.Second, 500*time.Millisecond, "warm-up", func(context.Context) error {
		if n := scrape(t, a).sum("vitals_ai_probe_total", `probe="liveness"`); n < float64(3*targets) {
			return fmt.Errorf("agent: %v liveness probes", n)
		}
		if n := query(t, promB, `count(probe_success == 1)`); n != float64(targets) {
			return fmt.Errorf("blackbox: %v targets succeeding", n)
		}
		if n := query(t, promA, `up{job="vitals"}`); n != 1 {
			return fmt.Errorf("agent scrape: up %v", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second)

	fail0 := scrape(t, a).sum("vitals_ai_probe_total", `result="failure"`)
	n0a, n0b := agentSim.reqs.Load(), bbSim.reqs.Load()
	c0a, c0b, c0pa, c0pb := a.cpu(t), bb.cpu(t), promA.cpu(t), promB.cpu(t)
	var n0base int64
	var c0base float64
	if base != nil {
		n0base, c0base = baseSim.reqs.Load(), base.cpu(t)
	}
	wait := profile(t, a, fmt.Sprintf("agent-%s.pprof", mode), window-2*time.Second)
	time.Sleep(window) // the measurement window
	r := cpuRun{mode: mode,
		agentProbes: agentSim.reqs.Load() - n0a, bbProbes: bbSim.reqs.Load() - n0b,
		agentCPU: a.cpu(t) - c0a, bbCPU: bb.cpu(t) - c0b, agentPromCPU: promA.cpu(t) - c0pa, bbPromCPU: promB.cpu(t) - c0pb,
		agentRSS: int64(a.status(t).VmRSS), bbRSS: int64(bb.status(t).VmRSS),
	}
	if base != nil {
		r.baseProbes, r.baseCPU = baseSim.reqs.Load()-n0base, base.cpu(t)-c0base
		if want := int64(window/time.Second) * int64(targets) * 9 / 10; r.baseProbes < want {
			t.Errorf("probes in %s: baseline agent %d, want at least %d", window, r.baseProbes, want)
		}
	}
	wait()
	r.scrapeSamples = query(t, promA, `scrape_samples_scraped{job="vitals"}`)
	r.scrapeSec = query(t, promA, `avg_over_time(scrape_duration_seconds{job="vitals"}[30s])`)
	if f := scrape(t, a).sum("vitals_ai_probe_total", `result="failure"`) - fail0; f != 0 {
		t.Errorf("agent: %v failed probes in the window", f)
	}
	if n := query(t, promB, `count(probe_success == 1)`); n != float64(targets) {
		t.Errorf("blackbox: %v of %d targets succeeding at the end", n, targets)
	}
	if want := int64(window/time.Second) * int64(targets) * 9 / 10; r.agentProbes < want || r.bbProbes < want {
		t.Errorf("probes in %s: agent %d, blackbox %d, want at least %d each", window, r.agentProbes, r.bbProbes, want)
	}
	t.Logf("%s: agent %d probes %.3f CPU-s (Prometheus %.3f), blackbox %d probes %.3f CPU-s (Prometheus %.3f)",
		mode, r.agentProbes, r.agentCPU, r.agentPromCPU, r.bbProbes, r.bbCPU, r.bbPromCPU)
	return r
}
