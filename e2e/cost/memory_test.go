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

// shipped is the shipped health settings at a 1 s interval: liveness,
// readiness and the resource probe.
const shipped = "{interval: 1s, unhealthy_interval: 1s}"

// TestMemory: resident memory at steady state, side by side: agents with
// no targets and with 1000 (the shipped probes, every second), an agent
// with 100 liveness-only targets beside blackbox_exporter with the same
// 100, and the agent built with -tags nokubernetes with none and with the
// same 100, all scraped by one Prometheus every second. It runs until every
// history ring has filled (COST_MEMORY_DURATION, 280 s: the default ring
// of 256 checks at 1 s, and some), then reports the marginal memory per
// target, the 100-target agent against blackbox_exporter, and the series
// per target and size of one scrape at 1000 targets. With
// COST_BASELINE=<binary>, that build's agents with none and with the 1000
// run beside them, on a server of their own, and are reported the same way.
func TestMemory(t *testing.T) {
	steady := envDuration(t, "COST_MEMORY_DURATION", 280*time.Second)
	big := envInt(t, "COST_MEMORY_TARGETS", 1000, 10, 20000)
	// COST_MEMORY_SERVERS: the big agent's targets on that many servers
	// (listeners), one by default; a fleet has one per target, and the
	// agent one kept connection per server.
	servers := envInt(t, "COST_MEMORY_SERVERS", 1, 1, 20000)
	simBig, simSmall, simLean, simBB := startSims(t, true, servers), startSim(t, true), startSim(t, true), startSim(t, true)
	base := startAgent(t, agentSpec{targets: 0, health: shipped})
	many := startAgent(t, agentSpec{targets: big, endpoints: simBig.urls, health: shipped})
	small := startAgent(t, agentSpec{targets: 100, endpoint: simSmall.url, health: livenessOnly})
	leanBase := startAgent(t, agentSpec{targets: 0, health: shipped, tags: "nokubernetes"})
	lean := startAgent(t, agentSpec{targets: 100, endpoint: simLean.url, health: livenessOnly, tags: "nokubernetes"})
	agents := []*proc{base, many, small, leanBase, lean}
	var was0, wasMany *proc // COST_BASELINE's
	if bin := os.Getenv("COST_BASELINE"); bin != "" {
		simWas := startSims(t, true, servers)
		was0 = startAgent(t, agentSpec{targets: 0, health: shipped, bin: bin})
		wasMany = startAgent(t, agentSpec{targets: big, endpoints: simWas.urls, health: shipped, bin: bin})
		agents = append(agents, was0, wasMany)
	}
	bb := startBlackbox(t)
	host := func(p *proc) string { return strings.TrimPrefix(p.base, "http://") }
	var hosts []string
	for _, p := range agents {
		hosts = append(hosts, host(p))
	}
	prom := startPrometheus(t,
		scrapeJob{name: "vitals", interval: time.Second, targets: hosts},
		scrapeJob{name: "blackbox", interval: time.Second, targets: blackboxTargets(simBB.url, 100), blackbox: host(bb)})

	// RSS is anonymous memory (the heap, stacks, the runtime's own) and
	// file-backed pages: the pages of the binary the process has touched.
	type sample struct{ rss, anon, file, hwm int64 }
	read := func(p *proc) sample {
		st := p.status(t)
		return sample{int64(st.VmRSS), int64(st.RssAnon), int64(st.RssFile), int64(st.VmHWM)}
	}
	startAt := time.Now()
	cpu0, cpuMany0 := base.cpu(t), many.cpu(t)
	var cpuWas0 float64
	if wasMany != nil {
		cpuWas0 = wasMany.cpu(t)
	}
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for time.Since(startAt) < steady {
		<-tick.C
		for _, p := range append(agents, bb) {
			if p.Exited() {
				t.Fatalf("%s exited:\n%s", p.Name, p.Output())
			}
		}
	}
	b, m, s, lb, l, x := read(base), read(many), read(small), read(leanBase), read(lean), read(bb)
	window := time.Since(startAt)
	cpuBase, cpuMany := base.cpu(t)-cpu0, many.cpu(t)-cpuMany0
	var w0, wm sample
	var cpuWas float64
	if wasMany != nil {
		w0, wm, cpuWas = read(was0), read(wasMany), wasMany.cpu(t)-cpuWas0
	}
	saveHeap(t, many, fmt.Sprintf("agent-%d-heap.pprof", big))
	saveFile(t, fmt.Sprintf("/proc/%d/smaps", many.pid), fmt.Sprintf("agent-%d-smaps.txt", big))
	saveFile(t, fmt.Sprintf("/proc/%d/smaps", base.pid), "agent-0-smaps.txt")
	saveURL(t, many.base+"/debug/pprof/goroutine?debug=1", fmt.Sprintf("agent-%d-goroutines.txt", big))
	exp, none := scrape(t, many), scrape(t, base)
	perTarget := float64(exp.series(`plugin="t00001"`))
	checked := exp.sum("vitals_ai_probe_total", `probe="liveness"`)
	if checked < float64(big)*steady.Seconds()*0.8 {
		t.Errorf("%d targets: %v liveness probes in %s, want at least 80%% of one a second each", big, checked, steady)
	}
	if n := query(t, prom, `count(probe_success == 1)`); n != 100 {
		t.Errorf("blackbox: %v of 100 targets succeeding", n)
	}
	err := e2etest.Poll(context.Background(), 10*time.Second, time.Second, "scrapes", func(context.Context) error {
		if n := query(t, prom, `sum(up{job="vitals"})`); n != float64(len(agents)) {
			return fmt.Errorf("%v of %d agents scraped", n, len(agents))
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	perKiB := func(a, b int64) float64 { return float64(a-b) / float64(big) / 1024 }
	t.Logf("load: %d cores; loadavg %s; after %s; %d targets on %d servers", numCPU(), loadavg(), steady, big, servers)
	t.Logf("| process | RSS MiB | anonymous MiB | file-backed MiB | VmHWM MiB |")
	t.Logf("| --- | --- | --- | --- | --- |")
	row := func(name string, v sample) {
		t.Logf("| %s | %.1f | %.1f | %.1f | %.1f |", name, mib(v.rss), mib(v.anon), mib(v.file), mib(v.hwm))
	}
	row("agent, no targets", b)
	row(fmt.Sprintf("agent, %d targets, shipped probes", big), m)
	row("agent, 100 targets, liveness only", s)
	row("agent -tags nokubernetes, no targets", lb)
	row("agent -tags nokubernetes, 100 targets, liveness only", l)
	row("blackbox_exporter, 100 targets", x)
	if wasMany != nil {
		row("COST_BASELINE agent, no targets", w0)
		row(fmt.Sprintf("COST_BASELINE agent, %d targets, shipped probes", big), wm)
	}
	// The Go runtime's own account of the memory, from each agent's
	// client_golang Go collector, per target between the two agents.
	t.Logf("| runtime (go_memstats_*) | no targets MiB | %d targets MiB | per target KiB |", big)
	t.Logf("| --- | --- | --- | --- |")
	for _, name := range []string{"go_memstats_heap_alloc_bytes", "go_memstats_heap_inuse_bytes", "go_memstats_heap_idle_bytes",
		"go_memstats_heap_released_bytes", "go_memstats_stack_inuse_bytes", "go_memstats_mspan_inuse_bytes",
		"go_memstats_gc_sys_bytes", "go_memstats_other_sys_bytes", "go_memstats_sys_bytes", "go_goroutines"} {
		v0, v1 := none.sum(name), exp.sum(name)
		if name == "go_goroutines" {
			t.Logf("| goroutines | %.0f | %.0f | %.2f a target |", v0, v1, (v1-v0)/float64(big))
			continue
		}
		t.Logf("| %s | %.1f | %.1f | %.2f |", name, v0/(1<<20), v1/(1<<20), (v1-v0)/float64(big)/1024)
	}
	t.Logf("CPU over the %s: no targets %.1f s, %d targets %.1f s (%.3f cores, %.3f CPU-s per 1000 liveness probes, %.0f probes); agents' environment %q",
		window.Round(time.Second), cpuBase, big, cpuMany, cpuMany/window.Seconds(), 1000*cpuMany/checked, checked, os.Getenv("COST_AGENT_ENV"))
	t.Logf("marginal memory per target (%d vs 0): %.1f KiB RSS, %.1f KiB anonymous", big, perKiB(m.rss, b.rss), perKiB(m.anon, b.anon))
	if wasMany != nil {
		wasChecked := scrape(t, wasMany).sum("vitals_ai_probe_total", `probe="liveness"`)
		t.Logf("COST_BASELINE, same window: %.1f KiB RSS, %.1f KiB anonymous a target; this build's RSS a target %.2fx its; CPU %.3f CPU-s per 1000 liveness probes against its %.3f (%.2fx)",
			perKiB(wm.rss, w0.rss), perKiB(wm.anon, w0.anon), perKiB(m.rss, b.rss)/perKiB(wm.rss, w0.rss),
			1000*cpuMany/checked, 1000*cpuWas/wasChecked, (cpuMany/checked)/(cpuWas/wasChecked))
	}
	t.Logf("100 targets: agent RSS %.1f MiB, blackbox_exporter %.1f MiB: %.2fx", mib(s.rss), mib(x.rss), float64(s.rss)/float64(x.rss))
	t.Logf("100 targets: agent -tags nokubernetes RSS %.1f MiB: %.2fx blackbox_exporter's", mib(l.rss), float64(l.rss)/float64(x.rss))
	t.Logf("/metrics at %d targets: %.0f series per target, %d bytes of text (%.2f MB)", big, perTarget, len(exp.body), float64(len(exp.body))/1e6)
	t.Logf("Prometheus: %v samples per scrape of the %d-target agent", query(t, prom, fmt.Sprintf(`max(scrape_samples_scraped{instance=%q})`, host(many))), big)
}
